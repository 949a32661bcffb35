"""The component-model front end: ``wasi:nn`` (WIT) on a wasmtime component ``Linker``, two versions at once.

``0.2.0-rc-2024-10-28`` (``compute(list<named-tensor>) -> list<named-tensor>``, what wasmtime 35 and later
host) and ``0.2.0-rc-2024-08-19`` (``set-input``/``compute``/``get-output`` by name, what the Rust
``wasi-nn`` 0.7 crate targets) are defined side by side over one :class:`Session`, so a component built
for either instantiates. Enums convert by name: WIT codes differ from witx (``U8`` is 4, ``autodetect``
6, and error codes have no ``success``).

Resources: graphs and execution contexts are the session's handles; tensors and errors live in tables
here until the guest drops them (a dropped graph is unloaded, a dropped context finalized). Input
tensors passed as ``own`` are consumed: their entries are freed once their data reached the backend.
Host functions never raise into wasmtime: a failure is an ``error`` resource (for functions returning
``result``) plus a log line; only what no result can carry (a tensor over the limits) traps.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from wasmtime import WasmtimeError, component
from wasmtime import _ffi as ffi

from .._errors import ErrorCode, TooLarge, WasiNNError
from .._session import Session
from .._stats import record_copy
from .._types import ExecutionTarget, GraphEncoding, Tensor, TensorType
from . import _cvals as cv

__all__ = ["WIT_VERSIONS", "WitBinding"]

log = logging.getLogger("wasinn.wit")

#: The ``wasi:nn`` package versions defined, newest first.
WIT_VERSIONS = ("0.2.0-rc-2024-10-28", "0.2.0-rc-2024-08-19")

WIT_TENSOR_TYPES: dict[str, TensorType] = {
    "FP16": TensorType.F16,
    "FP32": TensorType.F32,
    "FP64": TensorType.F64,
    "BF16": TensorType.BF16,
    "U8": TensorType.U8,
    "I32": TensorType.I32,
    "I64": TensorType.I64,
}
_WIT_TYPE_NAMES = {t: name for name, t in WIT_TENSOR_TYPES.items()}
#: WIT ``graph-encoding`` and ``execution-target`` case names are wasinn's own names.
WIT_ENCODINGS: dict[str, GraphEncoding] = {e.value: e for e in GraphEncoding}
WIT_TARGETS: dict[str, ExecutionTarget] = {t.value: t for t in ExecutionTarget}
#: wasinn's error codes as WIT ``error-code`` names. WIT has no ``busy`` (a count limit is ``too-large``)
#: and no ``missing-memory`` (a component always has its memory).
WIT_ERROR_CODES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "invalid-argument",
    ErrorCode.INVALID_ENCODING: "invalid-encoding",
    ErrorCode.MISSING_MEMORY: "invalid-argument",
    ErrorCode.BUSY: "too-large",
    ErrorCode.RUNTIME_ERROR: "runtime-error",
    ErrorCode.UNSUPPORTED_OPERATION: "unsupported-operation",
    ErrorCode.TOO_LARGE: "too-large",
    ErrorCode.NOT_FOUND: "not-found",
}

_RESOURCES = ("tensor", "graph", "graph-execution-context", "error")
#: Live tensor and error resources one instance may hold (graphs and contexts have their own limits).
MAX_LIVE = 65536
_TYPE_BASE = 0x776E_0000  # "wn": host resource type ids, one per (version, resource)

Handler = Callable[[Any, Any, Any], None]  # (store context, args, results)
_HANDLERS: dict[int, Handler] = {}
_handler_ids = itertools.count(1)


@ffi.wasmtime_component_func_callback_t  # type: ignore[untyped-decorator]
def _dispatch(idx: int, context: Any, _ty: Any, args: Any, _nargs: int, results: Any, _nresults: int) -> int:
    try:
        _HANDLERS[idx or 0](context, args, results)
        return 0
    except cv.Trap as trap:
        return cv.error_pointer(str(trap))
    except BaseException as exc:  # a bug here must trap the guest, never unwind into wasmtime
        log.error("wasi:nn host function failed: %s", "".join(traceback.format_exception(exc)))
        return cv.error_pointer(f"wasinn: internal error in a wasi:nn host function: {exc!r}")


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]
def _forget_handler(idx: int | None) -> None:
    _HANDLERS.pop(idx or 0, None)


def _add_func(instance: component.LinkerInstance, name: str, handler: Handler) -> None:
    idx = next(_handler_ids)
    _HANDLERS[idx] = handler
    raw = name.encode("utf-8")
    error = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(), ctypes.create_string_buffer(raw), len(raw), _dispatch, idx, _forget_handler
    )
    if error:
        _HANDLERS.pop(idx, None)
        raise WasmtimeError._from_ptr(error)


@dataclass
class _HostTensor:
    dimensions: tuple[int, ...]
    type: TensorType
    data: npt.NDArray[np.uint8]  # the raw bytes, checked against the dimensions when used


class WitBinding:
    """``wasi:nn`` (WIT) host functions and resources for one store, over one :class:`Session`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.tensors: dict[int, _HostTensor] = {}
        self.errors: dict[int, tuple[str, str]] = {}
        self._reps = itertools.count(1)

    def define(self, linker: component.Linker, versions: Iterable[str] = WIT_VERSIONS) -> None:
        """Define the ``wasi:nn`` interfaces of each version in ``linker``'s root."""
        with linker.root() as root:
            for version in versions:
                self._define_version(root, version)

    @staticmethod
    def type_id(version: str, resource: str) -> int:
        """The host resource type id of ``resource`` in ``version``."""
        return _TYPE_BASE + 16 * WIT_VERSIONS.index(version) + _RESOURCES.index(resource)

    def _define_version(self, root: component.LinkerInstance, version: str) -> None:
        ids = {r: self.type_id(version, r) for r in _RESOURCES}
        with root.add_instance(f"wasi:nn/errors@{version}") as errors:
            errors.add_resource("error", component.ResourceType.host(ids["error"]), self._drop_error)
            _add_func(errors, "[method]error.code", self._error_code)
            _add_func(errors, "[method]error.data", self._error_data)
        with root.add_instance(f"wasi:nn/tensor@{version}") as tensor:
            tensor.add_resource("tensor", component.ResourceType.host(ids["tensor"]), self._drop_tensor)
            _add_func(tensor, "[constructor]tensor", lambda c, a, r: self._new_tensor(c, a, r, ids["tensor"]))
            _add_func(tensor, "[method]tensor.dimensions", self._tensor_dimensions)
            _add_func(tensor, "[method]tensor.ty", self._tensor_type)
            _add_func(tensor, "[method]tensor.data", self._tensor_data)
        with root.add_instance(f"wasi:nn/inference@{version}") as inference:
            ctx_type = component.ResourceType.host(ids["graph-execution-context"])
            inference.add_resource("graph-execution-context", ctx_type, self._drop_context)
            method = "[method]graph-execution-context."
            if version == "0.2.0-rc-2024-08-19":
                _add_func(inference, method + "set-input", lambda c, a, r: self._set_input(c, a, r, ids))
                _add_func(inference, method + "compute", lambda c, a, r: self._compute_stateful(c, a, r, ids))
                _add_func(inference, method + "get-output", lambda c, a, r: self._get_output(c, a, r, ids))
            else:
                _add_func(inference, method + "compute", lambda c, a, r: self._compute(c, a, r, ids))
        with root.add_instance(f"wasi:nn/graph@{version}") as graph:
            graph.add_resource("graph", component.ResourceType.host(ids["graph"]), self._drop_graph)
            _add_func(graph, "load", lambda c, a, r: self._load(c, a, r, ids))
            _add_func(graph, "load-by-name", lambda c, a, r: self._load_by_name(c, a, r, ids))
            _add_func(graph, "[method]graph.init-execution-context", lambda c, a, r: self._init(c, a, r, ids))

    # -- results and errors ---------------------------------------------------

    def _fail(self, context: Any, result: Any, ids: dict[str, int], call: str, exc: BaseException) -> None:
        """``result::err`` with a new error resource, and a log line naming the call."""
        if isinstance(exc, cv.Trap):
            raise exc
        if isinstance(exc, WasiNNError):
            code, message = WIT_ERROR_CODES[exc.code], exc.message
        else:  # a bug (the session maps library errors): never a trap, always loud
            code, message = "runtime-error", f"{type(exc).__name__}: {exc}"
            self.session.host.stats.internal_errors += 1
            log.error("internal error in %s: %s", call, "".join(traceback.format_exception(exc)))
        level = logging.INFO if code == "not-found" else logging.WARNING
        log.log(level, "%s: %s: %s", call, code, message)
        self._room(self.errors, "error")
        rep = next(self._reps)
        self.errors[rep] = (code, message)
        cv.put_result(result, False, lambda v: cv.put_own(context, v, rep, ids["error"]))

    @staticmethod
    def _room(table: dict[int, Any], what: str) -> None:
        """Trap a guest that keeps :data:`MAX_LIVE` resources without dropping them (the host's memory)."""
        if len(table) >= MAX_LIVE:
            raise cv.Trap(f"wasinn: {len(table)} live wasi:nn {what} resources: drop the ones you no longer use")

    def _error_code(self, context: Any, args: Any, results: Any) -> None:
        cv.put_enum(results[0], self.errors[cv.take_resource(context, args[0])][0])

    def _error_data(self, context: Any, args: Any, results: Any) -> None:
        cv.put_string(results[0], self.errors[cv.take_resource(context, args[0])][1])

    def _drop_error(self, _store: Any, rep: int) -> None:
        self.errors.pop(rep, None)

    # -- tensors --------------------------------------------------------------

    def _new_tensor(self, context: Any, args: Any, results: Any, type_id: int) -> None:
        dimensions = cv.take_u32s(args[0])
        ttype = WIT_TENSOR_TYPES[cv.take_enum(args[1])]
        data = cv.take_bytes(args[2])
        record_copy(data.nbytes)
        self._room(self.tensors, "tensor")  # before charging: a trap here leaves nothing held
        try:  # a constructor cannot return an error: over the limits, the guest traps
            self.session.hold_tensor(data.nbytes, "a")
        except WasiNNError as exc:
            raise cv.Trap(f"wasinn: wasi:nn tensor constructor: {exc.code.value}: {exc.message}") from None
        rep = next(self._reps)
        self.tensors[rep] = _HostTensor(dimensions, ttype, data)
        cv.put_own(context, results[0], rep, type_id)

    def _tensor(self, context: Any, handle: Any) -> _HostTensor:
        return self.tensors[cv.take_resource(context, handle)]

    def _tensor_dimensions(self, context: Any, args: Any, results: Any) -> None:
        cv.put_u32s(results[0], self._tensor(context, args[0]).dimensions)

    def _tensor_type(self, context: Any, args: Any, results: Any) -> None:
        cv.put_enum(results[0], _WIT_TYPE_NAMES[self._tensor(context, args[0]).type])

    def _tensor_data(self, context: Any, args: Any, results: Any) -> None:
        tensor = self._tensor(context, args[0])
        cv.put_bytes(results[0], tensor.data)
        record_copy(tensor.data.nbytes)

    def _drop_tensor(self, _store: Any, rep: int) -> None:
        tensor = self.tensors.pop(rep, None)
        if tensor is not None:
            self.session.release_tensor(tensor.data.nbytes)

    def _consume(self, rep: int) -> _HostTensor:
        """Take an ``own`` input tensor out of the table (the guest's handle is gone)."""
        tensor = self.tensors.pop(rep)
        self.session.release_tensor(tensor.data.nbytes)
        return tensor

    def _output(self, ctx: int, name: str) -> int:
        """A new tensor table entry holding a copy of an output (it outlives the next compute).

        Counted like the guest's own tensors: against :data:`MAX_LIVE` and the instance's host memory
        (an error result, since ``get-output`` and ``compute`` return one), charged before the copy.
        """
        tensor = self.session.get_output(ctx, name)
        if len(self.tensors) >= MAX_LIVE:
            raise TooLarge(
                f"{len(self.tensors)} live wasi:nn tensor resources (at most {MAX_LIVE}): "
                "drop the outputs you no longer use"
            )
        nbytes = tensor.data.nbytes
        self.session.hold_tensor(nbytes, "an output")
        try:  # one copy, in C order and little-endian whatever the backend's layout
            data = np.array(tensor.data, dtype=tensor.type.numpy_dtype, order="C").reshape(-1).view(np.uint8)
        except BaseException:
            self.session.release_tensor(nbytes)
            raise
        record_copy(nbytes)
        rep = next(self._reps)
        self.tensors[rep] = _HostTensor(tensor.dimensions, tensor.type, data)
        return rep

    # -- graphs ---------------------------------------------------------------

    def _load(self, context: Any, args: Any, results: Any, ids: dict[str, int]) -> None:
        builders = cv.take_bytes_list(args[0])
        encoding, target = cv.take_enum(args[1]), cv.take_enum(args[2])
        call = f"load({len(builders)} builders, {encoding}, {target})"
        try:
            views = [memoryview(b.data) for b in builders]
            handle = self.session.load(views, WIT_ENCODINGS[encoding], WIT_TARGETS[target])
        except Exception as exc:
            return self._fail(context, results[0], ids, call, exc)
        cv.put_result(results[0], True, lambda v: cv.put_own(context, v, handle, ids["graph"]))

    def _load_by_name(self, context: Any, args: Any, results: Any, ids: dict[str, int]) -> None:
        name = cv.take_string(args[0])
        try:
            handle = self.session.load_by_name(name)
        except Exception as exc:
            return self._fail(context, results[0], ids, f"load-by-name({name!r})", exc)
        cv.put_result(results[0], True, lambda v: cv.put_own(context, v, handle, ids["graph"]))

    def _init(self, context: Any, args: Any, results: Any, ids: dict[str, int]) -> None:
        graph = cv.take_resource(context, args[0])
        try:
            ctx = self.session.init_execution_context(graph)
        except Exception as exc:
            return self._fail(context, results[0], ids, f"graph {graph}: init-execution-context", exc)
        cv.put_result(results[0], True, lambda v: cv.put_own(context, v, ctx, ids["graph-execution-context"]))

    def _drop_graph(self, _store: Any, rep: int) -> None:
        try:
            self.session.unload(rep)
        except Exception as exc:  # the session may be closed already
            log.debug("dropping graph %d: %s", rep, exc)

    def _drop_context(self, _store: Any, rep: int) -> None:
        try:
            self.session.finalize_execution_context(rep)
        except Exception as exc:
            log.debug("dropping execution context %d: %s", rep, exc)

    # -- inference ------------------------------------------------------------

    def _set(self, ctx: int, name: str, tensor: _HostTensor) -> None:
        self.session.set_input(ctx, name, Tensor.from_guest(tensor.dimensions, tensor.type, tensor.data))

    def _compute(self, context: Any, args: Any, results: Any, ids: dict[str, int]) -> None:
        """0.2.0-rc-2024-10-28: ``compute(inputs) -> result<list<named-tensor>, error>``."""
        ctx = cv.take_resource(context, args[0])
        inputs = [(name, self._consume(rep)) for name, rep in cv.take_named_resources(context, args[1])]
        call = f"context {ctx}: compute({', '.join(name for name, _ in inputs)})"
        outputs: list[tuple[str, int]] = []
        try:
            for name, tensor in inputs:
                self._set(ctx, name, tensor)
            self.session.compute(ctx)
            for name in self.session.output_names(ctx):
                outputs.append((name, self._output(ctx, name)))
        except Exception as exc:
            for _, rep in outputs:
                self._drop_tensor(None, rep)
            return self._fail(context, results[0], ids, call, exc)
        cv.put_result(results[0], True, lambda v: cv.put_named_resources(context, v, outputs, ids["tensor"]))

    def _set_input(self, context: Any, args: Any, results: Any, ids: dict[str, int]) -> None:
        """0.2.0-rc-2024-08-19: ``set-input(name, own<tensor>) -> result<_, error>``."""
        ctx = cv.take_resource(context, args[0])
        name = cv.take_string(args[1])
        tensor = self._consume(cv.take_resource(context, args[2]))
        try:
            self._set(ctx, name, tensor)
        except Exception as exc:
            return self._fail(context, results[0], ids, f"context {ctx}: set-input({name!r})", exc)
        cv.put_result(results[0], True)

    def _compute_stateful(self, context: Any, args: Any, results: Any, ids: dict[str, int]) -> None:
        ctx = cv.take_resource(context, args[0])
        try:
            self.session.compute(ctx)
        except Exception as exc:
            return self._fail(context, results[0], ids, f"context {ctx}: compute", exc)
        cv.put_result(results[0], True)

    def _get_output(self, context: Any, args: Any, results: Any, ids: dict[str, int]) -> None:
        ctx = cv.take_resource(context, args[0])
        name = cv.take_string(args[1])
        try:
            rep = self._output(ctx, name)
        except Exception as exc:
            return self._fail(context, results[0], ids, f"context {ctx}: get-output({name!r})", exc)
        cv.put_result(results[0], True, lambda v: cv.put_own(context, v, rep, ids["tensor"]))
