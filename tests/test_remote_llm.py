"""wasinn-remote with ``protocol = "openai"``: WasmEdge's GGML guests, unchanged, against llama-cpp-python's own
OpenAI-compatible server on loopback, checked against llama-cpp-python's ``create_completion`` directly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server] (make .venv/.dev installs it)")

from wasinn_remote.openai_loopback import openai_server

from wasinn_conformance.gguf_models import chat_prompt
from wasinn_core import Config, ExecutionTarget, GraphEncoding, Host, UnsupportedOperation

from .llm import DEFAULTS, native, run_llama, tiny_model, usage


@pytest.fixture(scope="module")
def model() -> Path:
    return tiny_model()


@pytest.fixture(scope="module")
def url(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with openai_server(model, tmp_path_factory.mktemp("openai") / "server.log") as base:
        yield base


def remote_host(url: str, model: str = "tiny", **options: Any) -> Host:
    config = {
        "models": [
            {
                "name": "default",
                "encoding": "ggml",
                "backend": "remote",
                "options": {"url": url, "protocol": "openai", "model": model, **options},
            },
        ]
    }
    return Host(Config.from_dict(config, source="<test>"))


@pytest.fixture(scope="module")
def host(url: str) -> Iterator[Host]:
    host = remote_host(url)
    yield host
    host.close()


def completion(model: Path, prompt: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """What llama-cpp-python's create_completion (the server's own code) answers, run directly."""
    from llama_cpp import Llama

    meta = {**DEFAULTS, **metadata}
    llm = Llama(str(model), n_ctx=0, flash_attn=True, verbose=False)
    try:
        return llm.create_completion(  # type: ignore[return-value]
            prompt,
            max_tokens=meta.get("n-predict"),
            temperature=meta["temp"],
            top_k=meta["top-k"],
            top_p=meta["top-p"],
            min_p=meta["min-p"],
            repeat_penalty=meta["repeat-penalty"],
            seed=meta.get("seed"),
        )
    finally:
        llm.close()


@pytest.mark.parametrize(
    ("prompt", "metadata"),
    [
        ("Once upon", {"temp": 0}),
        (chat_prompt("What is wasi-nn?"), {"temp": 0}),
        ("The quick", {"temp": 0, "n-predict": 7}),
        ("zq", {"temp": 1.6, "seed": 42, "n-predict": 24}),
    ],
)
def test_compute_equals_the_servers_own_code(host: Host, model: Path, prompt: str, metadata: dict[str, Any]) -> None:
    run = run_llama(host, "--config", json.dumps(metadata), "--usage", "default", prompt)
    assert run.exit_code == 0, run.stderr
    text, usage_line = run.stdout.rsplit("\n", 2)[:2]
    expected = completion(model, prompt, metadata)
    assert text == expected["choices"][0]["text"]
    counts = usage(usage_line)
    assert counts["input_tokens"] == expected["usage"]["prompt_tokens"]
    assert counts["output_tokens"] == expected["usage"]["completion_tokens"]


def test_remote_and_local_answers_differ_only_by_the_end_token(host: Host, model: Path) -> None:
    remote = run_llama(host, "--chat", "--config", '{"temp": 0}', "default", "Who are you?")
    local = native(model, chat_prompt("Who are you?"), {"temp": 0})
    assert remote.stdout.encode() == local.text.removesuffix(b"<|im_end|>") + b"\n"


def test_streaming_equals_compute(host: Host) -> None:
    whole = run_llama(host, "--config", '{"temp": 0}', "default", "Once upon")
    streamed = run_llama(host, "--stream", "--usage", "--config", '{"temp": 0}', "default", "Once upon")
    assert streamed.exit_code == 0, streamed.stderr
    assert streamed.stdout.split("\n")[0] == whole.stdout.split("\n")[0]
    assert "stream ended: end_of_sequence" in streamed.stderr
    assert usage(streamed.stdout.splitlines()[1])["output_tokens"] > 10


def test_set_input_twice_and_metadata_by_input(host: Host, model: Path) -> None:
    run = run_llama(host, "--twice", "Once upon", "--metadata", '{"temp": 0, "n-predict": 5}', "default", "The quick")
    assert run.stdout == completion(model, "The quick", {"temp": 0, "n-predict": 5})["choices"][0]["text"] + "\n"


def test_errnos_over_the_openai_protocol(host: Host, url: str, model: Path) -> None:
    too_long = run_llama(host, "default", "word " * 60)
    assert "compute: prompt_too_long (errno 102)" in too_long.stderr
    unknown = run_llama(remote_host(url, model="no-such-model"), "default", "hi")
    assert "load_by_name: model_not_found (errno 103)" in unknown.stderr
    refused = run_llama(host, "--config", json.dumps({"mmproj": "/etc/passwd"}), "default", "hi")
    assert "load_by_name_with_config: invalid_argument (errno 1)" in refused.stderr
    not_json = run_llama(host, "--config", "{nope", "default", "hi")
    assert "invalid_encoding (errno 2)" in not_json.stderr
    unloaded = run_llama(host, "--unload", "--config", '{"temp": 0, "n-predict": 2}', "default", "Once upon")
    assert (
        unloaded.stdout.splitlines()[-1]
        == "after unload: set_input 1, compute 1, get_output 0 (2 bytes), unload again 1"
    )
    # a guest's own GGUF never goes to the server (the registry then tries the next backend, llama)
    from wasinn_remote import backend_spec
    from wasinn_remote._backend import RemoteBackend

    options = {**backend_spec().defaults(), "url": url, "protocol": "openai", "model": "tiny"}
    with pytest.raises(UnsupportedOperation, match="guest's own GGUF"):
        RemoteBackend().load([memoryview(model.read_bytes())], GraphEncoding.GGML, ExecutionTarget.CPU, options)


def test_server_down_is_a_runtime_error(model: Path) -> None:
    from wasinn_remote.loopback import free_port

    run = run_llama(remote_host(f"http://127.0.0.1:{free_port()}", timeout_s=1.0), "default", "hi")
    assert "load_by_name: unsupported_operation (errno 6)" in run.stderr  # the probe: the server is not ready


def test_conformance_llm_layer_on_the_remote_backend(url: str, tmp_path: Path) -> None:
    """``wasinn conformance --layer llm`` grades the remote backend on the loopback server, like a local one."""
    from .test_plugins import run_cli

    config = tmp_path / "wasinn.toml"
    config.write_text(
        f'[[models]]\nname = "conformance-llm"\nencoding = "ggml"\nbackend = "remote"\n'
        f'options = {{ url = "{url}", protocol = "openai", model = "tiny" }}\n'
    )
    report = tmp_path / "report.json"
    run = run_cli(
        "conformance", "-q", "--backend", "remote", "--layer", "llm", "--config", str(config), "--json", str(report)
    )
    assert run.returncode == 0, run.stdout[-3000:]
    results = json.loads(report.read_text())
    outcomes = {c["id"]: c["outcome"] for c in results["cases"]}
    assert len(outcomes) == 13 and set(outcomes.values()) == {"passed"}, outcomes
