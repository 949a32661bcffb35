"""Per-instance wasi-nn state: graph and context handles, limits, lifetimes.

A :class:`Session` is what one wasm instance (one store) sees. Handles start at
0, grow monotonically and are never reused; a released handle is invalid for
good. Every method raises a :class:`~wasinn_core.WasiNNError` subclass on
failure, so each ABI front end is a thin decoder over this class.

Errors: only :class:`~wasinn_core.WasiNNError` subclasses leave a session; an
exception of a backend library becomes :class:`~wasinn_core.BackendError`
(``runtime_error``) with the library's message, the original chained.

Thread safety: the handle tables are guarded by one lock, held only while they
change (never during a backend call); each context has its own non-blocking
lock, so a second call on a context that is in use gets ``busy`` at once.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._abi._wasmedge import unload_stops_contexts, wasmedge_named
from ._backend import ExecutionContext, TensorKey
from ._config import Limits
from ._errors import BackendError, Busy, InvalidArgument, TooLarge, UnsupportedOperation, WasiNNError
from ._formats._detect import looks_like_onnx, onnx_external_data
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
    held: int = 0  # host bytes charged to the instance (guest-loaded model bytes)
    byte_inputs: bool = False  # the graph takes byte strings (Graph.byte_inputs)
    name: str | None = None  # the model name, for WasmEdge's per-name handle cache
    contexts: int = 0
    unloaded: bool = False
    closed: bool = False


@dataclass(slots=True, eq=False)
class _ContextEntry:
    context: ExecutionContext
    graph: _GraphEntry
    lock: threading.Lock = field(default_factory=threading.Lock)
    inputs: dict[TensorKey, int] = field(default_factory=dict)  # input bytes held, per key
    closed: bool = False  # set with `lock` held: a call that took the lock after finalize sees it


def _refuse_external_data(builders: Sequence[memoryview]) -> None:
    """A guest's ONNX model may not name external-data files: the library would read host files for it."""
    for builder in builders:
        try:
            locations = onnx_external_data(builder)
        except ValueError as exc:
            raise InvalidArgument(f"not a well-formed ONNX model: {exc}") from None
        if locations:
            shown = ", ".join(repr(x) for x in locations[:3])
            raise InvalidArgument(
                f"the ONNX model references external data ({shown}); a guest may not make the host read files: "
                "embed the weights in the model, or configure it as a named model"
            )


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # the load reports it


@contextmanager
def _library_errors() -> Iterator[None]:
    """Let wasinn errors through; report anything else a library raised as ``runtime_error``."""
    try:
        yield
    except WasiNNError:
        raise
    except Exception as exc:
        raise BackendError(f"{type(exc).__name__}: {exc}") from exc


class Session:
    """The wasi-nn state of one instance. Create it with :meth:`Host.new_session`."""

    def __init__(self, host: Host, limits: Limits) -> None:
        self.host = host
        self.limits = limits
        self._graphs: dict[int, _GraphEntry] = {}
        self._contexts: dict[int, _ContextEntry] = {}
        self._next_graph = 0
        self._next_context = 0
        self._by_name: dict[str, int] = {}  # WasmEdge's rule for GGML: one handle per name until unloaded
        self._pending_graphs = 0
        self._held = 0
        self._closed = False
        self._lock = threading.RLock()

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

    def _acquire(self, handle: int) -> _ContextEntry:
        """The context ``handle`` with its lock taken: ``busy`` while another call holds it."""
        entry = self._context(handle)
        if not entry.lock.acquire(blocking=False):
            raise Busy(f"execution context {handle} is in use by another call")
        if entry.closed:  # finalized between the lookup and the lock
            entry.lock.release()
            raise InvalidArgument(f"invalid execution context handle {handle} (released)")
        return entry

    @contextmanager
    def _using(self, handle: int) -> Iterator[_ContextEntry]:
        entry = self._acquire(handle)
        try:
            with _library_errors():
                yield entry
        finally:
            entry.lock.release()

    @contextmanager
    def _graph_slot(self, held: int) -> Iterator[None]:
        """Reserve room for one more graph (and ``held`` host bytes) while it loads."""
        with self._lock:
            self._check_open()
            limit = self.limits.max_graphs
            live = len(self._graphs) + self._pending_graphs
            if limit is not None and live >= limit:
                raise Busy(f"graph limit reached: {live} live graphs (max_graphs = {limit})")
            if self._next_graph + self._pending_graphs > _MAX_HANDLE:
                raise Busy("graph handle space exhausted")
            self._charge(held, "a model of")
            self._pending_graphs += 1
        try:
            with _library_errors():
                yield
        except BaseException:
            with self._lock:
                self._held -= held
            raise
        finally:
            with self._lock:
                self._pending_graphs -= 1

    def _charge(self, nbytes: int, what: str) -> None:
        """Account ``nbytes`` more host memory to the instance (call with the lock held)."""
        limit = self.limits.max_host_memory_bytes
        if limit is not None and self._held + nbytes > limit:
            raise TooLarge(
                f"{what} {nbytes} bytes would make this instance hold {self._held + nbytes} bytes of host "
                f"memory, over the limit of {limit} (max_host_memory_bytes)"
            )
        self._held += nbytes

    def _add_graph(self, loaded: LoadedGraph, shared: bool, held: int, name: str | None = None) -> int:
        byte_inputs = bool(getattr(loaded.graph, "byte_inputs", False))
        with self._lock:
            if self._closed:  # closed while the graph loaded: nobody can use it
                if not shared:
                    loaded.graph.close()
                raise InvalidArgument("this wasi-nn session is closed")
            handle = self._next_graph
            self._next_graph += 1
            self._graphs[handle] = _GraphEntry(loaded, shared, held, byte_inputs, name)
            if name is not None:
                self._by_name[name] = handle
            return handle

    # -- graphs --------------------------------------------------------------

    def load(self, builders: Sequence[memoryview], encoding: GraphEncoding, target: ExecutionTarget) -> int:
        """Load a graph from guest bytes; returns its handle."""
        total = sum(len(b) for b in builders)
        limit = self.limits.max_model_bytes
        if limit is not None and total > limit:
            raise TooLarge(f"model is {total} bytes, over the limit of {limit} (max_model_bytes)")
        registry = self.host.registry
        encoding = registry.resolve_encoding(builders, encoding)
        allowed = self.host.config.guest_load
        if allowed is not None and encoding not in allowed:
            raise UnsupportedOperation(
                f"guest-supplied {encoding.value} models are disabled by policy.guest_load; "
                "ask the host for a named model (load_by_name)"
            )
        # whatever the encoding: OpenVINO reads ONNX under other encodings too, and follows its paths
        onnx = builders if encoding is GraphEncoding.ONNX else [b for b in builders if looks_like_onnx(b)]
        _refuse_external_data(onnx)
        with self._graph_slot(total):
            loaded = registry.load(builders, encoding, (target,), guest=True, limits=self.limits, domain=self)
            return self._add_graph(loaded, shared=False, held=total)

    def load_by_name(self, name: str, config: bytes | None = None) -> int:
        """Load a named model (shared by every instance of the host); returns its handle.

        ``config`` is the JSON of ``load_by_name_with_config``: an object whose
        keys must be among the model's ``guest_options``. Overrides that change
        the model's options load a build of its own for this instance, charged
        to ``max_host_memory_bytes`` with the size of the model's files and
        released on ``unload``. A GGML model follows WasmEdge instead
        (:mod:`wasinn_core._abi._wasmedge`): the config is backend metadata, and the
        name keeps one handle until it is unloaded.
        """
        model = self.host.config.model(name)
        if model is not None and wasmedge_named(model):
            return self._load_wasmedge(name, config)
        options = self.host.guest_build_options(name, self._guest_options(name, config))
        if options is None:
            with self._graph_slot(0):
                return self._add_graph(self.host.named_graph(name), shared=True, held=0)
        # the guest's overrides need a build of their own: the instance owns it, charged like a load
        held = sum(_file_size(p) for p in model.paths) if model is not None else 0
        with self._graph_slot(held):
            return self._add_graph(self.host.build_named(name, options), shared=False, held=held)

    def _load_wasmedge(self, name: str, config: bytes | None) -> int:
        with self._lock:
            cached = self._by_name.get(name)
            if cached is not None and cached in self._graphs:
                return cached  # WasmEdge: the same handle, the config ignored, until unloaded
        # with a config the graph is this instance's own (closed at unload); without, shared
        held = len(config) if config else 0
        with self._graph_slot(held):
            loaded = self.host.named_graph_with_metadata(name, config or None)
            return self._add_graph(loaded, shared=not config, held=held, name=name)

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
        with self._lock:
            entry = self._graph(graph)
            del self._graphs[graph]
            entry.unloaded = True
            if entry.name is not None and self._by_name.get(entry.name) == graph:
                del self._by_name[entry.name]
        self._maybe_close_graph(entry)

    def _maybe_close_graph(self, entry: _GraphEntry) -> None:
        with self._lock:
            if not (entry.unloaded and entry.contexts == 0) or entry.closed:
                return
            self._held -= entry.held
            entry.closed = True
        if not entry.shared:
            with _library_errors():
                entry.loaded.graph.close()

    def graph_info(self, graph: int) -> GraphInfo:
        """Encoding, requested and actual target, backend and device of a graph."""
        return self._graph(graph).loaded.info

    # -- contexts ------------------------------------------------------------

    def init_execution_context(self, graph: int) -> int:
        """A new execution context of ``graph``; returns its handle."""
        with self._lock:
            self._check_open()
            entry = self._graph(graph)
            limit = self.limits.max_contexts
            if limit is not None and len(self._contexts) >= limit:
                raise Busy(f"context limit reached: {len(self._contexts)} live contexts (max_contexts = {limit})")
            if self._next_context > _MAX_HANDLE:
                raise Busy("execution context handle space exhausted")
            entry.contexts += 1  # keeps the graph alive while its context is made
        try:
            with _library_errors():
                context = entry.loaded.graph.init_execution_context()
        except BaseException:
            with self._lock:
                entry.contexts -= 1
            raise
        with self._lock:
            if not self._closed:
                handle = self._next_context
                self._next_context += 1
                self._contexts[handle] = _ContextEntry(context, entry)
                return handle
            entry.contexts -= 1  # the session closed while the context was made: nobody can use it
        with _library_errors():
            context.close()
        self._close_quietly(entry)
        raise InvalidArgument("this wasi-nn session is closed")

    def finalize_execution_context(self, ctx: int) -> None:
        """Release a context and everything it holds."""
        entry = self._acquire(ctx)
        try:
            self._release_context(ctx, entry)
        finally:
            entry.lock.release()
        self._maybe_close_graph(entry.graph)

    def _release_context(self, handle: int, entry: _ContextEntry) -> None:
        """Close a context; call with ``entry.lock`` held, so no call runs on it meanwhile or after."""
        with self._lock:
            if entry.closed:
                return
            entry.closed = True
            self._contexts.pop(handle, None)
            self._held -= sum(entry.inputs.values())
            entry.inputs.clear()
        try:
            with _library_errors():
                entry.context.close()
        finally:
            with self._lock:
                entry.graph.contexts -= 1

    def set_input(self, ctx: int, key: TensorKey, tensor: Tensor) -> None:
        """Set an input; ``tensor.data`` may be a borrowed view (see :class:`ExecutionContext`)."""
        expected = tensor.data.nbytes
        fits = math.prod(tensor.dimensions) * tensor.type.itemsize
        if expected != fits and not self._takes_bytes(ctx):
            raise InvalidArgument(
                f"data length {expected} != {fits} bytes (dimensions {list(tensor.dimensions)} × {tensor.type.value})"
            )
        self._check_tensor_size(expected, "input")
        # The hot path of every inference: no context managers, the session lock only when sizes change.
        entry = self._acquire(ctx)
        try:
            self._check_graph_loaded(ctx, entry)
            delta = expected - entry.inputs.get(key, 0)
            if delta:
                with self._lock:
                    if delta > 0:
                        self._charge(delta, "an input of")
                    else:
                        self._held += delta
            try:
                entry.context.set_input(key, tensor)
            except BaseException as exc:
                if delta:
                    with self._lock:
                        self._held -= delta
                if isinstance(exc, WasiNNError) or not isinstance(exc, Exception):
                    raise
                raise BackendError(f"{type(exc).__name__}: {exc}") from exc
            if delta:
                entry.inputs[key] = expected
            self.host.stats.bytes_in += expected
        finally:
            entry.lock.release()

    @staticmethod
    def _check_graph_loaded(ctx: int, entry: _ContextEntry) -> None:
        graph = entry.graph
        if graph.unloaded and unload_stops_contexts(graph.loaded.info.encoding):
            raise InvalidArgument(f"execution context {ctx}: its graph was unloaded (outputs stay readable)")

    def _takes_bytes(self, ctx: int) -> bool:
        entry = self._contexts.get(ctx)
        return entry is not None and entry.graph.byte_inputs

    def _check_tensor_size(self, nbytes: int, what: str) -> None:
        limit = self.limits.max_tensor_bytes
        if limit is not None and nbytes > limit:
            raise TooLarge(f"{what} tensor is {nbytes} bytes, over the limit of {limit} (max_tensor_bytes)")

    def hold_tensor(self, nbytes: int, what: str) -> None:
        """Charge a tensor the host keeps for the guest (a WIT tensor resource) to this instance.

        ``TooLarge`` when it is over ``max_tensor_bytes`` or would pass ``max_host_memory_bytes``;
        :meth:`release_tensor` gives the bytes back.
        """
        self._check_tensor_size(nbytes, what)
        with self._lock:
            self._charge(nbytes, f"{what} tensor of")

    def release_tensor(self, nbytes: int) -> None:
        """Give back what :meth:`hold_tensor` charged."""
        with self._lock:
            self._held -= nbytes

    def output_names(self, ctx: int) -> list[str]:
        """The names of the outputs of the last compute, in order (for the named WIT ABIs)."""
        entry = self._context(ctx)
        with _library_errors():
            return [str(name) for name in entry.context.output_names()]

    def compute(self, ctx: int) -> None:
        """Run inference on a context."""
        entry = self._acquire(ctx)
        try:
            self._check_graph_loaded(ctx, entry)
            entry.context.compute()
            self.host.stats.computes += 1
        except WasiNNError:
            raise
        except Exception as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            entry.lock.release()

    def get_output(self, ctx: int, key: TensorKey) -> Tensor:
        """An output of the last compute, checked for consistency and size.

        Its data is valid until the next ``compute`` on the context (backends may reuse buffers).
        """
        entry = self._acquire(ctx)
        try:
            tensor = entry.context.get_output(key)
        except WasiNNError:
            raise
        except Exception as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            entry.lock.release()
        self._check_output(tensor)
        return tensor

    def _check_output(self, tensor: Tensor) -> None:
        if tensor.data.nbytes != math.prod(tensor.dimensions) * tensor.type.itemsize:
            raise InvalidArgument(
                f"backend returned {tensor.data.nbytes} bytes for an output of "
                f"{list(tensor.dimensions)} × {tensor.type.value}"
            )
        self._check_tensor_size(tensor.nbytes, "output")

    def compute_single(self, ctx: int) -> None:
        """One streaming step (WasmEdge extension)."""
        # called once per generated token: the hot path of streaming guests, so no context managers
        entry = self._context(ctx)
        if not entry.lock.acquire(blocking=False):
            raise Busy(f"execution context {ctx} is in use by another call")
        try:
            self._check_graph_loaded(ctx, entry)
            entry.context.compute_single()
        except WasiNNError:
            raise
        except Exception as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            entry.lock.release()

    def get_output_single(self, ctx: int, key: TensorKey) -> Tensor:
        """Output of the last streaming step (WasmEdge extension)."""
        entry = self._context(ctx)
        if not entry.lock.acquire(blocking=False):
            raise Busy(f"execution context {ctx} is in use by another call")
        try:
            tensor = entry.context.get_output_single(key)
        except WasiNNError:
            raise
        except Exception as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            entry.lock.release()
        self._check_output(tensor)
        return tensor

    def fini_single(self, ctx: int) -> None:
        """Reset the streaming state (WasmEdge extension)."""
        with self._using(ctx) as entry:
            entry.context.fini_single()

    # -- lifetime ------------------------------------------------------------

    @property
    def live_graphs(self) -> int:
        """Number of live graph handles."""
        return len(self._graphs)

    @property
    def live_contexts(self) -> int:
        """Number of live execution contexts."""
        return len(self._contexts)

    @property
    def held_bytes(self) -> int:
        """Host memory charged to this instance (guest-loaded models and live inputs)."""
        return self._held

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument("this wasi-nn session is closed")

    def close(self) -> None:
        """Release every context and graph (called when the store goes away)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            contexts = list(self._contexts.items())
            graphs, self._graphs = list(self._graphs.values()), {}
        for handle, entry in contexts:
            with entry.lock:  # a call in flight on the context finishes first
                try:
                    self._release_context(handle, entry)
                except WasiNNError as exc:  # closing is best effort: the rest is still released
                    log.warning("closing execution context %d: %s", handle, exc.message)
            self._close_quietly(entry.graph)
        for graph in graphs:
            graph.unloaded = True
            self._close_quietly(graph)
        self.host.registry.isolator.release(self)

    def _close_quietly(self, graph: _GraphEntry) -> None:
        try:
            self._maybe_close_graph(graph)
        except WasiNNError as exc:
            log.warning("closing a graph: %s", exc.message)

    def describe(self) -> Mapping[str, int]:
        """Counts for diagnostics: live graphs and contexts, handles issued, host bytes held."""
        return {
            "live_graphs": len(self._graphs),
            "live_contexts": len(self._contexts),
            "graph_handles_issued": self._next_graph,
            "context_handles_issued": self._next_context,
            "held_bytes": self._held,
        }
