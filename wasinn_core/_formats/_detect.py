"""Built-in ``autodetect`` sniffers: recognise a model format from its bytes.

Registered as wasinn's own plugin with ``trylast``, so an installed plugin can
recognise a format first.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from io import BytesIO

from .._plugins._hookspecs import hookimpl
from .._types import GraphEncoding

__all__ = ["detect_encoding", "onnx_external_data"]

# Top-level field numbers of onnx.ModelProto (onnx/onnx.proto3).
_ONNX_MODEL_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25})
_ONNX_GRAPH_FIELD = 7


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def looks_like_onnx(data: memoryview) -> bool:
    """Walk the top-level protobuf fields: only ModelProto fields, a graph among them."""
    pos, seen_graph = 0, False
    try:
        while pos < len(data):
            key, pos = _read_varint(data, pos)
            number, wire = key >> 3, key & 7
            if number not in _ONNX_MODEL_FIELDS:
                return False
            if wire == 0:
                _, pos = _read_varint(data, pos)
            elif wire == 2:
                length, pos = _read_varint(data, pos)
                pos += length
                if pos > len(data):
                    return False
            else:
                return False
            seen_graph |= number == _ONNX_GRAPH_FIELD
    except ValueError:
        return False
    return seen_graph


# Where TensorProtos can sit in an ONNX model: message -> {field number: message of that field}.
_ONNX_SCHEMA: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
    "entry": {},
}
_TENSOR_DATA_LOCATION, _EXTERNAL = 14, 1
_MAX_DEPTH = 64


def onnx_external_data(data: memoryview) -> list[str]:
    """The external-data locations an ONNX model names (files the library would open), in order.

    Raises ``ValueError`` when the bytes are not a well-formed protobuf.
    """
    found: list[str] = []

    def walk(buf: memoryview, kind: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise ValueError("ONNX model nested too deeply")
        fields, pos, key_value = _ONNX_SCHEMA[kind], 0, {}
        while pos < len(buf):
            key, pos = _read_varint(buf, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = _read_varint(buf, pos)
                if kind == "tensor" and number == _TENSOR_DATA_LOCATION and value == _EXTERNAL:
                    found.append("<data_location = EXTERNAL>")
            elif wire == 2:
                length, pos = _read_varint(buf, pos)
                if pos + length > len(buf):
                    raise ValueError("truncated ONNX field")
                child = buf[pos : pos + length]
                pos += length
                if number in fields:
                    walk(child, fields[number], depth + 1)
                elif kind == "entry":
                    key_value[number] = bytes(child).decode("utf-8", "replace")
            elif wire == 5:
                pos += 4
            elif wire == 1:
                pos += 8
            else:
                raise ValueError(f"unsupported protobuf wire type {wire}")
            if pos > len(buf):
                raise ValueError("truncated ONNX field")
        if kind == "entry" and key_value.get(1) == "location":
            found.append(key_value.get(2, ""))

    walk(data, "model", 0)
    return found


def _looks_like_openvino_ir(data: memoryview) -> bool:
    head = bytes(data[:512]).lstrip(b"\xef\xbb\xbf \t\r\n")
    return (head.startswith(b"<?xml") and b"<net" in bytes(data[:4096])) or head.startswith(b"<net")


def _looks_like_torch_archive(data: memoryview) -> bool:
    if bytes(data[:4]) != b"PK\x03\x04":
        return False
    try:
        names = zipfile.ZipFile(BytesIO(data)).namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return False
    markers = ("data.pkl", "constants.pkl", "serialized_exported_program", "archive_format", "code/")
    return any(marker in name for name in names for marker in markers)


def detect_encoding(builders: Sequence[memoryview]) -> GraphEncoding | None:
    """The encoding of ``builders`` by content, or ``None`` if unrecognised."""
    if not builders:
        return None
    first = builders[0]
    if _looks_like_openvino_ir(first):
        return GraphEncoding.OPENVINO
    if bytes(first[:4]) == b"GGUF":
        return GraphEncoding.GGML
    if bytes(first[4:8]) == b"TFL3":
        return GraphEncoding.TENSORFLOWLITE
    if _looks_like_torch_archive(first):
        return GraphEncoding.PYTORCH
    if len(builders) == 1 and looks_like_onnx(first):
        return GraphEncoding.ONNX
    return None


class BuiltinDetector:
    """wasinn's own plugin: the fallback sniffers."""

    @hookimpl(trylast=True)
    def wasinn_detect_encoding(self, builders: Sequence[memoryview]) -> GraphEncoding | None:
        return detect_encoding(builders)
