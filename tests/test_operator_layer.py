"""The conformance suite's operator layer: its cases, its guests, how it judges, and that it catches broken hosts."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import wasmtime

from wasinn_conformance.cases import Case
from wasinn_conformance.expectations import Expectations
from wasinn_conformance.operator_check import HostFailure, LibraryDeviation, NotRunnable, Paths, check_case, differences
from wasinn_conformance.operator_guests import GuestOutput, GuestResult
from wasinn_conformance.operator_report import BEGIN, END, markdown, replace_block, summarize
from wasinn_conformance.operators import FEATURES, collected, quick_selection
from wasinn_conformance.suite import Suite
from wasinn_core import Host, Tensor, TensorType, WitxBinding

from .test_conformance import conformance
from .test_plugins import install

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results" / "operators.json"
EXPECTATIONS = ROOT / "conformance" / "wasinn_conformance" / "expectations" / "wasinn.toml"


@pytest.fixture(scope="module")
def cases():
    return collected()


def test_collection_keeps_what_wasi_nn_can_express_and_counts_the_rest(cases):
    assert cases.total > 1800 and len(cases.cases) > 1200
    assert sum(cases.excluded.values()) + len(cases.cases) == cases.total
    assert cases.excluded["a bool input or output"] > 50 and cases.excluded["a string input or output"] > 10
    for case in cases.cases:
        assert case.dtypes <= set(TensorType) and len(case.inputs) == len(case.input_names)
        assert all(a.flags.c_contiguous for a in case.inputs)
    scalar = cases.by_name()["test_size_example"]
    assert scalar.expected[0].shape == () and "rank0" in scalar.features  # rank 0 stays rank 0


def test_quick_selection_covers_every_operator_and_property_deterministically(cases):
    quick = quick_selection(cases.cases)
    assert [c.name for c in quick] == [c.name for c in quick_selection(tuple(reversed(cases.cases)))]
    assert {c.op for c in quick} == {c.op for c in cases.cases}
    for feature in FEATURES:
        assert any(feature in c.features or feature in {t.value for t in c.dtypes} for c in quick), feature
    assert len(quick) < len(cases.cases) / 5


def test_tensor_from_a_0d_array_stays_rank_0():
    """Found by the layer: np.ascontiguousarray made rank-0 outputs rank 1 (shape [1] through WIT)."""
    tensor = Tensor.from_array(np.float32(2.5))
    assert tensor.dimensions == () and tensor.data.shape == () and tensor.nbytes == 4


def test_differences_treat_nan_as_equal_and_need_matching_infinities():
    nan, inf = np.float32("nan"), np.float32("inf")
    assert differences(np.array([nan, inf, 1.0]), np.array([nan, inf, 1.0000001]), 1e-5, 0) is None
    assert "1 of 2 values off" in differences(np.array([-3.4e38, 1.0]), np.array([-inf, 1.0]), 1e-3, 1e-7)
    assert differences(np.zeros((2, 1)), np.zeros(2), 0, 0) == "shape [2, 1], expected [2]"
    assert "exact" in differences(np.array([1, 2], np.int64), np.array([1, 3], np.int64), 1, 1)


def _case():
    return collected().by_name()["test_abs"]


def _path(outputs=None, failure="", trapped=False, leaks=""):
    return lambda case, sizes: GuestResult(outputs or [], failure, trapped, leaks)


def _no_kernel(model, inputs):
    raise RuntimeError("no kernel")


def test_judging_attributes_each_difference(cases):
    case = _case()
    native = np.abs(case.inputs[0])
    good = [GuestOutput(native.tobytes(), "y", native.shape, TensorType.F32)]
    tol = {"f32": {"rtol": 1e-5, "atol": 1e-6}}

    def judge(path, run=lambda model, inputs: [native]):
        return check_case(case, "lib", run, Paths({"wit": path}, {}), tol)

    assert judge(_path(good)) == "wit"
    with pytest.raises(HostFailure, match="wit: output 'y' has shape \\[60\\], the library's is \\[3, 4, 5\\]"):
        judge(_path([GuestOutput(native.tobytes(), "y", (60,), TensorType.F32)]))
    with pytest.raises(HostFailure, match="wit: compute returned error runtime-error: boom \\(lib runs it natively\\)"):
        judge(_path(failure="compute returned error runtime-error: boom"))
    with pytest.raises(HostFailure, match="the host still holds 1 graphs"):
        judge(_path(good, leaks="1 graphs"))
    with pytest.raises(NotRunnable, match="lib cannot run it natively: no kernel \\(through wasinn: wit: load"):
        judge(_path(failure="load returned error runtime-error"), run=_no_kernel)
    off = native + 1  # the library is wrong, and wasinn gives exactly what the library gives: the library's
    wrong = [GuestOutput(off.tobytes(), "y", off.shape, TensorType.F32)]
    with pytest.raises(LibraryDeviation, match=r"lib itself differs from ONNX's expected output .* through wit"):
        judge(_path(wrong), run=lambda m, i: [off])


OPERATOR_BROKEN = """
import numpy as np
from wasinn_core import Availability, BackendSpec, Capabilities, ExecutionTarget, GraphEncoding, Tensor, TensorType
from wasinn_core import hookimpl
from wasinn_onnx._backend import OnnxBackend, OnnxContext, OnnxGraph
from wasinn_onnx import OPTIONS, backend_spec


class Context(OnnxContext):
    def get_output(self, key):
        out = super().get_output(key)
        if MODE == "wrong" and out.type is TensorType.F32:
            return Tensor(out.dimensions, out.type, out.data + np.float32(1))
        if MODE == "scalar" and out.dimensions == ():  # the bug the layer found: rank 0 became rank 1
            return Tensor((1,), out.type, out.data.reshape(1))
        return out


class Graph(OnnxGraph):
    def init_execution_context(self):
        return Context(self)


class Backend(OnnxBackend):
    def load(self, *args):
        g = super().load(*args)
        return Graph(g.session, g.device)


@hookimpl
def wasinn_backends():
    real = backend_spec()
    return [BackendSpec(name=NAME, factory=Backend, encodings={GraphEncoding.ONNX: 1},
                        targets=frozenset({ExecutionTarget.CPU}), probe=lambda t, o: Availability.yes("cpu"),
                        options=OPTIONS, builders={GraphEncoding.ONNX: 1}, library="onnxruntime",
                        library_version=real.library_version, capabilities=real.capabilities)]
"""


@pytest.fixture
def broken_operators(tmp_path: Path) -> dict[str, str]:
    for name, mode in [("wrongvalues", "wrong"), ("scalarbug", "scalar")]:
        body = f"NAME = {name!r}\nMODE = {mode!r}\n" + OPERATOR_BROKEN
        install(tmp_path, f"wasinn-{name}", f"wasinn_testplug_{name}", body)
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}


def test_the_layer_fails_hosts_that_change_what_the_library_gives(broken_operators, tmp_path):
    expectations = tmp_path / "e.toml"  # an expected failure of the library's does not cover a host's failure
    expectations.write_text(
        'version = 1\n[[backend]]\nname = "wrongvalues"\n[[backend.case]]\nid = "operators/*/Abs/*"\n'
        'expected = "fail"\nreason = "claimed to be the library\'s"\n'
    )
    args = ["--backend", "wrongvalues", "--backend", "scalarbug", "--layer", "operators", "--expectations"]
    selection = ["-k", "test_abs or test_size_example or test_add_uint8"]
    result, report = conformance(*args, str(expectations), *selection, env=broken_operators)
    assert result.returncode == 1
    outcome = {(c["backend"], c["id"].rsplit("/", 1)[1]): c for c in report["cases"]}
    abs_case = outcome[("wrongvalues", "test_abs")]
    assert abs_case["outcome"] == "failed" and "against the library's own result" in abs_case["message"]
    assert "witx: output 'y': 60 of 60 values off" in abs_case["message"]
    assert outcome[("wrongvalues", "test_add_uint8")]["outcome"] == "passed"  # u8: untouched by the bug
    scalar = outcome[("scalarbug", "test_size_example")]
    assert scalar["outcome"] == "failed" and "output 'y' has shape [1], the library's is []" in scalar["message"]
    assert outcome[("scalarbug", "test_abs")]["outcome"] == "passed"
    assert report["operators"]["scalarbug"]["Size"] == {"failed": 1}
    assert report["operator_layer"]["expressible"] > 1200


def test_a_third_party_library_brings_its_native_runner_by_entry_point(tmp_path, monkeypatch):
    from wasinn_conformance.native import native_runner

    (tmp_path / "mylib_native.py").write_text(
        "def factory(options):\n    return lambda model, inputs: [i * options['scale'] for i in inputs]\n"
    )
    info = tmp_path / "mylib-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mylib\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[wasinn_conformance.native]\nmylib = mylib_native:factory\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run = native_runner("mybackend", "mylib", {"scale": 3})
    assert run is not None and run(b"", [np.ones(2)])[0].tolist() == [3.0, 3.0]
    assert native_runner("mybackend", "unknownlib", {}) is None
    with pytest.raises(LookupError, match="url and repository options are needed"):
        native_runner("remote", "tritonclient", {"url": "http://127.0.0.1:1"})


class TrapOnce(WitxBinding):
    """Traps the guest on its first compute (a host bug as wasmtime sees it), then behaves."""

    trapped = False

    def host_function(self, name):
        real = super().host_function(name)
        if name != "compute":
            return real

        def compute(caller, *args):
            if not TrapOnce.trapped:
                TrapOnce.trapped = True
                raise wasmtime.Trap("a host bug")
            return real(caller, *args)

        return compute


class TrapHost(Host):
    binding_class = TrapOnce


@pytest.mark.parametrize("path", ["public", "fast"])
def test_a_trap_fails_its_case_and_the_next_case_gets_a_fresh_guest(path, monkeypatch):
    monkeypatch.setenv("WASINN_ABI_PATH", path)
    monkeypatch.setattr(TrapOnce, "trapped", False)
    suite = Suite(backends=["onnxruntime"], layers=frozenset({"operators"}), host_class=TrapHost)
    try:
        cases: list[Case] = [
            c for c in suite.cases("operators") if c.variant in ("test_abs", "test_relu", "test_neg_example")
        ]
        assert len(cases) == 3
        with pytest.raises(HostFailure, match="witx: the guest trapped"):
            suite.run(cases[0])
        for case in cases[1:]:
            assert "witx" in suite.run(case)
    finally:
        suite.close()


def test_expectations_give_the_librarys_own_behaviour_as_reason():
    for entry in Expectations.load(EXPECTATIONS).entries:
        if entry.pattern.startswith("operators/"):
            library = {"onnxruntime": "onnxruntime", "openvino": "OpenVINO", "onnxref": "onnx.reference"}[entry.owner]
            assert library in entry.reason and ("natively" in entry.reason or "itself" in entry.reason), entry


def test_docs_show_the_committed_operator_results():
    summary = json.loads(RESULTS.read_text())
    assert {"onnxruntime", "openvino", "onnxref"} <= set(summary["backends"])
    for name, backend in summary["backends"].items():
        assert backend["totals"].get("failed", 0) == 0, name  # no host failure, no unexplained deviation
        per_op = sum(sum(c.values()) for c in backend["operators"].values())
        assert per_op == sum(backend["totals"].values()) == summary["operator_layer"]["expressible"], name
    page = (ROOT / "docs" / "conformance.md").read_text()
    assert replace_block(page, markdown(summary)) == page, "regenerate: python -m wasinn_conformance.operator_report"
    assert page.index(BEGIN) < page.index(END)
    assert summarize([]) == {"operator_layer": {}, "backends": {}}
