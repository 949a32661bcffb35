"""Build the C guests to wasm32-wasi with zig (PyPI ``ziglang``), or check the committed builds.

    python guests/build.py            # rebuild guests/wasm/*.wasm from guests/src/*.c
    python guests/build.py --check    # rebuild into a temp dir and compare with the committed files

The first build takes ~30 s (zig builds wasi-libc into its cache), later ones are instant.
``ZIG_GLOBAL_CACHE_DIR`` defaults to ``.zig-cache`` in the repository, never ``$HOME``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCES = HERE / "src"
OUTPUT = HERE / "wasm"
FLAGS = ["-target", "wasm32-wasi", "-O2", "-s", "-Wall", "-Werror", "-I", str(HERE / "include")]


def build(source: Path, output: Path) -> None:
    env = dict(os.environ)
    env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(ROOT / ".zig-cache"))
    cmd = [sys.executable, "-m", "ziglang", "cc", *FLAGS, str(source), "-o", str(output)]
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare fresh builds with the committed .wasm files")
    parser.add_argument("names", nargs="*", help="guest names (default: all sources)")
    args = parser.parse_args()
    sources = sorted(SOURCES.glob("*.c"))
    if args.names:
        sources = [s for s in sources if s.stem in args.names]
    if args.check:
        stale = []
        with tempfile.TemporaryDirectory() as tmp:
            for source in sources:
                fresh = Path(tmp) / f"{source.stem}.wasm"
                build(source, fresh)
                committed = OUTPUT / fresh.name
                if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
                    stale.append(committed.name)
        if stale:
            print(f"stale or missing guest builds: {', '.join(stale)}; run python guests/build.py", file=sys.stderr)
            return 1
        print(f"{len(sources)} guest builds match their sources")
        return 0
    OUTPUT.mkdir(exist_ok=True)
    for source in sources:
        out = OUTPUT / f"{source.stem}.wasm"
        build(source, out)
        print(f"built {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
