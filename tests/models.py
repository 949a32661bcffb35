"""Small deterministic test models, built on the fly (no downloads)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np


def _torch():
    import torch

    return torch


def scripted_bytes(module, example) -> bytes:
    torch = _torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module, example, strict=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
    return buf.getvalue()


def exported_bytes(module, example, dynamic_shapes=None) -> bytes:
    torch = _torch()
    program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes)
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def double_module():
    """forward(x) -> x * 2, keeping the dtype."""
    torch = _torch()

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2

    return Double()


def two_in_two_out():
    """forward(a, b) -> (a + b, a * b)."""
    torch = _torch()

    class TwoInTwoOut(torch.nn.Module):
        def forward(self, a, b):
            return a + b, a * b

    return TwoInTwoOut()


def dict_out():
    """forward(x) -> {"double": x * 2, "total": x.sum(-1, keepdim=True)}."""
    torch = _torch()

    class DictOut(torch.nn.Module):
        def forward(self, x):
            return {"double": x * 2, "total": x.sum(-1, keepdim=True)}

    return DictOut()


def linear64():
    """A seeded Linear(64, 10): f32 only, last dimension 64."""
    torch = _torch()
    torch.manual_seed(0)
    return torch.nn.Linear(64, 10).eval()


def classifier224(classes: int = 1000):
    """A seeded MobileNet-shaped CNN: 1x3x224x224 f32 -> 1xclasses scores."""
    torch = _torch()
    torch.manual_seed(1)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16),
        nn.Conv2d(16, 32, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, classes),
    ).eval()


def image224(seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, 224, 224)).astype(np.float32)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def ir_bytes(model, tmp: Path) -> tuple[bytes, bytes]:
    """An ov.Model serialised to IR (f32 weights kept): (xml, bin)."""
    import openvino as ov

    ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)
    return (tmp / "model.xml").read_bytes(), (tmp / "model.bin").read_bytes()


def ir_double(type_name: str):
    """An OpenVINO model x -> x + x on a [2, 3] input of the given element type."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([2, 3], getattr(ov.Type, type_name), name="x")
    return ov.Model([ops.add(x, x)], [x], "double")


def ir_two_in_two_out():
    """(a, b) -> (a + b, a * b), f32 [3], with named outputs 'sum' and 'product'."""
    import openvino as ov
    import openvino.opset13 as ops

    a = ops.parameter([3], ov.Type.f32, name="a")
    b = ops.parameter([3], ov.Type.f32, name="b")
    total, product = ops.add(a, b), ops.multiply(a, b)
    total.output(0).get_tensor().set_names({"sum"})
    product.output(0).get_tensor().set_names({"product"})
    return ov.Model([total, product], [a, b], "two")


def torch_to_ir(module, example, tmp: Path) -> tuple[bytes, bytes]:
    import openvino as ov

    return ir_bytes(ov.convert_model(module, example_input=example), tmp)


def torch_to_onnx(module, example, path: Path) -> bytes:
    torch = _torch()
    torch.onnx.export(
        module, (example,), path, input_names=["image"], output_names=["scores"], external_data=False, dynamo=True
    )
    return path.read_bytes()
