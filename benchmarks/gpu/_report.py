"""The GPU check's report: every check with its status and reason, the benchmark rows, the goals.

Written after every section (``gpu-check.json`` and ``gpu-check.md`` in the output folder), so a run
cut short by its time limit still leaves everything it learned.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Check", "Report", "SkipCheck"]

STATUSES = ("pass", "fail", "skip")


class SkipCheck(Exception):
    """Raised by a check that cannot run here; its message is the reason."""


@dataclass
class Check:
    """One check: ``status`` is pass, fail or skip; ``detail`` says what was seen or why it was skipped."""

    section: str
    name: str
    status: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    goal: str | None = None  # "equal" (GPU results equal the CPU's) or "memory" (no device memory growth)


@dataclass
class Report:
    """Everything a run learned, written to ``out`` as JSON and markdown."""

    out: Path
    environment: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    benchmark: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def run(
        self, section: str, name: str, fn: Callable[[], tuple[str, dict[str, Any]] | str], goal: str | None = None
    ) -> Check:
        """Run one check: its return is ``detail`` or ``(detail, data)``; ``AssertionError`` fails it,
        :class:`SkipCheck` skips it, any other exception fails it with its traceback's last lines.
        ``goal`` names the issue's goal the check speaks for (``equal`` or ``memory``)."""
        start = time.monotonic()
        try:
            result = fn()
            detail, data = (result, {}) if isinstance(result, str) else result
            status = "pass"
        except SkipCheck as exc:
            status, detail, data = "skip", str(exc), {}
        except AssertionError as exc:
            status, detail, data = "fail", str(exc) or "assertion failed", {}
        except Exception as exc:
            tail = traceback.format_exc().strip().splitlines()[-6:]
            status, detail, data = "fail", f"{type(exc).__name__}: {exc}", {"traceback": tail}
        check = Check(section, name, status, detail, data, round(time.monotonic() - start, 2), goal)
        self.checks.append(check)
        print(f"[{status:>4}] {section}: {name}: {detail.splitlines()[0] if detail else ''}"[:240], flush=True)
        self.write()
        return check

    def skip(self, section: str, name: str, reason: str) -> Check:
        return self.run(section, name, lambda: _raise(SkipCheck(reason)))

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in STATUSES}

    def goals(self) -> dict[str, Any]:
        """The issue's three goals, from the checks and rows (``None``: not measured here)."""
        equal = [c for c in self.checks if c.goal == "equal" and c.status != "skip"]
        memory = [c for c in self.checks if c.goal == "memory" and c.status != "skip"]
        ratios = [r["guest_gpu_vs_native"] for r in self.benchmark if r.get("guest_gpu_vs_native") is not None]
        return {
            "results_equal_cpu": all(c.status == "pass" for c in equal) if equal else None,
            "no_device_memory_growth": all(c.status == "pass" for c in memory) if memory else None,
            "guest_gpu_within_1_05_of_native": all(r <= 1.05 for r in ratios) if ratios else None,
            "worst_guest_gpu_vs_native": max(ratios) if ratios else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "summary": {**self.counts(), "seconds": round(time.monotonic() - self.started, 1)},
            "goals": self.goals(),
            "checks": [asdict(c) for c in self.checks],
            "benchmark": self.benchmark,
        }

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        data = self.to_json()
        (self.out / "gpu-check.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
        (self.out / "gpu-check.md").write_text(markdown(data))


def _raise(exc: BaseException) -> Any:
    raise exc


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown(data: dict[str, Any]) -> str:
    """The report as markdown: environment, goals, checks by section, benchmark table."""
    env, summary, goals = data["environment"], data["summary"], data["goals"]
    lines = ["# wasinn GPU check", ""]
    lines += [f"- {k}: {v}" for k, v in env.items() if not isinstance(v, dict | list)]
    lines += [
        "",
        f"**{summary['pass']} passed, {summary['fail']} failed, {summary['skip']} skipped** in {summary['seconds']} s.",
        "",
        "## Goals",
        "",
        "| goal | result |",
        "|---|---|",
    ]
    for key, value in goals.items():
        shown = "not measured (no GPU)" if value is None else ("yes" if value is True else _cell(value, 3))
        lines.append(f"| {key.replace('_', ' ')} | {'no' if value is False else shown} |")
    section = None
    for check in data["checks"]:
        if check["section"] != section:
            section = check["section"]
            lines += ["", f"## {section}", "", "| check | status | detail |", "|---|---|---|"]
        detail = " ".join(str(check["detail"]).split()).replace("|", "\\|")
        lines.append(f"| {check['name']} | {check['status']} | {detail[:600]} |")
    if data["benchmark"]:
        lines += [
            "",
            "## Benchmark (median µs per inference, as the guest times its loop)",
            "",
            "| model | batch | torch CUDA native | guest GPU (in process) | guest GPU (worker) | guest CPU "
            "| guest GPU / native | copies to device / to host per inference |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in data["benchmark"]:
            copies = row.get("device_copies_per_inference")
            lines.append(
                f"| {row['model']} | {row['batch']} | {_cell(row.get('native_cuda_us'))} "
                f"| {_cell(row.get('guest_gpu_us'))} | {_cell(row.get('guest_gpu_worker_us'))} "
                f"| {_cell(row.get('guest_cpu_us'))} | {_cell(row.get('guest_gpu_vs_native'), 3)} "
                f"| {'–' if copies is None else f'{copies[0]:g} / {copies[1]:g}'} |"
            )
    return "\n".join(lines) + "\n"
