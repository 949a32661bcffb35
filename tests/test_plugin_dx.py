"""What a backend author meets: loud plugin failures with the fix, `wasinn plugins`, `wasinn new-plugin`,
conformance runs that test nothing, and the in-process conformance runner."""

from __future__ import annotations

import filecmp
import json
import os
import sys
from pathlib import Path

import pytest

from wasinn_conformance import run_conformance
from wasinn_conformance.cases import FORMATS
from wasinn_core import (
    KNOWN_FEATURES,
    Availability,
    BackendSpec,
    Capabilities,
    ExecutionTarget,
    GraphEncoding,
    PluginError,
    PluginManager,
    UnsupportedOperation,
)
from wasinn_core._cli._newplugin import SUITE_ENCODINGS, PluginProject, write_project
from wasinn_core._cli._parse import UsageError
from wasinn_core.testing import registered

from .conftest import ROOT
from .test_plugins import SPEC_IMPORTS, install, run_cli

TEMPLATE = ROOT / "examples" / "plugin-template"


def spec(name: str = "zz", **kwargs: object) -> BackendSpec:
    fields: dict[str, object] = {
        "name": name,
        "factory": lambda: None,
        "encodings": {GraphEncoding.TENSORFLOW: 10},
        "targets": frozenset({ExecutionTarget.CPU}),
        "probe": lambda t, o: Availability.yes("cpu"),
    }
    fields.update(kwargs)
    return BackendSpec(**fields)  # type: ignore[arg-type]


def failure(site: Path, body: str) -> str:
    install(site, "wasinn-z-bad", "wasinn_testplug_dx", SPEC_IMPORTS + body)
    info = {p.name: p for p in PluginManager(environ={}).plugins()}["wasinn-z-bad"]
    assert info.status == "failed" and info.backends == ()
    return info.error


# -- hooks pluggy would accept silently ---------------------------------------------------------------


def test_a_hook_without_hookimpl_fails_the_plugin_with_the_fix(site):
    error = failure(site, "def wasinn_backends():\n    return []\n")
    assert error == (
        "wasinn_backends() is not marked @hookimpl, so wasinn never calls it: decorate it with @hookimpl "
        "(from wasinn_core import hookimpl)"
    )


def test_a_marked_function_naming_no_hook_fails_with_the_closest_hook(site):
    error = failure(site, "@hookimpl\ndef wasinn_backend():\n    return []\n")
    assert "wasinn_backend is marked @hookimpl but wasinn has no hook 'wasinn_backend'" in error
    assert "(did you mean wasinn_backends?)" in error
    assert "wasinn's hooks: wasinn_backends, wasinn_detect_encoding" in error


def test_an_unmarked_misspelt_hook_fails(site):
    error = failure(site, "def wasinn_detect(builders):\n    return None\n")
    assert "wasinn_detect() looks like a hook, but wasinn has no hook 'wasinn_detect'" in error
    assert "did you mean wasinn_detect_encoding?" in error and "not marked @hookimpl" in error


def test_a_plugin_with_no_hook_at_all_fails(site):
    error = failure(site, "VALUE = 1\n")
    assert error.startswith("implements no wasinn hook: mark its hook functions with @hookimpl")


def test_register_raises_instead_of_registering_a_plugin_that_does_nothing():
    class Plugin:
        def wasinn_backends(self):
            return []

    pm = PluginManager(autoload=False, environ={})
    with pytest.raises(PluginError, match=r"plugin 'mine': wasinn_backends\(\) is not marked @hookimpl"):
        pm.register(Plugin(), "mine")
    assert "mine" not in {p.name for p in pm.plugins()}


# -- capabilities ------------------------------------------------------------------------------------


def test_an_unknown_capability_feature_is_an_error_naming_the_known_ones():
    pm = PluginManager(autoload=False, environ={}, strict=True)
    bad = spec(capabilities=Capabilities(features=frozenset({"named_ios", "multi_output"})))
    with registered(pm, bad), pytest.raises(PluginError) as raised:
        pm.backends()
    message = str(raised.value)
    assert "backend 'zz': unknown capability feature 'named_ios' (did you mean 'named_io'?)" in message
    assert f"known features: {', '.join(sorted(KNOWN_FEATURES))}" in message


def test_capability_dtypes_must_be_tensor_types():
    pm = PluginManager(autoload=False, environ={})
    with registered(pm, spec(capabilities=Capabilities(dtypes=frozenset({"f32"})))):  # type: ignore[arg-type]
        assert pm.backends() == []
        (info,) = [p for p in pm.plugins() if p.status == "failed"]
    assert "capability dtypes must be TensorType members, got 'f32'" in info.error


# -- wasinn plugins ------------------------------------------------------------------------------------


def test_plugins_lists_hooks_description_capabilities_and_options():
    result = run_cli("plugins")
    assert result.returncode == 0, result.stderr
    paragraph = result.stdout.split("\n\n")
    (onnxref,) = [p for p in paragraph if p.startswith("onnxref ")]
    assert onnxref.splitlines()[:3] == [
        "onnxref (wasinn-onnxref 0.1.0): active",
        "  hooks: wasinn_backends",
        onnxref.splitlines()[2],
    ]
    assert "    description: onnx models; for now on onnx.reference (pure Python, exact, slow), a stand-in" in onnxref
    assert (
        "    capabilities: dtypes f16, f32, f64, bf16, u8, i32, i64; "
        "features dynamic_batch, multi_output, named_io, shape_checks, type_checks"
    ) in onnxref
    assert "    options: verbose (int, default 0)" in onnxref
    data = json.loads(run_cli("plugins", "--json").stdout)
    row = next(p for p in data["plugins"] if p["name"] == "onnxref")
    assert row["hooks"] == ["wasinn_backends"]
    assert row["backends"][0]["capabilities"]["features"] == sorted(
        ["named_io", "multi_output", "dynamic_batch", "shape_checks", "type_checks"]
    )
    assert row["backends"][0]["options"][0] == {
        "name": "verbose",
        "type": "int",
        "default": 0,
        "help": "onnx.reference verbosity (0-4), printed on stdout",
        "guest": True,
    }


def test_plugins_exits_1_on_a_failed_plugin_also_with_json(site):
    install(site, "wasinn-hookless", "wasinn_testplug_dx_cli", "def wasinn_backends():\n    return []\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    result = run_cli("plugins", "--json", env=env)
    assert result.returncode == 1
    row = next(p for p in json.loads(result.stdout)["plugins"] if p["name"] == "wasinn-hookless")
    assert row["status"] == "failed" and "is not marked @hookimpl" in row["error"]


def test_strict_mode_shows_the_plugins_traceback(site):
    body = "def helper():\n    raise ImportError('needs libfoo.so')\n\nhelper()\n"
    install(site, "wasinn-broken", "wasinn_testplug_dx_strict", body)
    env = {"PYTHONPATH": os.pathsep.join([str(site), *sys.path]), "WASINN_STRICT_PLUGINS": "1"}
    result = run_cli("plugins", env=env)
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert 'wasinn_testplug_dx_strict.py", line 2, in helper' in result.stderr
    assert result.stderr.rstrip().endswith(
        "wasinn: error: plugin 'wasinn-broken': cannot load: ImportError('needs libfoo.so')"
    )


def test_no_install_advice_points_at_a_registry():
    result = run_cli("plugins", env={"WASINN_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert "no backend plugin installed; install one from a wasinn checkout: pip install -e plugins/onnx" in (
        result.stdout
    )
    assert "pip install --find-links dist wasinn-onnx" in result.stdout


# -- conformance runs that test nothing -----------------------------------------------------------------


def test_a_backend_the_suite_has_no_models_for_fails_and_writes_its_report(site, tmp_path):
    """A TFLite backend: the suite makes no TFLite models, so nothing can be tested: red, not '3 skipped'."""
    body = (
        "@hookimpl\ndef wasinn_backends():\n"
        "    return [BackendSpec(name='tfliteonly', factory=lambda: None,\n"
        "        encodings={GraphEncoding.TENSORFLOWLITE: 100},\n"
        "        targets=frozenset({ExecutionTarget.CPU}), probe=lambda t, o: Availability.yes('cpu'))]\n"
    )
    install(site, "wasinn-tfliteonly", "wasinn_testplug_dx_tflite", SPEC_IMPORTS + body)
    env = {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    report = tmp_path / "report.json"
    result = run_cli("conformance", "--backend", "tfliteonly", "-q", "--json", str(report), env=env)
    assert result.returncode == 1, result.stdout
    message = (
        "no conformance case applies to backend 'tfliteonly': it claims tensorflowlite, and the suite has models for "
        "ggml, onnx, openvino, pytorch only"
    )
    assert f"FAILED: {message}" in result.stdout
    assert "skipped" not in result.stdout.splitlines()[-1]  # no empty-layer placeholders
    data = json.loads(report.read_text())
    assert data["cases"] == [] and data["problems"][0].startswith(message)


def test_a_run_where_every_case_is_skipped_fails_with_the_reasons():
    from wasinn_onnxref import backend_spec

    run = run_conformance(backend_spec(), target="gpu", select="abi/*")
    assert run.outcomes == {"skipped": 64} and not run.ok
    (problem,) = run.problems
    assert problem.startswith("nothing was tested on onnxref: all 64 of its cases were skipped: onnxref cannot use gpu")
    with pytest.raises(AssertionError, match="nothing was tested on onnxref"):
        run.assert_outcomes(failed=0)


# -- the in-process runner -------------------------------------------------------------------------------


def test_run_conformance_in_process_matches_the_command(tmp_path):
    from wasinn_onnxref import backend_spec

    run = run_conformance(backend_spec(), select="backend/*/f32/*")
    run.assert_outcomes(passed=7, failed=0, skipped=0)
    assert run.ok and {r.device for r in run.results} == {"cpu (onnx.reference)"}
    run.write_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["summary"] == {"passed": 7}


def test_run_conformance_applies_expectations_strictly(tmp_path):
    from wasinn_onnxref import backend_spec

    expectations = tmp_path / "e.toml"
    expectations.write_text(
        'version = 1\n[[backend]]\nname = "onnxref"\n'
        '[[backend.case]]\nid = "backend/onnx/onnx/cpu/f32/affine"\nexpected = "fail"\nreason = "claimed broken"\n'
        '[[backend.case]]\nid = "backend/onnx/onnx/cpu/f32/transpose"\naction = "skip"\nreason = "not today"\n'
    )
    run = run_conformance(backend_spec(), expectations=expectations, select="backend/*/f32/*")
    by_id = {r.case.id: r for r in run.results}
    assert by_id["backend/onnx/onnx/cpu/f32/affine"].outcome == "failed"  # an unexpected pass
    assert "[XPASS(strict)] expectations: claimed broken" in by_id["backend/onnx/onnx/cpu/f32/affine"].message
    assert by_id["backend/onnx/onnx/cpu/f32/transpose"].outcome == "skipped"
    with pytest.raises(AssertionError, match="FAILED onnxref:backend/onnx/onnx/cpu/f32/affine"):
        run.assert_outcomes(failed=0)


# -- wasinn new-plugin ---------------------------------------------------------------------------------------


def test_the_template_is_new_plugin_onnxref_byte_for_byte(tmp_path):
    result = run_cli("new-plugin", "onnxref", "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    made = tmp_path / "wasinn-onnxref"
    files = sorted(str(p.relative_to(made)) for p in made.rglob("*") if p.is_file())
    shipped = sorted(
        str(p.relative_to(TEMPLATE)) for p in TEMPLATE.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    assert files == shipped
    _, mismatch, errors = filecmp.cmpfiles(made, TEMPLATE, files, shallow=False)
    assert mismatch == errors == [], "regenerate: wasinn new-plugin onnxref --output examples --force, then move it"


def test_the_suite_encodings_of_the_generator_are_the_suites():
    assert set(SUITE_ENCODINGS) == set(FORMATS)


@pytest.mark.parametrize("encoding", ["ggml", "openvino"])
def test_a_plugin_for_another_encoding_passes_on_its_stand_in(tmp_path, encoding, monkeypatch):
    """Out of the box: its ONNX stand-in passes the suite; its own encoding is refused with what to write."""
    folder = write_project(PluginProject.parse(f"my-{encoding}", encoding), tmp_path)
    monkeypatch.syspath_prepend(str(folder))
    module = __import__(f"wasinn_my_{encoding}")
    spec = module.backend_spec()
    assert spec.encodings == {GraphEncoding(encoding): 100, GraphEncoding.ONNX: 1}
    run = run_conformance(spec, expectations=folder / "conformance.toml")
    run.assert_outcomes(failed=0)
    assert run.outcomes["passed"] >= 40
    pm = PluginManager(autoload=False, environ={}, strict=True)
    with registered(pm, spec):
        from wasinn_core import Host

        host = Host(plugins=pm)
        with pytest.raises(UnsupportedOperation, match=f"my-{encoding} cannot load {encoding} models yet: load_native"):
            host.registry.load([memoryview(b"model")], GraphEncoding(encoding), (ExecutionTarget.CPU,))
        host.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad Name"], "NAME 'Bad Name': a plugin name is lower-case letters"),
        (["ok", "--encoding", "onx"], "--encoding onx: unknown graph encoding; use one of openvino, onnx"),
        (["ok", "--encoding", "autodetect"], "--encoding autodetect: unknown graph encoding"),
    ],
)
def test_new_plugin_usage_errors(args, message, tmp_path):
    result = run_cli("new-plugin", *args, "--output", str(tmp_path))
    assert result.returncode == 2 and message in result.stderr


def test_new_plugin_never_overwrites_without_force(tmp_path):
    project = PluginProject.parse("wasinn-mine")
    assert project.dist == "wasinn-mine" and project.module == "wasinn_mine"
    write_project(project, tmp_path)
    (tmp_path / "wasinn-mine" / "README.md").write_text("mine")
    with pytest.raises(UsageError, match=r"wasinn-mine already has README\.md, conformance\.toml"):
        write_project(project, tmp_path)
    write_project(project, tmp_path, force=True)
    assert (tmp_path / "wasinn-mine" / "README.md").read_text().startswith("# wasinn-mine")


# -- make dist -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_make_dist_wheels_install_with_find_links_into_a_fresh_venv(tmp_path):
    """wasinn is not on a package index: `make dist` builds a wheel of every distribution, and those install
    (dependencies from the index) into an empty venv, with the plugin generator's templates inside."""
    import subprocess
    import tomllib
    import zipfile

    dist = tmp_path / "dist"
    made = subprocess.run(["make", "-C", str(ROOT), "dist", f"DIST={dist}"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-3000:]
    projects = [ROOT, *sorted(ROOT.glob("plugins/*/")), ROOT / "conformance", TEMPLATE]
    names = [tomllib.loads((p / "pyproject.toml").read_text())["project"]["name"] for p in projects]
    wheels = {w.name.split("-")[0].replace("_", "-"): w for w in dist.glob("*.whl")}
    assert sorted(wheels) == sorted(names)
    with zipfile.ZipFile(wheels["wasinn-core"]) as wheel:
        assert "wasinn_core/_template/@@module@@/_backend.py.tmpl" in wheel.namelist()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--find-links", str(dist)]
    installed = subprocess.run(
        [*pip, "wasinn-core", "wasinn-conformance", "wasinn-onnxref"], capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {"HOME": str(tmp_path)}
    wasinn = str(venv / "bin" / "wasinn")
    listing = subprocess.run([wasinn, "plugins"], capture_output=True, text=True, env=env, timeout=120)
    assert listing.returncode == 0 and "onnxref (wasinn-onnxref 0.1.0): active" in listing.stdout
    graded = subprocess.run(
        [wasinn, "conformance", "--backend", "onnxref", "-q", "-k", "inference"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert graded.returncode == 0, graded.stdout[-3000:]
    generated = subprocess.run([wasinn, "new-plugin", "zed"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert generated.returncode == 0 and (tmp_path / "wasinn-zed" / "wasinn_zed" / "_backend.py").exists()


def test_the_authors_fixture_raises_on_a_refused_spec(wasinn_register, wasinn_plugins):
    wasinn_register(spec(capabilities=Capabilities(features=frozenset({"streaming"}))))
    with pytest.raises(PluginError, match="unknown capability feature 'streaming'"):
        wasinn_plugins.backends()
