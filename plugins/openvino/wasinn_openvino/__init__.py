"""wasinn-openvino: the OpenVINO backend plugin (backend ``openvino``; encodings openvino and onnx).

openvino is imported only when a graph is loaded or probed; its converter telemetry is kept
off (nothing is written under ``$HOME``) unless ``WASINN_OPENVINO_TELEMETRY=1``.
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

__all__ = ["OPTIONS", "backend_spec", "wasinn_backends"]
__version__ = "0.1.0"

OPTIONS = (
    OptionSpec("cpu_device", str, "CPU", "OpenVINO device for target cpu"),
    OptionSpec("gpu_device", str, "GPU", "OpenVINO device for target gpu (e.g. GPU, AUTO:GPU,CPU, HETERO:GPU,CPU)"),
    OptionSpec("tpu_device", str, "NPU", "OpenVINO device for target tpu"),
    OptionSpec("device_index", int, 0, "GPU index: gpu_device GPU with device_index 1 means GPU.1"),
    OptionSpec(
        "inference_precision",
        str,
        "f32",
        "INFERENCE_PRECISION_HINT; f32 matches a float reference on every CPU ('default' lets the device choose)",
        choices=("f32", "bf16", "f16", "default"),
    ),
    OptionSpec(
        "performance_hint", str, "", "PERFORMANCE_HINT", choices=("", "LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
    ),
    OptionSpec("num_streams", int, 0, "NUM_STREAMS (0: the device's default)"),
    OptionSpec("inference_num_threads", int, 0, "INFERENCE_NUM_THREADS (0: the device's default)"),
    OptionSpec("cache_dir", str, "", "CACHE_DIR for compiled models (empty: no cache, nothing written)", guest=False),
    OptionSpec("config", dict, {}, "any other OpenVINO properties, passed to compile_model as is", guest=False),
)


def _probe(target: ExecutionTarget, options: Mapping[str, Any]) -> Availability:
    from ._backend import probe

    return probe(target, options)


def _factory() -> Backend:
    from ._backend import OpenVINOBackend

    return OpenVINOBackend()


def backend_spec() -> BackendSpec:
    """The ``openvino`` backend record."""
    try:
        version = importlib.metadata.version("openvino")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return BackendSpec(
        name="openvino",
        factory=_factory,
        # ONNX at a lower preference than the dedicated ONNX Runtime backend (100).
        encodings={GraphEncoding.OPENVINO: 100, GraphEncoding.ONNX: 50},
        targets=frozenset(ExecutionTarget),
        probe=_probe,
        library="openvino",
        library_version=version,
        options=OPTIONS,
        builders={GraphEncoding.OPENVINO: 2, GraphEncoding.ONNX: 1},
        capabilities=Capabilities(
            # f64 is accepted, but OpenVINO's CPU plugin computes it in f32: not a full-precision type
            dtypes=frozenset(TensorType) - {TensorType.F64},
            features=frozenset({"named_io", "multi_output", "dynamic_batch", "shape_checks", "type_checks"}),
            notes={"f64": "OpenVINO's CPU plugin runs f64 graphs in f32 (about 1e-7 relative, not f64's 1e-12)"},
        ),
        description="OpenVINO: IR (xml + weights) and ONNX; cpu → CPU, gpu → GPU[.N], tpu → NPU",
    )


@hookimpl
def wasinn_backends() -> list[BackendSpec]:
    return [backend_spec()]
