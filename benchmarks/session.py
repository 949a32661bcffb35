"""wasinn without wasm: the guest's loop through the Python ``Session`` API, to split where the time goes.

python -m benchmarks.session BACKEND WORKLOAD ITERATIONS CONFIG   → prints "median_us min_us"

The loop is the guest's (``set_input`` → ``compute`` → ``get_output``) on the same model and config, with
the input a view of one host buffer. Subtracted from the guest's own figure it gives the cost of the ABI
(wasm → host calls, reading the tensor record, the copies in and out of guest memory); the native figure
subtracted from it gives the cost of wasinn's session and backend plugin code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from wasinn_core import ExecutionTarget, GraphEncoding, Host, Tensor

from .models import FILES, SHAPES, folder
from .native import time_loop


def main() -> int:
    backend, workload, iterations, config = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    path = folder(workload)
    x = np.fromfile(path / "input.bin", np.float32).reshape(SHAPES[workload])
    host = Host.from_config_file(config)
    session = host.new_session()
    builders = [memoryview((path / name).read_bytes()) for name in FILES[backend]]
    graph = session.load(builders, GraphEncoding.parse(backend), ExecutionTarget.CPU)
    ctx = session.init_execution_context(graph)
    tensor = Tensor.from_array(x)

    def run() -> None:
        session.set_input(ctx, 0, tensor)
        session.compute(ctx)
        session.get_output(ctx, 0)

    print(time_loop(run, iterations))
    session.close()
    host.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
