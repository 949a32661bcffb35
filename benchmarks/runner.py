"""Run the benchmarks side by side and write ``docs/performance.md`` with a table and a plot.

For every backend and workload, in several interleaved rounds, on the same guest and model file:
(a) the library called natively from Python, (b) wasinn running the C guest ``classify.wasm``,
(c) the ``wasmtime`` 49 CLI running the same guest with its built-in wasi-nn (OpenVINO only), (b') the
same guest with its model in a confined worker process (wasinn's default for guest models), and, to
split where wasinn's time goes, (d) the guest's loop through wasinn's Python ``Session`` API, no wasm. The
guest times its own loop with the WASI monotonic clock, so a host's start-up is not in the per-inference
figure; start-up is measured separately as the wall time of a whole run with one inference.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .machine import describe
from .models import FILES, SHAPES, folder
from .remote import WORKLOADS as REMOTE_WORKLOADS
from .remote import loopback

ROOT = Path(__file__).resolve().parents[1]
GUEST = ROOT / "guests" / "wasm" / "classify.wasm"
BACKENDS = ("onnx", "pytorch", "openvino")
WORKLOADS = ("tiny", "mnet", "big")
BACKEND_NAME = {"onnx": "onnxruntime", "pytorch": "pytorch", "openvino": "openvino"}
ITERATIONS = {"tiny": 5000, "mnet": 100, "big": 8}
QUICK_ITERATIONS = {"tiny": 200, "mnet": 5, "big": 2}
LOOP = re.compile(r"(\d+) iterations: median ([\d.]+) us, min ([\d.]+) us")


#: Workloads whose copies are measured (a tiny tensor is below the tracing's resolution: see benchmarks.copies)
COPY_WORKLOADS = ("mnet", "big")


@dataclass
class Cell:
    """The per-round medians of one (backend, workload, host), and its measured copies (benchmarks.copies)."""

    medians: list[float] = field(default_factory=list)
    copies: dict[str, Any] | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.medians) if self.medians else None

    @property
    def copies_per_byte(self) -> float | None:
        return float(self.copies["copies_per_byte"]) if self.copies else None


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.done, self.quiet, self.start = total, 0, quiet, time.perf_counter()

    def step(self, label: str) -> None:
        self.done += 1
        if self.quiet:
            return
        width = 30
        filled = int(width * self.done / self.total)
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {elapsed:5.0f} s {label:<40}"
        )
        sys.stderr.flush()
        if self.done == self.total:
            sys.stderr.write("\n")


def guest_args(backend: str, workload: str, iterations: int) -> list[str]:
    models = [f"/m/{name}" for name in FILES[backend]]
    args = [str(GUEST)]
    for model in models:
        args += ["--model", model]
    dims = "x".join(str(d) for d in SHAPES[workload])
    return [*args, "--encoding", backend, "--dims", dims, "--repeat", str(iterations), "--top", "1", "/m/input.bin"]


def wasinn_command(backend: str, workload: str, iterations: int, config: Path, isolation: str = "none") -> list[str]:
    """``wasinn run`` on the classify guest; ``isolation="guest"`` runs the guest's model in a worker."""
    return [
        sys.executable,
        "-m",
        "wasinn_core",
        "run",
        "--stats",
        "--isolation",
        isolation,
        "--config",
        str(config),
        "--dir",
        f"{folder(workload)}::/m",
        *guest_args(backend, workload, iterations),
    ]


def wasmtime_command(workload: str, iterations: int) -> tuple[list[str], dict[str, str]]:
    from wasinn_conformance.runtimes import wasmtime_runtime

    runtime = wasmtime_runtime()
    binary = shlex.split(runtime.template)[0]
    command = [
        binary,
        "run",
        "-S",
        "nn",
        "--dir",
        f"{folder(workload)}::/m",
        *guest_args("openvino", workload, iterations),
    ]
    return command, {**os.environ, **runtime.env}


def parse_loop(output: str, what: str) -> float:
    match = LOOP.search(output)
    if not match:
        raise RuntimeError(f"{what}: no timing in its output:\n{output[-2000:]}")
    return float(match.group(2))


def write_config(precision: str) -> Path:
    """The wasinn config: each encoding pinned to its dedicated backend, OpenVINO's precision as requested."""
    path = Path(tempfile.mkdtemp(prefix="wasinn-bench-")) / "wasinn.toml"
    path.write_text(
        f'[preferences]\nonnx = ["onnxruntime"]\n\n[backends.openvino]\ninference_precision = "{precision}"\n'
    )
    return path


def run_once(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} … failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


#: Processes that show where wasinn's start-up goes, cumulatively.
STARTUP_PARTS = {
    "python": "pass",
    "python, import wasmtime and numpy": "import wasmtime, numpy",
    "python, import wasinn_core": "import wasinn_core",
    "python, import wasinn_core and openvino": "import wasinn_core, openvino",
}


@dataclass
class Results:
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)
    startup: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    precision: str = "default"
    rounds: int = 0
    quick: bool = False
    components: list[dict[str, Any]] = field(default_factory=list)
    isolation: list[dict[str, Any]] = field(default_factory=list)
    date: str = ""
    machine: str = ""
    command: str = ""

    def cell(self, backend: str, workload: str, host: str) -> Cell:
        return self.cells.setdefault((backend, workload, host), Cell())

    def to_dict(self) -> dict[str, Any]:
        """The results as JSON data (``docs/results/performance.json``), from which the page is rendered."""
        return {
            "command": self.command,
            "date": self.date,
            "machine": self.machine,
            "precision": self.precision,
            "rounds": self.rounds,
            "quick": self.quick,
            "cells": [
                {"backend": b, "workload": w, "host": h, "medians_us": c.medians, "copies": c.copies}
                for (b, w, h), c in self.cells.items()
            ],
            "startup": [{"host": h, "part": p, "seconds": v} for (h, p), v in self.startup.items()],
            "components": self.components,
            "isolation": self.isolation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Results:
        results = cls(
            precision=data["precision"],
            rounds=data["rounds"],
            quick=data["quick"],
            components=data["components"],
            isolation=data.get("isolation", []),
            date=data["date"],
            machine=data["machine"],
            command=data["command"],
        )
        for c in data["cells"]:
            results.cells[(c["backend"], c["workload"], c["host"])] = Cell(c["medians_us"], c["copies"])
        for s in data["startup"]:
            results.startup[(s["host"], s["part"])] = s["seconds"]
        return results


def run(
    rounds: int,
    quick: bool,
    backends: tuple[str, ...],
    workloads: tuple[str, ...],
    precision: str,
    wasmtime: bool,
    quiet: bool = False,
) -> Results:
    iterations = QUICK_ITERATIONS if quick else ITERATIONS
    for workload in workloads:
        folder(workload)  # generate models before timing anything
    config = write_config(precision)
    results = Results(precision=precision, rounds=rounds, quick=quick, date=datetime.date.today().isoformat())
    results.machine = machine()
    jobs = [(b, w) for b in backends for w in workloads]
    per_job = 4 + (1 if wasmtime else 0)
    copy_jobs = [(b, w) for b, w in jobs if w in COPY_WORKLOADS]
    progress = Progress(rounds * len(jobs) * per_job + 2 * (2 if wasmtime else 1) + 1 + len(copy_jobs), quiet)
    progress.total += len(backends) * len([w for w in ("tiny", "mnet") if w in workloads])
    with loopback() as remote_config:
        remote = (
            [("onnx", w) for w in workloads if w in REMOTE_WORKLOADS and "onnx" in backends] if remote_config else []
        )
        progress.total += rounds * len(remote)
        _rounds(results, rounds, jobs, remote, iterations, config, remote_config, precision, wasmtime, progress)
    # copies, measured (buffer identity and allocation tracing), once per backend and workload
    copy_jobs += [("remote", w) for _, w in remote if w in COPY_WORKLOADS]
    progress.total += len([j for j in copy_jobs if j[0] == "remote"])
    for backend, workload in copy_jobs:
        measured = run_once([sys.executable, "-m", "benchmarks.copies", backend, workload, "3"])
        host = "remote" if backend == "remote" else "wasinn"
        results.cell("onnx" if backend == "remote" else backend, workload, host).copies = json.loads(measured.stdout)
        progress.step(f"{backend} {workload} copies")
    # a worker process against the host process, in one process each: per inference and the first load
    for backend in backends:
        for workload in [w for w in ("tiny", "mnet") if w in workloads]:
            n = iterations[workload]
            command = [sys.executable, "-m", "benchmarks.isolation", backend, workload, str(n)]
            measured = run_once(command + (["--quick"] if quick else []))
            results.isolation.append(json.loads(measured.stdout))
            progress.step(f"{backend} {workload} isolation")
    # the component model's list<u8>, both directions, wasinn's conversion against wasmtime-py's
    components = run_once([sys.executable, "-m", "benchmarks.components", *(["--quick"] if quick else [])])
    results.components = json.loads(components.stdout)
    progress.step("component data")
    # start-up: a whole run with one inference, process start to exit, on the MobileNet-size model
    workload = "mnet" if "mnet" in workloads else workloads[0]
    for _ in range(2):
        start = time.perf_counter()
        run_once(wasinn_command("openvino", workload, 1, config))
        results.startup.setdefault(("wasinn", "openvino"), []).append(time.perf_counter() - start)
        progress.step("start-up wasinn")
        if wasmtime:
            command, env = wasmtime_command(workload, 1)
            start = time.perf_counter()
            run_once(command, env)
            results.startup.setdefault(("wasmtime", "openvino"), []).append(time.perf_counter() - start)
            progress.step("start-up wasmtime")
    # where wasinn's start-up goes: the interpreter, then the imports, each measured as a process of its own
    for part, code in STARTUP_PARTS.items():
        for _ in range(2):
            start = time.perf_counter()
            run_once([sys.executable, "-c", code])
            results.startup.setdefault(("part", part), []).append(time.perf_counter() - start)
    return results


def _rounds(
    results: Results,
    rounds: int,
    jobs: list[tuple[str, str]],
    remote: list[tuple[str, str]],
    iterations: dict[str, int],
    config: Path,
    remote_config: Path | None,
    precision: str,
    wasmtime: bool,
    progress: Progress,
) -> None:
    for _ in range(rounds):  # interleaved: every configuration once per round
        for backend, workload in jobs:
            n = iterations[workload]
            native = run_once([sys.executable, "-m", "benchmarks.native", backend, workload, str(n), precision])
            results.cell(backend, workload, "native").medians.append(float(native.stdout.split()[0]))
            progress.step(f"{backend} {workload} native")
            session = run_once([sys.executable, "-m", "benchmarks.session", backend, workload, str(n), str(config)])
            results.cell(backend, workload, "session").medians.append(float(session.stdout.split()[0]))
            progress.step(f"{backend} {workload} session")
            guest = run_once(wasinn_command(backend, workload, n, config))
            results.cell(backend, workload, "wasinn").medians.append(parse_loop(guest.stdout, "wasinn"))
            progress.step(f"{backend} {workload} wasinn")
            isolated = run_once(wasinn_command(backend, workload, n, config, isolation="guest"))
            results.cell(backend, workload, "isolated").medians.append(parse_loop(isolated.stdout, "wasinn isolated"))
            progress.step(f"{backend} {workload} isolated")
            if wasmtime and backend == "openvino":
                command, env = wasmtime_command(workload, n)
                results.cell(backend, workload, "wasmtime").medians.append(
                    parse_loop(run_once(command, env).stdout, "wasmtime")
                )
                progress.step(f"{backend} {workload} wasmtime")
        for backend, workload in remote:  # the same guest and model through the remote backend, on loopback
            n = iterations[workload]
            assert remote_config is not None
            guest = run_once(wasinn_command(backend, workload, n, remote_config))
            results.cell(backend, workload, "remote").medians.append(parse_loop(guest.stdout, "wasinn remote"))
            progress.step(f"{backend} {workload} remote")


def machine() -> str:
    return describe(("wasmtime", "onnxruntime", "torch", "openvino"))
