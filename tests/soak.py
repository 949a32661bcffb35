"""Soak runs: many load → compute → release cycles and many store lifetimes, watching RSS and open fds.

python -m tests.soak --cycles 10000 --lifetimes 1000 --json docs/results/soak.json   # the full run (`make soak`)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wasinn_core import Config, Host, PluginManager
from wasinn_core.testing import ForwardingGuest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "digits" / "model"
# backend -> (witx encoding code, model files)
BACKENDS = {
    "onnxruntime": (1, ["digits.onnx"]),
    "pytorch": (3, ["digits.pt"]),
    "openvino": (0, ["digits.xml", "digits.bin"]),
}
PIXELS = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 64)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class SoakResult:
    backend: str
    what: str
    count: int
    seconds: float
    rss_settled: int
    rss_end: int
    fds_settled: int
    fds_end: int

    @property
    def rss_growth(self) -> float:
        return (self.rss_end - self.rss_settled) / self.rss_settled

    def line(self) -> str:
        return (
            f"{self.backend:12} {self.what:10} {self.count:6d} in {self.seconds:6.1f} s: RSS "
            f"{self.rss_settled / 1e6:.1f} → {self.rss_end / 1e6:.1f} MB ({self.rss_growth:+.2%}), "
            f"fds {self.fds_settled} → {self.fds_end}"
        )


def host_for(backend: str) -> Host:
    code, files = BACKENDS[backend]
    encoding = {0: "openvino", 1: "onnx", 3: "pytorch"}[code]
    config = Config.from_dict(
        {
            "models": [
                {"name": "digits", "encoding": encoding, "backend": backend, "paths": [str(MODELS / f) for f in files]}
            ]
        }
    )
    return Host(config, plugins=PluginManager(environ={}))


def measure(backend: str, what: str, count: int, once: Callable[[int], None]) -> SoakResult:
    warmup = max(10, count // 10)
    start = time.perf_counter()
    rss = fds = 0
    for i in range(count):
        once(i)
        if i == warmup - 1:
            gc.collect()
            rss, fds = rss_bytes(), open_fds()
    gc.collect()
    return SoakResult(backend, what, count, time.perf_counter() - start, rss, rss_bytes(), fds, open_fds())


def cycles(backend: str, count: int) -> SoakResult:
    """load → init → set_input → compute → get_output → finalize → unload, through the ABI."""
    code, files = BACKENDS[backend]
    guest = ForwardingGuest(host_for(backend))
    builders, n = guest.builders([(MODELS / f).read_bytes() for f in files])
    tensor = guest.tensor([1, 64], 1, PIXELS)
    graph_out, ctx_out, buf, written = guest.alloc(4), guest.alloc(4), guest.alloc(40), guest.alloc(4)

    def once(_: int) -> None:
        assert guest.call("load", builders, n, code, 0, graph_out) == 0
        assert guest.call("init_execution_context", guest.u32(graph_out), ctx_out) == 0
        ctx = guest.u32(ctx_out)
        assert guest.call("set_input", ctx, 0, tensor) == 0
        assert guest.call("compute", ctx) == 0
        assert guest.call("get_output", ctx, 0, buf, 40, written) == 0
        assert guest.call("finalize_execution_context", ctx) == 0
        assert guest.call("unload", guest.u32(graph_out)) == 0

    return measure(backend, "cycles", count, once)


def lifetimes(backend: str, count: int) -> SoakResult:
    """A new store and instance each time, loading the shared named model and computing once."""
    host = host_for(backend)

    def once(_: int) -> None:
        guest = ForwardingGuest(host, pages=2)
        name, length = guest.string("digits")
        graph_out, ctx_out = guest.alloc(4), guest.alloc(4)
        assert guest.call("load_by_name", name, length, graph_out) == 0
        assert guest.call("init_execution_context", guest.u32(graph_out), ctx_out) == 0
        assert guest.call("set_input", guest.u32(ctx_out), 0, guest.tensor([1, 64], 1, PIXELS)) == 0
        assert guest.call("compute", guest.u32(ctx_out)) == 0
        # the store goes away with `guest`: its session releases the context and the graph handle

    return measure(backend, "lifetimes", count, once)


def main() -> int:
    parser = argparse.ArgumentParser(description="Soak every backend; print RSS and fd growth after warm-up.")
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--lifetimes", type=int, default=1_000)
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS))
    parser.add_argument("--json", type=Path, help="write the results here (docs/results/soak.json for the docs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("wasinn").setLevel(logging.ERROR)  # errors show; the run makes none on purpose
    results = []
    for backend in args.backends:
        for result in (cycles(backend, args.cycles), lifetimes(backend, args.lifetimes)):
            print(result.line(), flush=True)
            results.append(result)
    if args.json:
        from benchmarks.machine import describe

        report = {
            "command": " ".join(["python", "-m", "tests.soak", *sys.argv[1:]]),
            "created": datetime.date.today().isoformat(),
            "machine": describe(),
            "results": [dataclasses.asdict(r) | {"seconds": round(r.seconds, 2)} for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(r.rss_growth < 0.05 and r.fds_end <= r.fds_settled for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
