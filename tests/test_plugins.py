"""Plugin discovery through real entry points: failure isolation, env vars, API versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wasinn_core import Host, PluginError, PluginManager

SPEC_IMPORTS = "from wasinn_core import hookimpl, BackendSpec, Availability, GraphEncoding, ExecutionTarget\n"
GOOD_SPEC = """
def _spec(name="{name}", api=(1, 0)):
    return BackendSpec(name=name, factory=lambda: None, encodings={{GraphEncoding.TENSORFLOW: 10}},
                       targets=frozenset({{ExecutionTarget.CPU}}),
                       probe=lambda t, o: Availability.no("test plugin"), api_version=api)
"""


def install(site: Path, dist: str, module: str, body: str, ep_name: str | None = None) -> None:
    """Create an installed distribution with one ``wasinn`` entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[wasinn]\n{ep_name or dist} = {module}\n")


def installed() -> list[str]:
    """The backends of the plugins really installed in this environment."""
    return [b.name for b in PluginManager(environ={}).backends()]


def by_name(pm: PluginManager) -> dict[str, object]:
    return {p.name: p for p in pm.plugins()}


def test_installed_onnx_plugin_is_found(plugins):
    info = by_name(plugins)["onnx"]
    assert info.status == "active" and info.distribution == "wasinn-onnx"
    assert [b.name for b in info.backends] == ["onnxruntime"]
    assert info.backends[0].library_version


def test_broken_import_is_isolated(site):
    install(site, "wasinn-broken", "wasinn_testplug_broken", "raise ImportError('needs libfoo.so')\n")
    pm = PluginManager(environ={})
    infos = by_name(pm)
    assert infos["wasinn-broken"].status == "failed"
    assert "needs libfoo.so" in infos["wasinn-broken"].error
    assert infos["onnx"].status == "active"
    assert [b.name for b in pm.backends()] == installed()
    Host(plugins=pm)  # the host still comes up


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("@hookimpl\ndef wasinn_backends():\n    raise RuntimeError('boom')\n", "boom"),
        ("@hookimpl\ndef wasinn_backends():\n    return ['not a spec']\n", "expected a BackendSpec"),
        ("@hookimpl\ndef wasinn_backends():\n    return [_spec(api=(2, 0))]\n", "needs plugin API 2.0"),
        ("@hookimpl\ndef wasinn_backends():\n    return [_spec(api=(1, 99))]\n", "needs plugin API 1.99"),
        (
            "@hookimpl\ndef wasinn_backends():\n    return [_spec(name='onnxruntime')]\n",
            "already provided by plugin 'onnx'",
        ),
        ("@hookimpl\ndef wasinn_backends():\n    return [_spec(name='bad name!')]\n", "invalid backend name"),
    ],
)
def test_invalid_backends_fail_only_their_plugin(site, body, message):
    install(site, "wasinn-z-bad", "wasinn_testplug_bad", SPEC_IMPORTS + GOOD_SPEC.format(name="zz") + body)
    pm = PluginManager(environ={})
    infos = by_name(pm)
    assert infos["wasinn-z-bad"].status == "failed"
    assert message in infos["wasinn-z-bad"].error
    assert [b.name for b in pm.backends()] == installed()


def test_good_third_party_plugin(site):
    body = SPEC_IMPORTS + GOOD_SPEC.format(name="tfmock") + "@hookimpl\ndef wasinn_backends():\n    return [_spec()]\n"
    baseline = installed()
    install(site, "wasinn-tf", "wasinn_testplug_tf", body)
    pm = PluginManager(environ={})
    assert sorted(b.name for b in pm.backends()) == sorted([*baseline, "tfmock"])
    info = by_name(pm)["wasinn-tf"]
    assert info.version == "1.2.3" and info.distribution == "wasinn-tf"


def test_strict_env_makes_failures_fatal(site):
    install(site, "wasinn-broken", "wasinn_testplug_broken2", "raise ImportError('nope')\n")
    with pytest.raises(PluginError, match="nope"):
        PluginManager(environ={"WASINN_STRICT_PLUGINS": "1"})


def test_disable_autoload_env():
    pm = PluginManager(environ={"WASINN_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert pm.backends() == []
    assert [p.name for p in pm.plugins()] == ["wasinn.builtin"]


def test_allow_list_env_by_entry_point_or_distribution(site):
    install(site, "wasinn-broken", "wasinn_testplug_broken3", "raise ImportError('nope')\n")
    for allow in ("onnx", "wasinn-onnx"):
        infos = by_name(PluginManager(environ={"WASINN_PLUGINS": allow}))
        assert infos["onnx"].status == "active"
        assert infos["wasinn-broken"].status == "blocked"


def test_block_list_env(site):
    infos = by_name(PluginManager(environ={"WASINN_DISABLED_PLUGINS": "wasinn-onnx, other"}))
    assert infos["onnx"].status == "blocked"


def test_detect_hook_of_a_plugin_runs_before_the_builtin(site):
    body = SPEC_IMPORTS + (
        "@hookimpl\ndef wasinn_detect_encoding(builders):\n"
        "    return GraphEncoding.TENSORFLOW if bytes(builders[0][:4]) == b'TFSM' else None\n"
    )
    install(site, "wasinn-sniff", "wasinn_testplug_sniff", body)
    pm = PluginManager(environ={})
    assert pm.detect_encoding([memoryview(b"TFSM....")]).value == "tensorflow"
    assert pm.detect_encoding([memoryview(b"GGUF....")]).value == "ggml"  # builtin still runs after


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "wasinn_core", *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=timeout
    )


def test_plugins_command_shows_failed_plugin(site):
    install(site, "wasinn-broken", "wasinn_testplug_broken4", "raise ImportError('needs libbar')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    text = run_cli("plugins", env=env)
    assert text.returncode == 1  # listed, skipped, and the command says something is broken
    assert "1 plugin(s) failed and are skipped: wasinn-broken" in text.stderr
    assert "wasinn-broken" in text.stdout and "failed" in text.stdout and "needs libbar" in text.stdout
    assert "backend onnxruntime" in text.stdout
    assert "gpu: unavailable: CUDAExecutionProvider not available" in text.stdout
    data = json.loads(run_cli("plugins", "--json", env=env).stdout)
    status = {p["name"]: p["status"] for p in data["plugins"]}
    assert status["wasinn-broken"] == "failed" and status["onnx"] == "active"
    onnx = next(p for p in data["plugins"] if p["name"] == "onnx")
    assert onnx["backends"][0]["targets"]["cpu"] == {"available": True, "device": "CPUExecutionProvider", "reason": ""}
    assert onnx["backends"][0]["encodings"] == {"onnx": 100}
