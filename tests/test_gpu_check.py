"""The GPU check's parts that run without a GPU, and the confinement changes CUDA needs.

``make gpu-check`` (in ``make test``) runs the whole check here with every GPU part skipped; these
tests pin what it relies on: a confined worker can name its threads (cuInit fails with error 304
otherwise), Landlock alone still confines where libseccomp is missing, workers find a driver library
installed outside the system folders, the plugin's CUDA reason carries torch's own, the check catches
a reader falling back to ``torch.export.load``, and the docs show the commands ``make`` runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is installed by `make test`")

from benchmarks.gpu import _checks  # noqa: E402
from benchmarks.gpu._report import Report, SkipCheck  # noqa: E402
from wasinn_core._isolation import _confine  # noqa: E402
from wasinn_core._isolation._workers import _worker_env  # noqa: E402

from .conftest import ROOT  # noqa: E402

NO_LIBSECCOMP = 'raise RuntimeError("Unable to find libseccomp")\n'  # what pyseccomp raises without the library


def test_landlock_alone_confines_where_libseccomp_is_missing(tmp_path, monkeypatch):
    (tmp_path / "pyseccomp.py").write_text(NO_LIBSECCOMP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "pyseccomp", raising=False)
    assert _confine._seccomp_available() is False  # not an exception out of the probe
    confinement = _confine.probe()
    assert confinement.seccomp is False
    assert confinement.available == (confinement.landlock_abi >= 4)
    if confinement.available:
        assert "seccomp" not in confinement.describe()


def test_workers_read_the_loaders_folders(tmp_path):
    driver = tmp_path / "nvidia" / "lib64"
    driver.mkdir(parents=True)
    extra = tmp_path / "extra"
    extra.mkdir()
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "nvidia.conf").write_text(f"# the driver\n{driver}\n")
    (tmp_path / "ld.so.conf").write_text(f"include {tmp_path}/conf.d/*.conf\n/nowhere\n")
    found = _confine._loader_dirs(str(tmp_path / "ld.so.conf"), {"LD_LIBRARY_PATH": f"{extra}:relative:"})
    assert found == [str(extra), str(driver)]


def test_workers_keep_the_library_search_path_and_no_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    env = _worker_env(str(tmp_path))
    assert env["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64"
    assert "AWS_SECRET_ACCESS_KEY" not in env


@pytest.mark.skipif(_confine.probe().landlock_abi < 1, reason="this kernel has no Landlock")
def test_a_confined_process_names_its_threads_and_nothing_more(tmp_path):
    """What cuInit does (error 304 where refused), from a process confined as a worker is."""
    result = subprocess.run(
        [sys.executable, "-P", "-m", "benchmarks.gpu._probe", "both"],
        cwd=tmp_path,  # its scratch folder
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["confinement"]["landlock_abi"] >= 1
    assert seen["thread_names"] == {"own": "ok", "thread-self": "ok", "another": "ok", "process": "ok"}
    assert seen["paths"]["/proc/devices"] == "EACCES"  # the rest of /proc stays closed
    assert seen["paths"]["/tmp"] == "EACCES"


def test_the_cuda_reason_is_torchs_own(monkeypatch):
    """A double for a CUDA build whose driver refuses (no GPU here): torch's warning becomes the reason."""
    from wasinn_pytorch import _devices

    def refused() -> bool:
        warnings.warn(
            "CUDA initialization: Unexpected error from cudaGetDeviceCount(). Error 304: OS call failed or "
            "operation not supported on this OS",
            stacklevel=1,
        )
        return False

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", refused)
    _devices._cuda_devices.cache_clear()
    try:
        facts = _devices.DeviceFacts.current()
    finally:
        _devices._cuda_devices.cache_clear()
    assert facts.cuda_devices == 0
    assert "CUDA initialisation failed: CUDA initialization: Unexpected error" in facts.cuda_reason()
    assert "Error 304" in facts.cuda_reason()


def test_cpu_inference_moves_nothing_to_a_device():
    from wasinn_pytorch import device_copies

    host = _checks.session_host()
    session = host.new_session()
    try:
        before = device_copies()
        graph = _checks.load(session, (_checks.DIGITS / "digits.pt").read_bytes(), gpu=False)
        (probs,) = _checks.infer(session, graph, _checks.digits_input())
    finally:
        session.close()
        host.close()
    assert probs.shape == (1, 10)
    assert device_copies() - before == type(before)()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from benchmarks.gpu._models import make_small

    return make_small(tmp_path_factory.mktemp("small"))


def machine(tmp_path) -> _checks.Machine:
    return _checks.Machine(0, "no CUDA in this test", "quick", tmp_path)


def test_the_check_catches_a_reader_falling_back_to_torch_export_load(small, tmp_path, monkeypatch):
    from wasinn_pytorch import _backend

    result = _checks.check_archive(machine(tmp_path), small, "exported_program", _checks.Tripwire())
    assert result[0].startswith(f"torch {torch.__version__}'s own exported_program archive")
    monkeypatch.setattr(_backend, "load_exported_program", lambda data, screen=True: torch.export.load(data))
    with pytest.raises(AssertionError, match=r"torch.export.load was called"):
        _checks.check_archive(machine(tmp_path), small, "exported_program", _checks.Tripwire())


def test_gpu_checks_skip_with_the_plugins_reason(tmp_path):
    report = Report(tmp_path / "out")
    report.run("s", "cuda", lambda: _checks.check_cuda(machine(tmp_path)))
    report.run("s", "fallback", lambda: _checks.check_fallback(machine(tmp_path)))
    (cuda, fallback) = report.checks
    assert cuda.status == "skip" and "CUDA not available" in cuda.detail
    assert fallback.status == "pass" and "ran on cpu" in fallback.detail


def test_the_report_says_what_ran_and_what_did_not(tmp_path):
    report = Report(tmp_path / "out")
    report.run("plugin", "passes", lambda: ("fine", {}), goal="equal")
    report.run("plugin", "fails", lambda: (_ for _ in ()).throw(AssertionError("differs by 1e-1")), goal="memory")
    report.run("plugin", "skips", lambda: (_ for _ in ()).throw(SkipCheck("no CUDA here")))
    report.benchmark.append({"model": "m", "batch": 1, "guest_cpu_us": 10.0})
    report.write()
    data = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert {k: data["summary"][k] for k in ("pass", "fail", "skip")} == {"pass": 1, "fail": 1, "skip": 1}
    assert data["goals"]["results_equal_cpu"] is True
    assert data["goals"]["no_device_memory_growth"] is False  # a failed check counts against its goal
    assert data["goals"]["guest_gpu_within_1_05_of_native"] is None
    text = (tmp_path / "out" / "gpu-check.md").read_text()
    assert "| fails | fail | differs by 1e-1 |" in text and "| skips | skip | no CUDA here |" in text
    assert re.search(r"\| m \| 1 \| – \| – \| – \| 10\.0 \|", text)


def test_the_docs_show_the_commands_make_runs():
    makefile = (ROOT / "Makefile").read_text()
    page = (ROOT / "docs" / "backends" / "pytorch.md").read_text()
    assert "GPU_WHEELS := .gpu-wheels" in makefile
    assert "-m benchmarks.gpu --prepare $(GPU_WHEELS)" in makefile
    assert "-m benchmarks.gpu --install $(GPU_WHEELS) --out" in makefile
    assert "make gpu-wheels" in page
    assert "python3 -m benchmarks.gpu --install .gpu-wheels --out $OUT/gpu" in page
    assert re.search(r"^test: .*\bgpu-check\b", makefile, re.M), "make test runs make gpu-check"


def test_relative_error_is_scale_free():
    assert _checks.relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0
    assert _checks.relative_error(np.array([100.0, 201.0]), np.array([100.0, 200.0])) == pytest.approx(0.005)
