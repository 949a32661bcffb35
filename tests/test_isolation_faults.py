"""Models that crash, hang or exhaust memory inside their library, through real guests, on every backend.

One host serves an honest guest (the digits demo) in a loop the whole time, while other guests load
the fault models of :mod:`tests.faults` into the same host: each such guest gets an errno for its
graph, the host process lives on, and the honest guest's results never change.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from wasinn_core import Config, Host, PluginManager
from wasinn_core.testing import run_guest

from . import faults
from .conftest import DIGITS_IMAGES, GUESTS, digits_config

pytest.importorskip("torch", reason="torch is installed by `make test`")
pytest.importorskip("openvino", reason="openvino is installed by `make test`")

# format, encoding, the backend preferred for it, where the fault strikes: (crash, hang, allocate)
CASES = {
    "onnx-onnxruntime": ("onnx", "onnx", "onnxruntime", ("load", "compute", "compute")),
    "onnx-openvino": ("onnx", "onnx", "openvino", ("load", "compute", "load")),
    "ir-openvino": ("ir", "openvino", "openvino", ("load", "compute", "load")),
    "torchscript": ("torchscript", "pytorch", "pytorch", ("compute", "compute", "compute")),
    "exported_program": ("exported_program", "pytorch", "pytorch", ("compute", "compute", "compute")),
}
LIMITS = {"compute_timeout_s": 3, "load_timeout_s": 60, "worker_memory_bytes": "2GiB"}
CAUSE = {"crash": "died during", "hang": "did not finish compute within 3 s", "allocate": "alloc"}


@pytest.fixture(scope="module")
def honest():
    """The digits demo, run again and again on its own host while the fault tests run."""
    host = Host(digits_config(), plugins=PluginManager(environ={}))
    failures: list[str] = []
    rounds = [0]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            run = run_guest(host, GUESTS / "digits.wasm", ["/images"], [(str(DIGITS_IMAGES), "/images", True)])
            if run.exit_code != 0 or "accuracy: 38/40 = 95.0%" not in run.stdout:
                failures.append(run.stdout[-300:] + run.stderr[-300:])
            rounds[0] += 1

    thread = threading.Thread(target=loop, name="honest-guest")
    thread.start()
    yield
    stop.set()
    thread.join(120)
    host.close()
    assert rounds[0] >= 2, "the honest guest did not get to run"
    assert not failures, failures[0]


def write_model(folder: Path, fmt: str, fault: str) -> list[str]:
    if fmt == "onnx":
        (folder / "model").write_bytes(faults.onnx(fault))
        return ["--model", "/m/model"]
    if fmt == "ir":
        xml, weights = faults.ir(fault, folder)
        (folder / "model.xml").write_bytes(xml)
        (folder / "model.bin").write_bytes(weights)
        return ["--model", "/m/model.xml", "--model", "/m/model.bin"]
    data = faults.torchscript(fault) if fmt == "torchscript" else faults.exported_program(fault)
    (folder / "model").write_bytes(data)
    return ["--model", "/m/model"]


@pytest.mark.parametrize("fault", faults.FAULTS)
@pytest.mark.parametrize("case", list(CASES))
def test_a_fault_in_the_library_costs_only_that_guests_graph(honest, tmp_path, caplog, case, fault):
    fmt, encoding, backend, where = CASES[case]
    config = Config.from_dict({"limits": LIMITS, "preferences": {encoding: [backend]}})
    host = Host(config, plugins=PluginManager(environ={}))
    args = write_model(tmp_path, fmt, fault)
    itype = faults.input_type(fmt, fault)
    (tmp_path / "x.bin").write_bytes(np.ones(1, np.int32 if itype == "i32" else np.float32).tobytes())
    args += ["--encoding", encoding, "--type", itype, "--dims", "1", "/m/x.bin"]
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        run = run_guest(host, GUESTS / "classify.wasm", args, [(str(tmp_path), "/m", True)])
    host.close()
    step = where[faults.FAULTS.index(fault)]
    assert run.exit_code == 1 and f"classify: {step} failed:" in run.stderr, run.stderr
    causes = " | ".join(r.getMessage() for r in caplog.records)
    assert CAUSE[fault] in causes, causes
    if fault == "crash":
        assert "killed by SIG" in causes
