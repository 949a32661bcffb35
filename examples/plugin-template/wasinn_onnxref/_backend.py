"""The backend: a Backend makes Graphs, a Graph makes ExecutionContexts. That is the whole protocol.

The engine here is the stand-in, onnx.reference: replace the onnx calls with your library's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from wasinn_core import (
    Backend,
    ExecutionContext,
    ExecutionTarget,
    Graph,
    GraphEncoding,
    InvalidArgument,
    Tensor,
    TensorKey,
    TensorType,
)

# ONNX element types wasi-nn can express.
ONNX_TYPES = {
    onnx.TensorProto.FLOAT16: TensorType.F16,
    onnx.TensorProto.BFLOAT16: TensorType.BF16,
    onnx.TensorProto.FLOAT: TensorType.F32,
    onnx.TensorProto.DOUBLE: TensorType.F64,
    onnx.TensorProto.UINT8: TensorType.U8,
    onnx.TensorProto.INT32: TensorType.I32,
    onnx.TensorProto.INT64: TensorType.I64,
}


class _Port:
    """A model input or output: its name, wasi-nn type and shape (None for a dynamic dimension)."""

    def __init__(self, value: onnx.ValueInfoProto) -> None:
        tensor = value.type.tensor_type
        self.name = value.name
        self.type = ONNX_TYPES.get(tensor.elem_type)
        self.shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)


class ReferenceGraph(Graph):
    def __init__(self, model: onnx.ModelProto, verbose: int) -> None:
        self.evaluator = ReferenceEvaluator(model, verbose=verbose)
        self.device = "cpu (onnx.reference)"
        initializers = {i.name for i in model.graph.initializer}
        self.inputs = [_Port(v) for v in model.graph.input if v.name not in initializers]
        self.outputs = [_Port(v) for v in model.graph.output]

    def port(self, ports: list[_Port], key: TensorKey, what: str) -> tuple[int, _Port]:
        for index, port in enumerate(ports):
            if key == index or key == port.name:
                return index, port
        names = ", ".join(p.name for p in ports)
        raise InvalidArgument(f"the model has no {what} {key!r} (its {what}s: {names})")

    def init_execution_context(self) -> ExecutionContext:
        return ReferenceContext(self)


class ReferenceContext(ExecutionContext):
    def __init__(self, graph: ReferenceGraph) -> None:
        self.graph = graph
        self.feeds: dict[str, np.ndarray[Any, Any]] = {}
        self.results: list[Any] | None = None

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        _, port = self.graph.port(self.graph.inputs, key, "input")
        if port.type is not None and tensor.type is not port.type:
            raise InvalidArgument(f"input {port.name!r} is {port.type.value}, got {tensor.type.value}")
        if len(port.shape) != len(tensor.dimensions) or any(
            want is not None and want != got for want, got in zip(port.shape, tensor.dimensions, strict=True)
        ):
            raise InvalidArgument(f"input {port.name!r} has shape {port.shape}, got {tensor.dimensions}")
        self.feeds[port.name] = np.array(tensor.data)  # copy: the guest's memory is only borrowed

    def compute(self) -> None:
        missing = [p.name for p in self.graph.inputs if p.name not in self.feeds]
        if missing:
            raise InvalidArgument(f"inputs not set: {', '.join(missing)}")
        self.results = self.graph.evaluator.run(None, self.feeds)

    def get_output(self, key: TensorKey) -> Tensor:
        if self.results is None:
            raise InvalidArgument("compute has not run on this context")
        index, _ = self.graph.port(self.graph.outputs, key, "output")
        return Tensor.from_array(self.results[index])

    def output_names(self) -> Sequence[str]:
        return [p.name for p in self.graph.outputs]

    def close(self) -> None:
        self.feeds.clear()
        self.results = None


class ReferenceBackend(Backend):
    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        target: ExecutionTarget,
        options: Mapping[str, Any],
    ) -> Graph:
        model = onnx.load_from_string(bytes(builders[0]))  # a DecodeError becomes runtime_error
        onnx.checker.check_model(model)
        return ReferenceGraph(model, options["verbose"])
