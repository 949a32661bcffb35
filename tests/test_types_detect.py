"""Symbolic types, and the built-in autodetect sniffers on real model files."""

from __future__ import annotations

import numpy as np
import pytest

from wasinn_core import ExecutionTarget, GraphEncoding, Tensor, TensorType
from wasinn_core._formats._detect import detect_encoding, looks_like_onnx

from .conftest import DIGITS_MODEL


def blob(name: str) -> memoryview:
    return memoryview((DIGITS_MODEL / name).read_bytes())


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["digits.onnx"], GraphEncoding.ONNX),
        (["digits.pt"], GraphEncoding.PYTORCH),
        (["digits.pt2"], GraphEncoding.PYTORCH),
        (["digits.xml", "digits.bin"], GraphEncoding.OPENVINO),
    ],
)
def test_detects_real_model_files(files, expected):
    assert detect_encoding([blob(f) for f in files]) is expected


@pytest.mark.parametrize("data", [b"", b"\x00" * 64, b"PK\x03\x04garbage", b"<html></html>", b"\x08\x07" * 10])
def test_rejects_garbage(data):
    assert detect_encoding([memoryview(data)]) is None


def test_truncated_onnx_is_not_onnx():
    onnx = blob("digits.onnx")
    assert looks_like_onnx(onnx)
    assert not looks_like_onnx(onnx[: len(onnx) // 2])


def test_other_magic_numbers():
    assert detect_encoding([memoryview(b"GGUF\x03\x00\x00\x00")]) is GraphEncoding.GGML
    assert detect_encoding([memoryview(b"\x1c\x00\x00\x00TFL3\x00\x00")]) is GraphEncoding.TENSORFLOWLITE
    assert detect_encoding([]) is None


def test_names_parse_case_insensitively():
    assert GraphEncoding.parse("OpenVINO") is GraphEncoding.OPENVINO
    assert GraphEncoding.parse("torch") is GraphEncoding.PYTORCH
    assert ExecutionTarget.parse(" GPU ") is ExecutionTarget.GPU
    with pytest.raises(ValueError, match="allowed: openvino, onnx"):
        GraphEncoding.parse("caffe")


def test_tensor_types():
    assert [t.itemsize for t in TensorType] == [2, 4, 8, 2, 1, 4, 8]
    for t in TensorType:
        if t is not TensorType.BF16:
            assert TensorType.from_numpy(t.numpy_dtype) is t
    with pytest.raises(ValueError, match="no wasi-nn tensor type"):
        TensorType.from_numpy(np.int8)
    tensor = Tensor.from_array(np.zeros((2, 3), np.float16))
    assert tensor.dimensions == (2, 3) and tensor.type is TensorType.F16 and tensor.nbytes == 12


def test_onnx_external_data_walker():
    from onnx import TensorProto, helper

    from wasinn_core._formats._detect import onnx_external_data

    assert onnx_external_data(blob("digits.onnx")) == []
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1], data_location=TensorProto.EXTERNAL)
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../etc/shadow"
    out = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])
    then = helper.make_graph([helper.make_node("Constant", [], ["w"], value=w)], "then", [], [out])
    graph = helper.make_graph(
        [helper.make_node("If", ["c"], ["w"], then_branch=then, else_branch=then)],
        "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [out],
    )
    found = onnx_external_data(memoryview(helper.make_model(graph).SerializeToString()))
    assert found.count("../../etc/shadow") == 2  # found inside both subgraphs' Constant nodes
    with pytest.raises(ValueError):
        onnx_external_data(memoryview(b"\x3a\xff\xff\xff\x0f"))  # a field longer than the data
