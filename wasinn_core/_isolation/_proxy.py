"""A backend in a worker process, behind the ordinary Backend / Graph / ExecutionContext API.

:class:`ProcessBackend` forks a worker from the backend's zygote for every graph it loads. Inputs go
guest memory → arena (the host's one copy in), outputs arena → guest memory (the host's one copy out);
the worker's library reads and writes the arenas in place of host memory. When the backend names its
outputs, ``compute`` brings every output's shape back with its reply and ``get_output`` needs no
round trip. Everything the worker says is checked before the host uses it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

import numpy as np

from .._backend import Backend, ExecutionContext, Graph, TensorKey
from .._errors import BackendError, WasiNNError
from .._stats import record_copy
from .._types import ExecutionTarget, GraphEncoding, Tensor, TensorType
from ._arena import Arena
from ._channel import error_from_reply
from ._workers import Worker, Zygote

__all__ = ["Deadlines", "ProcessBackend", "ProcessContext", "ProcessGraph"]

_MAX_RANK = 64
#: Seconds any call other than load and compute may take when no compute deadline is configured.
CONTROL_S = 60.0


@final
@dataclass(frozen=True, slots=True)
class Deadlines:
    """Seconds a worker may take to load and to compute (``None``: no limit), from the limits."""

    load_s: float | None = None
    compute_s: float | None = None

    @property
    def control_s(self) -> float:
        return max(CONTROL_S, self.compute_s or 0.0)


@final
class ProcessBackend(Backend):
    """Loads every graph into a worker of its own, forked from ``zygote``.

    :param memory_bytes: address space a worker may add to what it had when it started.
    """

    def __init__(
        self, zygote: Zygote, params: Mapping[str, Any], deadlines: Deadlines, domain: object | None = None
    ) -> None:
        self.zygote = zygote
        self.params = dict(params)
        self.deadlines = deadlines
        self.domain = domain

    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        target: ExecutionTarget,
        options: Mapping[str, Any],
    ) -> Graph:
        worker = self.zygote.take(self.params, self.domain)
        fd = -1
        try:
            fd, spans = Arena.sealed_copy(builders, "wasinn-model")
            reply = worker.call(
                {"op": "load", "builders": spans, "encoding": encoding.value, "target": target.value,
                 "options": dict(options)},
                self.deadlines.load_s,
                "load_timeout_s",
                [fd],
            )  # fmt: skip
        except BaseException:
            self.zygote.give_back(worker, self.domain)  # a refused model leaves the worker usable by its guest
            raise
        finally:
            if fd >= 0:
                os.close(fd)
            self.zygote.replenish(self.params)
        graph = ProcessGraph(worker, str(reply.get("device", ""))[:200], self.deadlines, self.domain)
        graph.byte_inputs = reply.get("byte_inputs") is True
        return graph


@final
class ProcessGraph(Graph):
    """A graph living in a worker; closing it ends the worker."""

    def __init__(self, worker: Worker, device: str, deadlines: Deadlines, domain: object | None) -> None:
        self.worker = worker
        self.device = device
        self.deadlines = deadlines
        self.domain = domain

    def init_execution_context(self) -> ExecutionContext:
        reply = self.worker.call({"op": "init"}, self.deadlines.control_s, "compute_timeout_s")
        handle = reply.get("ctx")
        if not isinstance(handle, int):
            raise self._protocol(f"init answered ctx={handle!r}")
        return ProcessContext(self, handle)

    def _protocol(self, what: str) -> BackendError:
        self.worker.close()
        return BackendError(f"the {self.worker.name} broke the protocol ({what}); it was killed")

    def close(self) -> None:
        self.worker.zygote.give_back(self.worker, self.domain)


class _Output:
    __slots__ = ("error", "name", "tensor")

    def __init__(self, name: str, tensor: Tensor | None, error: WasiNNError | None) -> None:
        self.name, self.tensor, self.error = name, tensor, error


@final
class ProcessContext(ExecutionContext):
    """An execution context in a worker, with an input and an output arena of its own."""

    def __init__(self, graph: ProcessGraph, handle: int) -> None:
        self.graph = graph
        self.worker = graph.worker
        self.handle = handle
        self.inputs: Arena | None = None
        self.outputs: Arena | None = None
        self._outputs: list[_Output] | None = None
        self._control = graph.deadlines.control_s
        # Inputs: each key has its own slot in the input arena. The first set_input of a (key, shape,
        # type) is checked by the worker at once; a repeat cannot fail differently (a backend checks
        # keys, shapes and types, not data; byte-string inputs excepted, which are always sent at once),
        # so it is only copied and rides along with the next compute.
        self._slots: dict[TensorKey, tuple[int, int]] = {}
        self._top = 0
        self._accepted: set[tuple[TensorKey, tuple[int, ...], str]] = set()
        self._deferred: dict[TensorKey, dict[str, Any]] = {}
        # the last compute's output descriptions, and what was made of them (checked once)
        self._last_metas: list[Any] | None = None
        self._last_arena: Arena | None = None
        self._last_outputs: list[_Output] | None = None

    def _call(self, op: str, limit_s: float | None = None, **fields: Any) -> dict[str, Any]:
        return self.worker.call(
            {"op": op, "ctx": self.handle, **fields},
            self._control if limit_s is None else limit_s,
            "compute_timeout_s",
        )

    def _arena(self, which: str, nbytes: int) -> Arena:
        """The input or output arena, replaced by a bigger one when ``nbytes`` do not fit.

        A new input arena starts empty: deferred inputs are handed over first, and slots are laid out again.
        """
        current = self.inputs if which == "in" else self.outputs
        if current is not None and current.size >= nbytes:
            return current
        if which == "in" and self._deferred:
            self._call("set_inputs", inputs=list(self._deferred.values()))
            self._deferred.clear()
        arena = Arena.create(max(nbytes, 2 * current.size if current else 0), f"wasinn-{which}")
        try:
            self.worker.call(
                {"op": "arena", "ctx": self.handle, "which": which}, self._control, "compute_timeout_s", [arena.fd]
            )
        except BaseException:
            arena.close()
            raise
        if which == "in":
            self.inputs = arena
            self._slots, self._top = {}, 0
        else:
            self.outputs = arena
        if current is not None:
            current.close()
        return arena

    def _slot(self, key: TensorKey, nbytes: int) -> tuple[Arena, int]:
        """Where input ``key`` of ``nbytes`` goes in the input arena."""
        slot = self._slots.get(key)
        if self.inputs is not None and slot is not None and slot[1] >= nbytes:
            return self.inputs, slot[0]
        size = -(-max(nbytes, 1) // 64) * 64
        if self.inputs is None or self._top + size > self.inputs.size:
            self._arena("in", max(self._top + size, sum(n for _, n in self._slots.values()) + size))
        assert self.inputs is not None
        offset, self._top = self._top, self._top + size
        self._slots[key] = (offset, size)
        return self.inputs, offset

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        nbytes = tensor.data.nbytes
        arena, offset = self._slot(key, nbytes)
        data = tensor.data if tensor.data.flags.c_contiguous else np.ascontiguousarray(tensor.data)
        arena.view[offset : offset + nbytes] = data.reshape(-1).view(np.uint8)  # the host's one copy in
        record_copy(nbytes)
        signature = (key, tensor.dimensions, tensor.type.value)
        request = {"key": key, "dims": list(tensor.dimensions), "type": tensor.type.value, "offset": offset,
                   "nbytes": nbytes}  # fmt: skip
        if signature in self._accepted and not self.graph.byte_inputs:  # byte inputs are parsed (GGML metadata)
            self._deferred[key] = request
            return
        self._deferred.pop(key, None)
        self._call("set_input", None, **request)
        self._accepted.add(signature)

    def _inputs(self) -> list[dict[str, Any]]:
        deferred = list(self._deferred.values())
        self._deferred.clear()
        return deferred

    def compute(self) -> None:
        self._outputs = None
        reply = self._call("compute", self.graph.deadlines.compute_s, inputs=self._inputs())
        self._take_outputs(reply)

    def _take_outputs(self, reply: dict[str, Any]) -> None:
        metas = reply.get("outputs")
        if metas is None:
            return  # the backend does not name its outputs: each is fetched when asked for
        if not isinstance(metas, list):
            raise self.graph._protocol("compute answered outputs that are not a list")
        if not reply.get("written"):
            need = reply.get("need")
            if not isinstance(need, int) or need < 0:
                raise self.graph._protocol(f"compute asked for {need!r} output bytes")
            self._arena("out", need)
            reply = self._call("write_outputs")
            metas = reply.get("outputs")
            if not isinstance(metas, list) or not reply.get("written"):
                raise self.graph._protocol("outputs not written after the output arena grew")
        if metas == self._last_metas and self.outputs is self._last_arena and self._last_outputs is not None:
            self._outputs = self._last_outputs  # the same outputs at the same places: checked last time
            return
        outputs = []
        for meta in metas:
            if not isinstance(meta, dict):
                raise self.graph._protocol("an output description is not an object")
            name = str(meta.get("name", ""))[:1000]
            error = meta.get("error")
            if isinstance(error, dict):
                outputs.append(_Output(name, None, error_from_reply(error, "get_output")))
            else:
                outputs.append(_Output(name, self._tensor(meta), None))
        self._outputs = outputs
        self._last_metas, self._last_arena, self._last_outputs = metas, self.outputs, outputs

    def _tensor(self, meta: dict[str, Any]) -> Tensor:
        """The output a worker described, checked against its arena."""
        dims, type_name, offset, nbytes = meta.get("dims"), meta.get("type"), meta.get("offset"), meta.get("nbytes")
        try:
            ttype = TensorType(type_name)
            if not isinstance(dims, list) or len(dims) > _MAX_RANK:
                raise ValueError(f"dimensions {dims!r}")
            shape = tuple(int(d) for d in dims)
            if any(d < 0 or type(d) is not int for d in dims) or not isinstance(offset, int):
                raise ValueError(f"dimensions {dims!r} at {offset!r}")
            if nbytes != math.prod(shape) * ttype.itemsize:
                raise ValueError(f"{nbytes!r} bytes for {list(shape)} × {ttype.value}")
            if self.outputs is None:
                raise ValueError("an output without an output arena")
            region = self.outputs.region(offset, nbytes)
        except (ValueError, TypeError) as exc:
            raise self.graph._protocol(f"bad output: {exc}") from None
        return Tensor.from_buffer(shape, ttype, region)

    def get_output(self, key: TensorKey) -> Tensor:
        outputs = self._outputs
        if outputs is not None:
            found: _Output | None = None
            if isinstance(key, int):
                found = outputs[key] if 0 <= key < len(outputs) else None
            else:
                found = next((o for o in outputs if o.name == key), None)
            if found is not None:
                if found.error is not None:
                    raise found.error
                assert found.tensor is not None
                return found.tensor
        return self._fetch("get_output", key)  # out of range, another name for it, or unnamed outputs

    def _fetch(self, op: str, key: TensorKey) -> Tensor:
        reply = self._call(op, key=key)
        need = reply.get("need")
        if need is not None:
            if not isinstance(need, int) or need < 0:
                raise self.graph._protocol(f"{op} asked for {need!r} bytes")
            self._arena("out", need)
            reply = self._call(op, key=key)
            if reply.get("need") is not None:
                raise self.graph._protocol(f"{op} still needs more room")
        return self._tensor(reply)

    def output_names(self) -> Sequence[str]:
        if self._outputs is not None:
            return [o.name for o in self._outputs]
        names = self._call("output_names").get("names")
        if not isinstance(names, list):
            raise self.graph._protocol("output_names is not a list")
        return [str(n)[:1000] for n in names]

    def compute_single(self) -> None:
        self._outputs = None
        self._call("compute_single", self.graph.deadlines.compute_s, inputs=self._inputs())

    def get_output_single(self, key: TensorKey) -> Tensor:
        return self._fetch("get_output_single", key)

    def fini_single(self) -> None:
        self._call("fini_single")

    def close(self) -> None:
        self._outputs = None
        self._deferred.clear()
        if self.worker.dead is None:
            with contextlib.suppress(BackendError):
                self._call("close_context")
        for arena in (self.inputs, self.outputs):
            if arena is not None:
                arena.close()
        self.inputs = self.outputs = None
