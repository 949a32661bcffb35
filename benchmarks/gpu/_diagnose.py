"""Runs :mod:`._probe` once per confinement layer and says which layer refuses what CUDA needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ._checks import Machine
from ._install import ROOT
from ._probe import MODES
from ._report import Report, SkipCheck

__all__ = ["diagnose"]

SECTION = "Confinement and CUDA, layer by layer (diagnostics)"


def run_probe(mode: str, work: Path) -> dict[str, Any]:
    """The probe in a subprocess with a worker's environment."""
    from wasinn_core._isolation._policy import _import_root
    from wasinn_core._isolation._workers import _worker_env

    scratch = tempfile.mkdtemp(prefix=f"probe-{mode}-", dir=work)
    env = _worker_env(scratch, _import_root("wasinn_pytorch"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))
    command = [sys.executable, "-P", "-m", "benchmarks.gpu._probe", mode]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=scratch, timeout=180)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"mode": mode, "crashed": f"exit {result.returncode}: {result.stderr.strip()[-1200:]}"}
    return dict(json.loads(lines[-1]))


def _summary(seen: dict[str, Any], unconfined: dict[str, Any] | None) -> tuple[bool, str]:
    if "crashed" in seen or "confinement_error" in seen:
        return False, seen.get("crashed") or seen["confinement_error"]
    driver, torch = seen["driver"], seen["torch"]
    ok = driver.get("cuInit") == 0 and driver.get("cuMemAlloc") == 0 and torch.get("sum") == 8.0
    parts = [f"confinement {seen.get('confinement', 'none')}", f"thread names {seen['thread_names']}"]
    parts.append(f"cuInit {driver.get('cuInit', driver.get('error'))}, cuMemAlloc {driver.get('cuMemAlloc', '-')}")
    parts.append(f"torch {torch.get('sum', torch.get('error') or torch.get('warnings') or torch)}")
    if unconfined is not None:
        refused = {
            p: r for p, r in seen["paths"].items() if r not in ("ok", "absent") and unconfined["paths"][p] == "ok"
        }
        parts.append(f"refused here but readable unconfined: {refused or 'nothing'}")
    return ok, "; ".join(parts)


def diagnose(report: Report, machine: Machine) -> None:
    """On CUDA: every mode, each a check. Without: the thread-name rule under full confinement only."""
    from wasinn_core._isolation._confine import probe, read_paths

    confinement = probe()
    if confinement.landlock_abi < 1:

        def thread_rule() -> str:
            raise SkipCheck(f"no Landlock here ({confinement.reason})")

    else:

        def thread_rule() -> str:
            seen = run_probe("both", machine.work)
            assert "crashed" not in seen, seen["crashed"]
            names = seen["thread_names"]
            assert set(names.values()) == {"ok"}, f"a confined process cannot name its threads: {names}"
            return f"a confined process names its threads (as cuInit does): {names}; {seen['confinement']}"

    report.run(SECTION, "thread names under confinement", thread_rule)
    if not machine.cuda:
        report.skip(SECTION, "CUDA under each layer", f"no CUDA here: {machine.no_cuda_reason}")
        return
    results = {mode: run_probe(mode, machine.work) for mode in MODES}
    unconfined = results["none"]
    readable = read_paths(["wasinn_pytorch"])
    mapped = unconfined.get("mapped", [])
    outside = [f for f in mapped if f.startswith("/") and not any(f.startswith(r) for r in readable)]
    report.environment["cuda_files_mapped"] = mapped
    for mode in MODES:

        def check(mode: str = mode) -> tuple[str, dict[str, Any]]:
            if mode in ("landlock", "both") and confinement.landlock_abi < 1:
                raise SkipCheck(f"no Landlock here: {confinement.reason}")
            if mode == "seccomp" and not confinement.seccomp:
                raise SkipCheck("no seccomp here (pyseccomp cannot load libseccomp.so.2)")
            ok, text = _summary(results[mode], None if mode == "none" else unconfined)
            if mode == "none" and outside:
                text += f"; driver files outside the workers' read paths: {outside}"
            assert ok, text
            return text, results[mode]

        report.run(SECTION, f"CUDA with confinement: {mode}", check)
