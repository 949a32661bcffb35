"""The conformance suite itself: its size, its coverage of errnos, its reports, and that it catches broken hosts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wasinn_conformance.cases import ABI_CASES, abi_cases, backend_cases
from wasinn_conformance.execute import GUESTS
from wasinn_conformance.expectations import Expectations
from wasinn_conformance.report import matrix
from wasinn_conformance.suite import Result
from wasinn_core import Host
from wasinn_core.testing import run_guest

from .test_plugins import install, run_cli

ERRNOS = [
    "INVALID_ARGUMENT",
    "INVALID_ENCODING",
    "MISSING_MEMORY",
    "BUSY",
    "RUNTIME_ERROR",
    "UNSUPPORTED_OPERATION",
    "TOO_LARGE",
    "NOT_FOUND",
]


def test_at_least_150_cases_for_the_in_tree_backends():
    total = 0
    for backend, encodings in [
        ("onnxruntime", ["onnx"]),
        ("pytorch", ["pytorch"]),
        ("openvino", ["openvino", "onnx"]),
        ("onnxref", ["onnx"]),
    ]:
        total += len(backend_cases(backend, encodings, "cpu")) + len(abi_cases(backend, encodings[0], "cpu"))
    assert total >= 150
    assert len(ABI_CASES) >= 60


def test_every_errno_is_expected_by_an_abi_case():
    sources = "".join(p.read_text() for p in GUESTS.glob("*.c"))
    expected = set(re.findall(r"NN_ERRNO_([A-Z_]+)\)", sources)) | set(re.findall(r"NN_ERRNO_([A-Z_]+),", sources))
    assert "(i32.const 3)" in (GUESTS / "missing_memory.wat").read_text()  # missing_memory, from WAT
    assert set(ERRNOS) - {"MISSING_MEMORY"} <= expected


@pytest.mark.parametrize("guest", ["abi", "abi_ext"])
def test_guest_case_lists_match_the_case_table(guest):
    listed = run_guest(Host(), GUESTS / f"{guest}.wasm", ["--list"]).stdout.split()
    assert sorted(listed) == sorted(c.name for c in ABI_CASES if c.guest == guest)


def test_expectations_file_errors(tmp_path):
    bad = tmp_path / "e.toml"
    bad.write_text('version = 1\n[[backend]]\nname = "x"\n[[backend.case]]\nid = "abi/load"\nreason = "r"\n')
    with pytest.raises(ValueError, match=r'give action = "skip" or expected = "fail"'):
        Expectations.load(bad)
    bad.write_text("version = 2\n")
    with pytest.raises(ValueError, match="version: expected 1"):
        Expectations.load(bad)


def test_matrix_rows_and_totals():
    cases = backend_cases("b", ["onnx"], "cpu")[:3]
    text = matrix([Result(cases[0], "passed", 0.1), Result(cases[1], "failed", 0.1), Result(cases[2], "skipped", 0)])
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["backend", "encoding", "target", "dtype"]
    assert lines[-1].split() == ["total", "1", "1", "1", "0", "0"]


def conformance(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"conformance-{os.getpid()}-{abs(hash(args))}.json"
    result = run_cli("conformance", *args, "--json", str(report), "-q", env=env)
    data = json.loads(report.read_text()) if report.exists() else {}
    report.unlink(missing_ok=True)
    return result, data


def test_cli_report_for_a_real_backend():
    result, report = conformance("--backend", "onnxruntime")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "capability matrix" in result.stdout and "onnxruntime  onnx/onnx" in result.stdout
    assert report["suite"] == "wasinn-conformance" and report["runtime"]["name"] == "wasinn"
    (backend,) = report["backends"]
    assert backend["distribution"] == "wasinn-onnx" and backend["library"] == "onnxruntime"
    by_id = {c["id"]: c for c in report["cases"]}
    case = by_id["backend/onnx/onnx/cpu/f32/matmul/batch5"]
    assert case["outcome"] == "passed" and case["device"] == "CPUExecutionProvider" and case["duration_s"] > 0
    skipped = by_id["backend/onnx/onnx/cpu/bf16/affine"]
    assert skipped["outcome"] == "skipped" and "does not declare tensor type bf16" in skipped["message"]
    assert by_id["abi/get_output_too_small"]["outcome"] == "passed"
    # the operator layer's quick selection: ONNX's node tests through witx and WIT, against onnxruntime itself
    assert by_id["operators/onnx/cpu/Abs/test_abs"]["outcome"] == "passed"
    assert "witx, wit@2024-10-28, wit@2024-08-19" in by_id["operators/onnx/cpu/Abs/test_abs"]["device"]
    adam = by_id["operators/onnx/cpu/ai.onnx.preview.training.Adam/test_adam"]
    assert adam["outcome"] == "skipped" and "onnxruntime cannot run it natively: [ONNXRuntimeError]" in adam["message"]
    assert report["operators"]["onnxruntime"]["Abs"] == {"passed": 1}
    assert "wasi-nn conformance: operators" in result.stdout
    assert not [c["id"] for c in report["cases"] if c["outcome"] == "failed"]
    # the docs' operator results (a committed complete run) agree with this fresh quick run, case by case
    committed = json.loads((Path(__file__).parent.parent / "docs/results/operators.json").read_text())
    not_passed = committed["backends"]["onnxruntime"]["not_passed"]
    for case in report["cases"]:
        if case["layer"] == "operators":
            key = case["id"].split("/", 3)[3]
            assert case["outcome"] == not_passed.get(key, {"outcome": "passed"})["outcome"], key


BROKEN = """
import numpy as np
from wasinn_core import Availability, BackendSpec, Capabilities, ExecutionTarget, GraphEncoding, Tensor, TensorType
from wasinn_core import hookimpl
from wasinn_onnx._backend import OnnxBackend, OnnxContext, OnnxGraph
from wasinn_onnx import OPTIONS


class Context(OnnxContext):
    def compute(self):
        if MODE == "raise":
            raise RuntimeError("boom: the library fell over")
        super().compute()

    def get_output(self, key):
        out = super().get_output(key)
        return Tensor(out.dimensions, out.type, out.data + np.asarray(1, out.data.dtype)) if MODE == "wrong" else out


class Graph(OnnxGraph):
    def init_execution_context(self):
        return Context(self)


class Backend(OnnxBackend):
    def load(self, *args):
        g = super().load(*args)
        return Graph(g.session, g.device)


@hookimpl
def wasinn_backends():
    return [BackendSpec(name=NAME, factory=Backend, encodings={GraphEncoding.ONNX: 1},
                        targets=frozenset({ExecutionTarget.CPU}), probe=lambda t, o: Availability.yes("cpu"),
                        options=OPTIONS, builders={GraphEncoding.ONNX: 1},
                        capabilities=Capabilities(dtypes=frozenset({TensorType.F32}), features=frozenset()))]
"""


@pytest.fixture
def broken_site(tmp_path: Path) -> Path:
    for name, mode in [("wrongnumbers", "wrong"), ("raiser", "raise")]:
        install(tmp_path, f"wasinn-{name}", f"wasinn_testplug_{name}", f"NAME = {name!r}\nMODE = {mode!r}\n" + BROKEN)
    return tmp_path


def test_report_of_broken_backends_shows_their_failures(broken_site):
    env = {"PYTHONPATH": os.pathsep.join([str(broken_site), *sys.path])}
    result, report = conformance("--backend", "wrongnumbers", "--backend", "raiser", "--layer", "backend", env=env)
    assert result.returncode == 1
    failed = {(c["backend"], c["id"]): c["message"] for c in report["cases"] if c["outcome"] == "failed"}
    wrong = failed[("wrongnumbers", "backend/onnx/onnx/cpu/f32/affine")]
    assert "values off" in wrong and "expected" in wrong
    assert "boom: the library fell over" in failed[("raiser", "backend/onnx/onnx/cpu/f32/affine")]
    for backend in ("wrongnumbers", "raiser"):  # every runnable case fails, the rest is skipped with reasons
        outcomes = {c["outcome"] for c in report["cases"] if c["backend"] == backend}
        assert outcomes == {"failed", "skipped"}


PADDING_BLIND_HOST = """
import sys
from pathlib import Path
from wasinn_core import Config, Host, InvalidArgument
from wasinn_core._abi._memory import read_u32
from wasinn_core._abi._witx import WitxBinding
from wasinn_core.testing import run_guest


class PaddingBlind(WitxBinding):
    '''Reads the tensor type as a 4-byte value, as WAMR did before 2.4: dirty padding breaks it.'''

    def _set_input(self, caller, ctx, index, tensor_ptr):
        if read_u32(self.memory.view(caller), tensor_ptr + 8, "tensor type") > 255:
            raise InvalidArgument("unknown tensor type")
        super()._set_input(caller, ctx, index, tensor_ptr)


class BrokenHost(Host):
    binding_class = PaddingBlind


models, wasm, *args = sys.argv[1:]
files = sorted(str(p) for p in Path(models).iterdir())
config = Config.from_dict({"models": [{"name": "conformance", "encoding": "onnx", "paths": files}],
                           "preferences": {"onnx": ["onnxruntime"]}})
run = run_guest(BrokenHost(config), wasm, args, [(models, "/models", True)])
sys.stdout.write(run.stdout)
sys.stderr.write(run.stderr)
sys.exit(run.exit_code)
"""


def test_report_of_a_runtime_that_reads_the_padding(tmp_path):
    script = tmp_path / "broken_host.py"
    script.write_text(textwrap.dedent(PADDING_BLIND_HOST))
    template = f"{sys.executable} {script} {{models}} {{wasm}} {{args}}"
    result, report = conformance(
        "--runtime",
        template,
        "--runtime-name",
        "padding-blind",
        "--runtime-encoding",
        "onnx",
        "--runtime-features",
        "named_models,extensions",
    )
    assert result.returncode == 1
    outcomes = {c["id"]: c for c in report["cases"]}
    padding = outcomes["abi/set_input_padding_garbage"]
    assert (
        padding["outcome"] == "failed" and "returned 1 (invalid_argument), expected 0 (success)" in padding["message"]
    )
    assert outcomes["abi/inference"]["outcome"] == "passed"
    assert outcomes["abi/unload_twice"]["outcome"] == "passed"
    assert outcomes["abi/graph_limit"]["outcome"] == "skipped"  # not declared: limits
    assert report["runtime"]["name"] == "padding-blind"
    failures = [c["id"] for c in report["cases"] if c["outcome"] == "failed"]
    assert failures == ["abi/set_input_padding_garbage"]


def test_expectations_skip_and_strict_xfail(tmp_path):
    expectations = tmp_path / "e.toml"
    expectations.write_text(
        textwrap.dedent("""
        version = 1
        [[backend]]
        name = "onnxruntime"
        [[backend.case]]
        id = "abi/inference"
        action = "skip"
        reason = "skipped on purpose"
        [[backend.case]]
        id = "abi/load"
        expected = "fail"
        reason = "claimed broken, but it passes"
        link = "https://example.invalid/issue/1"
    """)
    )
    result, report = conformance("--backend", "onnxruntime", "--layer", "abi", "--expectations", str(expectations))
    by_id = {c["id"]: c for c in report["cases"]}
    assert by_id["abi/inference"]["outcome"] == "skipped"
    assert "skipped on purpose" in by_id["abi/inference"]["message"]
    assert by_id["abi/load"]["outcome"] == "failed"  # strict xfail: an unexpected pass fails the run
    assert result.returncode == 1


def test_unknown_backend_is_a_usage_error():
    result = run_cli("conformance", "--backend", "nosuch", "-q")
    assert result.returncode == 4 and "no installed backend is called nosuch" in (result.stdout + result.stderr)


def test_an_unusable_target_skips_every_layer_with_the_probe_reason():
    """No GPU here (or on CI): every case for gpu is skipped with onnxruntime's reason, none fails, and the run
    fails as a whole: nothing was tested."""
    from wasinn_core import ExecutionTarget
    from wasinn_onnx import backend_spec

    spec = backend_spec()
    availability = spec.probe(ExecutionTarget.GPU, spec.defaults())
    if availability.available:
        pytest.skip(f"this machine has a GPU for onnxruntime ({availability.device})")
    result, report = conformance("--backend", "onnxruntime", "--target", "gpu")
    assert result.returncode == 1, result.stdout[-3000:]
    assert report["problems"] == [
        f"nothing was tested on onnxruntime: all {len(report['cases'])} of its cases were skipped: "
        f"onnxruntime cannot use gpu here: {availability.reason} ({len(report['cases'])} cases)"
    ]
    layers = {c["layer"] for c in report["cases"]}
    assert layers == {"abi", "component", "backend", "operators"}
    for case in report["cases"]:
        assert case["outcome"] == "skipped" and "cannot use gpu here" in case["message"], case
        assert availability.reason in case["message"]
