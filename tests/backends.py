"""Backends the tests register next to the real plugins.

``refonnx`` is a real second ONNX engine (the ``onnx`` package's reference
evaluator). ``gpudouble`` is a test double: it claims the GPU target because
this machine has no GPU, and runs on onnxruntime's CPU provider underneath.
``broken`` fails in the ways a third-party backend might.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wasinn_core import (
    Availability,
    Backend,
    BackendSpec,
    ExecutionContext,
    ExecutionTarget,
    Graph,
    GraphEncoding,
    InvalidArgument,
    OptionSpec,
    Tensor,
    TensorKey,
    hookimpl,
)


class RefContext(ExecutionContext):
    def __init__(self, graph: RefGraph) -> None:
        self.graph, self.inputs, self.outputs = graph, {}, None

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        names = self.graph.evaluator.input_names
        name = names[key] if isinstance(key, int) and key < len(names) else key
        if name not in names:
            raise InvalidArgument(f"no input {key!r}")
        self.inputs[name] = np.array(tensor.data)

    def compute(self) -> None:
        self.outputs = self.graph.evaluator.run(None, self.inputs)

    def get_output(self, key: TensorKey) -> Tensor:
        if self.outputs is None or not isinstance(key, int) or key >= len(self.outputs):
            raise InvalidArgument(f"no output {key!r}")
        return Tensor.from_array(self.outputs[key])


class RefGraph(Graph):
    def __init__(self, model: bytes, device: str) -> None:
        import onnx
        from onnx.reference import ReferenceEvaluator

        self.evaluator = ReferenceEvaluator(onnx.load_from_string(model))
        self.device = device

    def init_execution_context(self) -> ExecutionContext:
        return RefContext(self)


class RefBackend(Backend):
    def __init__(self, device: str = "python") -> None:
        self.device = device

    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        target: ExecutionTarget,
        options: Mapping[str, Any],
    ) -> Graph:
        return RefGraph(bytes(builders[0]), self.device)


def refonnx_spec(preference: int = 50) -> BackendSpec:
    return BackendSpec(
        name="refonnx",
        factory=RefBackend,
        encodings={GraphEncoding.ONNX: preference},
        targets=frozenset({ExecutionTarget.CPU}),
        probe=lambda t, o: Availability.yes("python"),
        library="onnx.reference",
        options=(OptionSpec("verbose", bool, False, "unused"),),
        builders={GraphEncoding.ONNX: 1},
    )


def gpudouble_spec(available: bool = True) -> BackendSpec:
    """A stand-in for a GPU backend (no GPU here): claims gpu, computes on the CPU."""
    probe = (
        (lambda t, o: Availability.yes("gpu-double:0"))
        if available
        else (lambda t, o: Availability.no("no GPU double device"))
    )
    return BackendSpec(
        name="gpudouble",
        factory=lambda: RefBackend("gpu-double:0"),
        encodings={GraphEncoding.ONNX: 10},
        targets=frozenset({ExecutionTarget.GPU}),
        probe=probe,
        builders={GraphEncoding.ONNX: 1},
    )


class Plugin:
    """A plugin object publishing the given specs."""

    def __init__(self, *specs: BackendSpec) -> None:
        self.specs = specs

    @hookimpl
    def wasinn_backends(self) -> list[BackendSpec]:
        return list(self.specs)
