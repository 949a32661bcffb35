"""Tests of wasinn-onnxref with wasinn's testing kit, and the conformance suite, all in this process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from wasinn_onnxref import backend_spec

from wasinn_conformance import run_conformance
from wasinn_core import ExecutionTarget, GraphEncoding, InvalidArgument, Tensor, UnsupportedOperation
from wasinn_core.testing import check_onnx_numbering

CONFORMANCE = Path(__file__).parents[1] / "conformance.toml"


def model_bytes() -> bytes:
    """y = x + x, f32 [2]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "double", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_loads_and_computes_through_the_registry(wasinn_register, wasinn_host):
    wasinn_register(backend_spec())
    loaded = wasinn_host.registry.load([memoryview(model_bytes())], GraphEncoding.ONNX, (ExecutionTarget.CPU,))
    assert loaded.info.backend == "onnxref"
    ctx = loaded.graph.init_execution_context()
    ctx.set_input("x", Tensor.from_array(np.array([1.0, 2.5], np.float32)))
    ctx.compute()
    np.testing.assert_array_equal(ctx.get_output(0).data, [2.0, 5.0])
    with pytest.raises(InvalidArgument, match="is f32, got f64"):
        ctx.set_input(0, Tensor.from_array(np.zeros(2)))


def test_gpu_is_refused_with_the_reason(wasinn_register, wasinn_host):
    wasinn_register(backend_spec())
    with pytest.raises(UnsupportedOperation, match="has no gpu support"):
        wasinn_host.registry.load([memoryview(model_bytes())], GraphEncoding.ONNX, (ExecutionTarget.GPU,))


def test_through_the_abi(wasinn_register, wasinn_guest):
    """A real wasm module calls wasi_ephemeral_nn: load, init_execution_context, set_input, compute, get_output."""
    wasinn_register(backend_spec())
    guest = wasinn_guest()
    builders, n = guest.builders([model_bytes()])
    graph_out, ctx_out = guest.alloc(4), guest.alloc(4)
    assert guest.call("load", builders, n, 1, 0, graph_out) == 0
    assert guest.call("init_execution_context", guest.u32(graph_out), ctx_out) == 0
    ctx = guest.u32(ctx_out)
    assert guest.call("set_input", ctx, 0, guest.tensor([2], 1, np.array([3.0, 4.0], np.float32))) == 0
    assert guest.call("compute", ctx) == 0
    out, written = guest.alloc(8), guest.alloc(4)
    assert guest.call("get_output", ctx, 0, out, 8, written) == 0
    assert np.frombuffer(guest.read(out, 8), np.float32).tolist() == [6.0, 8.0]


def test_numbers_inputs_and_outputs_as_the_onnx_graph(wasinn_register, wasinn_host):
    """wasi-nn input i is the graph's i-th input that is not an initializer, output j its j-th output."""
    wasinn_register(backend_spec())
    check_onnx_numbering(wasinn_host, "onnxref")


def test_broken_model_is_a_runtime_error(wasinn_register, wasinn_guest):
    """A well-formed protobuf that onnx.checker rejects: the library's error becomes runtime_error (5)."""
    wasinn_register(backend_spec())
    guest = wasinn_guest()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("NoSuchOperator", ["x"], ["y"])], "bad", [x], [x])
    builders, n = guest.builders([helper.make_model(graph).SerializeToString()])
    assert guest.call("load", builders, n, 1, 0, guest.alloc(4)) == 5


def test_passes_the_conformance_suite():
    """The whole suite, in process (from a shell: wasinn conformance --backend onnxref --expectations
    conformance.toml): no failure, and the known deviations are only those conformance.toml lists."""
    run = run_conformance(backend_spec(), expectations=CONFORMANCE)
    run.assert_outcomes(failed=0)
    assert run.outcomes["passed"] > 0
