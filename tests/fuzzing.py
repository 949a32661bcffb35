"""Hostile-guest fuzzing of wasi_ephemeral_nn through a real wasm guest.

A :class:`FuzzTarget` is a forwarding wasm module (its exports pass their arguments straight to the
imports) whose memory holds valid structures seeded from real calls: a model, a builder array, a tensor
record, names, live graph and context handles. Each fuzzed call draws every argument from those seeds,
from edge values (0, the end of memory, 0xFFFFFFFF, ...) or at random, after scribbling random bytes over
the structures. After every call the harness checks that the errno is one the ABI defines, that no
exception other than a ``WasiNNError`` reached the host function (``HostStats.internal_errors``: the ABI
turns such a bug into ``runtime_error``, so the errno alone cannot show it), that no byte outside the
spans the call may write changed (the whole memory is compared), and the host's bookkeeping.

Both ways the ABI finds guest memory are fuzzed: looked up through the caller on every call, and bound
once (``bind_memory``, what ``wasinn run`` does); targets alternate between them. Between calls the memory
sometimes grows (``memory.grow``): the seeded structures move into the new pages and a canary inference
whose every pointer lies there must succeed.

    python -m tests.fuzzing --calls 1000000 --seed 1 --json docs/results/fuzz.json   # the long run (`make fuzz`)
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import multiprocessing
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime

from benchmarks.machine import describe
from wasinn_core import Config, ExecutionTarget, GraphEncoding, Host, Limits, PluginManager, Tensor, WasiNNError
from wasinn_core.testing import PAGE, ForwardingGuest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "digits" / "model" / "digits.onnx"

# parameter kinds of every function, in order
SIGNATURES: dict[str, tuple[str, ...]] = {
    "load": ("builders", "count", "encoding", "target", "out4"),
    "load_by_name": ("name", "name_len", "out4"),
    "load_by_name_with_config": ("name", "name_len", "config", "config_len", "out4"),
    "unload": ("graph",),
    "init_execution_context": ("graph", "out4"),
    "finalize_execution_context": ("ctx",),
    "set_input": ("ctx", "index", "tensor"),
    "compute": ("ctx",),
    "get_output": ("ctx", "index", "buffer", "buffer_len", "out4"),
    "compute_single": ("ctx",),
    "get_output_single": ("ctx", "index", "buffer", "buffer_len", "out4"),
    "fini_single": ("ctx",),
}
WEIGHTS = {
    "load": 2,
    "load_by_name": 3,
    "load_by_name_with_config": 2,
    "unload": 3,
    "init_execution_context": 5,
    "finalize_execution_context": 3,
    "set_input": 10,
    "compute": 6,
    "get_output": 10,
    "compute_single": 1,
    "get_output_single": 1,
    "fini_single": 1,
}
EDGES = (0, 1, 2, 3, 4, 7, 8, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFC, 0xFFFF_FFFF)
ERRNO_NAMES = (
    "success",
    "invalid_argument",
    "invalid_encoding",
    "missing_memory",
    "busy",
    "runtime_error",
    "unsupported_operation",
    "too_large",
    "not_found",
)
GROW_CHANCE = 0.001  # per call: memory.grow between calls
MAX_PAGES = 12  # a target grows up to this many pages (768 KiB: every call compares the whole memory)


class FuzzFailure(AssertionError):
    """A check failed: the message names the call, its arguments and what went wrong."""


class _InternalErrors(logging.Handler):
    """Keeps the error log lines of the ABI (internal errors, with their tracebacks) for the failure message."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


@dataclass
class FuzzStats:
    calls: int = 0
    errnos: Counter[int] = field(default_factory=Counter)
    functions: Counter[str] = field(default_factory=Counter)
    grows: int = 0
    targets: Counter[str] = field(default_factory=Counter)  # "bound" / "looked up": guests per memory path
    internal_errors: int = 0  # the host's count: exceptions other than WasiNNError inside host calls
    failure: str | None = None


class FuzzTarget:
    """A forwarding guest with seeded memory and handles, and the checks run after every call.

    :param bound: bind the guest's memory once (``bind_memory``, as ``wasinn run`` does) instead of
        letting the ABI look it up through the caller on every call.
    """

    def __init__(self, host: Host, pages: int = 4, *, bound: bool = False) -> None:
        limits = Limits(
            max_graphs=12,
            max_contexts=24,
            max_tensor_bytes=1 << 20,
            max_model_bytes=1 << 20,
            max_host_memory_bytes=8 << 20,
        )
        self.host = host
        self.guest = g = ForwardingGuest(host, pages=pages, limits=limits)
        self.bound = bound
        if bound:
            assert isinstance(g._memory, wasmtime.Memory)
            g.binding.bind_memory(g._memory)
        self.model = MODEL.read_bytes()
        self.pixels = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 64)
        self._layout()
        self.graphs: list[int] = []
        self.contexts: list[int] = []
        self.last_graph = self.last_context = -1
        self.errors = _InternalErrors()
        logging.getLogger("wasinn").addHandler(self.errors)
        # seeds from real, valid calls
        for _ in range(2):
            self.expect_ok("load", [self.builders_ptr, 1, 1, 0, self.out_ptr])
            self.expect_ok("load_by_name", [self.name_ptr, self.name_len, self.out_ptr])
        for graph in list(self.graphs):
            self.expect_ok("init_execution_context", [graph, self.out_ptr])
        ctx = self.contexts[0]
        self.expect_ok("set_input", [ctx, 0, self.tensor_ptr])
        self.expect_ok("compute", [ctx])
        self.expect_ok("get_output", [ctx, 0, self.buffer_ptr, 256, self.out_ptr])

    def close(self) -> None:
        logging.getLogger("wasinn").removeHandler(self.errors)

    def _layout(self) -> None:
        """Lay out the seeded structures from the allocator's current position (the newest pages after a grow)."""
        g = self.guest
        self.model_ptr = g.alloc(self.model)
        self.builders_ptr, _ = g.builders([self.model])
        self.tensor_ptr = g.tensor([1, 64], 1, self.pixels)
        self.name_ptr, self.name_len = g.string("digits")
        self.config_ptr, self.config_len = g.string("{}")
        self.buffer_ptr = g.alloc(256)
        self.out_ptr = g.alloc(16)
        # the structures the fuzzer scribbles over (everything above the model bytes)
        self.scratch = (self.builders_ptr, g._next)
        self.pristine = g.read(self.scratch[0], self.scratch[1] - self.scratch[0])

    def expect_ok(self, name: str, args: list[int]) -> None:
        errno = self.run(name, args)
        if errno != 0:
            raise FuzzFailure(f"{self.where()}: {name}{tuple(args)} with valid arguments returned errno {errno}")

    def where(self) -> str:
        return f"{'bound' if self.bound else 'looked-up'} memory of {self.guest.size // PAGE} pages"

    def grow(self, rng: random.Random) -> bool:
        """``memory.grow`` between calls; the seeds move into the new pages and a canary runs there."""
        pages = self.guest.size // PAGE
        more = rng.randint(1, 3)
        if pages + more > MAX_PAGES:
            return False
        memory = self.guest._memory
        assert isinstance(memory, wasmtime.Memory)
        memory.grow(self.guest.store, more)
        self.guest._next = pages * PAGE  # everything from here on lives in the new pages
        self._layout()
        self.canary()
        return True

    def canary(self) -> None:
        """A whole inference whose every pointer lies in the newest pages: a stale view of memory fails it."""
        if len(self.graphs) >= 11:  # room for one more graph (max_graphs = 12)
            self.expect_ok("unload", [self.graphs[0]])
        if len(self.contexts) >= 23:
            self.expect_ok("finalize_execution_context", [self.contexts[0]])
        self.expect_ok("load_by_name", [self.name_ptr, self.name_len, self.out_ptr])
        graph = self.graphs[-1]
        self.expect_ok("init_execution_context", [graph, self.out_ptr])
        ctx = self.contexts[-1]
        self.expect_ok("set_input", [ctx, 0, self.tensor_ptr])
        self.expect_ok("compute", [ctx])
        self.expect_ok("get_output", [ctx, 0, self.buffer_ptr, 256, self.out_ptr])
        if self.guest.u32(self.out_ptr) != 40:
            raise FuzzFailure(f"{self.where()}: the canary's bytes_written is {self.guest.u32(self.out_ptr)}, not 40")
        self.expect_ok("finalize_execution_context", [ctx])
        self.expect_ok("unload", [graph])

    # -- the checks ---------------------------------------------------------------------------------------

    def allowed(self, name: str, args: list[int]) -> list[tuple[int, int]]:
        """The spans ``name`` may write: its out-pointers and output buffer."""
        kinds = SIGNATURES[name]
        spans = [(a, 4) for a, k in zip(args, kinds, strict=True) if k == "out4"]
        if "buffer" in kinds:
            spans.append((args[kinds.index("buffer")], args[kinds.index("buffer_len")]))
        return spans

    def run(self, name: str, args: list[int]) -> int:
        memory = self.guest.memory
        before = memory.copy()
        internal = self.host.stats.internal_errors
        call = f"{self.where()}: {name}{tuple(args)}"
        try:
            errno = self.guest.call(name, *args)
        except wasmtime.WasmtimeError as exc:  # host functions never trap
            raise FuzzFailure(f"{call} trapped: {exc}") from exc
        if self.host.stats.internal_errors != internal:
            logged = "\n".join(self.errors.records[-1:]) or "(no log line)"
            raise FuzzFailure(f"{call}: an exception other than WasiNNError reached the host function:\n{logged}")
        if not 0 <= errno <= 8:
            raise FuzzFailure(f"{call} returned undefined errno {errno}")
        changed = np.flatnonzero(before != self.guest.memory)
        spans = self.allowed(name, args)
        for index in changed:
            if not any(p <= index < p + n for p, n in spans):
                raise FuzzFailure(f"{call} wrote byte {index:#x} outside its spans {spans}")
        if errno == 0:
            self._track(name, args)
        session = self.guest.session
        if (
            session.held_bytes < 0
            or session.live_graphs != len(self.graphs)
            or session.live_contexts != len(self.contexts)
        ):
            raise FuzzFailure(f"after {call}: bookkeeping drifted: {session.describe()}")
        return errno

    def _track(self, name: str, args: list[int]) -> None:
        if name.startswith("load"):
            handle = self.guest.u32(args[-1])
            if handle <= self.last_graph:
                raise FuzzFailure(f"graph handle {handle} after {self.last_graph}: not monotonic")
            self.last_graph = handle
            self.graphs.append(handle)
        elif name == "init_execution_context":
            handle = self.guest.u32(args[-1])
            if handle <= self.last_context:
                raise FuzzFailure(f"context handle {handle} after {self.last_context}: not monotonic")
            self.last_context = handle
            self.contexts.append(handle)
        elif name == "unload":
            self.graphs.remove(args[0])
        elif name == "finalize_execution_context":
            self.contexts.remove(args[0])

    # -- the inputs -------------------------------------------------------------------------------------

    def value(self, kind: str, rng: random.Random) -> int:
        size = self.guest.size
        roll = rng.random()
        if roll < 0.15:
            return rng.choice(EDGES)
        if roll < 0.25:
            return rng.randrange(1 << 32)
        if roll < 0.35:
            return rng.choice((size - 1, size - 2, size - 4, size - 8, size, size + 4, rng.randrange(size)))
        if kind in ("graph", "ctx"):
            live = self.graphs if kind == "graph" else self.contexts
            released = max(0, (self.last_graph if kind == "graph" else self.last_context))
            return rng.choice(live) if live and rng.random() < 0.8 else rng.randrange(released + 3)
        seeds = {
            "builders": self.builders_ptr,
            "count": 1,
            "encoding": rng.choice((1, 1, 1, 5, 0, 3, 6)),
            "target": rng.choice((0, 0, 0, 1, 2)),
            "out4": self.out_ptr,
            "name": self.name_ptr,
            "name_len": self.name_len,
            "config": self.config_ptr,
            "config_len": self.config_len,
            "index": rng.choice((0, 0, 0, 1)),
            "tensor": self.tensor_ptr,
            "buffer": self.buffer_ptr,
            "buffer_len": rng.choice((40, 256, 39, 0)),
        }
        return seeds[kind] + (rng.choice((-1, 1)) if rng.random() < 0.1 else 0)

    def scribble(self, rng: random.Random) -> None:
        """Restore the seeded structures, then sometimes overwrite some of their bytes."""
        start, end = self.scratch
        memory = self.guest.memory
        memory[start:end] = np.frombuffer(self.pristine, np.uint8)
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 6)):
                memory[rng.randrange(start, end)] = rng.randrange(256)

    def step(self, rng: random.Random, stats: FuzzStats) -> None:
        if rng.random() < GROW_CHANCE and self.grow(rng):
            stats.grows += 1
        name = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        args = [self.value(kind, rng) & 0xFFFF_FFFF for kind in SIGNATURES[name]]
        self.scribble(rng)
        errno = self.run(name, args)
        stats.calls += 1
        stats.errnos[errno] += 1
        stats.functions[name] += 1


MODEL_FORMATS = {
    "onnx": (GraphEncoding.ONNX, ["digits.onnx"]),
    "torchscript": (GraphEncoding.PYTORCH, ["digits.pt"]),
    "exported_program": (GraphEncoding.PYTORCH, ["digits.pt2"]),
    "ir": (GraphEncoding.OPENVINO, ["digits.xml", "digits.bin"]),
}


def mutate(blob: bytes, rng: random.Random) -> bytes:
    """A truncated, bit-flipped, overwritten, zeroed or entirely random version of ``blob``."""
    data = bytearray(blob)
    kind = rng.choice(["truncate", "flip", "bytes", "random", "zeros"])
    if kind == "truncate":
        return bytes(data[: rng.randrange(len(data))])
    if kind == "random":
        return rng.randbytes(rng.randint(0, 4096))
    if kind == "zeros":
        at = rng.randrange(len(data))
        data[at : at + 256] = bytes(len(data[at : at + 256]))
        return bytes(data)
    for _ in range(rng.randint(1, 16)):
        at = rng.randrange(len(data))
        data[at] = data[at] ^ (1 << rng.randrange(8)) if kind == "flip" else rng.randrange(256)
    return bytes(data)


def mutation(fmt: str, seed: int, index: int) -> list[bytes]:
    """The builders of mutation ``index`` of the digits model in ``fmt``: each has its own generator, so any
    one can be rerun alone (``python -c "from tests.fuzzing import mutation; ..."``)."""
    _, files = MODEL_FORMATS[fmt]
    rng = random.Random(f"{fmt}-{seed}-{index}")
    builders = [(MODEL.parent / f).read_bytes() for f in files]
    which = rng.randrange(len(builders))
    builders[which] = mutate(builders[which], rng)
    return builders


def fuzz_models(
    fmt: str, count: int, seed: int, start: int = 0, report: Callable[[int, str], None] | None = None
) -> Counter[str]:
    """Load mutations ``start``..``count - 1`` of the digits model in format ``fmt``; tally what happened."""
    encoding, _ = MODEL_FORMATS[fmt]
    host = Host(Config.from_dict({"limits": {"load_timeout_s": 60}}), plugins=PluginManager(environ={}))
    session = host.new_session()
    outcomes: Counter[str] = Counter()
    for index in range(start, count):
        builders = mutation(fmt, seed, index)
        try:
            graph = session.load([memoryview(b) for b in builders], encoding, ExecutionTarget.CPU)
            ctx = session.init_execution_context(graph)
            try:
                session.set_input(ctx, 0, Tensor.from_array(np.zeros((1, 64), np.float32)))
                session.compute(ctx)
                session.get_output(ctx, 0)
                outcome = "ran"
            except WasiNNError as exc:
                outcome = f"run: {exc.code.value}"
            session.finalize_execution_context(ctx)
            session.unload(graph)
        except WasiNNError as exc:
            outcome = exc.code.value
        outcomes[outcome] += 1
        if report is not None:
            report(index, outcome)
    session.close()
    return outcomes


def _models_child(fmt: str, count: int, seed: int, start: int, pipe: Any) -> None:
    logging.getLogger("wasinn").setLevel(logging.CRITICAL)  # expected errors: thousands of log lines
    fuzz_models(fmt, count, seed, start, lambda index, outcome: pipe.send((index, outcome)))


def fuzz_models_isolated(fmt: str, count: int, seed: int, hang_s: float = 300.0) -> tuple[Counter[str], list[int]]:
    """:func:`fuzz_models` in child processes: a mutation that kills its process (or hangs past ``hang_s``)
    is counted, its index kept, and the run goes on after it in a new child. Returns (outcomes, those indexes).
    """
    spawn = multiprocessing.get_context("spawn")
    outcomes: Counter[str] = Counter()
    killed: list[int] = []
    start = 0
    while start < count:
        receive, send = spawn.Pipe(duplex=False)
        child = spawn.Process(target=_models_child, args=(fmt, count, seed, start, send), daemon=True)
        child.start()
        send.close()
        while start < count:
            if not receive.poll(hang_s):
                child.kill()
                outcomes["hang"] += 1
                break
            try:
                index, outcome = receive.recv()
            except EOFError:  # the child died without reporting the mutation it was on
                child.join()
                code = child.exitcode or 0
                name = signal.Signals(-code).name if code < 0 else f"exit {code}"
                outcomes[f"crash ({name})"] += 1
                break
            outcomes[outcome] += 1
            start = index + 1
        else:
            child.join()
            break
        killed.append(start)
        start += 1
        child.join()
    return outcomes, killed


def fuzz_host() -> Host:
    config = Config.from_dict({"models": [{"name": "digits", "encoding": "onnx", "path": str(MODEL)}]})
    return Host(config, plugins=PluginManager(environ={"WASINN_PLUGINS": "onnx"}))


def fuzz_calls(calls: int, seed: int, fresh_every: int = 20_000, progress: bool = False) -> FuzzStats:
    """``calls`` seeded hostile calls; a new guest every ``fresh_every`` calls, alternating the memory path.

    Stops at the first failed check, with its message in ``failure``.
    """
    rng = random.Random(seed)
    host, stats, start = fuzz_host(), FuzzStats(), time.perf_counter()
    target: FuzzTarget | None = None
    try:
        while stats.calls < calls and stats.failure is None:
            if target is None or (stats.calls % fresh_every == 0 and stats.calls):
                if target is not None:
                    target.close()
                    if progress:
                        elapsed = time.perf_counter() - start
                        print(f"{stats.calls} calls, {elapsed:.0f} s, errnos {dict(stats.errnos)}", flush=True)
                bound = sum(stats.targets.values()) % 2 == 1
                target = FuzzTarget(host, bound=bound)
                stats.targets["bound" if bound else "looked up"] += 1
            try:
                target.step(rng, stats)
            except FuzzFailure as failure:
                stats.failure = f"call {stats.calls + 1}: {failure}"
    finally:
        if target is not None:
            target.close()
        stats.internal_errors = host.stats.internal_errors
        host.close()
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description="Fuzz wasi_ephemeral_nn through a real wasm guest.")
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fresh-every", type=int, default=20_000, help="new guest after this many calls")
    parser.add_argument("--models", type=int, default=0, help="also load this many mutated models per format")
    parser.add_argument("--json", type=Path, help="write the results here (docs/results/fuzz.json for the docs)")
    args = parser.parse_args()
    # the expected errno lines are warnings; internal errors are logged at error level and must show
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("wasinn").setLevel(logging.ERROR)
    from wasinn_core._abi._linking import fast_path_available

    abi_path = "public" if os.environ.get("WASINN_ABI_PATH") == "public" or not fast_path_available() else "fast"
    start = time.perf_counter()
    stats = fuzz_calls(args.calls, args.seed, args.fresh_every, progress=True)
    elapsed = time.perf_counter() - start
    if stats.failure is not None:
        print(f"FAILED (seed {args.seed}): {stats.failure}", file=sys.stderr, flush=True)
    print(f"done: {stats.calls} host calls in {elapsed:.0f} s ({stats.calls / elapsed:.0f}/s), seed {args.seed}")
    print(f"errnos: {dict(sorted(stats.errnos.items()))}")
    print(f"functions: {dict(stats.functions)}")
    print(f"memory: {dict(stats.targets)} guests, {stats.grows} grows with a canary inference each")
    models: dict[str, dict[str, int]] = {}
    killed: dict[str, list[int]] = {}
    for fmt in MODEL_FORMATS if args.models and stats.failure is None else ():
        outcomes, killed[fmt] = fuzz_models_isolated(fmt, args.models, args.seed)
        models[fmt] = dict(outcomes)
        print(f"mutated {fmt} models: {args.models}: {models[fmt]}", flush=True)
        for index in killed[fmt]:
            print(f"mutation {index} of {fmt} (seed {args.seed}) killed or hung its process", file=sys.stderr)
    if args.json:
        import wasinn_core

        argv = ["python", "-m", "tests.fuzzing", *sys.argv[1:]]
        result = {
            "command": " ".join(argv),
            "seed": args.seed,
            "created": datetime.date.today().isoformat(),
            "machine": describe(),
            "wasinn": wasinn_core.__version__,
            "abi_path": abi_path,
            "calls": stats.calls,
            "seconds": round(elapsed, 1),
            "failure": stats.failure,
            "internal_errors": stats.internal_errors,
            "memory": {"guests": dict(stats.targets), "grows": stats.grows},
            "errnos": {ERRNO_NAMES[k]: stats.errnos[k] for k in range(len(ERRNO_NAMES))},
            "functions": dict(sorted(stats.functions.items(), key=lambda kv: -kv[1])),
            "models": {"count": args.models, "seed": args.seed, "outcomes": models, "killed": killed},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if stats.failure is None and not stats.internal_errors else 1


if __name__ == "__main__":
    sys.exit(main())
