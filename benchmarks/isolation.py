"""What a worker process costs: one model, in the host process and in a confined worker, side by side.

python -m benchmarks.isolation BACKEND WORKLOAD ITERATIONS [--quick]   → prints one JSON object

- ``inference_us``: the median of the guest's loop (``set_input`` → ``compute`` → ``get_output``) through
  the Python ``Session`` API, ``none`` (in process) and ``process`` (a worker), measured in alternating
  blocks in one process so that both see the same machine;
- ``first_load_s``: the first load of the workload's model on a warm library: in process, in a fresh
  process after another model of the same backend was loaded; in a worker, the one the zygote keeps
  ready (started and warmed up ahead); the median of three.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

from wasinn_core import Config, ExecutionTarget, GraphEncoding, Host, Tensor

from .models import FILES, SHAPES, folder
from .native import time_loop

MODES = ("none", "process")


def _builders(backend: str, workload: str) -> list[memoryview]:
    return [memoryview((folder(workload) / name).read_bytes()) for name in FILES[backend]]


def first_load(backend: str, workload: str) -> float:
    """In a fresh process: load another model of the backend, then time the first load of this one."""
    host = Host(
        Config.from_dict({"isolation": {"guest": "none"}, "backends": {"openvino": {"inference_precision": "f32"}}})
    )
    session = host.new_session()
    encoding = GraphEncoding.parse(backend)
    session.load(_builders(backend, "tiny" if workload != "tiny" else "mnet"), encoding, ExecutionTarget.CPU)
    builders = _builders(backend, workload)
    start = time.perf_counter()
    session.load(builders, encoding, ExecutionTarget.CPU)
    return time.perf_counter() - start


def main() -> int:
    if sys.argv[1] == "--first-load":
        print(first_load(sys.argv[2], sys.argv[3]))
        return 0
    backend, workload, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
    quick = "--quick" in sys.argv[4:]
    encoding = GraphEncoding.parse(backend)
    config = {"preferences": {"onnx": ["onnxruntime"]}, "backends": {"openvino": {"inference_precision": "f32"}}}
    hosts = {mode: Host(Config.from_dict({**config, "isolation": {"guest": mode}})) for mode in MODES}
    warm = "tiny" if workload != "tiny" else "mnet"
    x = Tensor.from_array(np.fromfile(folder(workload) / "input.bin", np.float32).reshape(SHAPES[workload]))
    result: dict[str, Any] = {"backend": backend, "workload": workload}
    contexts = {}
    for mode, host in hosts.items():  # warm the library (in process) and the zygote (isolated)
        session = host.new_session()
        session.load(_builders(backend, warm), encoding, ExecutionTarget.CPU)
        contexts[mode] = session
    loads: dict[str, list[float]] = {mode: [] for mode in MODES}
    repeats = 1 if quick else 3
    for _ in range(repeats):
        # in process: a fresh process whose library has loaded another model (the first load of this one)
        loads["none"].append(float(subprocess.run(
            [sys.executable, "-m", "benchmarks.isolation", "--first-load", backend, workload],
            capture_output=True, text=True, check=True, timeout=600,
        ).stdout))  # fmt: skip
        # in a worker: the one the zygote keeps ready (started and warmed up ahead)
        time.sleep(0.5 if quick else 2.0)
        session = hosts["process"].new_session()
        builders = _builders(backend, workload)
        start = time.perf_counter()
        graph = session.load(builders, encoding, ExecutionTarget.CPU)
        loads["process"].append(time.perf_counter() - start)
        session.unload(graph)
        session.close()
    result["first_load_s"] = {mode: statistics.median(v) for mode, v in loads.items()}
    loops: dict[str, list[float]] = {mode: [] for mode in MODES}
    runs = {}
    for mode in MODES:
        session = contexts[mode]
        ctx = session.init_execution_context(session.load(_builders(backend, workload), encoding, ExecutionTarget.CPU))

        def step(session: Any = session, ctx: int = ctx) -> None:
            session.set_input(ctx, 0, x)
            session.compute(ctx)
            session.get_output(ctx, 0)

        runs[mode] = step
    for _ in range(repeats):  # alternating blocks
        for mode in MODES:
            loops[mode].append(float(time_loop(runs[mode], iterations).split()[0]))
    result["inference_us"] = {mode: statistics.median(v) for mode, v in loops.items()}
    for session in contexts.values():
        session.close()
    for host in hosts.values():
        host.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
