"""The ONNX numbering rule: wasi-nn inputs and outputs follow the ONNX graph's own, on every backend.

``onnx_signature`` reads a graph's ports from the model's bytes; it must agree with the ``onnx`` package
on every model of ONNX's node tests. The kit's ``check_onnx_numbering`` holds on every in-tree ONNX
backend (the remote one is checked in test_remote.py) and fails on a backend that numbers otherwise.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from wasinn_core import (
    Config,
    ExecutionTarget,
    GraphEncoding,
    Host,
    InvalidArgument,
    OnnxPort,
    PluginManager,
    Tensor,
    TensorType,
    match_ports,
    onnx_signature,
)
from wasinn_core.testing import check_onnx_numbering, registered

from .test_abi import INVALID_ARGUMENT, OK


def _onnx_view(model: onnx.ModelProto) -> tuple[list[tuple], list[tuple]]:
    """(name, elem_type, shape) of the graph's inputs less initializers, and of its outputs, per ``onnx``."""

    def port(v: onnx.ValueInfoProto) -> tuple:
        if not v.type.HasField("tensor_type"):
            return (v.name, 0, None)
        t = v.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        return (v.name, t.elem_type, shape if t.HasField("shape") else None)

    constants = {i.name for i in model.graph.initializer}
    return [port(v) for v in model.graph.input if v.name not in constants], [port(v) for v in model.graph.output]


def _ours(data: bytes) -> tuple[list[tuple], list[tuple]]:
    sig = onnx_signature(data)
    return [(p.name, p.elem_type, p.shape) for p in sig.inputs], [(p.name, p.elem_type, p.shape) for p in sig.outputs]


def test_signature_agrees_with_the_onnx_package_on_every_node_test_model():
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    assert len(cases) > 1000
    for case in cases:
        assert _ours(case.model.SerializeToString()) == _onnx_view(case.model), case.name


def test_signature_leaves_out_initializers_and_reads_symbolic_dimensions():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 3])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT16, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [x, w],
        [y],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT16, [3], [1.0, 2.0, 3.0])],
    )
    sig = onnx_signature(helper.make_model(graph).SerializeToString())
    assert sig.inputs == (OnnxPort("x", TensorProto.FLOAT16, (None, 3)),)
    assert sig.inputs[0].type is TensorType.F16 and sig.inputs[0].describe() == "f16 ?x3"
    assert sig.outputs == (OnnxPort("y", TensorProto.FLOAT16, None),)


@pytest.mark.parametrize("data", [b"", b"\x08\x07", b"\x3a\x05abc", b"\x3a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"])
def test_signature_of_bytes_that_are_no_model_is_a_value_error(data):
    with pytest.raises(ValueError):
        onnx_signature(data)


def test_port_check_names_type_and_shape():
    port = OnnxPort("b", TensorProto.FLOAT, (None, 3))
    port.check(Tensor.from_array(np.zeros((5, 3), np.float32)))
    with pytest.raises(InvalidArgument, match=r"input 'b' expects f32 \?x3, got f32 5x4"):
        port.check(Tensor.from_array(np.zeros((5, 4), np.float32)))
    with pytest.raises(InvalidArgument, match=r"expects f32 \?x3, got i64 5x3"):
        port.check(Tensor.from_array(np.zeros((5, 3), np.int64)))
    with pytest.raises(InvalidArgument, match="expects f32 scalar, got f32 1"):
        OnnxPort("s", TensorProto.FLOAT, ()).check(Tensor.from_array(np.zeros(1, np.float32)))


def test_match_ports_by_name_then_renamed_ports_in_order():
    ports = [OnnxPort(n, 1, (2,)) for n in ("a", "b", "z", "c")]
    assert match_ports(ports, [{"c"}, {"a"}]) == [1, None, None, 0]  # b, z dropped
    # a renamed port is paired with the first unmatched graph port it fits
    assert match_ports(ports, [{"a"}, {"renamed"}], fits=lambda p, k: p.name == "z") == [0, None, 1, None]
    with pytest.raises(ValueError, match="the library's port extra matches no port of the ONNX graph"):
        match_ports(ports[:1], [{"a"}, {"extra"}])


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "onnxref"])
def test_every_in_tree_onnx_backend_follows_the_graphs_numbering(backend):
    host = Host()
    try:
        check_onnx_numbering(host, backend)
    finally:
        host.close()


def test_the_check_fails_on_a_backend_numbering_by_the_librarys_order():
    """A backend that numbers inputs as its library keeps them (here: sorted by name) fails the kit's check."""
    from wasinn_onnx import backend_spec
    from wasinn_onnx._backend import OnnxBackend

    class Sorted(OnnxBackend):
        def load(self, *args):
            graph = super().load(*args)
            graph.inputs = tuple(sorted(graph.inputs, key=lambda io: io.name))
            return graph

    broken = dataclasses.replace(backend_spec(), name="sorted", factory=Sorted)
    plugins = PluginManager(autoload=False, environ={})
    with registered(plugins, broken):
        host = Host(plugins=plugins)
        with pytest.raises(
            AssertionError,
            match=r"sorted: set_input\(2, float32 \[0\]\) failed: invalid_argument: input .c. expects shape 2",
        ):
            check_onnx_numbering(host, "sorted")
        host.close()


def test_openvino_keeps_the_graphs_numbering_through_the_abi(wasinn_guest):
    """OpenVINO folds away inputs b (unused) and z (zero-size) of a model read from bytes; c stays input 3."""
    from wasinn_core._formats._numbering_check import WEIGHT, numbering_models

    host = Host(Config.from_dict({"preferences": {"onnx": ["openvino"]}}, source="<test>"))
    guest = wasinn_guest(host)
    builders, n = guest.builders([numbering_models()["numbering"]])
    graph, ctx = guest.alloc(4), guest.alloc(4)
    assert guest.call("load", builders, n, 1, 0, graph) == OK
    assert guest.call("init_execution_context", guest.u32(graph), ctx) == OK
    a, c = np.array([1.5, -2.0], np.float32), np.array([3.0, 4.0], np.float32)
    feeds = [(0, [2], a), (1, [3], np.zeros(3, np.float32)), (2, [0], np.zeros(0, np.float32)), (3, [2], c)]
    for index, dims, value in feeds:
        assert guest.call("set_input", guest.u32(ctx), index, guest.tensor(dims, 1, value)) == OK
    assert guest.call("set_input", guest.u32(ctx), 2, guest.tensor([1], 1, np.zeros(1, np.float32))) == INVALID_ARGUMENT
    assert guest.call("compute", guest.u32(ctx)) == OK
    out, written = guest.alloc(8), guest.alloc(4)
    for index, want in [(0, c * a), (1, a + WEIGHT)]:
        assert guest.call("get_output", guest.u32(ctx), index, out, 8, written) == OK
        assert np.frombuffer(guest.read(out, 8), np.float32).tolist() == want.tolist()
    host.close()


def test_openvino_requires_every_graph_input_like_the_other_backends():
    from wasinn_core._formats._numbering_check import numbering_models

    host = Host()
    loaded = host.registry.load(
        [memoryview(numbering_models()["numbering"])], GraphEncoding.ONNX, (ExecutionTarget.CPU,), backend="openvino"
    )
    ctx = loaded.graph.init_execution_context()
    ctx.set_input(0, Tensor.from_array(np.zeros(2, np.float32)))
    ctx.set_input(3, Tensor.from_array(np.zeros(2, np.float32)))
    with pytest.raises(InvalidArgument, match="inputs not set: b, z"):
        ctx.compute()
    loaded.graph.close()
    host.close()
