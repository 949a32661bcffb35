"""The kit's check of the ONNX numbering rule (see :mod:`wasinn_core.testing`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import ExecutionContext
from .._errors import InvalidArgument, UnsupportedOperation, WasiNNError
from .._host import Host
from .._types import ExecutionTarget, GraphEncoding, Tensor

__all__ = ["check_onnx_numbering", "numbering_models"]

#: The initializer listed among the graph inputs (as models of IR version 3 do): not a wasi-nn input.
WEIGHT = np.array([10.0, 20.0], np.float32)


def numbering_models() -> dict[str, bytes]:
    """The models the check loads (needs the ``onnx`` package).

    ``numbering``: graph inputs ``a`` f32[2], ``w`` (an initializer), ``b`` f32[3] (unused), ``z`` f32[0]
    (zero-size, unused), ``c`` f32[2]; outputs ``y2 = c·a``, ``y1 = a + w``, in that order. wasi-nn inputs are
    ``a, b, z, c``; OpenVINO keeps only ``a`` and ``c`` of a model read from bytes.
    ``passthrough``: ``y = Identity(x)``, whose input OpenVINO renames ``y``.
    """
    from onnx import TensorProto, helper, numpy_helper

    def f32(name: str, *shape: int) -> Any:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))

    def model(graph: Any) -> bytes:
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="wasinn-kit")
        proto.ir_version = 8
        return bytes(proto.SerializeToString())

    numbering = helper.make_graph(
        [helper.make_node("Mul", ["c", "a"], ["y2"]), helper.make_node("Add", ["a", "w"], ["y1"])],
        "numbering",
        [f32("a", 2), f32("w", 2), f32("b", 3), f32("z", 0), f32("c", 2)],
        [f32("y2", 2), f32("y1", 2)],
        initializer=[numpy_helper.from_array(WEIGHT, "w")],
    )
    passthrough = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "passthrough", [f32("x", 2)], [f32("y", 2)]
    )
    return {"numbering": model(numbering), "passthrough": model(passthrough)}


def _expect_invalid(what: str, call: Callable[[], object]) -> None:
    try:
        call()
    except InvalidArgument:
        return
    raise AssertionError(f"{what}: expected invalid_argument, the backend accepted it")


def _outputs(ctx: ExecutionContext, keys: list[Any]) -> list[list[float]]:
    return [np.asarray(ctx.get_output(k).data, np.float64).ravel().tolist() for k in keys]


def _run(
    backend: str, ctx: ExecutionContext, feeds: list[tuple[Any, np.ndarray]], keys: list[Any]
) -> list[list[float]]:
    """Set ``feeds``, compute, read outputs ``keys``; a refusal is a failed check, naming the call."""
    call = "compute"
    try:
        for key, value in feeds:
            call = f"set_input({key!r}, {value.dtype.name} {list(value.shape)})"
            ctx.set_input(key, Tensor.from_array(value))
        call = "compute"
        ctx.compute()
        call = f"get_output of {keys}"
        return _outputs(ctx, keys)
    except Exception as exc:  # a library error too: the check reports it, naming the call
        why = f"{exc.code.value}: {exc.message}" if isinstance(exc, WasiNNError) else f"{type(exc).__name__}: {exc}"
        raise AssertionError(f"{backend}: {call} failed: {why}") from exc


def check_onnx_numbering(host: Host, backend: str, target: ExecutionTarget = ExecutionTarget.CPU) -> None:
    """Check that ``backend`` numbers an ONNX model's inputs and outputs as the graph does.

    The wasi-nn rule for ONNX: input ``i`` is the graph's ``i``-th input that is not an initializer,
    output ``j`` its ``j``-th output, whatever the library keeps of them; an input the library dropped is
    still matched by name and checked for type and shape (when the backend declares ``type_checks`` and
    ``shape_checks``), then ignored. Loads :func:`numbering_models` on ``backend`` through ``host``'s
    registry and raises ``AssertionError`` naming the first difference.
    """
    spec = host.registry.specs[backend]
    features = spec.capabilities.features
    models = numbering_models()
    a, b, z, c = (np.array(v, np.float32) for v in ([1.5, -2.0], [7.0, 8.0, 9.0], [], [3.0, 4.0]))
    want = [(c * a).tolist(), (a + WEIGHT).tolist()]

    def load(name: str) -> Any:
        return host.registry.load([memoryview(models[name])], GraphEncoding.ONNX, (target,), backend=backend)

    loaded = load("numbering")
    try:
        ctx = loaded.graph.init_execution_context()
        got = _run(backend, ctx, list(enumerate((a, b, z, c))), [0, 1])
        assert got == want, f"{backend}: outputs 0 and 1 by index are {got}, the graph's y2 and y1 are {want}"
        ctx.close()
        ctx = loaded.graph.init_execution_context()
        got = _run(backend, ctx, list(zip("abzc", (a, b, z, c), strict=True))[::-1], ["y2", "y1"])
        assert got == want, f"{backend}: outputs y2 and y1 by name are {got}, expected {want}"
        try:
            names = list(ctx.output_names())
        except UnsupportedOperation:
            names = ["y2", "y1"]
        assert names == ["y2", "y1"], f"{backend}: output names {names}, the graph's are ['y2', 'y1']"
        _expect_invalid(
            f"{backend}: input index 4 of a graph with 4 inputs", lambda: ctx.set_input(4, Tensor.from_array(a))
        )
        if "shape_checks" in features:
            wrong = np.zeros(4, np.float32)
            _expect_invalid(
                f"{backend}: input 1 ('b', f32 3) given f32 4", lambda: ctx.set_input(1, Tensor.from_array(wrong))
            )
        if "type_checks" in features:
            ints = np.zeros(3, np.int32)
            _expect_invalid(
                f"{backend}: input 1 ('b', f32 3) given i32 3", lambda: ctx.set_input(1, Tensor.from_array(ints))
            )
        ctx.close()
    finally:
        loaded.graph.close()
    loaded = load("passthrough")
    try:
        ctx = loaded.graph.init_execution_context()
        for key in (0, "x"):
            got = _run(backend, ctx, [(key, a)], [0, "y"])
            assert got == [a.tolist()] * 2, f"{backend}: y = Identity(x) with x set as {key!r} gave {got}"
        ctx.close()
    finally:
        loaded.graph.close()
