"""Installing wasinn on a machine that already has its torch, without touching that torch.

The GPU machine has Python, a CUDA build of torch, numpy and pluggy, and no network. The
preparation step (``make gpu-wheels``, where there is a package index) downloads what it lacks into
one folder of wheels; here, ``pip install --no-index --no-deps --target DIR`` installs wasinn-core and
wasinn-pytorch from this checkout plus those wheels into a folder of their own, and the check starts
again with that folder first on ``PYTHONPATH`` (and ``-P``: the checkout's own ``wasinn_core`` is not
what gets imported). ``--no-deps``: pip never resolves ``torch``, so the machine's build stays.

Uses the standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["ROOT", "WHEELS", "install", "prepare", "reexec_env"]

ROOT = Path(__file__).resolve().parents[2]
#: What the preparation step downloads: wasinn-core's dependencies that the GPU machine lacks, and the
#: build backend pip needs to install wasinn from this checkout without an index.
WHEELS = ("wasmtime>=50,<51", "landlockpy>=0.2,<0.3", "pyseccomp>=0.1.2,<0.2", "hatchling")


#: The GPU machine: CPython 3.12 on x86-64 Linux (every wheel here is pure Python or py3-none, so it
#: installs on this machine's Python too).
_PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"] + [
    f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                                "manylinux1_x86_64")
]  # fmt: skip


def prepare(wheels: Path) -> list[str]:
    """Download the wheels the GPU machine lacks into ``wheels`` (needs a package index); their names."""
    wheels.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(wheels)]
    subprocess.run([*command, *_PLATFORM, *WHEELS], check=True, timeout=600)
    names = sorted(p.name for p in wheels.glob("*.whl"))
    size = sum(p.stat().st_size for p in wheels.glob("*.whl"))
    if size > 48 << 20:  # the GPU machine takes 64 MiB per run, the checkout included
        raise SystemExit(f"gpu-check: the wheels take {size >> 20} MiB; at most 48 MiB may be carried")
    return names


def install(wheels: Path, target: Path) -> dict[str, object]:
    """Install wasinn-core, wasinn-pytorch and the carried wheels into ``target``; what was done."""
    start = time.monotonic()
    have = sorted(p.name for p in wheels.glob("*.whl"))
    if not have:
        raise SystemExit(f"gpu-check: no wheels in {wheels}: run the preparation step (make gpu-wheels) first")
    runtime = [w.split(">")[0].split("=")[0] for w in WHEELS if not w.startswith("hatchling")]
    command = [
        sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-input",
        "--no-index", "--find-links", str(wheels), "--no-deps", "--no-compile", "--upgrade",
        "--target", str(target), str(ROOT), str(ROOT / "plugins" / "pytorch"), *runtime,
    ]  # fmt: skip
    # pip's configuration files and variables of this machine stay out: only the carried wheels count
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"gpu-check: pip install failed:\n{result.stdout}\n{result.stderr}")
    installed = sorted(p.name for p in target.iterdir() if p.name.endswith(".dist-info"))
    if any(name.startswith("torch-") for name in installed):
        raise SystemExit("gpu-check: the install brought its own torch; it must use the machine's")
    return {"wheels": have, "installed": installed, "target": str(target), "seconds": time.monotonic() - start}


def reexec_env(target: Path) -> dict[str, str]:
    """The environment the check starts again in: the installed folder first, then this checkout
    (for the ``benchmarks`` package and the guests)."""
    path = [str(target), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONUNBUFFERED": "1"}
