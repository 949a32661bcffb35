"""wasinn-llama: WasmEdge's GGML flows through real wasm guests, checked against llama-cpp-python run directly."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="wasinn-llama needs llama-cpp-python (make .venv/.dev installs it)")

from wasinn_conformance.gguf_models import chat_prompt
from wasinn_core import (
    BackendErrno,
    ExecutionTarget,
    GraphEncoding,
    Host,
    InvalidArgument,
    InvalidEncoding,
    Tensor,
    TensorType,
    UnsupportedOperation,
)

from .llm import native, native_embedding, preload_host, run_llama, tiny_model, usage
from .test_plugins import run_cli

GREEDY = {"temp": 0}


@pytest.fixture(scope="module")
def model() -> Path:
    return tiny_model()


@pytest.fixture(scope="module")
def host(model: Path) -> Iterator[Host]:
    host = preload_host(model)
    yield host
    host.close()


def _u8(data: bytes) -> Tensor:
    return Tensor((1,), TensorType.U8, np.frombuffer(data, np.uint8))  # dims [1] whatever the length


# -- the flows of WasmEdge's examples, equal to llama-cpp-python token for token -------------------------


def test_chat_through_wasinn_run_with_wasmedge_flags(model: Path) -> None:
    """The command line of WasmEdge's README, verbatim but for the binary."""
    run = run_cli(
        "-v",  # AUTO's choice of the CPU is logged at INFO: the CPU is the next target AUTO asks for
        "run",
        "--dir",
        ".:.",
        "--nn-preload",
        f"default:GGML:AUTO:{model}",
        str(Path("guests/wasm/llama.wasm").resolve()),
        "--chat",
        "--config",
        json.dumps(GREEDY),
        "default",
        "Who are you?",
    )
    assert run.returncode == 0, run.stderr
    expected = native(model, chat_prompt("Who are you?"), GREEDY)
    assert run.stdout.encode() == expected.text + b"\n"
    assert expected.text == b"I am a tiny llama. I run in a wasm guest, through wasinn and llama.cpp.<|im_end|>"
    assert "running on cpu with llama (device CPU)" in run.stderr  # AUTO without a GPU: where it ran


@pytest.mark.parametrize(
    ("prompt", "metadata"),
    [
        ("Once upon", GREEDY),
        ("The quick", {"temp": 0, "n-predict": 7}),
        ("zq", {"temp": 1.6, "seed": 42, "n-predict": 24}),  # fixed-seed sampling where the model is unsure
        ("zq", {"temp": 1.6, "seed": 7, "n-predict": 24, "top-k": 5, "repeat-penalty": 1.3}),
    ],
)
def test_compute_equals_llama_cpp_python(host: Host, model: Path, prompt: str, metadata: dict[str, object]) -> None:
    run = run_llama(host, "--config", json.dumps(metadata), "--usage", "default", prompt)
    assert run.exit_code == 0, run.stderr
    text, usage_line = run.stdout.rsplit("\n", 2)[:2]
    expected = native(model, prompt, metadata)
    assert text.encode() == expected.text
    counts = usage(usage_line)
    assert (counts["input_tokens"], counts["output_tokens"]) == (expected.input_tokens, len(expected.pieces))


def test_seeds_change_sampling_and_a_seed_repeats(host: Host) -> None:
    def sample(seed: int) -> str:
        run = run_llama(host, "--config", json.dumps({"temp": 1.6, "seed": seed, "n-predict": 24}), "default", "zq")
        assert run.exit_code == 0, run.stderr
        return run.stdout

    assert sample(1) == sample(1)
    assert len({sample(1), sample(2), sample(3)}) > 1  # sampling really samples


def test_streaming_prints_the_same_tokens(host: Host, model: Path) -> None:
    run = run_llama(host, "--stream", "--usage", "--config", json.dumps(GREEDY), "default", "Once upon")
    assert run.exit_code == 0, run.stderr
    expected = native(model, "Once upon", GREEDY)
    text, usage_line = run.stdout.rsplit("\n", 2)[:2]
    assert text.encode() == expected.text  # the pieces, then the end-of-sequence token's own piece
    assert expected.text.endswith(b"</s>")
    assert "stream ended: end_of_sequence" in run.stderr
    assert usage(usage_line)["output_tokens"] == len(expected.pieces)


def test_metadata_by_set_input_equals_config(host: Host, model: Path) -> None:
    metadata = {"temp": 0, "n-predict": 5}
    by_input = run_llama(host, "--metadata", json.dumps(metadata), "default", "Once upon")
    assert by_input.exit_code == 0, by_input.stderr
    assert by_input.stdout.encode() == native(model, "Once upon", metadata).text + b"\n"


def test_reverse_prompt_stops_and_keeps_it(host: Host, model: Path) -> None:
    run = run_llama(host, "--config", json.dumps({"temp": 0, "reverse-prompt": "llama"}), "default", "Once upon")
    assert run.stdout == " a time, a small llama\n"


def test_embeddings_equal_llama_cpp_python(host: Host, model: Path) -> None:
    run = run_llama(host, "--embed", "--config", json.dumps({"embedding": True}), "default", "Who are you?")
    assert run.exit_code == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["n_embedding"] == 64 and len(data["embedding"]) == 64
    assert run.stdout.startswith('{"n_embedding": 64, "embedding": [') and " " not in run.stdout.split("[")[1]
    np.testing.assert_allclose(data["embedding"], native_embedding(model, "Who are you?"), atol=1e-6)
    assert abs(np.linalg.norm(data["embedding"]) - 1.0) < 1e-6


@pytest.mark.parametrize(
    "metadata",
    [
        {"temp": 0, "grammar": 'root ::= "yes" | "no"'},
        {
            "temp": 0,
            "json-schema": json.dumps(
                {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]}
            ),
        },
        {"temp": 1.0, "seed": 3, "grammar": 'root ::= [a-z]+ "."'},
    ],
)
def test_grammar_and_json_schema_constrain_like_llama_cpp_python(
    host: Host, model: Path, metadata: dict[str, object]
) -> None:
    prompt = chat_prompt("Answer in JSON: is the sky blue?")
    run = run_llama(host, "--config", json.dumps({**metadata, "n-predict": 48}), "default", prompt)
    assert run.exit_code == 0, run.stderr
    expected = native(model, prompt, {**metadata, "n-predict": 48})
    assert run.stdout.encode() == expected.text + b"\n"
    if "json-schema" in metadata:
        assert json.loads(run.stdout.split("<")[0])["answer"] in ("yes", "no")


# -- WasmEdge's call semantics ------------------------------------------------------------------------------


def test_set_input_twice_replaces_the_prompt(host: Host, model: Path) -> None:
    run = run_llama(
        host,
        "--twice",
        chat_prompt("Who are you?"),
        "--config",
        json.dumps(GREEDY),
        "--usage",
        "default",
        chat_prompt("What is wasi-nn?"),
    )
    expected = native(model, chat_prompt("What is wasi-nn?"), GREEDY)
    text, usage_line = run.stdout.rsplit("\n", 2)[:2]
    assert text.encode() == expected.text
    assert usage(usage_line)["input_tokens"] == expected.input_tokens


def test_unload_stops_inputs_but_not_outputs(host: Host) -> None:
    run = run_llama(host, "--unload", "--config", json.dumps({"temp": 0, "n-predict": 3}), "default", "Once upon")
    assert run.exit_code == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "after unload: set_input 1, compute 1, get_output 0 (3 bytes), unload again 1"


def test_a_name_keeps_its_handle_until_unloaded(host: Host) -> None:
    run = run_llama(host, "--again", "--config", json.dumps({"temp": 0, "n-predict": 1}), "default", "Once")
    assert run.stdout.splitlines()[0] == "graphs: 0 0"


def test_unknown_model_and_missing_file(model: Path, tmp_path: Path) -> None:
    unknown = run_llama(preload_host(model), "nope", "hello")
    assert unknown.exit_code == 1 and "load_by_name: not_found (errno 8)" in unknown.stderr
    missing = tmp_path / "gone.gguf"
    run = run_cli(
        "run",
        "--nn-preload",
        f"default:GGML:AUTO:{missing}",
        str(Path("guests/wasm/llama.wasm").resolve()),
        "default",
        "hello",
    )
    assert run.returncode == 1  # the guest's exit code: wasinn itself started without complaint
    assert "load_by_name: model_not_found (errno 103)" in run.stderr
    assert f"no such file: {missing}" in run.stderr


def test_prompt_too_long_and_context_full(host: Host, model: Path) -> None:
    too_long = run_llama(host, "default", "word " * 60)  # 300 tokens, the context holds 256
    assert too_long.exit_code == 1 and "compute: prompt_too_long (errno 102)" in too_long.stderr
    prompt = "Once upon a time " * 12  # 205 tokens: the answer fills the 256-token context
    metadata = {"temp": 0, "ignore-eos": True}
    full = run_llama(host, "--usage", "--config", json.dumps(metadata), "default", prompt)
    assert full.exit_code == 0 and "context_full (errno 101)" in full.stderr
    counts = usage(full.stdout.splitlines()[-1])
    # the token that found no room is in the output and counted, as in WasmEdge
    assert counts["input_tokens"] + counts["output_tokens"] == 256 + 1
    streamed = run_llama(host, "--stream", "--config", json.dumps(metadata), "default", prompt)
    assert "stream ended: context_full" in streamed.stderr
    assert streamed.stdout == full.stdout.rsplit("\n", 2)[0] + "\n"


def test_stream_stdout_prints_pieces_on_the_hosts_stdout(model: Path) -> None:
    """WasmEdge's ``stream-stdout``: the host prints each piece during compute, then the guest its output."""
    run = run_cli(
        "run",
        "--nn-preload",
        f"default:GGML:CPU:{model}",
        str(Path("guests/wasm/llama.wasm").resolve()),
        "--config",
        json.dumps({"temp": 0, "n-predict": 9, "stream-stdout": True}),
        "default",
        "Once upon",
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == " a time, " + " a time, \n"


def test_guest_gguf_follows_the_guest_load_policy(model: Path, tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(model.read_bytes())
    host = preload_host(model, policy={"guest_load": ["onnx"]})
    run = run_llama(host, "--load", "/m/m.gguf", "Once upon", dirs=((str(tmp_path), "/m", True),))
    assert "load: unsupported_operation (errno 6)" in run.stderr


def test_guest_supplied_gguf_and_host_paths_refused(host: Host, model: Path, tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(model.read_bytes())
    (tmp_path / "trick.gguf").write_bytes(b"preload:" + str(model).encode())
    dirs = ((str(tmp_path), "/m", True),)
    own = run_llama(host, "--load", "/m/m.gguf", "--metadata", json.dumps(GREEDY), "Once upon", dirs=dirs)
    assert own.exit_code == 0 and own.stdout.encode() == native(model, "Once upon", GREEDY).text + b"\n"
    trick = run_llama(host, "--load", "/m/trick.gguf", "Once upon", dirs=dirs)
    assert "load: invalid_argument (errno 1)" in trick.stderr
    for key in ("mmproj", "image", "model-vocoder", "tts-output-file"):
        refused = run_llama(host, "--config", json.dumps({key: str(model)}), "default", "hi")
        assert "load_by_name_with_config: invalid_argument (errno 1)" in refused.stderr, key


@pytest.mark.parametrize(
    ("config", "errno"),
    [
        ("{not json", "invalid_encoding (errno 2)"),
        ('{"ctx-size": 512.0}', "invalid_argument (errno 1)"),
        ('{"ctx-size": "512"}', "invalid_argument (errno 1)"),
        ('{"ignore-eos": 1}', "invalid_argument (errno 1)"),
        ('{"split-mode": "diagonal"}', "invalid_argument (errno 1)"),
        ('{"ctx-size": 100000}', "invalid_argument (errno 1)"),
        ('{"grammar": "root ::= ("}', "invalid_argument (errno 1)"),
    ],
)
def test_metadata_type_rules(host: Host, config: str, errno: str) -> None:
    run = run_llama(host, "--config", config, "default", "hi")
    assert f"load_by_name_with_config: {errno}" in run.stderr


def test_metadata_unknown_keys_and_floats_for_ints(host: Host, model: Path) -> None:
    run = run_llama(
        host,
        "--config",
        json.dumps({"temp": 0, "no-such-key": [1], "top-p": 1, "n-predict": 4}),
        "default",
        "Once upon",
    )
    assert run.exit_code == 0 and run.stdout == " a t\n"


# -- the host side: errnos, byte inputs, targets --------------------------------------------------------


def test_session_api_errnos_and_byte_inputs(model: Path) -> None:
    host = Host()
    session = host.new_session()
    graph = session.load([memoryview(model.read_bytes())], GraphEncoding.GGML, ExecutionTarget.CPU)
    ctx = session.init_execution_context(graph)
    with pytest.raises(InvalidArgument, match="without a prompt"):
        session.compute(ctx)
    session.set_input(ctx, 1, _u8(b'{"temp": 0}'))
    session.set_input(ctx, 0, _u8(b"Once upon"))
    assert bytes(session.get_output(ctx, 1).data).startswith(b'{"input_tokens": 10, "output_tokens": 0,')
    assert session.get_output_single(ctx, 0).data.nbytes == 0
    steps = 0
    with pytest.raises(BackendErrno) as end:
        while True:
            session.compute_single(ctx)
            steps += 1
    assert end.value.errno == 100 and steps > 10
    with pytest.raises(InvalidEncoding):
        session.set_input(ctx, 1, _u8(b"nope"))
    session.finalize_execution_context(ctx)
    session.close()
    host.close()


def test_gpu_target_is_strict_without_offload(model: Path) -> None:
    run = run_llama(preload_host(model, target="GPU"), "default", "hi")
    assert "load_by_name: unsupported_operation (errno 6)" in run.stderr
    fallback = run_llama(preload_host(model, target="GPU", policy={"fallback": "cpu"}), "default", "hi")
    assert fallback.exit_code == 0, fallback.stderr


def test_gpu_offload_layers_follow_the_target(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A double for the one thing that cannot run here: a llama.cpp build with GPU offload."""
    from wasinn_llama import _backend, _engine

    seen: list[int] = []
    real = _engine.load_model
    monkeypatch.setattr(_engine, "gpu_offload", lambda: True)
    monkeypatch.setattr(_engine, "load_model", lambda path, meta, layers: seen.append(layers) or real(path, meta, 0))
    backend = _backend.LlamaBackend()
    meta = memoryview(b'{"n-gpu-layers": 7}')
    backend.load([memoryview(model.read_bytes()), meta], GraphEncoding.GGML, ExecutionTarget.GPU, {}).close()
    backend.load([memoryview(model.read_bytes())], GraphEncoding.GGML, ExecutionTarget.GPU, {}).close()
    backend.load([memoryview(model.read_bytes()), meta], GraphEncoding.GGML, ExecutionTarget.CPU, {}).close()
    assert seen == [7, 1_000_000, 0]
    monkeypatch.setattr(_engine, "gpu_offload", lambda: False)
    with pytest.raises(UnsupportedOperation, match="no GPU offload"):
        backend.load([memoryview(model.read_bytes())], GraphEncoding.GGML, ExecutionTarget.GPU, {})


def test_contexts_of_one_graph_do_not_share_state(model: Path) -> None:
    host = Host()
    session = host.new_session()
    graph = session.load(
        [memoryview(model.read_bytes()), memoryview(b'{"temp": 0}')], GraphEncoding.GGML, ExecutionTarget.CPU
    )
    a, b = session.init_execution_context(graph), session.init_execution_context(graph)
    session.set_input(a, 0, _u8(b"Once upon"))
    session.set_input(b, 0, _u8(b"The quick"))
    session.set_input(b, 1, _u8(b'{"n-predict": 2}'))  # b's metadata only
    parts = {a: b"", b: b""}
    for _ in range(3):  # interleaved streams
        for ctx in (a, b):
            session.compute_single(ctx)
            parts[ctx] += bytes(session.get_output_single(ctx, 0).data)
    assert parts == {a: b" a ", b: b" br"}
    session.compute(b)
    assert bytes(session.get_output(b, 0).data) == b" b"
    session.close()
    host.close()


def test_instances_sharing_a_named_model_generate_concurrently(host: Host, model: Path) -> None:
    import threading

    prompts = [b"Once upon", b"The quick", chat_prompt("What is wasi-nn?").encode(), b"zq"]
    results: dict[bytes, bytes] = {}

    def answer(prompt: bytes) -> None:
        session = host.new_session()
        try:
            ctx = session.init_execution_context(session.load_by_name("default"))
            session.set_input(ctx, 1, _u8(b'{"temp": 0, "n-predict": 40}'))
            session.set_input(ctx, 0, _u8(prompt))
            session.compute(ctx)
            results[prompt] = bytes(session.get_output(ctx, 0).data)
        finally:
            session.close()

    threads = [threading.Thread(target=answer, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for prompt in prompts:
        assert results[prompt] == native(model, prompt.decode(), {"temp": 0, "n-predict": 40}).text


def test_ggml_logs_errnos_at_info(host: Host, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="wasinn.abi"):
        run_llama(host, "--stream", "--config", json.dumps({"temp": 0, "n-predict": 2}), "default", "Once upon")
    ends = [r for r in caplog.records if r.getMessage().startswith("compute_single")]
    assert ends and all(r.levelno == logging.INFO for r in ends)
    assert "errno 100: end of sequence (100)" in ends[-1].getMessage()


# -- components (wasi:nn WIT, both versions) -------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_components() -> dict[str, Path]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "guests" / "components"))
    try:
        import build as component_build
    finally:
        sys.path.pop(0)
    built = component_build.build(guest="llama")
    return {world.removeprefix("digits-"): path for world, path in built.items()}


@pytest.mark.parametrize("version", ["2024-10-28", "2024-08-19"])
def test_component_chat_equals_llama_cpp_python(llama_components: dict[str, Path], model: Path, version: str) -> None:
    run = run_cli(
        "run",
        "--dir",
        ".:.",
        "--nn-preload",
        f"default:GGML:AUTO:{model}",
        str(llama_components[version]),
        "--chat",
        "--usage",
        "--metadata",
        json.dumps(GREEDY),
        "default",
        "Who are you?",
    )
    assert run.returncode == 0, run.stderr
    expected = native(model, chat_prompt("Who are you?"), GREEDY)
    text, usage_line = run.stdout.rsplit("\n", 2)[:2]
    assert text.encode() == expected.text
    assert usage(usage_line)["output_tokens"] == len(expected.pieces)


@pytest.mark.parametrize("version", ["2024-10-28", "2024-08-19"])
def test_component_errors_name_the_cause(llama_components: dict[str, Path], host: Host, version: str) -> None:
    from wasinn_core.testing import run_guest

    run = run_guest(host, llama_components[version], ["default", "word " * 60])
    assert run.exit_code != 0
    assert "llama: wasi:nn error: runtime-error: prompt too long (102): the prompt is 301 tokens" in run.stderr


def test_component_loads_guest_gguf(llama_components: dict[str, Path], host: Host, model: Path, tmp_path: Path) -> None:
    from wasinn_core.testing import run_guest

    (tmp_path / "m.gguf").write_bytes(model.read_bytes())
    run = run_guest(
        host,
        llama_components["2024-10-28"],
        ["--model", "/m/m.gguf", "--metadata", '{"temp": 0}', "Once upon"],
        [(str(tmp_path), "/m", True)],
    )
    assert run.exit_code == 0, run.stderr
    assert run.stdout.encode() == native(model, "Once upon", GREEDY).text + b"\n"


def test_docs_show_the_committed_llm_results() -> None:
    """The backend page's figures are the committed result files' (make bench-llm, make llm-conformance)."""
    from benchmarks.llm import PAGE, table
    from benchmarks.llm_conformance import table as conformance_table

    from .conftest import ROOT

    page = PAGE.read_text()
    results = ROOT / "docs" / "results"
    bench = json.loads((results / "llm-benchmark.json").read_text())
    conformance = json.loads((results / "llm-conformance.json").read_text())
    assert f"<!-- llm-benchmark -->\n{table(bench)}\n<!-- /llm-benchmark -->" in page
    assert f"<!-- llm-conformance -->\n{conformance_table(conformance)}\n<!-- /llm-conformance -->" in page
    assert bench["summary"]["same_text"] and all(
        outcome == "passed" for cases in conformance["outcomes"].values() for outcome in cases.values()
    )
