"""wasinn-remote: graphs that are models on an Open Inference Protocol server.

Triton, KServe, Seldon MLServer and OpenVINO Model Server all speak the KServe v2 / Open Inference
Protocol, over REST and gRPC. This backend reaches them with tritonclient. Named models map to server
models by config; targets map to servers (``gpu_url``) or model variants (``gpu_model``).
"""

from __future__ import annotations

import importlib.metadata
import threading
import time
from collections.abc import Mapping
from typing import Any

from wasinn_core import (
    Availability,
    Backend,
    BackendSpec,
    Capabilities,
    ExecutionTarget,
    GraphEncoding,
    OptionSpec,
    TensorType,
    WasiNNError,
    hookimpl,
)

__all__ = ["OPTIONS", "backend_spec", "probe", "wasinn_backends"]
__version__ = "0.1.0"

OPTIONS = (
    OptionSpec(
        "url",
        str,
        "",
        "the server (target cpu): http(s)://host:port or grpc(s)://host:port",
        guest=False,
    ),
    OptionSpec("gpu_url", str, "", "the server deployed on GPUs (target gpu)", guest=False),
    OptionSpec("tpu_url", str, "", "the server deployed on other accelerators (target tpu)", guest=False),
    OptionSpec(
        "protocol",
        str,
        "http",
        "for a URL without a scheme; openai: an OpenAI-compatible server for ggml models (/v1/completions)",
        choices=("http", "https", "grpc", "openai"),
        guest=False,
    ),
    OptionSpec("model", str, "", "the server's model name for a named model", guest=False),
    OptionSpec("gpu_model", str, "", "the model variant for target gpu (on gpu_url, else on url)", guest=False),
    OptionSpec("tpu_model", str, "", "the model variant for target tpu (on tpu_url, else on url)", guest=False),
    OptionSpec("version", str, "", "the model version (default: the server's choice)", guest=False),
    OptionSpec("timeout_s", float, 10.0, "deadline of every call to the server, in seconds", guest=False),
    OptionSpec("connect_timeout_s", float, 3.0, "deadline for opening a connection (REST)", guest=False),
    OptionSpec(
        "retries", int, 2, "retries of an idempotent call the server could not take (down, shedding load)", guest=False
    ),
    OptionSpec("backoff_s", float, 0.05, "first retry delay; doubles on each retry, with jitter", guest=False),
    OptionSpec("concurrency", int, 4, "connections kept open per server (REST)", guest=False),
    OptionSpec(
        "headers_env",
        str,
        "",
        "request headers from the environment: Header=ENVVAR[,Header=ENVVAR] (never logged)",
        guest=False,
    ),
    OptionSpec(
        "headers_file", str, "", "a file of 'Header: value' lines sent with every request (never logged)", guest=False
    ),
    OptionSpec("ca_file", str, "", "CA certificates (PEM) for https:// and grpcs://", guest=False),
    OptionSpec(
        "repository",
        str,
        "",
        "a model repository folder the server loads from; enables a guest's own load() (ONNX)",
        guest=False,
    ),
    OptionSpec(
        "repository_url",
        str,
        "",
        "where repository load/unload requests go (default: the inference server's url)",
        guest=False,
    ),
    OptionSpec(
        "health_ttl_s", float, 5.0, "how long a server health check is reused by the availability probe", guest=False
    ),
)

_health: dict[tuple[str, str], tuple[float, Availability]] = {}
_health_lock = threading.Lock()


def probe(target: ExecutionTarget, options: Mapping[str, Any]) -> Availability:
    """A target is available when a server is configured for it and answers ready (cached ``health_ttl_s``)."""
    from ._backend import no_deployment, server_for, target_url

    url = target_url(target, options)
    if not url:
        return Availability.no(no_deployment(target))
    key = (url, str(options["protocol"]))
    now = time.monotonic()
    with _health_lock:
        cached = _health.get(key)
    if cached is not None and now - cached[0] < float(options["health_ttl_s"]):
        return cached[1]
    quick = {**options, "retries": 0, "timeout_s": min(float(options["timeout_s"]), 2.0)}
    if options["protocol"] == "openai":
        answer = _probe_openai(url, quick)
        with _health_lock:
            _health[key] = (now, answer)
        return answer
    try:
        server = server_for(target, quick)
        try:
            answer = Availability.yes(f"{url} ({server.ready()})")
        finally:
            server.close()
    except WasiNNError as exc:
        answer = Availability.no(f"{url} is not ready: {exc.message}")
    with _health_lock:
        _health[key] = (now, answer)
    return answer


def _probe_openai(url: str, options: Mapping[str, Any]) -> Availability:
    from ._backend import headers_from
    from ._openai import OpenAIClient

    try:
        models = OpenAIClient(url, float(options["timeout_s"]), headers_from(options)).models()
    except WasiNNError as exc:
        return Availability.no(f"{url} is not ready: {exc.message}")
    return Availability.yes(f"{url} (OpenAI-compatible: {', '.join(models) or 'no models'})")


def _factory() -> Backend:
    from ._backend import RemoteBackend

    return RemoteBackend()


def backend_spec() -> BackendSpec:
    # Every encoding at preference 0: a named remote model, pinned to this backend in config, may be in
    # any format the server runs. A guest's own bytes reach it only as ONNX (uploaded to a repository),
    # and only when no local ONNX engine is installed or the config prefers it.
    encodings = {e: 0 for e in GraphEncoding if e is not GraphEncoding.AUTODETECT}
    encodings[GraphEncoding.ONNX] = 5
    return BackendSpec(
        name="remote",
        factory=_factory,
        encodings=encodings,
        targets=frozenset(ExecutionTarget),
        probe=probe,
        library="tritonclient",
        library_version=importlib.metadata.version("tritonclient"),
        options=OPTIONS,
        capabilities=Capabilities(
            dtypes=frozenset(TensorType) - {TensorType.BF16},
            features=frozenset(
                {"named_io", "multi_output", "dynamic_batch", "shape_checks", "type_checks", "onnx:onnx"}
            ),
            notes={"bf16": "tritonclient converts no bf16 numpy arrays, and servers running ONNX Runtime compute none"},
        ),
        description="models on an Open Inference Protocol server (Triton, KServe, MLServer, OpenVINO Model Server), "
        "and ggml models on an OpenAI-compatible one (vLLM, llama.cpp's server)",
        isolation="none",  # the servers parse the models; guest uploads need the shared repository folder
    )


@hookimpl
def wasinn_backends() -> list[BackendSpec]:
    return [backend_spec()]
