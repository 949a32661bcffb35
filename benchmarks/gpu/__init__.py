"""The GPU check: one prepared command that proves wasinn's CUDA paths on a GPU machine in minutes.

    python -m benchmarks.gpu --prepare .gpu-wheels         # where there is a package index (make gpu-wheels)
    python -m benchmarks.gpu --install .gpu-wheels --out DIR  # on the GPU machine (make gpu-check here)

See ``__main__`` for what it runs and docs/backends/pytorch.md for the device command.
"""
