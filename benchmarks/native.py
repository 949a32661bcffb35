"""The floor: one library called directly from Python with its fastest documented API, timed as the guest times.

python -m benchmarks.native BACKEND WORKLOAD ITERATIONS PRECISION   → prints "median_us min_us"

Each floor does the inference work and nothing else: ONNX Runtime runs on an IOBinding whose input and
output buffers are bound once (``run_with_iobinding``: no feeds dictionary, no output allocation);
OpenVINO reuses one infer request whose input tensor shares the array's memory (``infer`` with
``share_outputs=True``: no output copies); torch runs the module on a tensor in its own memory with the
whole loop under ``torch.inference_mode()``. The input is the same array on every call, so no floor
copies it; wasinn copies it once from guest memory per call, and the output once out: that is part of
what the comparison shows.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np

from .models import SHAPES, folder

Runner = tuple[Callable[[], object], AbstractContextManager[object]]


def runner(backend: str, workload: str, precision: str) -> Runner:
    """A callable running one inference, and the context to hold around the timing loop."""
    path = folder(workload)
    x = np.fromfile(path / "input.bin", np.float32).reshape(SHAPES[workload])
    if backend == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
        binding = session.io_binding()
        binding.bind_cpu_input("x", x)
        (output,) = session.get_outputs()
        y = np.empty([int(d) for d in output.shape], np.float32)  # the exported models declare static shapes
        binding.bind_output(output.name, "cpu", 0, np.float32, list(y.shape), y.ctypes.data)
        buffers = (x, y)  # the binding holds raw pointers into them: they live as long as the runner

        def run() -> None:
            session.run_with_iobinding(binding)
            assert buffers

        return run, contextlib.nullcontext()
    if backend == "pytorch":
        import torch

        module = torch.jit.load(str(path / "model.pt"))
        tensor = torch.from_numpy(x).clone()  # in torch's own (aligned) memory, as wasinn's plugin holds inputs
        return (lambda: module(tensor)), torch.inference_mode()
    import openvino as ov

    core = ov.Core()
    config = {} if precision == "default" else {"INFERENCE_PRECISION_HINT": precision}
    request = core.compile_model(core.read_model(path / "model.xml"), "CPU", config).create_infer_request()
    shared = ov.Tensor(x, shared_memory=True)  # a view of x: both live as long as the runner
    request.set_input_tensor(shared)

    def infer() -> None:
        request.infer(share_outputs=True)
        assert shared is not None and x is not None

    return infer, contextlib.nullcontext()


def time_loop(run: Callable[[], object], iterations: int, around: AbstractContextManager[object] | None = None) -> str:
    """``"median_us min_us"`` of ``iterations`` timed calls of ``run``, the first included, as the guest times."""
    times = []
    with around or contextlib.nullcontext():
        for _ in range(iterations):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return f"{np.median(times) * 1e6:.2f} {min(times) * 1e6:.2f}"


def main() -> int:
    backend, workload, iterations, precision = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    run, around = runner(backend, workload, precision)
    print(time_loop(run, iterations, around))
    return 0


if __name__ == "__main__":
    sys.exit(main())
