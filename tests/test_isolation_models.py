"""Real models, real libraries, real guests: the routes to host files each library offers, closed twice.

For each format and library, a model that makes the library read a host file (absolute path, a path
relative to the host's working directory, a symlink in the guest's preopened folder):

- through ``wasinn run`` on default settings, it is refused in process (the operator screen, the
  external-data refusal, IR-only ``openvino``) and no byte of the file reaches the guest;
- with those in-process defences out of the way, the library runs the model in a confined worker and
  the kernel refuses the read;
- with both out of the way (the model in the host process), the library does read the file: the
  assertions above can fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from wasinn_core import (
    Config,
    ExecutionTarget,
    GraphEncoding,
    Host,
    InvalidArgument,
    PluginManager,
    Tensor,
    WasiNNError,
)

from . import hostile
from .conftest import GUESTS
from .test_plugins import run_cli

torch = pytest.importorskip("torch", reason="torch is installed by `make test`")
pytest.importorskip("openvino", reason="openvino is installed by `make test`")

CPU = ExecutionTarget.CPU
PYTORCH, ONNX, OPENVINO = GraphEncoding.PYTORCH, GraphEncoding.ONNX, GraphEncoding.OPENVINO


@pytest.fixture
def secret(tmp_path: Path) -> tuple[Path, bytes]:
    value = f"TOP{os.getpid():08d}SECRET".encode()[:16].ljust(16, b"!")
    path = tmp_path / "secret.bin"
    path.write_bytes(value)
    return path, value


def paths(secret: Path, preopen: Path) -> dict[str, str]:
    """The ways a model names the secret: absolute, relative to the host's cwd, through a symlink."""
    link = preopen / "link.bin"
    if not link.exists():
        link.symlink_to(secret)
    return {"absolute": str(secret), "relative": secret.name, "symlink": str(link)}


def as_floats(value: bytes) -> list[float]:
    return [float(b) for b in value]


# -- through `wasinn run`, default settings -------------------------------------------------------------


@pytest.mark.parametrize("how", ["absolute", "relative", "symlink"])
@pytest.mark.parametrize(
    ("fmt", "encoding", "prefer", "refusal"),
    [
        ("torchscript", "pytorch", None, "aten::from_file (reads a host file)"),
        ("onnx", "onnx", None, "references external data"),
        ("onnx", "onnx", "onnx=openvino", "references external data"),
        ("onnx", "openvino", None, "references external data"),  # refused in core before the plugin sees it
    ],
)
def test_file_reading_models_are_refused_through_wasinn_run(tmp_path, secret, how, fmt, encoding, prefer, refusal):
    path, value = secret
    preopen = tmp_path / "guest"
    preopen.mkdir()
    where = paths(path, preopen)[how]
    data = hostile.torchscript_reading(where) if fmt == "torchscript" else hostile.onnx_reading(where)
    (preopen / "model").write_bytes(data)
    (preopen / "input.bin").write_bytes(np.zeros(1, np.float32).tobytes())
    builders = ["--model", "/m/model"] + (["--model", "/m/model"] if encoding == "openvino" else [])
    result = run_cli(
        "run", "--dir", f"{preopen}::/m", *(["--nn-prefer", prefer] if prefer else []),
        str(GUESTS / "classify.wasm"), *builders, "--encoding", encoding, "--dims", "1", "/m/input.bin",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert "load failed: invalid_argument" in result.stderr and refusal in result.stderr
    assert "top-" not in result.stdout and value.decode() not in result.stdout + result.stderr


def test_encoding_openvino_takes_ir_only(digits_onnx):
    """OpenVINO reads ONNX under encoding openvino too (and follows its paths): the plugin refuses it."""
    host = Host(Config.from_dict({"isolation": {"guest": "none"}}), plugins=PluginManager(environ={}))
    session = host.new_session()
    with pytest.raises(InvalidArgument, match="encoding openvino takes OpenVINO IR"):
        session.load([memoryview(digits_onnx), memoryview(b"")], OPENVINO, CPU)
    session.close()
    host.close()


# -- the defences in process switched off: the kernel still says no ---------------------------------------------


def load_and_run(host: Host, builders: list[bytes], encoding: GraphEncoding) -> np.ndarray:
    session = host.new_session()
    try:
        ctx = session.init_execution_context(session.load([memoryview(b) for b in builders], encoding, CPU))
        session.set_input(ctx, 0, Tensor.from_array(np.zeros(1, np.float32)))
        session.compute(ctx)
        return np.array(session.get_output(ctx, 0).data)
    finally:
        session.close()


def unscreened(guest: str) -> Host:
    config = {"backends": {"pytorch": {"screen_operators": False}}, "isolation": {"guest": guest}}
    return Host(Config.from_dict(config), plugins=PluginManager(environ={}))


@pytest.mark.parametrize("how", ["absolute", "relative", "symlink"])
def test_an_unscreened_torchscript_model_cannot_read_the_file_in_its_worker(tmp_path, secret, monkeypatch, how):
    path, value = secret
    monkeypatch.chdir(path.parent)
    data = hostile.torchscript_reading(paths(path, tmp_path)[how])
    host = unscreened("process")
    with pytest.raises(WasiNNError, match=r"Permission denied|No such file") as info:
        load_and_run(host, [data], PYTORCH)
    assert value.decode() not in info.value.message
    host.close()
    leaky = unscreened("none")  # the same model in the host process reads it
    assert load_and_run(leaky, [data], PYTORCH).tolist() == as_floats(value)
    leaky.close()


@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_openvino_following_onnx_external_data_reads_nothing_in_a_worker(tmp_path, secret, monkeypatch, how):
    """The ONNX external-data refusal bypassed: the bytes go straight to OpenVINO, in a worker and in process.

    OpenVINO 2026 itself refuses paths that resolve outside its base folder (the working directory): in
    process, a model naming a file beside where the host runs still reads it; in a worker, whose working
    directory is its own scratch folder, nothing of the host's is there to read.
    """
    path, value = secret
    monkeypatch.chdir(path.parent)
    model = hostile.onnx_reading(paths(path, tmp_path)[how])
    host = Host(Config(), plugins=PluginManager(environ={}))
    registry = host.registry
    spec = registry.specs["openvino"]
    options = registry.options(spec)
    isolated = registry.isolator.backend(spec, ONNX, True, host.config.limits, None)
    with pytest.raises(
        WasiNNError, match=r"outside the base directory|Permission denied|No such file|invalid external data"
    ) as info:
        isolated.load([memoryview(model)], ONNX, CPU, options)
    assert value.decode() not in info.value.message
    if how == "relative":  # in process, OpenVINO reads the host file for the model
        graph = registry.backend(spec).load([memoryview(model)], ONNX, CPU, options)
        context = graph.init_execution_context()
        context.set_input(0, Tensor.from_array(np.zeros(1, np.float32)))
        context.compute()
        assert np.array(context.get_output(0).data).view(np.uint8).tobytes() == value
    host.close()


def test_isolated_models_compute_what_they_compute_in_process(digits_onnx, digit_image):
    """Every in-tree local backend, guest bytes in a worker: bit-identical to the same backend in process."""
    from .conftest import DIGITS_MODEL

    cases = {
        "onnx": ([digits_onnx], ONNX),
        "torchscript": ([(DIGITS_MODEL / "digits.pt").read_bytes()], PYTORCH),
        "exported_program": ([(DIGITS_MODEL / "digits.pt2").read_bytes()], PYTORCH),
        "ir": ([(DIGITS_MODEL / "digits.xml").read_bytes(), (DIGITS_MODEL / "digits.bin").read_bytes()], OPENVINO),
    }
    results: dict[str, dict[str, np.ndarray]] = {}
    for guest in ("process", "none"):
        host = Host(Config.from_dict({"isolation": {"guest": guest}}), plugins=PluginManager(environ={}))
        for name, (builders, encoding) in cases.items():
            session = host.new_session()
            graph = session.load([memoryview(b) for b in builders], encoding, CPU)
            assert session.graph_info(graph).isolation == guest
            ctx = session.init_execution_context(graph)
            session.set_input(ctx, 0, Tensor.from_array(digit_image))
            session.compute(ctx)
            results.setdefault(name, {})[guest] = np.array(session.get_output(ctx, 0).data)
            session.close()
        host.close()
    for name, by_mode in results.items():
        np.testing.assert_array_equal(by_mode["process"], by_mode["none"], err_msg=name)
