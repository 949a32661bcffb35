"""wasinn-onnxref: a wasinn backend plugin for onnx models.

The engine is a stand-in, onnx.reference (the onnx package's pure-Python ONNX evaluator: exact, slow, CPU
only), so the plugin passes the conformance suite from the start: replace it with your library here (probe,
library) and in _backend.py. The module an entry point names only has to provide hook implementations. Keep
it light: import the library lazily, in the factory and probe, so that listing plugins stays fast.
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

OPTIONS = (OptionSpec("verbose", int, 0, "onnx.reference verbosity (0-4), printed on stdout"),)


def probe(target: ExecutionTarget, options: Mapping[str, Any]) -> Availability:
    """The evaluator runs on the CPU only; say why for the other targets."""
    if target is ExecutionTarget.CPU:
        return Availability.yes("cpu (onnx.reference, numpy)")
    return Availability.no(f"onnx.reference is a NumPy evaluator: it has no {target.value} support")


def _factory() -> Backend:
    from ._backend import ReferenceBackend

    return ReferenceBackend()


def backend_spec() -> BackendSpec:
    return BackendSpec(
        name="onnxref",
        factory=_factory,
        encodings={GraphEncoding.ONNX: 10},  # below the real ONNX engines: used when preferred or alone
        builders={GraphEncoding.ONNX: 1},
        targets=frozenset(ExecutionTarget),  # claims all, so gpu/tpu requests get a clear reason
        probe=probe,
        library="onnx",
        library_version=importlib.metadata.version("onnx"),
        options=OPTIONS,
        capabilities=Capabilities(
            dtypes=frozenset(TensorType),
            features=frozenset({"named_io", "multi_output", "dynamic_batch", "shape_checks", "type_checks"}),
        ),
        description="onnx models; for now on onnx.reference (pure Python, exact, slow), a stand-in",
    )


@hookimpl
def wasinn_backends() -> list[BackendSpec]:
    return [backend_spec()]
