"""The suite in process, for a backend author's own tests (like pytest's ``pytester``): no subprocess, no
nested pytest, the backend given as a spec or by name, and a result to assert on.

    from wasinn_conformance import run_conformance

    def test_conformance():
        run = run_conformance(backend_spec(), expectations="conformance.toml")
        run.assert_outcomes(failed=0)          # the failures, each with its message, if not
        assert run.outcomes["passed"] >= 100

Outcomes are the ones ``wasinn conformance`` gives for the same backend and options: cases the backend does
not declare are skipped with the reason, expectations skip or expect failures (an unexpected pass fails),
and a run that tests nothing on a backend has ``problems`` and does not pass ``assert_outcomes``.
"""

from __future__ import annotations

import fnmatch
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

from wasinn_core import BackendSpec, Config, PluginManager
from wasinn_core.testing import registered

from .cases import Case
from .expectations import Expectations
from .report import matrix, report_of, write_json
from .suite import Result, Suite

__all__ = ["LAYERS", "ConformanceRun", "run_conformance"]

#: The layers, in the order ``wasinn conformance`` runs them.
LAYERS = ("abi", "backend", "component")


@final
@dataclass(frozen=True)
class ConformanceRun:
    """The outcome of :func:`run_conformance`.

    :param results: every case with its outcome (passed, failed, skipped, xfailed, xpassed) and message.
    :param problems: why the run fails although no case failed (nothing tested on a backend).
    :param report: the JSON report, as ``wasinn conformance --json`` writes it.
    """

    results: tuple[Result, ...]
    problems: tuple[str, ...]
    report: dict[str, Any] = field(repr=False)

    @property
    def outcomes(self) -> Counter[str]:
        """Cases per outcome."""
        return Counter(r.outcome for r in self.results)

    @property
    def ok(self) -> bool:
        """No failure, and something was tested on every backend (what makes ``wasinn conformance`` exit 0)."""
        return not self.problems and not self.outcomes["failed"]

    def failures(self) -> list[Result]:
        """The failed cases."""
        return [r for r in self.results if r.outcome == "failed"]

    def describe(self) -> str:
        """The capability matrix, then each failure and problem with its message."""
        lines = [matrix(list(self.results))] if self.results else []
        lines += [f"FAILED {r.case.backend}:{r.case.id}: {r.message}" for r in self.failures()]
        lines += [f"PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)

    def assert_outcomes(self, **expected: int) -> None:
        """Assert the count of each outcome given (``passed=121, failed=0``), and that the run had no problem."""
        __tracebackhide__ = True
        got = {name: self.outcomes[name] for name in expected}
        assert got == expected and not self.problems, f"expected {expected}, got {got}\n{self.describe()}"

    def write_json(self, path: str | Path) -> None:
        """Write the JSON report."""
        write_json(path, self.report)


def _outcome(suite: Suite, case: Case) -> Result:
    expectation = suite.expectations.find((case.backend,), case.id)
    if expectation is not None and expectation.kind == "skip":
        return Result(case, "skipped", 0.0, f"expectations: {expectation.describe()}")
    reason = suite.missing(case)
    if reason is not None:
        return Result(case, "skipped", 0.0, reason)
    start = time.perf_counter()
    try:
        device = suite.run(case)
    except Exception as exc:  # a failed case, as pytest would report it
        passed, message, device = False, str(exc) or type(exc).__name__, ""
    else:
        passed, message = True, ""
    duration = time.perf_counter() - start
    if expectation is None:
        return Result(case, "passed" if passed else "failed", duration, message, device)
    if passed:  # strict, as in the pytest plugin: an unexpected pass fails, so the expectation gets removed
        return Result(case, "failed", duration, f"[XPASS(strict)] expectations: {expectation.describe()}", device)
    return Result(case, "xfailed", duration, message, device)


def _selector(select: str | Callable[[Case], bool] | None) -> Callable[[Case], bool]:
    if select is None:
        return lambda case: True
    if isinstance(select, str):
        return lambda case: fnmatch.fnmatchcase(case.id, select)
    return select


def run_conformance(
    *specs: BackendSpec,
    backends: Sequence[str] | None = None,
    target: str = "cpu",
    layers: Iterable[str] = LAYERS,
    expectations: str | Path | Expectations | Sequence[str | Path] | None = None,
    config: Config | None = None,
    select: str | Callable[[Case], bool] | None = None,
    plugins: PluginManager | None = None,
) -> ConformanceRun:
    """Run the conformance suite in this process and return its outcome.

    :param specs: backends to test, registered on a plugin manager that loads nothing else, so cases
        cannot reach another backend (and the specs need not be installed).
    :param backends: names of installed backends to test instead (default with no spec: every one).
    :param target: ``cpu``, ``gpu`` or ``tpu``.
    :param layers: ``abi``, ``backend`` and/or ``component``.
    :param expectations: expectations files (or one :class:`Expectations`).
    :param config: an embedder config whose ``[backends.NAME]`` options the suite uses.
    :param select: a glob on case ids (``"backend/*/f32/*"``) or a predicate on :class:`Case`.
    :param plugins: the plugin manager to use (default: a fresh one, or the installed plugins).
    """
    if isinstance(expectations, Expectations):
        loaded = expectations
    else:
        paths = [expectations] if isinstance(expectations, str | Path) else list(expectations or [])
        loaded = Expectations()
        for path in paths:
            loaded = loaded.merged(Expectations.load(path))
    if plugins is None:
        plugins = PluginManager(autoload=False, environ={}, strict=True) if specs else PluginManager()
    names = list(backends) if backends is not None else ([s.name for s in specs] or None)
    keep = _selector(select)
    with registered(plugins, *specs, name="wasinn-conformance-run") if specs else nullcontext():
        suite = Suite(
            backends=names,
            target=target,
            layers=frozenset(layers),
            expectations=loaded,
            plugins=plugins,
            config=config,
        )
        try:
            for layer in LAYERS:
                for case in suite.cases(layer):
                    if keep(case):
                        suite.results.append(_outcome(suite, case))
                    else:
                        suite.deselected.add(case.id)
            report = report_of(suite)
            return ConformanceRun(tuple(suite.results), tuple(suite.problems()), report)
        finally:
            suite.close()
