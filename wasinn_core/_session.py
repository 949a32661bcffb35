"""Per-instance wasi-nn state: graph and context handles, limits, lifetimes.

A :class:`Session` is what one wasm instance (one store) sees. Handles start at
0, grow monotonically and are never reused; a released handle is invalid for
good. Every method raises a :class:`~wasinn_core.WasiNNError` subclass on
failure, so each ABI front end is a thin decoder over this class.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._backend import ExecutionContext, TensorKey
from ._config import Limits
from ._errors import Busy, InvalidArgument, TooLarge
from ._registry import GraphInfo, LoadedGraph
from ._types import ExecutionTarget, GraphEncoding, Tensor

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["Session"]

log = logging.getLogger("wasinn.session")

_MAX_HANDLE = 0xFFFF_FFFF


@dataclass(slots=True, eq=False)
class _GraphEntry:
    loaded: LoadedGraph
    shared: bool
    contexts: int = 0
    unloaded: bool = False


@dataclass(slots=True, eq=False)
class _ContextEntry:
    context: ExecutionContext
    graph: _GraphEntry
    lock: threading.Lock = field(default_factory=threading.Lock)


class Session:
    """The wasi-nn state of one instance. Create it with :meth:`Host.new_session`."""

    def __init__(self, host: Host, limits: Limits) -> None:
        self.host = host
        self.limits = limits
        self._graphs: dict[int, _GraphEntry] = {}
        self._contexts: dict[int, _ContextEntry] = {}
        self._next_graph = 0
        self._next_context = 0
        self._closed = False

    # -- handles -----------------------------------------------------------

    def _graph(self, handle: int) -> _GraphEntry:
        entry = self._graphs.get(handle)
        if entry is None:
            state = "released" if 0 <= handle < self._next_graph else "unknown"
            raise InvalidArgument(f"invalid graph handle {handle} ({state})")
        return entry

    def _context(self, handle: int) -> _ContextEntry:
        entry = self._contexts.get(handle)
        if entry is None:
            state = "released" if 0 <= handle < self._next_context else "unknown"
            raise InvalidArgument(f"invalid execution context handle {handle} ({state})")
        return entry

    @contextmanager
    def _using(self, handle: int) -> Iterator[ExecutionContext]:
        entry = self._context(handle)
        if not entry.lock.acquire(blocking=False):
            raise Busy(f"execution context {handle} is in use by another call")
        try:
            yield entry.context
        finally:
            entry.lock.release()

    def _add_graph(self, loaded: LoadedGraph, shared: bool) -> int:
        if self._next_graph > _MAX_HANDLE:
            raise Busy("graph handle space exhausted")
        handle = self._next_graph
        self._next_graph += 1
        self._graphs[handle] = _GraphEntry(loaded, shared)
        return handle

    def _check_graph_limit(self) -> None:
        limit = self.limits.max_graphs
        if limit is not None and len(self._graphs) >= limit:
            raise Busy(f"graph limit reached: {len(self._graphs)} live graphs (max_graphs = {limit})")

    # -- graphs --------------------------------------------------------------

    def load(self, builders: Sequence[memoryview], encoding: GraphEncoding, target: ExecutionTarget) -> int:
        """Load a graph from guest bytes; returns its handle."""
        self._check_open()
        self._check_graph_limit()
        total = sum(len(b) for b in builders)
        limit = self.limits.max_model_bytes
        if limit is not None and total > limit:
            raise TooLarge(f"model is {total} bytes, over the limit of {limit} (max_model_bytes)")
        loaded = self.host.registry.load(builders, encoding, (target,))
        return self._add_graph(loaded, shared=False)

    def load_by_name(self, name: str, config: bytes | None = None) -> int:
        """Load a named model (shared by every instance of the host); returns its handle.

        ``config`` is the JSON of ``load_by_name_with_config``: an object whose
        keys must be among the model's ``guest_options``.
        """
        self._check_open()
        self._check_graph_limit()
        options = self._guest_options(name, config)
        loaded = self.host.named_graph(name, options)
        return self._add_graph(loaded, shared=True)

    def _guest_options(self, name: str, config: bytes | None) -> dict[str, Any]:
        if not config:
            return {}
        try:
            options = json.loads(bytes(config).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"load_by_name_with_config({name!r}): config is not JSON: {exc}") from None
        if not isinstance(options, dict):
            raise InvalidArgument(f"load_by_name_with_config({name!r}): config must be a JSON object")
        return options

    def unload(self, graph: int) -> None:
        """Release a graph handle. Its contexts stay usable until finalized."""
        entry = self._graph(graph)
        del self._graphs[graph]
        entry.unloaded = True
        self._maybe_close_graph(entry)

    def _maybe_close_graph(self, entry: _GraphEntry) -> None:
        if entry.unloaded and entry.contexts == 0 and not entry.shared:
            entry.loaded.graph.close()

    def graph_info(self, graph: int) -> GraphInfo:
        """Encoding, requested and actual target, backend and device of a graph."""
        return self._graph(graph).loaded.info

    # -- contexts ------------------------------------------------------------

    def init_execution_context(self, graph: int) -> int:
        """A new execution context of ``graph``; returns its handle."""
        self._check_open()
        entry = self._graph(graph)
        limit = self.limits.max_contexts
        if limit is not None and len(self._contexts) >= limit:
            raise Busy(f"context limit reached: {len(self._contexts)} live contexts (max_contexts = {limit})")
        if self._next_context > _MAX_HANDLE:
            raise Busy("execution context handle space exhausted")
        context = entry.loaded.graph.init_execution_context()
        handle = self._next_context
        self._next_context += 1
        self._contexts[handle] = _ContextEntry(context, entry)
        entry.contexts += 1
        return handle

    def finalize_execution_context(self, ctx: int) -> None:
        """Release a context and everything it holds."""
        entry = self._context(ctx)
        if not entry.lock.acquire(blocking=False):
            raise Busy(f"execution context {ctx} is in use by another call")
        try:
            del self._contexts[ctx]
            entry.context.close()
        finally:
            entry.lock.release()
        entry.graph.contexts -= 1
        self._maybe_close_graph(entry.graph)

    def set_input(self, ctx: int, key: TensorKey, tensor: Tensor) -> None:
        """Set an input; ``tensor.data`` may be a borrowed view (see :class:`ExecutionContext`)."""
        expected = math.prod(tensor.dimensions) * tensor.type.itemsize
        if tensor.data.nbytes != expected:
            raise InvalidArgument(
                f"data length {tensor.data.nbytes} != {expected} bytes "
                f"(dimensions {list(tensor.dimensions)} × {tensor.type.value})"
            )
        self._check_tensor_size(expected, "input")
        with self._using(ctx) as context:
            context.set_input(key, tensor)

    def _check_tensor_size(self, nbytes: int, what: str) -> None:
        limit = self.limits.max_tensor_bytes
        if limit is not None and nbytes > limit:
            raise TooLarge(f"{what} tensor is {nbytes} bytes, over the limit of {limit} (max_tensor_bytes)")

    def compute(self, ctx: int) -> None:
        """Run inference on a context."""
        with self._using(ctx) as context:
            context.compute()

    def get_output(self, ctx: int, key: TensorKey) -> Tensor:
        """An output of the last compute, checked for consistency and size."""
        with self._using(ctx) as context:
            tensor = context.get_output(key)
        self._check_output(tensor)
        return tensor

    def _check_output(self, tensor: Tensor) -> None:
        if tensor.data.nbytes != tensor.nbytes:
            raise InvalidArgument(
                f"backend returned {tensor.data.nbytes} bytes for an output of "
                f"{list(tensor.dimensions)} × {tensor.type.value}"
            )
        self._check_tensor_size(tensor.nbytes, "output")

    def compute_single(self, ctx: int) -> None:
        """One streaming step (WasmEdge extension)."""
        with self._using(ctx) as context:
            context.compute_single()

    def get_output_single(self, ctx: int, key: TensorKey) -> Tensor:
        """Output of the last streaming step (WasmEdge extension)."""
        with self._using(ctx) as context:
            tensor = context.get_output_single(key)
        self._check_output(tensor)
        return tensor

    def fini_single(self, ctx: int) -> None:
        """Reset the streaming state (WasmEdge extension)."""
        with self._using(ctx) as context:
            context.fini_single()

    # -- lifetime ------------------------------------------------------------

    @property
    def live_graphs(self) -> int:
        """Number of live graph handles."""
        return len(self._graphs)

    @property
    def live_contexts(self) -> int:
        """Number of live execution contexts."""
        return len(self._contexts)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument("this wasi-nn session is closed")

    def close(self) -> None:
        """Release every context and graph (called when the store goes away)."""
        if self._closed:
            return
        self._closed = True
        for handle in list(self._contexts):
            entry = self._contexts.pop(handle)
            entry.context.close()
            entry.graph.contexts -= 1
            self._maybe_close_graph(entry.graph)
        for handle in list(self._graphs):
            entry_g = self._graphs.pop(handle)
            entry_g.unloaded = True
            self._maybe_close_graph(entry_g)

    def describe(self) -> Mapping[str, int]:
        """Counts for diagnostics: live graphs and contexts, handles issued."""
        return {
            "live_graphs": len(self._graphs),
            "live_contexts": len(self._contexts),
            "graph_handles_issued": self._next_graph,
            "context_handles_issued": self._next_context,
        }
