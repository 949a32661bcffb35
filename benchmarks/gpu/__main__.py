"""``python -m benchmarks.gpu --out DIR [--install WHEELS]``: the GPU check (``make gpu-check``).

On a GPU machine: the PyTorch plugin's CUDA checks in the host process and in worker processes, the
confinement layer by layer, a real wasm guest's top-5 on the GPU against the CPU, and a short benchmark
(guest on the GPU vs torch CUDA natively vs the guest on the CPU). Without CUDA, every GPU check is
skipped with its reason and the rest runs. ``DIR`` receives ``gpu-check.json`` and ``gpu-check.md``.
Exit status 1 when a check failed. See docs/backends/pytorch.md, "Checking a GPU machine".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._install import install, prepare, reexec_env
from ._report import Report

if TYPE_CHECKING:
    from ._checks import Machine

_INSTALL_INFO = "WASINN_GPU_CHECK_INSTALL"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__)
    parser.add_argument("--prepare", type=Path, metavar="WHEELS", help="only download the wheels a GPU machine lacks")
    parser.add_argument("--out", type=Path, help="folder for gpu-check.json and gpu-check.md")
    parser.add_argument("--install", type=Path, metavar="WHEELS", help="install wasinn first, from these wheels")
    parser.add_argument("--size", choices=("auto", "full", "quick"), default="auto", help="auto: full with CUDA")
    parser.add_argument("--budget", type=float, default=200.0, help="seconds after which benchmark rows are skipped")
    parser.add_argument("--work", type=Path, help="folder for the generated models (default: a temporary one)")
    return parser.parse_args(argv)


def _version(module: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment(report: Report) -> tuple[int, str]:
    """What runs here; returns the CUDA device count and, without one, the plugin's reason."""
    import torch

    import wasinn_core
    import wasinn_pytorch
    from wasinn_core._isolation._confine import probe
    from wasinn_pytorch._devices import DeviceFacts

    facts = DeviceFacts.current()
    env: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": f"{platform.python_version()} ({sys.executable})",
        "kernel": platform.release(),
        "torch": f"{torch.__version__} (CUDA {torch.version.cuda}) from {Path(torch.__file__).parent}",
        "wasinn_core": f"{wasinn_core.__version__} from {Path(wasinn_core.__file__).parent}",
        "wasinn_pytorch": f"{wasinn_pytorch.__version__} from {Path(wasinn_pytorch.__file__).parent}",
        "wasmtime": _version("wasmtime"),
        "cuda_devices": facts.cuda_devices,
        "worker_confinement": probe().describe(),
    }
    try:
        import pyseccomp  # noqa: F401
    except Exception as exc:
        env["seccomp_unavailable"] = f"{type(exc).__name__}: {exc}"
    for i in range(facts.cuda_devices):
        props = torch.cuda.get_device_properties(i)
        env[f"cuda:{i}"] = f"{props.name}, {props.total_memory / (1 << 30):.0f} GiB"
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        env["nvidia_smi"] = f"not run: {exc}"
    installed = os.environ.get(_INSTALL_INFO)
    if installed:
        env["install"] = json.loads(installed)
    report.environment.update(env)
    report.write()
    return facts.cuda_devices, "" if facts.cuda_devices else facts.cuda_reason()


def run(args: argparse.Namespace) -> int:
    from ._checks import Machine

    report = Report(args.out)
    devices, reason = environment(report)
    size = args.size if args.size != "auto" else ("full" if devices else "quick")
    work = args.work or Path(tempfile.mkdtemp(prefix="wasinn-gpu-models-"))
    try:
        return _sections(report, Machine(devices, reason, size, work), args)
    finally:  # the generated models and the installed wasinn go with the run
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
        target = report.environment.get("install", {}).get("target")
        if target:
            shutil.rmtree(target, ignore_errors=True)


def _sections(report: Report, machine: Machine, args: argparse.Namespace) -> int:
    from ._checks import in_process_checks
    from ._diagnose import diagnose
    from ._guest import guest_checks
    from ._isolated import isolated_checks
    from ._models import make_small, make_workloads

    devices, reason, size, work = machine.cuda_devices, machine.no_cuda_reason, machine.size, machine.work
    report.environment["size"] = size
    print(f"gpu-check: {devices} CUDA device(s){'' if devices else f' ({reason})'}; {size} models in {work}")
    made: dict[str, Any] = {}

    def models() -> str:
        made["workloads"] = make_workloads(work, size)
        made["small"] = make_small(work)
        return ", ".join(f"{w.name} {w.parameters / 1e6:.1f} M parameters" for w in made["workloads"])

    if report.run("models", f"generate the {size} models with this torch", models).status != "pass":
        return 1
    in_process_checks(report, machine, made["workloads"], made["small"])
    isolated_checks(report, machine)
    diagnose(report, machine)
    guest_checks(report, machine, made["workloads"], args.budget)
    report.write()
    counts = report.counts()
    print(f"gpu-check: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped; see {args.out}")
    return 1 if counts["fail"] else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.prepare is not None:
        names = prepare(args.prepare)
        print(f"gpu-check: {len(names)} wheels in {args.prepare}: {', '.join(names)}")
        return 0
    if args.out is None:
        raise SystemExit("gpu-check: --out DIR is required")
    if args.install is not None:
        target = Path(tempfile.mkdtemp(prefix="wasinn-gpu-site-"))
        info = install(args.install.resolve(), target)
        print(f"gpu-check: installed {', '.join(info['installed'])} into {target} in {info['seconds']:.0f} s")
        rest = [a for i, a in enumerate(argv) if a != "--install" and (i == 0 or argv[i - 1] != "--install")]
        rest = [a for a in rest if not a.startswith("--install=")]
        env = {**reexec_env(target), _INSTALL_INFO: json.dumps(info)}
        os.execve(sys.executable, [sys.executable, "-P", "-m", "benchmarks.gpu", *rest], env)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
