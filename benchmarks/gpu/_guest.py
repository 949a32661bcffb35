"""A real wasm guest on the GPU: top-5 equal to the CPU's, and the benchmark against torch CUDA.

The C guest ``classify.wasm`` runs in this process through ``wasinn_core.run_command``; it loads the
model (by name: the embedder's file, in this process; or from its own bytes: in a worker), times its
own ``set_input`` → ``compute`` → ``get_output`` loop with the WASI monotonic clock and prints the
top-5 of the last output. torch CUDA natively is timed the same way, on the same TorchScript file:
a pinned input copied to the device, the model, the output copied back.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import Machine, device_copy_counts, session_host
from ._install import ROOT
from ._isolated import worker_config
from ._models import BATCHES, TOP5, Workload
from ._report import Report, SkipCheck

__all__ = ["guest_checks"]

SECTION = "A wasm guest on the GPU"
GUEST = ROOT / "guests" / "wasm" / "classify.wasm"
LOOP = re.compile(r"(\d+) iterations: median ([\d.]+) us, min ([\d.]+) us")
TOP = re.compile(r"top-\d+:((?: \d+:-?[\d.]+)+)")
ITERATIONS = {"gpu": {"mnet": (200, 100), "resnet50": (100, 50)}, "cpu": {"mnet": (20, 5), "resnet50": (5, 3)}}
QUICK_ITERATIONS = {"gpu": {"mnet": (20, 10), "resnet50": (10, 5)}, "cpu": {"mnet": (3, 2), "resnet50": (3, 2)}}


def run_guest(workload: Workload, batch: int, target: str, named: bool, repeat: int) -> dict[str, Any]:
    """One run of the guest: its loop's median and min (µs) and the top-5 it printed."""
    from wasinn_core import Config, Host, RunSpec, run_command

    folder = workload.model.parent
    common = [
        "--dims",
        workload.dims(batch),
        "--repeat",
        str(repeat),
        "--top",
        "5",
        f"/m/{workload.inputs[batch].name}",
    ]
    backends = {"pytorch": {"gpu_device": "cuda"}}
    if named:
        model = {"name": "m", "encoding": "pytorch", "target": target, "path": str(workload.model)}
        config = Config.from_dict({"models": [model], "backends": backends})
        args = ["--name", "m", *common]
    else:
        isolation, _ = worker_config()
        config = Config.from_dict({**isolation, "backends": backends})
        args = ["--model", f"/m/{workload.model.name}", "--encoding", "pytorch", "--target", target, *common]
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "out", Path(tmp) / "err"
        host = Host(config)
        try:
            code = run_command(host, RunSpec(GUEST, args, [(str(folder), "/m", True)], stdout=out, stderr=err))
        finally:
            host.close()
        stdout, stderr = out.read_text(), err.read_text()
    if code != 0:
        raise AssertionError(f"the guest exited with {code}: {stderr.strip()[-800:]}")
    loop, top = LOOP.search(stdout), TOP.search(stdout)
    assert top is not None, f"no top-5 in the guest's output: {stdout[-400:]}"
    pairs = [item.split(":") for item in top.group(1).split()]
    return {
        "median_us": float(loop.group(2)) if loop else None,
        "min_us": float(loop.group(3)) if loop else None,
        "top5": [int(i) for i, _ in pairs],
        "scores": [float(s) for _, s in pairs],
    }


def native_cuda(workload: Workload, batch: int, repeat: int) -> float:
    """torch CUDA without wasinn on the same file: median µs of pinned input → device → model → host."""
    import torch

    module = torch.jit.load(str(workload.model), map_location="cuda:0")
    x = torch.from_numpy(np.fromfile(workload.inputs[batch], np.float32).reshape(batch, *workload.shape))
    x = x.pin_memory()
    times = []
    with torch.inference_mode():
        for i in range(repeat + 3):
            start = time.perf_counter()
            module(x.to("cuda:0", non_blocking=True)).cpu()
            if i >= 3:  # warm-up: cuDNN's choices, lazy module loading
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def compare_top5(name: str, gpu: dict[str, Any], cpu: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    scale = max(abs(s) for s in cpu["scores"]) or 1.0
    error = max(abs(a - b) for a, b in zip(gpu["scores"], cpu["scores"], strict=True)) / scale
    data = {"gpu": gpu["top5"], "cpu": cpu["top5"], "score_error": error}
    assert cpu["top5"] == list(TOP5), f"{name}: the CPU's top-5 is {cpu['top5']}, the model was made for {TOP5}"
    assert gpu["top5"] == cpu["top5"], f"{name}: top-5 {gpu['top5']} on the GPU, {cpu['top5']} on the CPU"
    assert error <= 1e-2, f"{name}: top-5 scores differ by {error:.1e} (relative to the largest)"
    return f"{name}: top-5 {gpu['top5']} as on the CPU; scores within {error:.1e}", data


def _copies(machine: Machine, workload: Workload, batch: int) -> tuple[float, float] | None:
    if not machine.cuda:
        return None
    from wasinn_core import ExecutionTarget, GraphEncoding

    host = session_host(options={"gpu_device": "cuda"})
    session = host.new_session()
    try:
        graph = session.load([memoryview(workload.model.read_bytes())], GraphEncoding.PYTORCH, ExecutionTarget.GPU)
        x = np.fromfile(workload.inputs[batch], np.float32).reshape(batch, *workload.shape)
        counts = device_copy_counts(session, graph, x, 5)
    finally:
        session.close()
        host.close()
    return counts["to_device"], counts["to_host"]


def bench_row(report: Report, machine: Machine, workload: Workload, batch: int, budget_s: float) -> None:
    """One benchmark row; the batch-1 runs also check top-5 against the CPU."""
    table = ITERATIONS if machine.size == "full" else QUICK_ITERATIONS
    gpu_n, cpu_n = table["gpu"][workload.name][BATCHES.index(batch)], table["cpu"][workload.name][BATCHES.index(batch)]
    label = f"{workload.name} ({workload.parameters / 1e6:.1f} M parameters), batch {batch}"
    row: dict[str, Any] = {"model": workload.name, "batch": batch, "parameters": workload.parameters}
    report.benchmark.append(row)
    runs: dict[str, dict[str, Any]] = {}

    def timed(key: str, target: str, named: bool, repeat: int) -> Any:
        def go() -> str:
            if target == "gpu" and not machine.cuda:
                raise SkipCheck(f"no CUDA here: {machine.no_cuda_reason}")
            if time.monotonic() - report.started > budget_s:
                raise SkipCheck(f"the run's time budget ({budget_s:.0f} s) is spent")
            runs[key] = run_guest(workload, batch, target, named, repeat)
            row[f"{key}_us"] = runs[key]["median_us"]
            return f"median {runs[key]['median_us']:,.1f} µs over {repeat} iterations; top-5 {runs[key]['top5']}"

        return go

    where = {"guest_cpu": "CPU, named model", "guest_gpu": "GPU, named model", "guest_gpu_worker": "GPU, worker"}
    for key, target, named, n in (
        ("guest_cpu", "cpu", True, cpu_n),
        ("guest_gpu", "gpu", True, gpu_n),
        ("guest_gpu_worker", "gpu", False, gpu_n),
    ):
        report.run(SECTION, f"{label}: guest on {where[key]}", timed(key, target, named, n))

    def native() -> str:
        if not machine.cuda:
            raise SkipCheck(f"no CUDA here: {machine.no_cuda_reason}")
        row["native_cuda_us"] = native_cuda(workload, batch, gpu_n)
        copies = _copies(machine, workload, batch)
        row["device_copies_per_inference"] = copies
        for key in ("guest_gpu", "guest_gpu_worker"):
            if row.get(f"{key}_us"):
                row[f"{key}_vs_native"] = round(row[f"{key}_us"] / row["native_cuda_us"], 3)
        return (
            f"native {row['native_cuda_us']:,.1f} µs; guest/native {row.get('guest_gpu_vs_native')} in process, "
            f"{row.get('guest_gpu_worker_vs_native')} in a worker; copies to device/host per inference {copies}"
        )

    report.run(SECTION, f"{label}: torch CUDA natively", native)
    if batch == 1:
        for key in ("guest_gpu", "guest_gpu_worker"):

            def top5(key: str = key) -> tuple[str, dict[str, Any]]:
                if "guest_cpu" in runs and not machine.cuda:  # the CPU's side still holds
                    got = runs["guest_cpu"]["top5"]
                    assert got == list(TOP5), f"the CPU's top-5 is {got}, the model was made for {TOP5}"
                if key not in runs or "guest_cpu" not in runs:
                    raise SkipCheck(f"no GPU run to compare (the CPU's top-5 is {list(TOP5)}, as made)")
                return compare_top5(workload.name, runs[key], runs["guest_cpu"])

            report.run(SECTION, f"{label}: top-5 on {where[key]} equal to the CPU", top5, goal="equal")


def check_digits_cli(machine: Machine) -> str:
    """The digits demo guest through ``wasinn run`` (the installed CLI), its model named on ``gpu``."""
    digits = ROOT / "examples" / "digits"
    target = "gpu" if machine.cuda else "cpu"
    command = [
        sys.executable, "-P", "-m", "wasinn_core", "run", "--dir", f"{digits / 'images'}::/images",
        "--nn-preload", f"digits:pytorch:{target}:{digits / 'model' / 'digits.pt'}",
        str(ROOT / "guests" / "wasm" / "digits.wasm"), "/images",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-1500:]
    assert "accuracy: 38/40" in result.stdout, result.stdout[-500:]
    if not machine.cuda:
        raise SkipCheck(f"no CUDA here ({machine.no_cuda_reason}); on the CPU: accuracy 38/40")
    return "accuracy 38/40 on gpu, as on the CPU"


def guest_checks(report: Report, machine: Machine, workloads: list[Workload], budget_s: float) -> None:
    report.run(SECTION, "digits demo guest via `wasinn run`, model on gpu", lambda: check_digits_cli(machine))
    for workload in workloads:
        for batch in BATCHES:
            bench_row(report, machine, workload, batch, budget_s)
