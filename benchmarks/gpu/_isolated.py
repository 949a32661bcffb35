"""Guest-supplied models in a worker process (wasinn's default for them), on CUDA.

A worker is forked from the pytorch zygote, confines itself (Landlock, seccomp) and only then
initialises CUDA. What the confinement lets through has never run on a GPU before this check: where
CUDA fails in the worker, the check reports the worker's own error and the zygote's last words, and
the diagnostics section (:mod:`._probe`) says which layer refused what.

``python -m benchmarks.gpu._isolated --no-seccomp TARGET`` is the subprocess of the Landlock-only
check: it runs with a ``pyseccomp`` that fails to import as it does where libseccomp.so.2 is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._checks import DIGITS, Machine, digits_input, infer, load, relative_error
from ._install import ROOT
from ._report import Report, SkipCheck

__all__ = ["isolated_checks", "worker_config"]

SECTION = "Guest models in a worker process (isolated path)"
_NO_LIBSECCOMP = 'raise RuntimeError("Unable to find libseccomp")  # as pyseccomp says without libseccomp.so.2\n'


def worker_config() -> tuple[dict[str, Any], str]:
    """The isolation config for guest models here, and how their workers are confined.

    Where the kernel cannot confine (no Landlock: gVisor, old kernels), wasinn refuses guest pytorch
    models; the check then allows them unconfined, so that CUDA in a worker is still tested.
    """
    from wasinn_core._config import DEFAULT_UNCONFINED
    from wasinn_core._isolation._confine import probe

    confinement = probe()
    if confinement.available:
        return {}, f"confined: {confinement.describe()}"
    allowed = sorted({e.value for e in DEFAULT_UNCONFINED} | {"pytorch"})
    return {"isolation": {"unconfined_guest_load": allowed}}, (
        f"UNCONFINED ({confinement.describe()}); guest pytorch models are refused here by default, "
        "so this check allows them unconfined to test CUDA in a worker"
    )


def _worker_host(options: dict[str, Any] | None = None) -> Any:
    from wasinn_core import Config, Host

    config, _ = worker_config()
    return Host(Config.from_dict({**config, "backends": {"pytorch": options or {"gpu_device": "cuda"}}}))


def _worker_of(session: Any, graph: int) -> Any:
    return session._graph(graph).loaded.graph.worker


def _last_words() -> str:
    from wasinn_core._isolation._workers import _ZYGOTES

    words = [line for z in _ZYGOTES.values() for line in z.last_words]
    return " | ".join(words[-8:]) or "none"


def check_worker(machine: Machine, gpu: bool) -> tuple[str, dict[str, Any]]:
    """The digits model loaded from guest bytes runs in a worker on ``gpu`` (or the CPU), equal to the CPU."""
    from wasinn_core import WasiNNError

    if gpu and not machine.cuda:
        raise SkipCheck(f"no CUDA here: {machine.no_cuda_reason}")
    data, x = (DIGITS / "digits.pt").read_bytes(), digits_input()
    _, how = worker_config()
    host = _worker_host()
    session = host.new_session()
    try:
        want = infer(session, load(session, data, gpu=False), x)[0]
        start = time.monotonic()
        try:
            graph = load(session, data, gpu=gpu)
        except WasiNNError as exc:
            raise AssertionError(
                f"the worker could not load on {'gpu' if gpu else 'cpu'} ({how}): {exc.message}; "
                f"zygote's last words: {_last_words()}"
            ) from None
        load_s = time.monotonic() - start
        info = session.graph_info(graph)
        confinement = _worker_of(session, graph).confinement
        got = infer(session, graph, x)[0]
    finally:
        session.close()
        host.close()
    error = relative_error(got, want)
    assert info.isolation == "process", f"ran {info.isolation}: {info.isolation_reason}"
    assert info.device == ("cuda:0" if gpu else "cpu"), f"ran on {info.device}"
    assert error <= 1e-5, f"differs from the CPU by {error:.2e}"
    return (
        f"{info.device} in a worker ({how}; the worker reports {confinement}); first load {load_s:.2f} s; "
        f"relative difference from the CPU {error:.1e}",
        {"confinement": confinement, "load_s": load_s},
    )


def check_worker_memory(machine: Machine, cycles: int = 20) -> tuple[str, dict[str, Any]]:
    """The device's free memory: steady over load/compute/release cycles in one worker, back once it ends."""
    if not machine.cuda:
        raise SkipCheck(f"no CUDA here: {machine.no_cuda_reason}")
    import torch

    data, x = (DIGITS / "digits.pt").read_bytes(), digits_input()
    free = lambda: torch.cuda.mem_get_info(0)[0]  # noqa: E731 - the device's, every process's use counted
    torch.cuda.synchronize()
    start = free()
    host = _worker_host()
    session = host.new_session()
    samples = []
    try:
        for _ in range(cycles):  # the worker is kept for this session's next load
            graph = load(session, data, gpu=True)
            infer(session, graph, x)
            session.unload(graph)
            samples.append(free())
    finally:
        session.close()  # ends the session's idle workers
        host.close()
    deadline, end = time.monotonic() + 10, free()
    while end < start and time.monotonic() < deadline:
        time.sleep(0.2)
        end = free()
    mib = 1 << 20
    drift = samples[1] - samples[-1]
    data_out = {"free_before": start, "free_after": end, "free_per_cycle": samples}
    assert drift <= 8 * mib, f"the worker's use grew by {drift / mib:.0f} MiB from cycle 2 to {cycles}"
    assert end >= start - 8 * mib, f"{(start - end) / mib:.0f} MiB not given back after the workers ended"
    return (
        f"{cycles} cycles: the worker held {(start - min(samples)) / mib:.0f} MiB (its CUDA context), "
        f"drift {drift / mib:.0f} MiB; {(start - end) / mib:.0f} MiB missing after it ended",
        data_out,
    )


def check_without_seccomp(machine: Machine) -> tuple[str, dict[str, Any]]:
    """Landlock alone where libseccomp is missing: confinement still available, the worker runs."""
    from wasinn_core._isolation._confine import probe

    abi = probe().landlock_abi
    if abi < 4:
        raise SkipCheck(f"Landlock ABI {abi} here: without libseccomp, workers could not close TCP (ABI 4 needed)")
    stub = Path(tempfile.mkdtemp(prefix="no-seccomp-", dir=machine.work))
    (stub / "pyseccomp.py").write_text(_NO_LIBSECCOMP)
    # the stub first, and the plugin from this checkout: a worker's path starts with the folder its plugin
    # was found in, which must not be the install folder holding the real pyseccomp
    path = [str(stub), str(ROOT), str(ROOT / "plugins" / "pytorch"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    command = [sys.executable, "-P", "-m", "benchmarks.gpu._isolated", "--no-seccomp", "gpu" if machine.cuda else "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 and lines, f"exit {result.returncode}: {result.stderr[-1500:]}"
    seen = json.loads(lines[-1])
    assert seen["host_seccomp"] is False and seen["worker"].get("seccomp") is False, seen
    assert seen["worker"].get("landlock_abi", 0) >= 4, seen
    return f"libseccomp hidden: host probe {seen['describe']!r}; worker {seen['worker']}; ran on {seen['device']}", seen


def _no_seccomp_main(target: str) -> int:
    """The subprocess: load the digits model from bytes into a worker and report its confinement."""
    from wasinn_core._isolation._confine import probe

    session_host = _worker_host()
    session = session_host.new_session()
    graph = load(session, (DIGITS / "digits.pt").read_bytes(), gpu=target == "gpu")
    out = infer(session, graph, digits_input())[0]
    confinement = probe()
    print(
        json.dumps(
            {
                "host_seccomp": confinement.seccomp,
                "describe": confinement.describe(),
                "worker": _worker_of(session, graph).confinement,
                "device": session.graph_info(graph).device,
                "finite": bool(np.isfinite(out).all()),
            }
        )
    )
    session.close()
    session_host.close()
    return 0


def isolated_checks(report: Report, machine: Machine) -> None:
    report.run(SECTION, "a guest's model in a worker on the CPU", lambda: check_worker(machine, gpu=False))
    report.run(SECTION, "a guest's model in a worker on cuda:0", lambda: check_worker(machine, gpu=True), "equal")
    report.run(SECTION, "device memory given back by workers", lambda: check_worker_memory(machine), "memory")
    report.run(SECTION, "Landlock alone (libseccomp missing)", lambda: check_without_seccomp(machine))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--no-seccomp"]:
        sys.exit(_no_seccomp_main(sys.argv[2]))
