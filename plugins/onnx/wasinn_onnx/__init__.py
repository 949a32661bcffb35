"""wasinn-onnx: the ONNX Runtime backend plugin (backend ``onnxruntime``, encoding ``onnx``).

onnxruntime is imported only when an ONNX graph is loaded or probed.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from typing import Any

from wasinn_core import (
    Availability,
    Backend,
    BackendSpec,
    Capabilities,
    ExecutionTarget,
    GraphEncoding,
    OptionSpec,
    TensorType,
    hookimpl,
)

# Every distribution that provides the `onnxruntime` module.
_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml", "onnxruntime-qnn")

__all__ = ["OPTIONS", "backend_spec", "wasinn_backends"]
__version__ = "0.1.0"

OPTIONS = (
    OptionSpec("intra_op_num_threads", int, 0, "threads inside one operator (0: onnxruntime's default)"),
    OptionSpec("inter_op_num_threads", int, 0, "threads across operators in parallel mode (0: default)"),
    OptionSpec(
        "graph_optimization_level", str, "all", "graph optimizations", choices=("disable", "basic", "extended", "all")
    ),
    OptionSpec("execution_mode", str, "sequential", "operator scheduling", choices=("sequential", "parallel")),
    OptionSpec(
        "gpu_providers",
        list,
        ["CUDAExecutionProvider"],
        "execution providers for target gpu, tried in order (e.g. TensorrtExecutionProvider, "
        "ROCMExecutionProvider, DmlExecutionProvider, CoreMLExecutionProvider)",
        guest=False,
    ),
    OptionSpec(
        "tpu_providers",
        list,
        [],
        "execution providers for target tpu (e.g. QNNExecutionProvider, OpenVINOExecutionProvider)",
        guest=False,
    ),
    OptionSpec("device_id", int, 0, "accelerator index passed to the gpu/tpu provider as device_id"),
    OptionSpec(
        "provider_options",
        dict,
        {},
        'extra options per provider name, e.g. {CUDAExecutionProvider = {cudnn_conv_algo_search = "HEURISTIC"}}',
        guest=False,
    ),
    OptionSpec(
        "allow_cpu_nodes",
        bool,
        False,
        "on gpu/tpu, let nodes the accelerator cannot run execute on the CPU (off: strict)",
    ),
    OptionSpec("log_severity_level", int, 3, "onnxruntime log level (0 verbose … 4 fatal)"),
)


def _probe(target: ExecutionTarget, options: Mapping[str, Any]) -> Availability:
    from ._backend import probe

    return probe(target, options)


def _factory() -> Backend:
    from ._backend import OnnxBackend

    return OnnxBackend()


def _library() -> tuple[str, str]:
    for dist in _DISTRIBUTIONS:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "onnxruntime", "unknown"


def backend_spec() -> BackendSpec:
    """The ``onnxruntime`` backend record."""
    library, version = _library()
    return BackendSpec(
        name="onnxruntime",
        factory=_factory,
        encodings={GraphEncoding.ONNX: 100},
        targets=frozenset(ExecutionTarget),
        probe=_probe,
        library=library,
        library_version=version,
        options=OPTIONS,
        builders={GraphEncoding.ONNX: 1},
        capabilities=Capabilities(
            dtypes=frozenset(TensorType) - {TensorType.BF16},
            notes={"bf16": "ONNX Runtime's CPU kernels have no bf16 arithmetic (Add, Mul, MatMul)"},
            features=frozenset({"named_io", "multi_output", "dynamic_batch", "shape_checks", "type_checks"}),
        ),
        description="ONNX Runtime: cpu → CPUExecutionProvider, gpu → CUDA (or configured providers)",
    )


@hookimpl
def wasinn_backends() -> list[BackendSpec]:
    return [backend_spec()]
