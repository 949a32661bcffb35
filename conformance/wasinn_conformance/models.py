"""Deterministic models for the suite, generated on the spot (no downloads), and their reference.

    python -m wasinn_conformance.models OUT_DIR     # write every model, for inspection

ONNX models are built with the ``onnx`` package; TorchScript and ExportedProgram
archives need ``torch``; OpenVINO IR needs ``openvino``. Each library is
imported only for its own formats. Weights come from a seeded generator and are
rounded to the model's type, so the float64 reference uses exactly the weights
the model holds.
"""

from __future__ import annotations

import argparse
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .cases import DTYPES, FAMILIES, FORMATS

SEED = 20261125
BATCH = {"batch1": 1, "batch2": 2, "batch5": 5, "": 2}
NAMES = {  # family -> (input names, output names)
    "affine": (("x",), ("y",)),
    "transpose": (("x",), ("y",)),
    "two_io": (("a", "b"), ("sum", "product")),
    "matmul": (("x",), ("y",)),
    "affine_int32_data": (("x",), ("y",)),
}
#: Files for one model, named as wasmtime's ``nn-graph`` directories expect them.
FILES = {
    "onnx": ("model.onnx",),
    "torchscript": ("model.pt",),
    "exported_program": ("model.pt2",),
    "ir": ("model.xml", "model.bin"),
}


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    if dtype == "bf16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(
        {"f16": np.float16, "f32": np.float32, "f64": np.float64, "u8": np.uint8, "i32": np.int32, "i64": np.int64}[
            dtype
        ]
    )


def weights(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """The matmul family's W (4x3) and b (3), rounded to ``dtype``."""
    rng = np.random.default_rng(SEED)
    w = rng.uniform(-1, 1, (4, 3)).astype(numpy_dtype(dtype))
    b = rng.uniform(-1, 1, 3).astype(numpy_dtype(dtype))
    return w, b


def inputs(family: str, dtype: str, variant: str = "") -> dict[str, np.ndarray]:
    """Seeded inputs, in the model's input order, with values the type represents exactly enough."""
    rng = np.random.default_rng(SEED + DTYPES.index(dtype))
    shape = (BATCH[variant], 4) if family == "matmul" else (2, 3)

    def draw() -> np.ndarray:
        if dtype == "u8":
            return rng.integers(0, 16, shape).astype(np.uint8)  # products stay below 256
        if dtype in ("i32", "i64"):
            return rng.integers(-50, 50, shape).astype(numpy_dtype(dtype))
        return rng.uniform(-4, 4, shape).astype(numpy_dtype(dtype))

    return {name: draw() for name in NAMES[family][0]}


def reference(family: str, dtype: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The expected outputs, computed in float64 (int64 for integer types)."""
    wide = np.int64 if dtype in ("u8", "i32", "i64") else np.float64
    v = {k: a.astype(wide) for k, a in feeds.items()}
    if family in ("affine", "affine_int32_data"):
        return {"y": 2 * v["x"] + 3}
    if family == "transpose":
        return {"y": v["x"].T}
    if family == "two_io":
        return {"sum": v["a"] + v["b"], "product": v["a"] * v["b"]}
    w, b = weights(dtype)
    return {"y": v["x"] @ w.astype(np.float64) + b.astype(np.float64)}


# -- ONNX -------------------------------------------------------------------------------------------


def _onnx(family: str, dtype: str) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = {
        "f16": TensorProto.FLOAT16,
        "bf16": TensorProto.BFLOAT16,
        "f32": TensorProto.FLOAT,
        "f64": TensorProto.DOUBLE,
        "u8": TensorProto.UINT8,
        "i32": TensorProto.INT32,
        "i64": TensorProto.INT64,
    }[dtype]

    def const(name: str, value: np.ndarray | float) -> onnx.TensorProto:
        array = np.asarray(value, dtype=np.float64)
        if family == "affine_int32_data":  # f16/bf16 bit patterns in int32_data: onnx.helper's form
            return helper.make_tensor(name, elem, array.shape, array.astype(np.float32).ravel().tolist())
        return numpy_helper.from_array(array.astype(numpy_dtype(dtype)), name)  # raw_data, as exporters write

    ins, outs = NAMES[family]
    shape: list[int | str] = ["N", 4] if family == "matmul" else [2, 3]
    out_shape: list[int | str] = {"transpose": [3, 2], "matmul": ["N", 3]}.get(family, [2, 3])
    inits: list[onnx.TensorProto] = []
    if family in ("affine", "affine_int32_data"):
        nodes = [helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Add", ["x2", "three"], ["y"])]
        inits = [const("two", 2.0), const("three", 3.0)]
    elif family == "transpose":
        nodes = [helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0])]
    elif family == "two_io":
        nodes = [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["product"])]
    else:
        w, b = weights(dtype)
        nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["y"])]
        inits = [const("W", w.astype(np.float64)), const("B", b.astype(np.float64))]
    graph = helper.make_graph(
        nodes,
        family,
        [helper.make_tensor_value_info(n, elem, shape) for n in ins],
        [helper.make_tensor_value_info(n, elem, out_shape) for n in outs],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="wasinn-conformance")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


# -- PyTorch ----------------------------------------------------------------------------------------


def _torch_module(family: str, dtype: str) -> Any:
    import torch

    class Affine(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 + 3

    class Transpose(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.t().contiguous()

    class TwoIO(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"sum": a + b, "product": a * b}

    class MatMul(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w, b = weights(dtype)
            self.register_buffer("w", _to_torch(w))
            self.register_buffer("b", _to_torch(b))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.w + self.b

    return {"affine": Affine, "transpose": Transpose, "two_io": TwoIO, "matmul": MatMul}[family]().eval()


def _to_torch(array: np.ndarray) -> Any:
    import torch

    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(array.copy())


def _torch(fmt: str, family: str, dtype: str) -> bytes:
    import torch

    module = _torch_module(family, dtype)
    example = tuple(_to_torch(a) for a in inputs(family, dtype, "batch2").values())
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(module, example, strict=False), buf)
        else:
            dynamic = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}} if family == "matmul" else None
            torch.export.save(torch.export.export(module, example, dynamic_shapes=dynamic), buf)
    return buf.getvalue()


# -- OpenVINO IR ------------------------------------------------------------------------------------


def _ir(family: str, dtype: str, folder: Path) -> None:
    import openvino as ov
    import openvino.opset13 as ops

    elem = getattr(
        ov.Type,
        {"f16": "f16", "bf16": "bf16", "f32": "f32", "f64": "f64", "u8": "u8", "i32": "i32", "i64": "i64"}[dtype],
    )

    def const(value: np.ndarray | float) -> Any:
        return ops.convert(ops.constant(np.asarray(value, np.float32)), elem)

    def param(name: str) -> Any:
        shape = ov.PartialShape([-1, 4]) if family == "matmul" else ov.PartialShape([2, 3])
        return ops.parameter(shape, elem, name=name)

    params = [param(n) for n in NAMES[family][0]]
    if family == "affine":
        results = [ops.add(ops.multiply(params[0], const(2.0)), const(3.0))]
    elif family == "transpose":
        results = [ops.transpose(params[0], ops.constant(np.array([1, 0], np.int64)))]
    elif family == "two_io":
        results = [ops.add(params[0], params[1]), ops.multiply(params[0], params[1])]
    else:
        w, b = weights(dtype)
        results = [
            ops.add(ops.matmul(params[0], const(w.astype(np.float32)), False, False), const(b.astype(np.float32)))
        ]
    for node, name in zip(results, NAMES[family][1], strict=True):
        node.output(0).get_tensor().set_names({name})
    ov.save_model(ov.Model(results, params, family), folder / "model.xml", compress_to_fp16=False)


# -- the cache ----------------------------------------------------------------------------------------


class ModelStore:
    """Models generated once per run into a folder: ``<fmt>/<family>/<dtype>/model.*``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def files(self, fmt: str, family: str, dtype: str) -> list[Path]:
        folder = self.root / fmt / family / dtype
        paths = [folder / name for name in FILES[fmt]]
        if not all(p.exists() for p in paths):
            folder.mkdir(parents=True, exist_ok=True)
            generate(fmt, family, dtype, folder)
        return paths


def generate(fmt: str, family: str, dtype: str, folder: Path) -> None:
    """Write the model files of ``(fmt, family, dtype)`` into ``folder``."""
    writers: dict[str, Callable[[], None]] = {
        "onnx": lambda: (folder / "model.onnx").write_bytes(_onnx(family, dtype)),
        "torchscript": lambda: (folder / "model.pt").write_bytes(_torch(fmt, family, dtype)),
        "exported_program": lambda: (folder / "model.pt2").write_bytes(_torch(fmt, family, dtype)),
        "ir": lambda: _ir(family, dtype, folder),
    }
    writers[fmt]()


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the conformance suite's models.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--formats", nargs="*", default=[f for fs in FORMATS.values() for f in fs])
    args = parser.parse_args()
    store = ModelStore(args.out)
    for fmt in args.formats:
        for family in FAMILIES:
            if family.formats and fmt not in family.formats:
                continue
            for dtype in family.dtypes:
                try:
                    print(" ".join(str(p) for p in store.files(fmt, family.name, dtype)))
                except Exception as exc:  # report what a library cannot express, keep going
                    print(f"{fmt}/{family.name}/{dtype}: cannot generate: {exc}")


if __name__ == "__main__":
    main()
