"""Bounded fuzzing for CI (the long run is `make fuzz`): the ABI through a real wasm guest, and the Python API."""

from __future__ import annotations

import contextlib
import logging
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasinn_core import ExecutionTarget, GraphEncoding, Session, Tensor, TensorType, WasiNNError
from wasinn_core._abi._memory import GuestMemory

from .conftest import DIGITS_MODEL
from .fuzzing import EDGES, SIGNATURES, FuzzFailure, FuzzTarget, fuzz_calls, fuzz_host

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@pytest.fixture(scope="module")
def host():
    logging.getLogger("wasinn").setLevel(logging.ERROR)  # thousands of expected errno warnings; errors show
    h = fuzz_host()
    yield h
    assert h.stats.internal_errors == 0  # no exception but a WasiNNError reached a host function
    h.close()
    logging.getLogger("wasinn").setLevel(logging.NOTSET)


def argument(target: FuzzTarget, kind: str) -> st.SearchStrategy[int]:
    size = target.guest.size
    seeded = st.builds(lambda r: target.value(kind, r), st.randoms(use_true_random=False))
    return st.one_of(
        seeded, st.sampled_from(EDGES), st.integers(0, 0xFFFF_FFFF), st.integers(max(0, size - 16), size + 16)
    )


@FUZZ
@given(data=st.data())
def test_hostile_calls_through_a_wasm_guest(host, data):
    target = FuzzTarget(host, bound=data.draw(st.booleans(), label="bound memory"))
    try:
        for _ in range(data.draw(st.integers(1, 30), label="calls")):
            if data.draw(st.integers(0, 9), label="grow") == 0:
                target.grow(data.draw(st.randoms(use_true_random=False), label="grow by"))
            start, end = target.scratch
            name = data.draw(st.sampled_from(sorted(SIGNATURES)), label="function")
            args = [data.draw(argument(target, kind), label=kind) for kind in SIGNATURES[name]]
            for offset, byte in data.draw(
                st.lists(st.tuples(st.integers(start, end - 1), st.integers(0, 255)), max_size=4), label="scribbles"
            ):
                target.guest.memory[offset] = byte
            # asserts: no internal error, a defined errno, no write outside the call's spans, bookkeeping
            target.run(name, args)
    finally:
        target.close()


def test_seeded_random_run():
    """20,000 calls of the long-run generator, on both memory paths, with memory.grow between calls."""
    stats = fuzz_calls(20_000, seed=20261125, fresh_every=10_000)
    assert stats.failure is None and stats.internal_errors == 0
    assert stats.errnos[0] > 1000 and stats.errnos[1] > 1000  # both successes and rejections were exercised
    assert len(stats.functions) == len(SIGNATURES)
    assert stats.targets == {"looked up": 1, "bound": 1} and stats.grows >= 5


# -- the fuzzer itself: planted bugs it must find ---------------------------------------------------------


def test_the_fuzzer_finds_a_planted_exception_in_a_host_call(monkeypatch):
    """A KeyError in Session.compute becomes errno runtime_error, which the ABI allows: the count shows it."""
    real = Session.compute

    def compute(self: Session, ctx: int) -> None:
        if ctx % 2:  # a bug on some handles only
            raise KeyError(ctx)
        real(self, ctx)

    monkeypatch.setattr(Session, "compute", compute)
    logging.getLogger("wasinn").setLevel(logging.ERROR)
    stats = fuzz_calls(2_000, seed=1)
    assert stats.failure is not None and stats.internal_errors == 1, stats.failure
    assert "an exception other than WasiNNError reached the host function" in stats.failure
    assert "KeyError" in stats.failure and "compute" in stats.failure


@pytest.mark.parametrize("bound", [False, True])
def test_the_fuzzer_finds_a_planted_stale_view_after_memory_grow(monkeypatch, host, bound):
    """A memory view kept across memory.grow: the canary's pointers in the new pages are refused."""
    real = GuestMemory.view

    def stale(self: GuestMemory, caller: object) -> object:
        if self.generation:
            return self._view  # the bug: never looks again once it has a view
        return real(self, caller)

    monkeypatch.setattr(GuestMemory, "view", stale)
    target = FuzzTarget(host, bound=bound)
    try:
        with pytest.raises(FuzzFailure, match="with valid arguments returned errno 1"):
            target.grow(random.Random(0))
    finally:
        target.close()


DTYPES = [t for t in TensorType]


@st.composite
def tensors(draw: st.DrawFn) -> Tensor:
    ttype = draw(st.sampled_from(DTYPES))
    dims = tuple(draw(st.lists(st.integers(0, 70), max_size=4)))
    count = int(np.prod(dims)) if dims else 1
    if draw(st.booleans()):  # a data length that disagrees with the dimensions
        count = max(0, count + draw(st.integers(-3, 3)))
    return Tensor(dims, ttype, np.zeros(count, ttype.numpy_dtype))


@FUZZ
@given(data=st.data())
def test_python_api_raises_only_wasinn_errors(host, data):
    session = host.new_session()
    model = memoryview((DIGITS_MODEL / "digits.onnx").read_bytes())
    graphs = [session.load([model], GraphEncoding.ONNX, ExecutionTarget.CPU)]
    contexts = [session.init_execution_context(graphs[0])]
    handle = st.one_of(st.integers(-2, 5), st.integers(0, 2**32))
    key = st.one_of(st.integers(-1, 3), st.sampled_from(["pixels", "probabilities", "", "x" * 300]))
    operations = {
        "load": lambda: session.load(
            [memoryview(data.draw(st.binary(max_size=64)))],
            data.draw(st.sampled_from(list(GraphEncoding))),
            data.draw(st.sampled_from(list(ExecutionTarget))),
        ),
        "load_by_name": lambda: session.load_by_name(
            data.draw(st.text(max_size=10)), data.draw(st.one_of(st.none(), st.binary(max_size=16)))
        ),
        "unload": lambda: session.unload(data.draw(handle)),
        "init": lambda: session.init_execution_context(data.draw(handle)),
        "finalize": lambda: session.finalize_execution_context(data.draw(handle)),
        "set_input": lambda: session.set_input(data.draw(handle), data.draw(key), data.draw(tensors())),
        "compute": lambda: session.compute(data.draw(handle)),
        "get_output": lambda: session.get_output(data.draw(handle), data.draw(key)),
        "graph_info": lambda: session.graph_info(data.draw(handle)),
    }
    for _ in range(data.draw(st.integers(1, 25))):
        name = data.draw(st.sampled_from(sorted(operations)))
        with contextlib.suppress(WasiNNError):  # the only kind of exception the API may raise
            operations[name]()
    session.close()
    assert session.held_bytes == 0 and session.live_graphs == 0 and contexts
