"""The PyTorch plugin's CUDA checks in the host process: devices, policies, memory, copies, archive readers.

Each check runs on a GPU machine; on a machine without CUDA it runs what it can (the refusals, the
fallback, the loops on the CPU) and reports itself skipped with the plugin's own reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._report import Report, SkipCheck

__all__ = ["Machine", "in_process_checks", "session_host"]

SECTION = "PyTorch plugin on CUDA, in the host process"
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits" / "model"
CYCLES = 1000


@dataclass(frozen=True)
class Machine:
    """What this machine offers: CUDA devices, or the plugin's reason for having none."""

    cuda_devices: int
    no_cuda_reason: str
    size: str  # "full" or "quick"
    work: Path  # scratch folder for models

    @property
    def cuda(self) -> bool:
        return self.cuda_devices > 0


def session_host(extra: dict[str, Any] | None = None, options: dict[str, Any] | None = None) -> Any:
    """A host whose Session API loads run in this process (``isolation.guest = "none"``)."""
    from wasinn_core import Config, Host

    config = {"isolation": {"guest": "none"}, "backends": {"pytorch": options or {}}, **(extra or {})}
    return Host(Config.from_dict(config))


def infer(session: Any, graph: int, *inputs: np.ndarray) -> list[np.ndarray]:
    """One inference through the Session API; every output as a numpy copy."""
    from wasinn_core import Tensor

    ctx = session.init_execution_context(graph)
    try:
        for i, x in enumerate(inputs):
            session.set_input(ctx, i, Tensor.from_array(x))
        session.compute(ctx)
        return [np.array(session.get_output(ctx, i).data) for i in range(len(session.output_names(ctx)))]
    finally:
        session.finalize_execution_context(ctx)


def load(session: Any, data: bytes, gpu: bool) -> int:
    from wasinn_core import ExecutionTarget, GraphEncoding

    target = ExecutionTarget.GPU if gpu else ExecutionTarget.CPU
    return session.load([memoryview(data)], GraphEncoding.PYTORCH, target)


def digits_input() -> np.ndarray:
    return np.random.default_rng(7).random((1, 64), dtype=np.float32)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-12))


@contextmanager
def captured(logger: str) -> Iterator[list[str]]:
    """The log lines ``logger`` emits at warning level and above, while in the block."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler, log = Keep(logging.WARNING), logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield lines
    finally:
        log.removeHandler(handler)


def check_cuda(machine: Machine) -> tuple[str, dict[str, Any]]:
    """``gpu`` → ``cuda:0`` by default, results equal to the CPU's."""
    from wasinn_core import UnsupportedOperation

    data = (DIGITS / "digits.pt").read_bytes()
    x = digits_input()
    host = session_host(options={"gpu_device": "cuda"})
    session = host.new_session()
    try:
        want = infer(session, load(session, data, gpu=False), x)[0]
        if not machine.cuda:
            try:
                load(session, data, gpu=True)
            except UnsupportedOperation as exc:
                assert "CUDA not available" in exc.message, exc.message
                raise SkipCheck(f"no CUDA here; the plugin refuses gpu with: {exc.message}") from None
            raise AssertionError("gpu loaded on a machine without CUDA")
        graph = load(session, data, gpu=True)
        device = session.graph_info(graph).device
        got = infer(session, graph, x)[0]
    finally:
        session.close()
        host.close()
    error = relative_error(got, want)
    assert device == "cuda:0", f"gpu ran on {device}, not cuda:0"
    assert error <= 1e-5, f"cuda:0 differs from the CPU by {error:.2e} (relative)"
    return f"cuda:0, relative difference from the CPU {error:.1e}", {"error": error}


def check_cuda_n(machine: Machine) -> tuple[str, dict[str, Any]]:
    """``device_index = N`` → ``cuda:N`` for every device; one past the last is refused with the count."""
    from wasinn_core import UnsupportedOperation

    data, x = (DIGITS / "digits.pt").read_bytes(), digits_input()
    n = machine.cuda_devices
    seen = {}
    for index in range(n + 1):
        host = session_host(options={"gpu_device": "cuda", "device_index": index})
        session = host.new_session()
        try:
            graph = load(session, data, gpu=True)
            seen[index] = session.graph_info(graph).device
            infer(session, graph, x)
        except UnsupportedOperation as exc:
            seen[index] = exc.message
        finally:
            session.close()
            host.close()
    refusal = seen[n]
    if not machine.cuda:
        assert "CUDA not available" in refusal, refusal
        raise SkipCheck(f"no CUDA here; device_index 0 is refused with: {refusal}")
    for index in range(n):
        assert seen[index] == f"cuda:{index}", f"device_index {index} ran on {seen[index]}"
    assert f"cuda:{n} requested but only {n} CUDA device(s) exist" in refusal, refusal
    return f"{', '.join(seen[i] for i in range(n))}; device_index {n}: {refusal}", {"devices": n}


def check_strict(machine: Machine) -> str:
    """The default policy: a gpu request that cannot be served fails, naming the policy and the reason."""
    from wasinn_core import UnsupportedOperation

    host = session_host(options={"gpu_device": "cuda", "device_index": machine.cuda_devices})
    session = host.new_session()
    try:
        load(session, (DIGITS / "digits.pt").read_bytes(), gpu=True)
    except UnsupportedOperation as exc:
        assert "fallback policy is strict" in exc.message, exc.message
        return f"refused: {exc.message}"
    finally:
        session.close()
        host.close()
    raise AssertionError("a gpu request that cannot be served was not refused")


def check_fallback(machine: Machine) -> tuple[str, dict[str, Any]]:
    """``policy.fallback = "cpu"``: the graph runs on the CPU, ``GraphInfo`` and the log say so."""
    from wasinn_core import ExecutionTarget

    host = session_host(
        {"policy": {"fallback": "cpu"}}, options={"gpu_device": "cuda", "device_index": machine.cuda_devices}
    )
    session = host.new_session()
    try:
        with captured("wasinn") as lines:
            graph = load(session, (DIGITS / "digits.pt").read_bytes(), gpu=True)
        info = session.graph_info(graph)
        infer(session, graph, digits_input())
    finally:
        session.close()
        host.close()
    assert (info.requested_target, info.target, info.device) == (ExecutionTarget.GPU, ExecutionTarget.CPU, "cpu"), info
    said = [line for line in lines if "running on cpu" in line]
    assert said, f"no warning names the fallback (log: {lines})"
    return f"requested gpu, ran on {info.device}; logged: {said[0]}", {}


def check_memory(machine: Machine) -> tuple[str, dict[str, Any]]:
    """``torch.cuda.memory_allocated`` back to its start over 1,000 load/compute/release cycles."""
    import torch

    from wasinn_core import Tensor

    data, x = (DIGITS / "digits.pt").read_bytes(), digits_input()
    host = session_host(options={"gpu_device": "cuda"})
    cycles = CYCLES if machine.cuda else 10
    measure: Callable[[], int] = torch.cuda.memory_allocated if machine.cuda else lambda: 0
    session = host.new_session()
    start = time.monotonic()
    try:
        load(session, data, gpu=machine.cuda)  # torch's caches and CUDA's context, outside the count
        before, samples, peak = measure(), [], 0
        for cycle in range(cycles):
            graph = load(session, data, gpu=machine.cuda)
            ctx = session.init_execution_context(graph)
            session.set_input(ctx, 0, Tensor.from_array(x))
            session.compute(ctx)
            session.get_output(ctx, 0)
            peak = max(peak, measure())
            if cycle % 2:  # both release orders: context then graph, graph then context
                session.finalize_execution_context(ctx)
                session.unload(graph)
            else:
                session.unload(graph)
                session.finalize_execution_context(ctx)
            if cycle % 100 == 99:
                samples.append(measure())
        after = measure()
    finally:
        session.close()
        host.close()
    seconds = time.monotonic() - start
    if not machine.cuda:
        raise SkipCheck(f"no CUDA here ({machine.no_cuda_reason}); the loop ran {cycles} cycles on the CPU")
    data_out = {"before": before, "after": after, "peak": peak, "every_100": samples}
    assert after == before, f"memory_allocated went from {before} to {after} bytes over {cycles} cycles"
    assert all(s == before for s in samples), f"memory_allocated drifted: {samples}"
    return f"{cycles} cycles in {seconds:.1f} s: {before} bytes before and after (peak {peak})", data_out


def device_copy_counts(session: Any, graph: int, x: np.ndarray, n: int) -> dict[str, Any]:
    """Copies per inference over ``n`` inferences on one context: the plugin's counters, wasinn's host
    copy counter and, on CUDA, the memcpy operations CUDA itself recorded (torch's profiler)."""
    from wasinn_core import COPIES, Tensor
    from wasinn_pytorch import device_copies

    ctx = session.init_execution_context(graph)
    tensor = Tensor.from_array(x)

    def step() -> None:
        session.set_input(ctx, 0, tensor)
        session.compute(ctx)
        session.get_output(ctx, 0)

    step()
    before, host_before = device_copies(), COPIES.copies
    for _ in range(n):
        step()
    delta, host = device_copies() - before, COPIES.copies - host_before
    out: dict[str, Any] = {
        "to_device": delta.to_device / n,
        "to_host": delta.to_host / n,
        "to_device_bytes": delta.to_device_bytes / n,
        "to_host_bytes": delta.to_host_bytes / n,
        "host_copies": host / n,
    }
    if delta.to_device:  # what CUDA saw, counted independently of the plugin's own counters
        import torch
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(n):
                step()
            torch.cuda.synchronize()
        names = [e.name for e in prof.events()]
        if any("Memcpy" in name for name in names):  # else the profiler saw nothing (no CUPTI): no second count
            out["cuda_memcpy_to_device"] = sum("Memcpy HtoD" in name for name in names) / n
            out["cuda_memcpy_to_host"] = sum("Memcpy DtoH" in name for name in names) / n
        else:
            out["cuda_profiler"] = f"recorded no copies ({len(names)} events): CUDA's own count is not available"
    session.finalize_execution_context(ctx)
    return out


def check_copies(machine: Machine, model: Path, shape: tuple[int, ...]) -> tuple[str, dict[str, Any]]:
    """One copy to the device per input and one to the host per output, per inference."""
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    host = session_host(options={"gpu_device": "cuda"})
    session = host.new_session()
    try:
        counts = device_copy_counts(session, load(session, model.read_bytes(), gpu=machine.cuda), x, 20)
    finally:
        session.close()
        host.close()
    if not machine.cuda:
        assert counts["to_device"] == counts["to_host"] == 0, counts
        raise SkipCheck(f"no CUDA here: on the CPU no tensor moves ({counts['host_copies']:g} host copies)")
    assert counts["to_device"] == 1 and counts["to_host"] == 1, counts
    if "cuda_memcpy_to_device" in counts:
        seen = (counts["cuda_memcpy_to_device"], counts["cuda_memcpy_to_host"])
        assert seen == (1, 1), f"CUDA recorded {seen[0]:g} copies to the device and {seen[1]:g} back"
    return (
        f"per inference: {counts['to_device']:g} copy to the device, {counts['to_host']:g} to the host "
        f"(CUDA's own count: {counts.get('cuda_memcpy_to_device')}, {counts.get('cuda_memcpy_to_host')}); "
        f"{counts['host_copies']:g} host copies",
        counts,
    )


class Tripwire:
    """Replaces ``torch.export.load`` (and the deserializer it calls) with a trap that records a call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @contextmanager
    def armed(self) -> Iterator[Tripwire]:
        import torch._export.serde.serialize as serialize
        import torch.export

        saved = [(torch.export, "load", torch.export.load), (serialize, "deserialize", serialize.deserialize)]

        def trap(name: str) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                raise RuntimeError(f"gpu-check tripwire: {name} was called")

            return call

        for owner, attr, _ in saved:
            setattr(owner, attr, trap(f"{owner.__name__}.{attr}"))
        try:
            yield self
        finally:
            for owner, attr, original in saved:
                setattr(owner, attr, original)


def check_archive(machine: Machine, small: dict[str, Any], fmt: str, tripwire: Tripwire) -> tuple[str, dict[str, Any]]:
    """This torch's own archive of ``fmt`` loads through the plugin, on the CPU and CUDA, equal to eager."""
    import torch

    from wasinn_core import WasiNNError

    data = Path(small[fmt]).read_bytes()
    results, errors = {}, {}
    host = session_host(options={"gpu_device": "cuda"})
    session = host.new_session()
    try:
        with tripwire.armed():
            for gpu in (False, True) if machine.cuda else (False,):
                where = "cuda" if gpu else "cpu"
                try:
                    graph = load(session, data, gpu)
                    results[where] = relative_error(infer(session, graph, small["input"])[0], small["expected"])
                except WasiNNError as exc:
                    errors[where] = f"{type(exc).__name__}: {exc.message}"
    finally:
        session.close()
        host.close()
    version = torch.__version__
    assert not tripwire.calls, f"{', '.join(tripwire.calls)} was called: the reader must never fall back to it"
    assert not errors, (
        f"the plugin cannot load a {fmt} archive saved by torch {version} (it failed closed, "
        f"torch.export.load was never called): {errors}"
    )
    tolerance = {"cpu": 1e-5, "cuda": 1e-2}  # cuDNN convolutions use TF32 by default (torch's default)
    assert all(e <= tolerance[w] for w, e in results.items()), f"differs from eager torch: {results}"
    return (
        f"torch {version}'s own {fmt} archive: relative difference from eager torch "
        + ", ".join(f"{w} {e:.1e}" for w, e in results.items()),
        {"errors": results},
    )


def check_committed_pt2(machine: Machine, tripwire: Tripwire) -> str:
    """The committed digits.pt2 (written by another torch release): loads, or is refused cleanly."""
    import torch

    from wasinn_core import WasiNNError

    host = session_host(options={"gpu_device": "cuda"})
    session = host.new_session()
    try:
        with tripwire.armed():
            graph = load(session, (DIGITS / "digits.pt2").read_bytes(), machine.cuda)
            where = session.graph_info(graph).device
            infer(session, graph, digits_input())
        outcome = f"loaded and ran on {where}"
    except WasiNNError as exc:
        outcome = f"refused cleanly ({type(exc).__name__}): {exc.message}"
    finally:
        session.close()
        host.close()
    assert not tripwire.calls, f"{', '.join(tripwire.calls)} was called"
    return f"torch {torch.__version__}: {outcome}; torch.export.load never called"


def in_process_checks(report: Report, machine: Machine, workloads: list[Any], small: dict[str, Any]) -> None:
    """Every check of this section, each reported as it ends."""
    report.run(SECTION, "gpu → cuda:0, equal to the CPU", lambda: check_cuda(machine), goal="equal")
    report.run(SECTION, "device_index → cuda:N", lambda: check_cuda_n(machine))
    report.run(SECTION, "strict policy refuses with the reason", lambda: check_strict(machine))
    report.run(SECTION, "cpu fallback runs on the CPU and reports it", lambda: check_fallback(machine))
    report.run(
        SECTION, f"device memory over {CYCLES:,} load/compute/release cycles", lambda: check_memory(machine), "memory"
    )
    for workload in workloads[:1]:
        report.run(
            SECTION,
            f"host↔device copies per inference ({workload.name})",
            lambda w=workload: check_copies(machine, w.model, w.shape),
        )
    tripwire = Tripwire()
    for fmt in ("torchscript", "exported_program"):
        check = lambda f=fmt: check_archive(machine, small, f, tripwire)  # noqa: E731
        report.run(SECTION, f"{fmt} saved by this torch", check, goal="equal" if machine.cuda else None)
    report.run(SECTION, "digits.pt2 written by torch 2.13", lambda: check_committed_pt2(machine, tripwire))
