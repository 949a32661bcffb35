"""The worker side: one backend, at most one graph, its contexts; requests served one at a time.

Forked by the zygote (:mod:`._zygote`), a worker confines itself first, while it is still the only
thread of its process (:func:`~._confine.confine`), then creates the backend from its factory
(``module:qualname``) unless the zygote already did, caps its address space, says it is ready and
answers the host's requests until the host closes the socket. Tensors arrive and leave through
arenas the host shares (:class:`~._arena.Arena`); replies carry shapes, types and offsets only.
"""

from __future__ import annotations

import importlib
import os
import resource
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import Backend, ExecutionContext, Graph, TensorKey
from .._errors import InvalidArgument, UnsupportedOperation
from .._types import ExecutionTarget, GraphEncoding, Tensor, TensorType
from ._arena import Arena
from ._channel import Channel, ChannelClosed, error_reply
from ._confine import cap_address_space, confine

__all__ = ["make_backend", "run_worker"]

_ALIGN = 64


def make_backend(factory: str) -> Backend:
    """The backend its factory ``module:qualname`` makes."""
    module, _, qualname = factory.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    backend = target()
    if not isinstance(backend, Backend):
        raise TypeError(f"{factory} made a {type(backend).__name__}, not a Backend")
    return backend


def _key(value: Any) -> TensorKey:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidArgument(f"bad tensor key {value!r}")
    return value


class _Context:
    __slots__ = ("context", "inputs", "outputs")

    def __init__(self, context: ExecutionContext) -> None:
        self.context = context
        self.inputs: Arena | None = None
        self.outputs: Arena | None = None


class _Server:
    def __init__(self, channel: Channel, backend: Backend) -> None:
        self.channel = channel
        self.backend = backend
        self.graph: Graph | None = None
        self.contexts: dict[int, _Context] = {}
        self.next_context = 0
        self.pending_fds: list[int] = []

    # -- requests ---------------------------------------------------------------------------

    def load(self, m: dict[str, Any]) -> dict[str, Any]:
        if self.graph is not None:
            raise InvalidArgument("this worker already holds a graph")
        arena = Arena.attach(self._fd(), populate=True)
        try:
            builders = [arena.region(int(o), int(n)).data for o, n in m["builders"]]
            graph = self.backend.load(
                builders, GraphEncoding(m["encoding"]), ExecutionTarget(m["target"]), dict(m["options"])
            )
            del builders
        finally:
            arena.close()  # stays mapped while the library keeps a view of it
        self.graph = graph
        return {"device": str(graph.device or ""), "byte_inputs": bool(graph.byte_inputs)}

    def close_graph(self, m: dict[str, Any]) -> dict[str, Any]:
        for ctx in list(self.contexts):
            self._drop(ctx)
        if self.graph is not None:
            graph, self.graph = self.graph, None
            graph.close()
        return {}

    def init(self, m: dict[str, Any]) -> dict[str, Any]:
        if self.graph is None:
            raise InvalidArgument("no graph is loaded in this worker")
        context = self.graph.init_execution_context()
        handle = self.next_context
        self.next_context += 1
        self.contexts[handle] = _Context(context)
        return {"ctx": handle}

    def close_context(self, m: dict[str, Any]) -> dict[str, Any]:
        self._drop(int(m["ctx"]))
        return {}

    def _drop(self, handle: int) -> None:
        entry = self.contexts.pop(handle, None)
        if entry is None:
            return
        entry.context.close()
        for arena in (entry.inputs, entry.outputs):
            if arena is not None:
                arena.close()

    def arena(self, m: dict[str, Any]) -> dict[str, Any]:
        entry = self._context(m)
        new = Arena.attach(self._fd())
        old = entry.inputs if m["which"] == "in" else entry.outputs
        if m["which"] == "in":
            entry.inputs = new
        else:
            entry.outputs = new
        if old is not None:
            old.close()
        return {"size": new.size}

    def set_input(self, m: dict[str, Any]) -> dict[str, Any]:
        self._set(self._context(m), m)
        return {}

    def set_inputs(self, m: dict[str, Any]) -> dict[str, Any]:
        entry = self._context(m)
        for request in m.get("inputs") or ():
            self._set(entry, request)
        return {}

    def _set(self, entry: _Context, m: dict[str, Any]) -> None:
        if entry.inputs is None:
            raise InvalidArgument("no input arena")
        ttype = TensorType(m["type"])
        dims = tuple(int(d) for d in m["dims"])
        data = entry.inputs.region(int(m["offset"]), int(m["nbytes"]))
        byte_inputs = self.graph is not None and self.graph.byte_inputs  # GGML prompts: bytes, whatever the dims
        tensor = Tensor.from_guest(dims, ttype, data) if byte_inputs else Tensor.from_buffer(dims, ttype, data)
        entry.context.set_input(_key(m["key"]), tensor)

    def compute(self, m: dict[str, Any]) -> dict[str, Any]:
        entry = self._context(m)
        self.set_inputs(m)
        entry.context.compute()
        return self._write_all(entry)

    def write_outputs(self, m: dict[str, Any]) -> dict[str, Any]:
        return self._write_all(self._context(m))

    def _write_all(self, entry: _Context) -> dict[str, Any]:
        """Every output of the last compute into the output arena, when the backend names them."""
        try:
            names = [str(n) for n in entry.context.output_names()]
        except UnsupportedOperation:
            return {"outputs": None}
        metas: list[dict[str, Any]] = []
        tensors: list[Tensor | None] = []
        total = 0
        for index, name in enumerate(names):
            try:
                tensor = entry.context.get_output(index)
            except Exception as exc:  # reported when that output is asked for
                metas.append({"name": name, "error": error_reply(exc)})
                tensors.append(None)
                continue
            metas.append({"name": name, "offset": total, **_meta(tensor)})
            tensors.append(tensor)
            total += -(-tensor.data.nbytes // _ALIGN) * _ALIGN
        if entry.outputs is None or total > entry.outputs.size:
            return {"outputs": metas, "written": False, "need": total}
        for meta, written in zip(metas, tensors, strict=True):
            if written is not None:
                _write(entry.outputs, meta["offset"], written)
        return {"outputs": metas, "written": True}

    def get_output(self, m: dict[str, Any]) -> dict[str, Any]:
        entry = self._context(m)
        return self._write_one(entry, lambda: entry.context.get_output(_key(m["key"])))

    def get_output_single(self, m: dict[str, Any]) -> dict[str, Any]:
        entry = self._context(m)
        return self._write_one(entry, lambda: entry.context.get_output_single(_key(m["key"])))

    def _write_one(self, entry: _Context, get: Callable[[], Tensor]) -> dict[str, Any]:
        tensor = get()
        meta = {"offset": 0, **_meta(tensor)}
        if entry.outputs is None or tensor.data.nbytes > entry.outputs.size:
            return {"need": tensor.data.nbytes, **meta}
        _write(entry.outputs, 0, tensor)
        return meta

    def output_names(self, m: dict[str, Any]) -> dict[str, Any]:
        return {"names": [str(n) for n in self._context(m).context.output_names()]}

    def compute_single(self, m: dict[str, Any]) -> dict[str, Any]:
        entry = self._context(m)
        self.set_inputs(m)
        entry.context.compute_single()
        return {}

    def fini_single(self, m: dict[str, Any]) -> dict[str, Any]:
        self._context(m).context.fini_single()
        return {}

    # -- plumbing ---------------------------------------------------------------------------

    def _context(self, m: dict[str, Any]) -> _Context:
        entry = self.contexts.get(int(m["ctx"]))
        if entry is None:
            raise InvalidArgument(f"no context {m['ctx']} in this worker")
        return entry

    def _fd(self) -> int:
        if not self.pending_fds:
            raise InvalidArgument("the request carries no arena")
        return self.pending_fds.pop(0)

    def serve(self) -> None:
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            name: getattr(self, name)
            for name in (
                "load", "close_graph", "init", "close_context", "arena", "set_input", "set_inputs", "compute",
                "write_outputs",
                "get_output", "get_output_single", "output_names", "compute_single", "fini_single",
            )
        }  # fmt: skip
        while True:
            try:
                message, self.pending_fds = self.channel.receive_with_fds()
            except ChannelClosed:
                return
            handler = handlers.get(str(message.get("op")))
            try:
                if handler is None:
                    raise InvalidArgument(f"unknown request {message.get('op')!r}")
                reply = {"ok": True, **handler(message)}
            except Exception as exc:
                reply = error_reply(exc)
            finally:
                for fd in self.pending_fds:
                    os.close(fd)
                self.pending_fds = []
            self.channel.send(reply)


def _meta(tensor: Tensor) -> dict[str, Any]:
    return {"dims": [int(d) for d in tensor.dimensions], "type": tensor.type.value, "nbytes": int(tensor.data.nbytes)}


def _write(arena: Arena, offset: int, tensor: Tensor) -> None:
    data = tensor.data
    if not data.flags.c_contiguous or data.dtype.byteorder == ">":
        data = np.ascontiguousarray(data, dtype=tensor.type.numpy_dtype)
    arena.view[offset : offset + data.nbytes] = data.reshape(-1).view(np.uint8)


def run_worker(fd: int, params: dict[str, Any], backend: Backend | None) -> None:
    """A forked worker's life: confine, make the backend, report ready, serve, exit."""
    channel = Channel(socket.socket(fileno=fd))
    started = time.monotonic()
    report: dict[str, Any] = {"landlock_abi": 0, "seccomp": False}
    try:
        scratch = params["scratch"]
        os.makedirs(scratch, mode=0o700, exist_ok=True)
        if params["confine"]:
            report = confine(params["read"], [scratch])
        else:
            _die_with_parent()
        os.chdir(scratch)
        os.environ.update(HOME=scratch, TMPDIR=scratch)
        if backend is None:  # the zygote could not keep the library: import and warm it up here, confined
            backend = make_backend(params["factory"])
            backend.warm_up()
        if params.get("memory_bytes") is not None:
            cap_address_space(int(params["memory_bytes"]))
            limit = int(params["memory_bytes"])  # and one scratch file: a worker cannot fill the disk in one go
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    except BaseException as exc:
        channel.send(error_reply(exc))
        os._exit(1)
    channel.send({"ok": True, "pid": os.getpid(), "confinement": report, "startup_s": time.monotonic() - started})
    _Server(channel, backend).serve()
    backend.close()
    os._exit(0)


def _die_with_parent() -> None:
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
