"""The floor: one library called directly from Python, timed like the guest times itself.

python -m benchmarks.native BACKEND WORKLOAD ITERATIONS PRECISION   → prints "median_us min_us"
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

from .models import SHAPES, folder


def runner(backend: str, workload: str, precision: str):  # -> a callable running one inference
    path = folder(workload)
    x = np.fromfile(path / "input.bin", np.float32).reshape(SHAPES[workload])
    if backend == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
        return lambda: session.run(None, {"x": x})
    if backend == "pytorch":
        import torch

        module = torch.jit.load(str(path / "model.pt"))
        tensor = torch.from_numpy(x)

        def run() -> None:
            with torch.inference_mode():
                module(tensor)

        return run
    import openvino as ov

    core = ov.Core()
    config = {} if precision == "default" else {"INFERENCE_PRECISION_HINT": precision}
    request = core.compile_model(core.read_model(path / "model.xml"), "CPU", config).create_infer_request()
    return lambda: request.infer({0: x})


def time_loop(run: Callable[[], object], iterations: int) -> str:
    """``"median_us min_us"`` of ``iterations`` calls of ``run``, after one untimed call (as the guest times)."""
    run()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return f"{np.median(times) * 1e6:.2f} {min(times) * 1e6:.2f}"


def main() -> int:
    backend, workload, iterations, precision = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    print(time_loop(runner(backend, workload, precision), iterations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
