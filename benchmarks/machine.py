"""One line that says where a result file's figures were measured (the benchmarks, fuzz and soak runs)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
from collections.abc import Iterable
from pathlib import Path

__all__ = ["describe"]


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def describe(dists: Iterable[str] = ()) -> str:
    """CPU, cores, kernel and Python, then the version of each of ``dists`` that is installed."""
    system = f"{platform.system()} {platform.release()}"
    line = f"{_cpu()}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"
    versions = [f"{d} {v}" for d in dists if (v := _version(d)) is not None]
    return f"{line}; {', '.join(versions)}" if versions else line
