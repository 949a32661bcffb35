"""Build the component guests with componentize-py (offline; about 8 s each), into a cache folder.

    python guests/components/build.py [--out DIR]     → DIR/digits-2024-10-28.wasm, DIR/digits-2024-08-19.wasm,
                                                        DIR/llama-2024-10-28.wasm, DIR/llama-2024-08-19.wasm

The components are about 18 MB (CPython inside), so they are built, not committed. A build is reused
while its sources (this folder and wasinn_core/wit) are unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WIT_PACKAGES = ROOT / "wasinn_core" / "wit"
WORLDS = ("digits-2024-10-28", "digits-2024-08-19")
#: The guests (a Python file each), built for every world: they import the same interfaces.
GUESTS = ("digits", "llama")
DEFAULT_OUT = ROOT / ".cache" / "components"
_SCRIPT = 'import sys, componentize_py; sys.argv[0] = "componentize-py"; sys.exit(componentize_py.script())'


def sources() -> list[Path]:
    return sorted([*HERE.glob("*.py"), *HERE.glob("wit/*.wit"), *WIT_PACKAGES.glob("*.wit")])


def digest() -> str:
    h = hashlib.sha256()
    for path in sources():
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def wit_tree(into: Path) -> Path:
    """The guests' world plus its dependencies laid out as componentize-py expects (deps/<pkg>/)."""
    wit = into / "wit"
    shutil.copytree(HERE / "wit", wit, ignore=shutil.ignore_patterns("cli-run.wit"))
    (wit / "deps" / "cli").mkdir(parents=True)
    shutil.copy(HERE / "wit" / "cli-run.wit", wit / "deps" / "cli" / "run.wit")
    for package in WIT_PACKAGES.glob("*.wit"):
        folder = wit / "deps" / package.stem.replace("@", "-")
        folder.mkdir()
        shutil.copy(package, folder / "wasi-nn.wit")
    return wit


def build(out: Path = DEFAULT_OUT, quiet: bool = True, guest: str = "digits") -> dict[str, Path]:
    """Build (or reuse) ``guest``'s component for every world; returns world -> path."""
    out.mkdir(parents=True, exist_ok=True)
    key = digest()
    name = {world: world.replace("digits", guest, 1) for world in WORLDS}  # llama-2024-10-28-KEY.wasm
    built = {world: out / f"{name[world]}-{key}.wasm" for world in WORLDS}
    if all(p.exists() for p in built.values()):
        return built
    for world in WORLDS:  # builds of older sources
        for stale in out.glob(f"{name[world]}-*.wasm"):
            stale.unlink()
    with tempfile.TemporaryDirectory(prefix="wasinn-components-") as tmp:
        wit = wit_tree(Path(tmp))
        shutil.copy(HERE / f"{guest}.py", Path(tmp) / f"{guest}.py")
        for world, path in built.items():
            if path.exists():
                continue
            partial = path.with_suffix(".partial")
            command = [sys.executable, "-c", _SCRIPT, "-d", str(wit), "-w", world]
            command += ["componentize", guest, "-o", str(partial)]
            result = subprocess.run(command, cwd=tmp, capture_output=quiet, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"componentize-py failed for {world}:\n{result.stderr or ''}")
            partial.rename(path)
    return built


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    for guest in GUESTS:
        for world, path in build(args.out, quiet=False, guest=guest).items():
            print(f"{guest} {world}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
