"""The inputs and outputs of an ONNX graph, read from the model's bytes (no ``onnx`` package needed).

wasi-nn numbers a model's inputs and outputs; for ONNX the numbering is the graph's own: input ``i``
is the ``i``-th entry of ``graph.input`` that is not an initializer, output ``j`` the ``j``-th entry
of ``graph.output``. Libraries may drop inputs they fold away (OpenVINO drops unused and zero-size
inputs, differently for a model read from bytes than from a file) or rename them; a backend maps
the library's ports onto the graph's with :func:`match_ports` and checks a dropped input against
its declaration with :meth:`OnnxPort.check`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import final

from .._errors import InvalidArgument
from .._types import Tensor, TensorType
from ._detect import _read_varint

__all__ = ["OnnxPort", "OnnxSignature", "match_ports", "onnx_signature"]

#: ONNX ``TensorProto.DataType`` codes of the types wasi-nn can express.
ONNX_ELEM_TYPES: dict[int, TensorType] = {
    1: TensorType.F32,
    2: TensorType.U8,
    6: TensorType.I32,
    7: TensorType.I64,
    10: TensorType.F16,
    11: TensorType.F64,
    16: TensorType.BF16,
}
# field numbers (onnx/onnx.proto3)
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_SPARSE_INITIALIZER = 5, 11, 12, 15
_TENSOR_NAME, _SPARSE_VALUES = 8, 1
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_ELEM_TYPE, _TENSOR_SHAPE = 1, 2
_SHAPE_DIM, _DIM_VALUE = 1, 1


@final
@dataclass(frozen=True, slots=True)
class OnnxPort:
    """An input or output as the ONNX graph declares it.

    :param name: its name in the graph.
    :param elem_type: its ONNX element type code (``onnx.TensorProto.DataType``); 0 for what is not a
        tensor (a sequence, a map, an optional).
    :param shape: its dimensions, ``None`` for a symbolic or unknown one; ``None`` for an unknown rank.
    """

    name: str
    elem_type: int
    shape: tuple[int | None, ...] | None

    @property
    def type(self) -> TensorType | None:
        """The wasi-nn tensor type, or ``None`` when wasi-nn cannot express this port's type."""
        return ONNX_ELEM_TYPES.get(self.elem_type)

    def describe(self) -> str:
        """``f32 2x?x3`` (type and shape, ``?`` for a dynamic dimension)."""
        kind = self.type.value if self.type else f"ONNX type {self.elem_type}"
        if self.shape is None:
            return f"{kind} of any shape"
        return f"{kind} " + ("x".join("?" if d is None else str(d) for d in self.shape) or "scalar")

    def check(self, tensor: Tensor, what: str = "input") -> None:
        """Raise :class:`~wasinn_core.InvalidArgument` unless ``tensor`` fits this port's type and shape."""
        dims = tensor.dimensions
        shape = self.shape
        fits = tensor.type is self.type and (
            shape is None
            or (len(dims) == len(shape) and all(w is None or w == d for w, d in zip(shape, dims, strict=True)))
        )
        if not fits:
            got = f"{tensor.type.value} " + ("x".join(map(str, dims)) or "scalar")
            raise InvalidArgument(f"{what} {self.name!r} expects {self.describe()}, got {got}")


@final
@dataclass(frozen=True, slots=True)
class OnnxSignature:
    """The graph's own inputs (initializers excluded) and its outputs, in the graph's order."""

    inputs: tuple[OnnxPort, ...]
    outputs: tuple[OnnxPort, ...]


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """``(field number, value)`` of a protobuf message: an int for varints, a view for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
            yield number, value
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated ONNX field")
            yield number, buf[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if pos > len(buf):
        raise ValueError("truncated ONNX field")


def _messages(buf: memoryview, number: int) -> Iterator[memoryview]:
    for n, value in _fields(buf):
        if n == number and isinstance(value, memoryview):
            yield value


def _string(buf: memoryview, number: int) -> str:
    return next((bytes(v).decode("utf-8", "replace") for v in _messages(buf, number)), "")


def _port(value_info: memoryview) -> OnnxPort:
    elem_type, shape = 0, None
    for type_proto in _messages(value_info, _VALUE_TYPE):
        for tensor in _messages(type_proto, _TYPE_TENSOR):
            for n, value in _fields(tensor):
                if n == _TENSOR_ELEM_TYPE and isinstance(value, int):
                    elem_type = value
                elif n == _TENSOR_SHAPE and isinstance(value, memoryview):
                    dims: list[int | None] = []
                    for dim in _messages(value, _SHAPE_DIM):
                        static = [v for n2, v in _fields(dim) if n2 == _DIM_VALUE and isinstance(v, int)]
                        # dim_value is an int64: a negative one arrives as a 64-bit two's complement
                        dims.append(static[0] if static and static[0] < 1 << 63 else None)
                    shape = tuple(dims)
    return OnnxPort(_string(value_info, _VALUE_NAME), elem_type, shape)


def onnx_signature(model: bytes | memoryview) -> OnnxSignature:
    """The graph inputs (less initializers) and outputs of an ONNX model, in order.

    Raises ``ValueError`` when the bytes are not a well-formed ONNX protobuf.
    """
    data = memoryview(model).cast("B")
    graphs = list(_messages(data, _MODEL_GRAPH))
    if not graphs:
        raise ValueError("not an ONNX model: no graph")
    graph = graphs[-1]  # protobuf: the last occurrence of a message field wins
    constants = {_string(t, _TENSOR_NAME) for t in _messages(graph, _GRAPH_INITIALIZER)}
    for sparse in _messages(graph, _GRAPH_SPARSE_INITIALIZER):
        constants |= {_string(t, _TENSOR_NAME) for t in _messages(sparse, _SPARSE_VALUES)}
    inputs = tuple(p for p in map(_port, _messages(graph, _GRAPH_INPUT)) if p.name not in constants)
    outputs = tuple(map(_port, _messages(graph, _GRAPH_OUTPUT)))
    return OnnxSignature(inputs, outputs)


def match_ports(
    ports: Sequence[OnnxPort],
    names: Sequence[Collection[str]],
    fits: Callable[[OnnxPort, int], bool] | None = None,
) -> list[int | None]:
    """For each graph port, the index of the library port holding it; ``None`` where the library dropped it.

    ``names[k]`` are the names of the library's port ``k``. A graph port is matched by name first; the
    library ports no name matches (a library may rename a port, as OpenVINO does an input that feeds
    an output directly) are then paired, in order, with the unmatched graph ports they ``fit``.
    Raises ``ValueError`` naming the library ports that match no graph port.
    """
    found: list[int | None] = []
    taken: set[int] = set()
    for port in ports:
        index = next((k for k, known in enumerate(names) if k not in taken and port.name in known), None)
        found.append(index)
        if index is not None:
            taken.add(index)
    for k in range(len(names)):
        if k in taken:
            continue
        slot = next((i for i, f in enumerate(found) if f is None and (fits is None or fits(ports[i], k))), None)
        if slot is None:
            unknown = ", ".join(sorted(names[k])) or f"#{k}"
            raise ValueError(f"the library's port {unknown} matches no port of the ONNX graph")
        found[slot] = k
        taken.add(k)
    return found
