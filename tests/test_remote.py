"""wasinn-remote against real Open Inference Protocol servers on loopback.

Two servers: the plugin's own loopback server (KServe serving ONNX with onnxruntime, answering in binary)
and ``tests/kserve_typed.py``, a KServe custom model written the way KServe's docs write one, whose answers
KServe itself encodes as typed data (JSON over REST, typed ``*_contents`` over gRPC). A proxy that drops
connections mid-call stands in for a server dying under a request.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import sys
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from wasinn_remote.loopback import Running, free_port, running, spawned

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

from .conftest import DIGITS_IMAGES, DIGITS_MODEL, GUESTS, ROOT, read_pgm
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
    assert all(m.startswith("remote does not declare tensor type bf16: tritonclient") for m in skipped), skipped
    assert (("operators", "passed") in outcomes) == (protocol == "http")
    assert os.listdir(server.repository) == ["digits"]


# -- an independent server: KServe encoding typed answers -------------------------------------------------


@pytest.fixture(scope="module")
def typed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``python -m tests.kserve_typed``: KServe custom models answering with typed data; (http, grpc) URLs."""
    if importlib.util.find_spec("kserve") is None:
        pytest.skip("the typed KServe server needs wasinn-remote[loopback] (kserve)")
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "tests.kserve_typed", "--model", str(DIGITS_MODEL / "digits.onnx")]
    command += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    log = tmp_path_factory.mktemp("typed") / "server.log"
    http = f"http://127.0.0.1:{http_port}"
    with spawned(command, http, log, cwd=ROOT):
        yield http, f"grpc://127.0.0.1:{grpc_port}"


ECHO_TYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64}
ECHO_TYPES["UINT8"] = np.uint8


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_independent_kserve_server_answering_in_typed_data(typed_server, protocol):
    """REST answers in JSON ``data``, gRPC in typed ``*_contents`` (FP16 raw): each decodes, every datatype."""
    import onnxruntime as ort

    url = typed_server[protocol == "grpc"]
    local = ort.InferenceSession(str(DIGITS_MODEL / "digits.onnx"))
    host = remote_host(url)
    session = host.new_session()
    ctx = session.init_execution_context(session.load_by_name("digits"))
    for image in _images(3):
        session.set_input(ctx, 0, Tensor.from_array(image))
        session.compute(ctx)
        np.testing.assert_allclose(session.get_output(ctx, 0).data, local.run(None, {"pixels": image})[0], rtol=1e-6)
    host.close()
    for datatype, dtype in ECHO_TYPES.items():
        host = remote_host(url, f"echo-{datatype}")
        if protocol == "http" and datatype == "FP16":  # JSON has no FP16: KServe refuses, clearly
            with pytest.raises(InvalidArgument, match="rejected the request: Sending FP16 data via JSON"):
                run_echo(host, datatype, np.zeros((2, 3), dtype))
            host.close()
            continue
        x = np.arange(6, dtype=dtype).reshape(2, 3)
        y = run_echo(host, datatype, x)
        assert y.type == Tensor.from_array(x).type and y.dimensions == (2, 3), (datatype, y)
        np.testing.assert_array_equal(y.data, x + 1)
        host.close()


def run_echo(host: Host, datatype: str, x: np.ndarray) -> Tensor:
    session = host.new_session()
    ctx = session.init_execution_context(session.load_by_name(f"echo-{datatype}"))
    session.set_input(ctx, 0, Tensor.from_array(x))
    session.compute(ctx)
    return session.get_output(ctx, 0)


def test_every_legal_response_form_decodes_and_a_malformed_one_is_a_clear_error():
    """Binary, typed and JSON answers built by hand, and answers whose data does not fill the shape."""
    from tritonclient.grpc import InferResult as GrpcResult
    from tritonclient.grpc import service_pb2
    from tritonclient.http import InferResult as RestResult
    from wasinn_remote._client import Endpoint, Server

    grpc, rest = Server(Endpoint.parse("grpc://h:1", "grpc")), Server(Endpoint.parse("http://h:2", "http"))
    want = np.array([[1.5, -2.0, 3.25]], np.float32)

    def grpc_answer(typed: bool, values: list[float]) -> GrpcResult:
        response = service_pb2.ModelInferResponse()
        output = response.outputs.add(name="y", datatype="FP32", shape=[1, 3])
        if typed:
            output.contents.fp32_contents.extend(values)
        else:
            response.raw_output_contents.append(np.array(values, "<f4").tobytes())
        return GrpcResult(response)

    def rest_answer(data: object) -> RestResult:
        return RestResult.from_response_body(
            json.dumps({"outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 3], "data": data}]}).encode()
        )

    for answer, server in [
        (grpc_answer(False, want.ravel().tolist()), grpc),
        (grpc_answer(True, want.ravel().tolist()), grpc),
        (rest_answer(want.ravel().tolist()), rest),
    ]:
        np.testing.assert_array_equal(server.decode(answer, "y", "infer"), want)
    for answer, server in [(grpc_answer(True, [1.0]), grpc), (rest_answer([1.0]), rest)]:
        with pytest.raises(BackendError, match=r"remote .*: infer: output 'y': .*(1 values for shape \[1, 3\]|match)"):
            server.decode(answer, "y", "infer")
    with pytest.raises(BackendError, match="output 'z': not in the server's answer"):
        grpc.decode(grpc_answer(True, [1.0, 2.0, 3.0]), "z", "infer")


# -- a server that drops the connection mid-call --------------------------------------------------------


class DroppingProxy:
    """A TCP proxy to a server that, when armed, closes the connection of the next request before it is
    answered: a server that died under the call. Every other byte is forwarded both ways."""

    def __init__(self, target: str) -> None:
        self.target = ("127.0.0.1", int(target.rsplit(":", 1)[1]))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = 0
        self.dropped = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, request: bool) -> None:
        try:
            while data := source.recv(65536):
                if request:
                    with self._lock:
                        drop, self.armed = self.armed > 0, max(0, self.armed - 1)
                        self.dropped += drop
                    if drop:
                        break
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_connection_dropped_mid_call_is_retried_then_a_clear_runtime_error(server, protocol):
    proxy = DroppingProxy(getattr(server, protocol))
    url = proxy.url(protocol)
    image = Tensor.from_array(_images(1)[0])
    try:
        host = remote_host(url, retries=1, backoff_s=0.2)  # inference is idempotent: one retry
        session = host.new_session()
        ctx = session.init_execution_context(session.load_by_name("digits"))
        session.set_input(ctx, 0, image)
        proxy.armed = 1
        session.compute(ctx)  # the first attempt's connection is dropped, the retry answers
        assert proxy.dropped == 1 and session.get_output(ctx, 0).dimensions == (1, 10)
        host.close()
        host = remote_host(url, retries=0)
        session = host.new_session()
        ctx = session.init_execution_context(session.load_by_name("digits"))
        session.set_input(ctx, 0, image)
        proxy.armed = 1
        with pytest.raises(BackendError, match=f"remote {url}: model 'digits': infer: .*connection .*lost"):
            session.compute(ctx)
        host.close()
        host = remote_host(url, retries=1, backoff_s=0.2)  # the server behind the proxy still serves
        session = host.new_session()
        ctx = session.init_execution_context(session.load_by_name("digits"))
        session.set_input(ctx, 0, image)
        session.compute(ctx)
        host.close()
    finally:
        proxy.close()
