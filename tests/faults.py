"""Models that crash, hang or exhaust memory inside the backend libraries themselves (no host bug needed).

Found for this project and verified in a child process (onnxruntime 1.32, OpenVINO 2026.4, torch 2.13):
each kills, stalls or floods the process that loads and runs it, from the model bytes alone.

- ONNX (onnxruntime and OpenVINO): crash, an int32 ``Div(INT32_MIN, -1)`` of constants (SIGFPE while
  the library folds it, at load); hang, a ``Loop`` of 2⁶³-1 trips; allocate, ``Expand`` to [2²⁴, 2¹⁰] f32
  (64 GiB).
- OpenVINO IR: ``Divide(INT32_MIN, -1)`` (SIGFPE in ``compile_model``); an opset-5 ``Loop`` of 2⁶³-1
  trips; ``Broadcast`` to [2²⁴, 2¹⁰].
- TorchScript: ``floordiv.int(INT64_MIN, -1)`` (SIGFPE in forward); ``while i >= 0``;
  ``zeros([2²⁴, 2¹⁰])``.
- ExportedProgram: ``_reshape_alias`` with a stride of 2⁴⁰, then ``sum`` (SIGSEGV in forward);
  ``expand`` to [2³¹, 2³¹], then ``sum``; ``full([2²⁴, 2¹⁰])``.

Every model takes one input ``x`` of shape [1] (i32 for the ONNX and IR crashes, f32 otherwise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import models

FAULTS = ("crash", "hang", "allocate")
_BIG = [1 << 24, 1 << 10]  # 2**34 f32 elements: 64 GiB; 2-D, since OpenVINO caps a 1-D shape at 8 GiB


def input_type(fmt: str, fault: str) -> str:
    """The classify guest's ``--type`` for a model's input."""
    return "i32" if fault == "crash" and fmt in ("onnx", "ir") else "f32"


def onnx(fault: str) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    vi, node = helper.make_tensor_value_info, helper.make_node
    if fault == "crash":
        nodes = [node("Div", ["a", "b"], ["q"]), node("Add", ["q", "x"], ["y"])]
        io = [vi("x", TensorProto.INT32, [1])], [vi("y", TensorProto.INT32, [1])]
        inits = [numpy_helper.from_array(np.array([-(2**31)], np.int32), "a"),
                 numpy_helper.from_array(np.array([-1], np.int32), "b")]  # fmt: skip
    elif fault == "hang":
        body = helper.make_graph(
            [node("Identity", ["cond_in"], ["cond_out"]), node("Add", ["x_in", "one"], ["x_out"])],
            "body",
            [vi("i", TensorProto.INT64, []), vi("cond_in", TensorProto.BOOL, []), vi("x_in", TensorProto.FLOAT, [1])],
            [vi("cond_out", TensorProto.BOOL, []), vi("x_out", TensorProto.FLOAT, [1])],
            initializer=[numpy_helper.from_array(np.ones(1, np.float32), "one")],
        )
        nodes = [node("Loop", ["trips", "cond", "x"], ["y"], body=body)]
        io = [vi("x", TensorProto.FLOAT, [1])], [vi("y", TensorProto.FLOAT, [1])]
        inits = [numpy_helper.from_array(np.array(2**63 - 1, np.int64), "trips"),
                 numpy_helper.from_array(np.array(True), "cond")]  # fmt: skip
    else:
        nodes = [node("Expand", ["x", "shape"], ["big"]), node("ReduceSum", ["big"], ["y"], keepdims=0)]
        io = [vi("x", TensorProto.FLOAT, [1])], [vi("y", TensorProto.FLOAT, [])]
        inits = [numpy_helper.from_array(np.array(_BIG, np.int64), "shape")]
    graph = helper.make_graph(nodes, f"onnx_{fault}", io[0], io[1], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10).SerializeToString()


def ir(fault: str, tmp: Path) -> tuple[bytes, bytes]:
    import openvino as ov
    import openvino.opset13 as ops

    if fault == "crash":
        x = ops.parameter([1], np.int32, name="x")
        q = ops.divide(ops.constant(np.array([-(2**31)], np.int32)), ops.constant(np.array([-1], np.int32)))
        model = ov.Model([ops.add(q, x)], [x], "ir_crash")
    elif fault == "hang":
        x = ops.parameter([1], np.float32, name="x")
        body_x = ops.parameter([1], np.float32, name="body_x")
        body_next = ops.add(body_x, ops.constant(np.ones(1, np.float32)))
        body = ov.Model([ops.constant(np.array(True)), body_next], [body_x], "body")
        loop = ops.loop(ops.constant(np.array(2**63 - 1, np.int64)), ops.constant(np.array(True)))
        loop.set_function(body)
        loop.set_special_body_ports([-1, 0])
        loop.set_merged_input(body_x, x.output(0), body_next.output(0))
        model = ov.Model([loop.get_iter_value(body_next.output(0), -1)], [x], "ir_hang")
    else:
        x = ops.parameter([1], np.float32, name="x")
        big = ops.broadcast(x, ops.constant(np.array(_BIG, np.int64)))
        model = ov.Model([ops.reduce_sum(big, ops.constant(np.array([0, 1], np.int64)), False)], [x], "ir_alloc")
    return models.ir_bytes(model, tmp)


def _torch_modules():  # defined on first use, so that importing this module does not import torch
    torch = models._torch()

    class Crash(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            minus_one = x.numel() * 0 - 1  # -1, but not a constant the compiler could fold
            return x + (-9223372036854775807 - 1) // minus_one

    class Hang(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            i = 0
            while i >= 0:
                x = x + 1.0
                i = i + 1
            return x

    class Allocate(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros([1 << 24, 1 << 10]).sum() + x

    class CrashExported(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            four = x.repeat(4)  # a tensor of its own, read with a stride of 2**40 elements
            return torch.ops.aten._reshape_alias.default(four, [4], [1 << 40]).sum() + x

    class HangExported(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:1].expand(1 << 31, 1 << 31).sum() + x

    class AllocateExported(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.aten.full.default([1 << 24, 1 << 10], 1.0).sum() + x

    return {
        ("torchscript", "crash"): Crash, ("torchscript", "hang"): Hang, ("torchscript", "allocate"): Allocate,
        ("exported_program", "crash"): CrashExported, ("exported_program", "hang"): HangExported,
        ("exported_program", "allocate"): AllocateExported,
    }  # fmt: skip


def torchscript(fault: str) -> bytes:
    import io
    import warnings

    torch = models._torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(_torch_modules()["torchscript", fault]()), buf)
    return buf.getvalue()


def exported_program(fault: str) -> bytes:
    torch = models._torch()
    return models.exported_bytes(_torch_modules()["exported_program", fault](), (torch.ones(1),))
