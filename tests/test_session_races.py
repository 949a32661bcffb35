"""Regression tests for what a review found in the session and the named-model cache.

- ``finalize_execution_context`` kept the context's lock only until the context left the table, so a call
  that had looked the context up could take the lock afterwards: it charged bytes to a dead entry (never
  returned, a false ``too_large`` later) and ran on a closed context. ``close`` closed contexts without
  their locks, under a call in flight.
- The named-model cache was keyed by the guest's ``load_by_name_with_config`` JSON: every distinct JSON
  loaded and kept another full model for the life of the host, outside every limit; ``preload`` filled the
  cache without its lock, so two threads could load one model twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from wasinn_core import (
    Availability,
    Backend,
    BackendSpec,
    Config,
    ExecutionContext,
    ExecutionTarget,
    Graph,
    GraphEncoding,
    Host,
    InvalidArgument,
    Limits,
    PluginManager,
    Tensor,
    TensorKey,
    TooLarge,
)
from wasinn_core.testing import registered

from .conftest import DIGITS_MODEL

CPU = ExecutionTarget.CPU


class _Recorder(ExecutionContext):
    """A test double for a library context: records what ran on it, and can hold compute open."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.closed = self.computing = False
        self.in_compute = threading.Event()
        self.release_compute = threading.Event()
        self.release_compute.set()

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        self.events.append("set_input on a closed context" if self.closed else "set_input")

    def compute(self) -> None:
        self.computing = True
        self.in_compute.set()
        self.release_compute.wait(10)
        self.computing = False

    def get_output(self, key: TensorKey) -> Tensor:
        return Tensor.from_array(np.zeros(1, np.float32))

    def close(self) -> None:
        self.events.append("closed during compute" if self.computing else "closed")
        self.closed = True


class _RecorderGraph(Graph):
    device = "recorder"

    def __init__(self) -> None:
        self.contexts: list[_Recorder] = []

    def init_execution_context(self) -> ExecutionContext:
        self.contexts.append(_Recorder())
        return self.contexts[-1]


class _RecorderBackend(Backend):
    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        target: ExecutionTarget,
        options: Mapping[str, Any],
    ) -> Graph:
        return _RecorderGraph()


RECORDER = BackendSpec(
    name="recorder",
    factory=_RecorderBackend,
    encodings={GraphEncoding.TENSORFLOW: 1},
    targets=frozenset({CPU}),
    probe=lambda t, o: Availability.yes("recorder"),
)


@pytest.fixture
def recorded():
    pm = PluginManager(environ={})
    with registered(pm, RECORDER):
        # in process: the test looks at the backend's own context objects
        session = Host(Config.from_dict({"isolation": {"guest": "none"}}), plugins=pm).new_session()
        graph = session.load([memoryview(b"")], GraphEncoding.TENSORFLOW, CPU)
        yield session, graph


class _LateLock:
    """A context's lock whose acquire, in the thread named ``late``, waits for ``go`` first.

    It opens the window of the race: that thread has looked the context up and not yet taken its lock.
    """

    def __init__(self, lock: Any) -> None:
        self.lock, self.waiting, self.go = lock, threading.Event(), threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if threading.current_thread().name == "late":
            self.waiting.set()
            self.go.wait(10)
        return bool(self.lock.acquire(blocking, timeout))

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_call_that_takes_the_lock_after_finalize_finds_the_context_released(recorded):
    session, graph = recorded
    ctx = session.init_execution_context(graph)
    entry = session._context(ctx)
    entry.lock = late = _LateLock(entry.lock)
    outcome: list[BaseException | None] = []

    def set_input() -> None:
        try:
            session.set_input(ctx, 0, Tensor.from_array(np.zeros(6, np.float32)))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=set_input, name="late")
    worker.start()
    assert late.waiting.wait(10)  # looked up, lock not yet taken
    session.finalize_execution_context(ctx)
    late.go.set()
    worker.join(10)
    (error,) = outcome
    assert isinstance(error, InvalidArgument) and "(released)" in error.message, error
    assert session.held_bytes == 0  # nothing charged to the dead entry
    assert entry.context.events == ["closed"]  # nothing ran on the closed context


def test_close_waits_for_a_call_in_flight_before_closing_its_context(recorded):
    session, graph = recorded
    ctx = session.init_execution_context(graph)
    context = session._context(ctx).context
    context.release_compute.clear()
    computing = threading.Thread(target=session.compute, args=(ctx,))
    computing.start()
    assert context.in_compute.wait(10)
    closing = threading.Thread(target=session.close)
    closing.start()
    closing.join(0.5)  # with the bug, close() closes the context under the running compute by now
    context.release_compute.set()
    computing.join(10)
    closing.join(10)
    assert context.events == ["closed"]
    assert session.live_contexts == 0 and session.held_bytes == 0


def test_finalize_and_close_race_release_each_context_once(recorded):
    session, graph = recorded
    library = session._graph(graph).loaded.graph
    contexts = [session.init_execution_context(graph) for _ in range(50)]
    for ctx in contexts:
        session.set_input(ctx, 0, Tensor.from_array(np.zeros(4, np.float32)))
    errors: list[BaseException] = []

    def finalize_all() -> None:
        for ctx in contexts:
            try:
                session.finalize_execution_context(ctx)
            except InvalidArgument:  # close() got there first
                pass
            except BaseException as exc:
                errors.append(exc)

    worker = threading.Thread(target=finalize_all)
    worker.start()
    session.close()
    worker.join(10)
    assert errors == []
    assert session.held_bytes == 0 and session.live_contexts == 0
    assert [c.events[-1:] for c in library.contexts] == [["closed"]] * 50  # each closed once, by one of them


# -- the named-model cache ---------------------------------------------------------------------------------


def _digits_host(plugins: PluginManager, **limits: Any) -> Host:
    model = {
        "name": "digits",
        "encoding": "onnx",
        "path": str(DIGITS_MODEL / "digits.onnx"),
        "guest_options": ["intra_op_num_threads"],
    }
    return Host(Config.from_dict({"models": [model], "limits": limits}, source="<test>"), plugins=plugins)


def test_guest_option_sets_get_private_builds_inside_the_instances_limits(plugins):
    size = (DIGITS_MODEL / "digits.onnx").stat().st_size
    host = _digits_host(plugins)
    session = host.new_session(Limits(max_host_memory_bytes=2 * size + size // 2))
    shared = session.load_by_name("digits", b"{}")  # no override: the shared build, charged nothing
    assert session.held_bytes == 0
    handles = [session.load_by_name("digits", f'{{"intra_op_num_threads": {n}}}'.encode()) for n in (1, 2)]
    assert session.held_bytes == 2 * size  # each override is a build of its own, charged to the instance
    with pytest.raises(TooLarge, match="max_host_memory_bytes"):
        session.load_by_name("digits", b'{"intra_op_num_threads": 3}')
    for handle in handles:
        ctx = session.init_execution_context(handle)
        session.set_input(ctx, 0, Tensor.from_array(np.zeros((1, 64), np.float32)))
        session.compute(ctx)
        session.finalize_execution_context(ctx)
        session.unload(handle)
    assert session.held_bytes == 0
    for n in range(1, 30):  # many distinct JSONs, each released: the host keeps nothing of them
        session.unload(session.load_by_name("digits", f'{{"intra_op_num_threads": {n}}}'.encode()))
    assert list(host._named) == ["digits"]  # only the shared build stays
    assert session.graph_info(shared).backend == "onnxruntime"
    session.close()
    host.close()


def test_preload_and_first_loads_of_one_model_load_it_once(plugins, monkeypatch):
    host = _digits_host(plugins)
    loads: list[str] = []
    real = Host._load_model

    def slow_load(self: Host, model: Any, options: Any, progress: Any = None) -> Any:
        loads.append(model.name)
        time.sleep(0.3)  # a big model: the other threads arrive while it loads
        return real(self, model, options, progress)

    monkeypatch.setattr(Host, "_load_model", slow_load)
    start = threading.Barrier(4)

    def preload() -> None:
        start.wait(10)
        host.preload()

    def by_name() -> None:
        start.wait(10)
        host.new_session().load_by_name("digits")

    threads = [threading.Thread(target=f) for f in (preload, preload, by_name, by_name)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert loads == ["digits"]
    host.close()
