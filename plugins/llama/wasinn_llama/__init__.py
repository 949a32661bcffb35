"""wasinn-llama: the llama.cpp backend plugin (backend ``llama``, encoding ``ggml``).

It runs WasmEdge's GGML guests (the LlamaEdge family) unmodified: prompts in, text and usage out,
token-by-token streaming, embeddings, grammars, and WasmEdge's own error codes. llama-cpp-python is
imported only when a graph is loaded or a GPU target is probed.
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

__all__ = ["OPTIONS", "backend_spec", "probe", "wasinn_backends"]
__version__ = "0.1.0"

OPTIONS = (
    OptionSpec("threads", int, 0, "CPU threads per context (0: half the CPUs); metadata 'threads' overrides it"),
    OptionSpec(
        "max_ctx_size",
        int,
        0,
        "the largest context (metadata 'ctx-size') a guest may ask for, in tokens (0: the model's training context)",
        guest=False,
    ),
)

NO_GPU = (
    "this llama-cpp-python build has no GPU offload (it was built for the CPU); reinstall it with a GPU "
    'backend, e.g. CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python'
)


def probe(target: ExecutionTarget, options: Mapping[str, Any]) -> Availability:
    """cpu always; gpu when the llama.cpp build can offload layers."""
    if target is ExecutionTarget.CPU:
        return Availability.yes("CPU")
    if target is ExecutionTarget.GPU:
        from ._engine import gpu_offload

        return Availability.yes("GPU (llama.cpp offload)") if gpu_offload() else Availability.no(NO_GPU)
    return Availability.no("llama.cpp has no tpu target")


def _factory() -> Backend:
    from ._backend import LlamaBackend

    return LlamaBackend()


def _version() -> str:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def backend_spec() -> BackendSpec:
    """The ``llama`` backend record."""
    return BackendSpec(
        name="llama",
        factory=_factory,
        encodings={GraphEncoding.GGML: 100},
        targets=frozenset({ExecutionTarget.CPU, ExecutionTarget.GPU}),
        probe=probe,
        library="llama-cpp-python",
        library_version=_version(),
        options=OPTIONS,
        capabilities=Capabilities(dtypes=frozenset({TensorType.U8}), features=frozenset({"named_io", "multi_output"})),
        description="llama.cpp (GGUF): WasmEdge's GGML semantics; gpu = layer offload (n-gpu-layers)",
    )


@hookimpl
def wasinn_backends() -> list[BackendSpec]:
    return [backend_spec()]
