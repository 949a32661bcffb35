"""Symbolic wasi-nn types shared by every ABI and every backend.

The enums here are *symbolic*: their values are names, not ABI codes. The witx
and WIT numberings differ (see ``docs/abi.md``), so each ABI front end converts
codes at its own edge and nothing else ever sees an integer code.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, final

import numpy as np
import numpy.typing as npt

from ._errors import InvalidArgument

__all__ = [
    "ExecutionTarget",
    "GraphEncoding",
    "Tensor",
    "TensorType",
]


class GraphEncoding(enum.Enum):
    """The model format of a graph (``graph_encoding`` / ``graph-encoding``)."""

    OPENVINO = "openvino"
    ONNX = "onnx"
    TENSORFLOW = "tensorflow"
    PYTORCH = "pytorch"
    TENSORFLOWLITE = "tensorflowlite"
    GGML = "ggml"
    AUTODETECT = "autodetect"

    @classmethod
    def parse(cls, text: str) -> GraphEncoding:
        """Parse a case-insensitive name (``"ONNX"``, ``"OpenVINO"``, ``"torch"``)."""
        key = text.strip().lower()
        key = _ENCODING_ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            allowed = ", ".join(e.value for e in cls)
            raise ValueError(f"unknown graph encoding {text!r}; allowed: {allowed}") from None


_ENCODING_ALIASES = {"torch": "pytorch", "tflite": "tensorflowlite", "ov": "openvino", "auto": "autodetect"}


class ExecutionTarget(enum.Enum):
    """Where a graph should run (``execution_target`` / ``execution-target``)."""

    CPU = "cpu"
    GPU = "gpu"
    TPU = "tpu"

    @classmethod
    def parse(cls, text: str) -> ExecutionTarget:
        """Parse a case-insensitive name (``"cpu"``, ``"GPU"``)."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            allowed = ", ".join(t.value for t in cls)
            raise ValueError(f"unknown execution target {text!r}; allowed: {allowed}") from None


class TensorType(enum.Enum):
    """Element type of a tensor. ``BF16`` exists only in the WIT ABI."""

    F16 = "f16"
    F32 = "f32"
    F64 = "f64"
    BF16 = "bf16"
    U8 = "u8"
    I32 = "i32"
    I64 = "i64"

    @property
    def itemsize(self) -> int:
        """Size of one element in bytes."""
        return _ITEMSIZE[self]

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The little-endian numpy dtype of this type (``bf16`` needs ``ml_dtypes``)."""
        if self is TensorType.BF16:
            import ml_dtypes  # optional: only WIT guests can send bf16

            return np.dtype(ml_dtypes.bfloat16)  # type: ignore[no-any-return]
        return np.dtype(_NUMPY[self])

    @classmethod
    def from_numpy(cls, dtype: npt.DTypeLike) -> TensorType:
        """The tensor type of a numpy dtype; ``ValueError`` if wasi-nn has none."""
        dt = np.dtype(dtype)
        for tt, name in _NUMPY.items():
            if dt == np.dtype(name):
                return tt
        if dt.name == "bfloat16":
            return cls.BF16
        raise ValueError(f"numpy dtype {dt} has no wasi-nn tensor type")


_ITEMSIZE = {
    TensorType.F16: 2,
    TensorType.F32: 4,
    TensorType.F64: 8,
    TensorType.BF16: 2,
    TensorType.U8: 1,
    TensorType.I32: 4,
    TensorType.I64: 8,
}
_NUMPY = {
    TensorType.F16: "<f2",
    TensorType.F32: "<f4",
    TensorType.F64: "<f8",
    TensorType.U8: "u1",
    TensorType.I32: "<i4",
    TensorType.I64: "<i8",
}


@final
@dataclass(frozen=True, slots=True)
class Tensor:
    """A tensor crossing the host: dimensions, element type and a numpy array.

    Inputs handed to a backend by ``set_input`` are *borrowed views* of guest
    memory, valid only for the duration of that call: a backend copies what it
    keeps. Outputs returned by a backend are owned by the backend.
    """

    dimensions: tuple[int, ...]
    type: TensorType
    data: npt.NDArray[Any]

    @property
    def nbytes(self) -> int:
        """Byte size of the data (∏ dimensions × element size)."""
        return math.prod(self.dimensions) * self.type.itemsize

    @classmethod
    def from_buffer(cls, dimensions: tuple[int, ...], type: TensorType, buffer: npt.NDArray[Any]) -> Tensor:
        """View ``buffer``'s bytes as a tensor; ``InvalidArgument`` if their number does not fit the dimensions."""
        expected = math.prod(dimensions) * type.itemsize
        if buffer.nbytes != expected:
            raise InvalidArgument(
                f"data length {buffer.nbytes} != {expected} bytes (dimensions {list(dimensions)} × {type.value})"
            )
        try:
            dtype = type.numpy_dtype
        except ImportError:
            raise InvalidArgument(f"{type.value} tensors need the ml_dtypes package on the host") from None
        try:
            return cls(dimensions, type, buffer.view(dtype).reshape(dimensions))
        except ValueError as exc:  # a zero dimension beside huge ones: no bytes, but no array either
            raise InvalidArgument(f"dimensions {list(dimensions)} cannot be represented: {exc}") from None

    @classmethod
    def from_guest(cls, dimensions: tuple[int, ...], type: TensorType, buffer: npt.NDArray[Any]) -> Tensor:
        """Like :meth:`from_buffer`, but bytes that do not fit the dimensions stay a flat ``u1`` array.

        The session then refuses them, unless the graph takes byte strings (``Graph.byte_inputs``).
        """
        if buffer.nbytes == math.prod(dimensions) * type.itemsize:
            return cls.from_buffer(dimensions, type, buffer)
        return cls(dimensions, type, buffer.reshape(-1).view(np.uint8))

    @classmethod
    def from_array(cls, array: npt.ArrayLike) -> Tensor:
        """Wrap a numpy array (made C-contiguous) as a tensor; a 0-d array stays rank 0."""
        arr = np.asarray(array)
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)  # never for 0-d arrays, which it would make 1-d
        return cls(tuple(int(d) for d in arr.shape), TensorType.from_numpy(arr.dtype), arr)
