"""wasinn-remote against a real Open Inference Protocol server on loopback (KServe, serving ONNX with onnxruntime)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
from collections.abc import Iterator

import numpy as np
import pytest
from wasinn_remote.loopback import Running, free_port, running

from wasinn_core import (
    BackendError,
    Busy,
    Config,
    ExecutionTarget,
    GraphEncoding,
    Host,
    InvalidArgument,
    NotFound,
    Tensor,
    UnsupportedOperation,
)
from wasinn_core.testing import check_onnx_numbering, run_guest

from .conftest import DIGITS_IMAGES, DIGITS_MODEL, GUESTS, read_pgm
from .test_plugins import run_cli

SLOW_DELAY_S = 3.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``python -m wasinn_remote.loopback`` in its own process, with the digits model and the test models."""
    if importlib.util.find_spec("kserve") is None:  # not imported here: its protobufs clash with tritonclient's
        pytest.skip("the loopback server needs wasinn-remote[loopback] (kserve)")
    repository = tmp_path_factory.mktemp("repository")
    (repository / "digits").mkdir()
    shutil.copy(DIGITS_MODEL / "digits.onnx", repository / "digits" / "model.onnx")
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running(repository, log, test_models=True, delay=SLOW_DELAY_S) as loop:
        yield loop


def remote_host(url: str, model: str = "digits", **options: object) -> Host:
    config = {
        "models": [{"name": model, "encoding": "onnx", "backend": "remote", "options": {"model": model}}],
        "backends": {"remote": {"url": url, "timeout_s": 1.5, "retries": 1, **options}},
    }
    return Host(Config.from_dict(config, source="<test>"))


def _images(n: int = 5) -> list[np.ndarray]:
    return [read_pgm(p) for p in sorted(DIGITS_IMAGES.glob("*.pgm"))[:n]]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_named_model_gives_what_local_onnxruntime_gives(server, protocol):
    import onnxruntime as ort

    local = ort.InferenceSession(str(DIGITS_MODEL / "digits.onnx"))
    host = remote_host(getattr(server, protocol))
    session = host.new_session()
    ctx = session.init_execution_context(session.load_by_name("digits"))
    info = session.graph_info(session.load_by_name("digits"))
    assert info.backend == "remote" and info.device == f"{getattr(server, protocol)} digits"
    for image in _images():
        session.set_input(ctx, "pixels", Tensor.from_array(image))
        session.compute(ctx)
        assert session.output_names(ctx) == ["probabilities"]
        np.testing.assert_array_equal(session.get_output(ctx, 0).data, local.run(None, {"pixels": image})[0])
    session.close()
    host.close()


def test_a_guest_runs_on_the_remote_backend_as_on_the_local_one(server):
    dirs = ((str(DIGITS_IMAGES), "/images", True),)
    local = Host(
        Config.from_dict(
            {"models": [{"name": "digits", "encoding": "onnx", "path": str(DIGITS_MODEL / "digits.onnx")}]}
        )
    )
    expected = run_guest(local, GUESTS / "digits.wasm", ["/images"], dirs)
    host = remote_host(server.http)
    got = run_guest(host, GUESTS / "digits.wasm", ["/images"], dirs)
    host.close()
    local.close()
    assert got.exit_code == 0, got.stderr
    assert got.stdout == expected.stdout


def test_a_guests_own_model_is_uploaded_to_the_repository_and_removed_after(server):
    config = {
        "preferences": {"onnx": ["remote"]},
        "backends": {"remote": {"url": server.http, "repository": str(server.repository)}},
    }
    host = Host(Config.from_dict(config, source="<test>"))
    dirs = ((str(DIGITS_IMAGES), "/images", True), (str(DIGITS_MODEL), "/model", True))
    run = run_guest(host, GUESTS / "digits.wasm", ["--model", "/model/digits.onnx", "/images"], dirs)
    assert run.exit_code == 0, run.stderr
    assert "accuracy: 38/40" in run.stdout
    host.close()
    assert sorted(p.name for p in server.repository.iterdir()) == ["digits"]  # the upload is gone


def test_an_uploaded_onnx_model_is_numbered_as_its_graph(server):
    """The kit's ONNX numbering check: the server's metadata order and the ports it drops do not matter."""
    config = {"backends": {"remote": {"url": server.http, "repository": str(server.repository)}}}
    host = Host(Config.from_dict(config, source="<test>"))
    check_onnx_numbering(host, "remote")
    host.close()
    assert sorted(p.name for p in server.repository.iterdir()) == ["digits"]


def test_a_guests_own_model_without_a_repository_is_refused_and_the_host_keeps_serving(server):
    host = remote_host(server.http)
    session = host.new_session()
    model = memoryview((DIGITS_MODEL / "digits.onnx").read_bytes())
    with pytest.raises(UnsupportedOperation, match=r"need \[backends.remote\] repository"):
        host.registry.load([model], GraphEncoding.ONNX, (ExecutionTarget.CPU,), backend="remote")
    ctx = session.init_execution_context(session.load_by_name("digits"))
    session.set_input(ctx, 0, Tensor.from_array(_images(1)[0]))
    session.compute(ctx)
    session.close()
    host.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_failures_are_clear_errors_and_the_host_keeps_serving(server, protocol):
    url = getattr(server, protocol)
    x = Tensor.from_array(np.zeros(4, np.float32))
    cases = [
        (remote_host(url, "no-such-model"), NotFound, "no-such-model", None),
        (remote_host(url, "slow", timeout_s=0.5), BackendError, r"no answer within 0.5 s \(timeout_s\)", x),
        (remote_host(url, "shedding", backoff_s=0.01), Busy, "sheds load", x),
        (remote_host(url, "digits"), InvalidArgument, r"expects f32 \(FP32\), got i32", np.zeros((1, 64), np.int32)),
        (remote_host(url, "digits"), InvalidArgument, r"expects shape \?x64, got 1x32", np.zeros((1, 32), np.float32)),
    ]
    for host, error, message, data in cases:
        session = host.new_session()
        with pytest.raises(error, match=message):
            ctx = session.init_execution_context(session.load_by_name(host.config.models[0].name))
            tensor = data if isinstance(data, Tensor) else Tensor.from_array(data)
            session.set_input(ctx, 0, tensor)
            session.compute(ctx)
        session.close()
        host.close()
    # the same server still serves
    host = remote_host(url)
    session = host.new_session()
    ctx = session.init_execution_context(session.load_by_name("digits"))
    session.set_input(ctx, 0, Tensor.from_array(_images(1)[0]))
    session.compute(ctx)
    host.close()


def test_a_server_that_is_down_is_named_with_the_reason():
    host = remote_host(f"http://127.0.0.1:{free_port()}")
    session = host.new_session()
    with pytest.raises(UnsupportedOperation, match=r"remote on cpu: http://127.0.0.1:\d+ is not ready: .*cannot reach"):
        session.load_by_name("digits")
    host.close()


def test_auth_headers_are_sent_and_never_logged(server, tmp_path, caplog, monkeypatch):
    secret = "Bearer letmein"
    x = Tensor.from_array(np.arange(4, dtype=np.float32))
    caplog.set_level(logging.DEBUG)

    def run(**options: object) -> Tensor:
        host = remote_host(server.http, "guarded", **options)
        session = host.new_session()
        try:
            ctx = session.init_execution_context(session.load_by_name("guarded"))
            session.set_input(ctx, 0, x)
            session.compute(ctx)
            return session.get_output(ctx, 0)
        finally:
            host.close()

    with pytest.raises(InvalidArgument, match="rejected the request: missing or wrong authorization header") as info:
        run()
    monkeypatch.setenv("WASINN_TEST_TOKEN", secret)
    np.testing.assert_array_equal(run(headers_env="authorization=WASINN_TEST_TOKEN").data, x.data)
    headers = tmp_path / "headers"
    headers.write_text(f"# credentials\nauthorization: {secret}\n")
    np.testing.assert_array_equal(run(headers_file=str(headers)).data, x.data)
    assert secret not in caplog.text and secret not in str(info.value)


def test_targets_map_to_deployments(server):
    def gpu_host(**options: object) -> Host:
        model = {"name": "d", "encoding": "onnx", "backend": "remote", "target": "gpu", "options": {"model": "x"}}
        backends = {"remote": {"url": server.http, **options}}
        return Host(Config.from_dict({"models": [model], "backends": backends}, source="<test>"))

    variant = gpu_host(gpu_model="digits")  # the GPU variant of model "x", deployed on the same server
    info = variant.named_graph("d").info
    assert (info.target, info.device) == (ExecutionTarget.GPU, f"{server.http} digits")
    variant.close()
    strict = gpu_host()  # no GPU deployment: an error, never the CPU one
    with pytest.raises(UnsupportedOperation, match="no gpu deployment configured"):
        strict.named_graph("d")
    strict.close()


def test_plugins_command_shows_the_servers_health(server, tmp_path):
    config = tmp_path / "wasinn.toml"
    config.write_text(f'[backends.remote]\nurl = "{server.http}"\n')
    shown = run_cli("plugins", "--config", str(config)).stdout
    assert f"cpu: available on {server.http} (kserve" in shown
    assert "gpu: unavailable: no gpu deployment configured" in shown


# The loopback server computes with onnxruntime: its own deviations from ONNX (seen natively, through
# tritonclient) are this server's, so they are declared here rather than in the suite's wasinn.toml.
LOOPBACK_EXPECTATIONS = """
version = 1
[[backend]]
name = "remote"
[[backend.case]]
id = "operators/onnx/*/DFT/*"
expected = "fail"
reason = "the loopback server's onnxruntime DFT natively (via tritonclient) leaves residue where ONNX has 0"
[[backend.case]]
id = "operators/onnx/*/STFT/*"
expected = "fail"
reason = "the loopback server's onnxruntime STFT natively (via tritonclient) leaves residue where ONNX has 0"
"""


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_conformance_suite_passes_on_the_remote_backend(server, tmp_path, protocol):
    config = tmp_path / "wasinn.toml"
    # KServe's gRPC repository extension reads another field than Triton's clients send: uploads go over REST
    lines = [f'url = "{getattr(server, protocol)}"', f'repository = "{server.repository}"']
    lines.append(f'repository_url = "{server.http}"')
    config.write_text("[backends.remote]\n" + "\n".join(lines) + "\n")
    expectations = tmp_path / "loopback.toml"
    expectations.write_text(LOOPBACK_EXPECTATIONS)
    report = tmp_path / "report.json"
    args = ["--backend", "remote", "--config", str(config), "--expectations", str(expectations)]
    if protocol == "grpc":  # the operator layer uploads four models a case: over REST only, to keep this short
        args += ["-k", "not operators"]
    result = run_cli("conformance", *args, "--json", str(report), "-q", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    cases = json.loads(report.read_text())["cases"]
    outcomes = {(c["layer"], c["outcome"]) for c in cases}
    assert ("backend", "passed") in outcomes and ("abi", "passed") in outcomes and ("component", "passed") in outcomes
    assert not [c["id"] for c in cases if c["outcome"] == "failed"]
    skipped = {c["message"] for c in cases if c["outcome"] == "skipped"}
    # operator layer: what the server's onnxruntime cannot run, natively through tritonclient too
    skipped = {m for m in skipped if not m.startswith("tritonclient cannot run it natively: ")}
    assert skipped <= {"remote does not declare tensor type bf16"}, skipped
    assert (("operators", "passed") in outcomes) == (protocol == "http")
    assert os.listdir(server.repository) == ["digits"]
