"""Build the C guests to wasm32-wasi with zig (PyPI ``ziglang``), or check the committed builds.

    python guests/build.py            # rebuild every guest: guests/src/*.c and the conformance guests
    python guests/build.py --check    # rebuild into a temp dir and compare with the committed files
    python guests/build.py digits     # rebuild one guest

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
CONFORMANCE = ROOT / "conformance" / "wasinn_conformance" / "guests"
# (source folder, output folder): the examples, and the conformance suite's ABI guests (shipped with it)
FOLDERS = [(HERE / "src", HERE / "wasm"), (CONFORMANCE, CONFORMANCE)]
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
    targets = [(src, out / f"{src.stem}.wasm") for folder, out in FOLDERS for src in sorted(folder.glob("*.c"))]
    if args.names:
        targets = [(src, out) for src, out in targets if src.stem in args.names]
    if args.check:
        stale = []
        with tempfile.TemporaryDirectory() as tmp:
            for source, committed in targets:
                fresh = Path(tmp) / committed.name
                build(source, fresh)
                if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
                    stale.append(str(committed.relative_to(ROOT)))
        if stale:
            print(f"stale or missing guest builds: {', '.join(stale)}; run python guests/build.py", file=sys.stderr)
            return 1
        print(f"{len(targets)} guest builds match their sources")
        return 0
    for source, out in targets:
        out.parent.mkdir(exist_ok=True)
        build(source, out)
        print(f"built {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
