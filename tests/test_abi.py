"""Every wasi_ephemeral_nn function and errno path, driven byte by byte through a real wasm module."""

from __future__ import annotations

import gc
import logging
import struct

import numpy as np
import pytest

from wasinn_core import Config, Host, Limits, PluginManager
from wasinn_core.testing import ForwardingGuest

from .conftest import DIGITS_MODEL, digits_config, in_process

OK, INVALID_ARGUMENT, INVALID_ENCODING, MISSING_MEMORY, BUSY, RUNTIME_ERROR = 0, 1, 2, 3, 4, 5
UNSUPPORTED, TOO_LARGE, NOT_FOUND = 6, 7, 8
F16, F32, F64, U8, I32, I64 = 0, 1, 2, 3, 4, 5
ONNX, TENSORFLOW, AUTODETECT = 1, 2, 5
CPU, GPU, TPU = 0, 1, 2


def load_onnx(guest: ForwardingGuest, model: bytes, target: int = CPU, encoding: int = ONNX) -> tuple[int, int]:
    builders, n = guest.builders([model])
    out = guest.alloc(4)
    return guest.call("load", builders, n, encoding, target, out), out


def ready_context(guest: ForwardingGuest, model: bytes) -> int:
    err, out = load_onnx(guest, model)
    assert err == OK
    ctx_out = guest.alloc(4)
    assert guest.call("init_execution_context", guest.u32(out), ctx_out) == OK
    return guest.u32(ctx_out)


def infer(guest: ForwardingGuest, ctx: int, image: np.ndarray) -> np.ndarray:
    assert guest.call("set_input", ctx, 0, guest.tensor([1, 64], F32, image)) == OK
    assert guest.call("compute", ctx) == OK
    out, written = guest.alloc(40), guest.alloc(4)
    assert guest.call("get_output", ctx, 0, out, 40, written) == OK
    assert guest.u32(written) == 40
    return np.frombuffer(guest.read(out, 40), np.float32).reshape(1, 10)


# -- the happy path -----------------------------------------------------------------


def test_full_inference_matches_onnxruntime(guest, digits_onnx, digit_image, reference_probs):
    ctx = ready_context(guest, digits_onnx)
    np.testing.assert_array_equal(infer(guest, ctx, digit_image), reference_probs)


def test_load_by_name_shares_one_graph_between_instances(host, digit_image, reference_probs):
    first, second = ForwardingGuest(host), ForwardingGuest(host)
    graphs = []
    for g in (first, second):
        name, n = g.string("digits")
        out = g.alloc(4)
        assert g.call("load_by_name", name, n, out) == OK
        assert g.u32(out) == 0  # handles are per instance
        graphs.append(g.session._graph(0).loaded)
        ctx_out = g.alloc(4)
        assert g.call("init_execution_context", 0, ctx_out) == OK
        np.testing.assert_array_equal(infer(g, g.u32(ctx_out), digit_image), reference_probs)
    assert graphs[0] is graphs[1]  # loaded once per process, shared
    assert graphs[0].info.name == "digits" and graphs[0].info.device == "CPUExecutionProvider"


def test_autodetect_recognises_onnx(guest, digits_onnx):
    err, out = load_onnx(guest, digits_onnx, encoding=AUTODETECT)
    assert err == OK
    assert guest.session.graph_info(guest.u32(out)).encoding.value == "onnx"


def test_repeated_computes_replace_outputs(guest, digits_onnx):
    ctx = ready_context(guest, digits_onnx)
    images = [np.full((1, 64), v, np.float32) for v in (0.0, 0.5, 1.0, 0.0)]
    results = [infer(guest, ctx, im) for im in images]
    assert not np.array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[3])


def test_many_graphs_and_contexts(guest, digits_onnx, digit_image, reference_probs):
    contexts = [ready_context(guest, digits_onnx) for _ in range(3)]
    ctx_out = guest.alloc(4)
    for _ in range(3):
        assert guest.call("init_execution_context", 0, ctx_out) == OK
        contexts.append(guest.u32(ctx_out))
    assert contexts == [0, 1, 2, 3, 4, 5]
    for ctx in contexts:
        np.testing.assert_array_equal(infer(guest, ctx, digit_image), reference_probs)


# -- handles ------------------------------------------------------------------------


def test_handles_start_at_zero_grow_and_are_never_reused(guest, digits_onnx):
    handles = []
    for _ in range(3):
        err, out = load_onnx(guest, digits_onnx)
        assert err == OK
        handles.append(guest.u32(out))
        assert guest.call("unload", handles[-1]) == OK
    assert handles == [0, 1, 2]


def test_use_after_unload_is_invalid_argument(guest, digits_onnx, digit_image, reference_probs):
    ctx = ready_context(guest, digits_onnx)
    assert guest.call("unload", 0) == OK
    assert guest.call("unload", 0) == INVALID_ARGUMENT
    assert guest.call("init_execution_context", 0, guest.alloc(4)) == INVALID_ARGUMENT
    # a context outlives the unload of its graph handle
    np.testing.assert_array_equal(infer(guest, ctx, digit_image), reference_probs)


def test_use_after_finalize_is_invalid_argument(guest, digits_onnx, digit_image):
    ctx = ready_context(guest, digits_onnx)
    assert guest.call("finalize_execution_context", ctx) == OK
    assert guest.call("finalize_execution_context", ctx) == INVALID_ARGUMENT
    assert guest.call("set_input", ctx, 0, guest.tensor([1, 64], F32, digit_image)) == INVALID_ARGUMENT
    assert guest.call("compute", ctx) == INVALID_ARGUMENT
    assert guest.call("get_output", ctx, 0, guest.alloc(40), 40, guest.alloc(4)) == INVALID_ARGUMENT


@pytest.mark.parametrize("handle", [1, 7, 0x7FFF_FFFF, -1])
def test_unknown_handles(guest, handle):
    assert guest.call("init_execution_context", handle, guest.alloc(4)) == INVALID_ARGUMENT
    assert guest.call("unload", handle) == INVALID_ARGUMENT
    assert guest.call("compute", handle) == INVALID_ARGUMENT
    assert guest.call("finalize_execution_context", handle) == INVALID_ARGUMENT
    assert guest.call("compute_single", handle) == INVALID_ARGUMENT
    assert guest.call("fini_single", handle) == INVALID_ARGUMENT


def test_graph_released_after_last_context(plugins, digits_onnx):
    guest = ForwardingGuest(Host(in_process(digits_config()), plugins=plugins))
    ctx = ready_context(guest, digits_onnx)
    graph = guest.session._graph(0).loaded.graph
    assert guest.call("unload", 0) == OK
    assert getattr(graph, "session", None) is not None  # still used by ctx
    assert guest.call("finalize_execution_context", ctx) == OK
    assert getattr(graph, "session", None) is None


def test_isolated_graph_released_after_last_context_and_its_worker_reused_by_the_same_guest(guest, digits_onnx):
    ctx = ready_context(guest, digits_onnx)
    worker = guest.session._graph(0).loaded.graph.worker
    assert guest.call("unload", 0) == OK
    assert worker.dead is None  # still used by ctx
    assert guest.call("finalize_execution_context", ctx) == OK
    ready_context(guest, digits_onnx)  # the next graph of this guest lands in the same worker
    assert guest.session._graph(1).loaded.graph.worker is worker


def test_store_going_away_releases_the_session(host, digits_onnx):
    g = ForwardingGuest(host)
    ready_context(g, digits_onnx)
    session = g.session
    assert session.live_contexts == 1
    del g
    gc.collect()
    assert session.live_contexts == 0 and session.live_graphs == 0


# -- load ---------------------------------------------------------------------------


def test_unknown_encoding_code(guest, digits_onnx, caplog):
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        err, _ = load_onnx(guest, digits_onnx, encoding=17)
    assert err == INVALID_ENCODING
    assert "unknown graph encoding code 17" in caplog.text


def test_unclaimed_encoding_lists_claims(guest, digits_onnx, caplog):
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        err, _ = load_onnx(guest, digits_onnx, encoding=TENSORFLOW)
    assert err == INVALID_ENCODING
    assert "no installed backend claims tensorflow" in caplog.text
    assert "onnx: onnxruntime (cpu/gpu/tpu)" in caplog.text


def test_autodetect_garbage_is_invalid_encoding(guest):
    err, _ = load_onnx(guest, b"\x00garbage, not a model", encoding=AUTODETECT)
    assert err == INVALID_ENCODING


@pytest.mark.parametrize("target", [3, 255, -1])
def test_unknown_target_code(guest, digits_onnx, target):
    assert load_onnx(guest, digits_onnx, target=target)[0] == INVALID_ARGUMENT


def test_gpu_without_gpu_is_unsupported_and_says_why(guest, digits_onnx, caplog):
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        err, _ = load_onnx(guest, digits_onnx, target=GPU)
    assert err == UNSUPPORTED
    assert "CUDAExecutionProvider not available" in caplog.text
    assert "fallback policy is strict" in caplog.text
    assert guest.session.live_graphs == 0


def test_wrong_builder_count(guest, digits_onnx):
    builders, _ = guest.builders([digits_onnx, b"extra"])
    assert guest.call("load", builders, 2, ONNX, CPU, guest.alloc(4)) == INVALID_ARGUMENT
    assert guest.call("load", builders, 0, ONNX, CPU, guest.alloc(4)) == INVALID_ARGUMENT


def test_corrupt_model_is_runtime_error_with_library_message(guest, caplog):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("NoSuchOperator", ["x"], ["x2"])], "bad", [x], [x])
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        err, _ = load_onnx(guest, helper.make_model(graph).SerializeToString())
    assert err == RUNTIME_ERROR
    assert "load(" in caplog.text and "runtime_error" in caplog.text and "NoSuchOperator" in caplog.text


def test_truncated_onnx_is_refused_before_the_library(guest, digits_onnx, caplog):
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        err, _ = load_onnx(guest, digits_onnx[: len(digits_onnx) // 2])
    assert err == INVALID_ARGUMENT
    assert "not a well-formed ONNX model" in caplog.text


def test_load_spans_outside_memory(guest, digits_onnx):
    size = guest.size
    builders, n = guest.builders([digits_onnx])
    out = guest.alloc(4)
    assert guest.call("load", builders, n, ONNX, CPU, size - 2) == INVALID_ARGUMENT  # out-pointer straddles the end
    assert guest.call("load", size - 4, 1, ONNX, CPU, out) == INVALID_ARGUMENT  # builder array
    assert guest.call("load", builders, 0x2000_0000, ONNX, CPU, out) == INVALID_ARGUMENT
    bad = guest.alloc(struct.pack("<II", size - 10, 100))
    assert guest.call("load", bad, 1, ONNX, CPU, out) == INVALID_ARGUMENT
    wrap = guest.alloc(struct.pack("<II", 0xFFFF_FFF0, 0x20))
    assert guest.call("load", wrap, 1, ONNX, CPU, out) == INVALID_ARGUMENT
    assert guest.u32(out) == 0 and guest.session.live_graphs == 0


def test_max_model_bytes(plugins, digits_onnx):
    host = Host(digits_config(), plugins=plugins)
    g = ForwardingGuest(host, limits=Limits(max_model_bytes=1000))
    assert load_onnx(g, digits_onnx)[0] == TOO_LARGE


def test_graph_and_context_limits_give_busy(plugins, digits_onnx):
    host = Host(digits_config(), plugins=plugins)
    g = ForwardingGuest(host, limits=Limits(max_graphs=1, max_contexts=1))
    assert load_onnx(g, digits_onnx)[0] == OK
    assert load_onnx(g, digits_onnx)[0] == BUSY
    out = g.alloc(4)
    assert g.call("init_execution_context", 0, out) == OK
    assert g.call("init_execution_context", 0, out) == BUSY
    assert g.call("finalize_execution_context", g.u32(out)) == OK
    assert g.call("init_execution_context", 0, out) == OK  # room again


# -- load_by_name -------------------------------------------------------------------


def test_load_by_name_unknown_is_not_found(guest, caplog):
    name, n = guest.string("no-such-model")
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        assert guest.call("load_by_name", name, n, guest.alloc(4)) == NOT_FOUND
    assert "no model named 'no-such-model'" in caplog.text


@pytest.mark.parametrize("raw", [b"dig\x00its", b"\xff\xfe"])
def test_load_by_name_bad_bytes(guest, raw):
    ptr = guest.alloc(raw, align=1)
    assert guest.call("load_by_name", ptr, len(raw), guest.alloc(4)) == INVALID_ARGUMENT


def test_load_by_name_span_outside_memory(guest):
    assert guest.call("load_by_name", guest.size - 3, 6, guest.alloc(4)) == INVALID_ARGUMENT
    name, n = guest.string("digits")
    assert guest.call("load_by_name", name, n, guest.size) == INVALID_ARGUMENT


def test_load_by_name_with_config(plugins):
    host = Host(digits_config(guest_options=["intra_op_num_threads"]), plugins=plugins)
    g = ForwardingGuest(host)
    name, n = g.string("digits")
    out = g.alloc(4)

    def with_config(text: bytes) -> int:
        ptr = g.alloc(text or b"\0", align=1)
        return g.call("load_by_name_with_config", name, n, ptr, len(text), out)

    assert with_config(b"") == OK
    assert with_config(b"{}") == OK
    assert with_config(b'{"intra_op_num_threads": 1}') == OK
    assert with_config(b'{"log_severity_level": 0}') == INVALID_ARGUMENT  # not a guest option
    assert with_config(b'{"intra_op_num_threads": "x"}') == INVALID_ARGUMENT  # the option's type check
    assert with_config(b"[1, 2]") == INVALID_ARGUMENT
    assert with_config(b"{not json") == INVALID_ARGUMENT
    assert g.session.live_graphs == 3


# -- set_input ----------------------------------------------------------------------


@pytest.mark.parametrize("padding", [b"\xff\xff\xff", b"\xde\xad\xbe", b"\x01\x00\x00"])
def test_garbage_in_tensor_padding_is_ignored(guest, digits_onnx, digit_image, reference_probs, padding):
    ctx = ready_context(guest, digits_onnx)
    assert guest.call("set_input", ctx, 0, guest.tensor([1, 64], F32, digit_image, padding=padding)) == OK
    assert guest.call("compute", ctx) == OK
    out, written = guest.alloc(40), guest.alloc(4)
    assert guest.call("get_output", ctx, 0, out, 40, written) == OK
    np.testing.assert_array_equal(np.frombuffer(guest.read(out, 40), np.float32).reshape(1, 10), reference_probs)


def test_set_input_data_length_must_match_dims(guest, digits_onnx, digit_image, caplog):
    ctx = ready_context(guest, digits_onnx)
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        tensor = guest.tensor([1, 64], F32, digit_image, data_len=255)
        assert guest.call("set_input", ctx, 0, tensor) == INVALID_ARGUMENT
    assert f"set_input(ctx={ctx}, index=0" in caplog.text
    assert "data length 255 != 256" in caplog.text
    assert guest.call("set_input", ctx, 0, guest.tensor([1, 63], F32, digit_image)) == INVALID_ARGUMENT


def test_set_input_zero_dimension_beside_huge_ones_is_invalid_argument(guest, digits_onnx, caplog):
    """Found by the fuzzer (seed 1, call 148,626): no bytes, but numpy has no array of that shape."""
    ctx = ready_context(guest, digits_onnx)
    tensor = guest.tensor([0, 0xFFFF_FFFF, 0xFFFF_FFFF], F32, b"", data_len=0)
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        assert guest.call("set_input", ctx, 0, tensor) == INVALID_ARGUMENT
    assert "cannot be represented" in caplog.text
    assert guest.session.host.stats.internal_errors == 0


@pytest.mark.parametrize("code", [6, 7, 200])
def test_set_input_unknown_type_code(guest, digits_onnx, digit_image, code):
    ctx = ready_context(guest, digits_onnx)
    assert guest.call("set_input", ctx, 0, guest.tensor([1, 64], code, digit_image)) == INVALID_ARGUMENT


def test_set_input_type_and_shape_checked_against_model(guest, digits_onnx, caplog):
    ctx = ready_context(guest, digits_onnx)
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        assert (
            guest.call("set_input", ctx, 0, guest.tensor([1, 64], I32, np.zeros((1, 64), np.int32))) == INVALID_ARGUMENT
        )
    assert "expects f32" in caplog.text
    assert guest.call("set_input", ctx, 0, guest.tensor([64], F32, np.zeros(64, np.float32))) == INVALID_ARGUMENT
    assert (
        guest.call("set_input", ctx, 0, guest.tensor([1, 32], F32, np.zeros((1, 32), np.float32))) == INVALID_ARGUMENT
    )
    assert (
        guest.call("set_input", ctx, 1, guest.tensor([1, 64], F32, np.zeros((1, 64), np.float32))) == INVALID_ARGUMENT
    )
    # the batch dimension is dynamic
    assert guest.call("set_input", ctx, 0, guest.tensor([3, 64], F32, np.zeros((3, 64), np.float32))) == OK


def test_set_input_hostile_pointers(guest, digits_onnx, digit_image):
    ctx = ready_context(guest, digits_onnx)
    size = guest.size
    assert guest.call("set_input", ctx, 0, size - 10) == INVALID_ARGUMENT  # record straddles the end
    assert guest.call("set_input", ctx, 0, 0xFFFF_FFF0) == INVALID_ARGUMENT
    good = guest.tensor([1, 64], F32, digit_image)
    record = bytearray(guest.read(good, 20))
    for offset, value in [(0, size - 4), (4, 0x4000_0000), (12, size - 100), (12, 0xFFFF_FF00), (4, 65)]:
        bad = bytearray(record)
        struct.pack_into("<I", bad, offset, value)
        assert guest.call("set_input", ctx, 0, guest.alloc(bytes(bad), align=4)) == INVALID_ARGUMENT, (offset, value)


def test_every_tensor_type_code_decodes(guest, digits_onnx):
    ctx = ready_context(guest, digits_onnx)
    for code, dtype in [(F16, np.float16), (F64, np.float64), (U8, np.uint8), (I32, np.int32), (I64, np.int64)]:
        data = np.zeros((1, 64), dtype)
        # decoded fine, then refused by the f32 model: invalid_argument from the backend, not from decoding
        assert guest.call("set_input", ctx, 0, guest.tensor([1, 64], code, data)) == INVALID_ARGUMENT
    assert guest.call("set_input", ctx, 0, guest.tensor([1, 64], F32, np.zeros((1, 64), np.float32))) == OK


def test_max_tensor_bytes(plugins, digits_onnx, digit_image):
    host = Host(digits_config(), plugins=plugins)
    g = ForwardingGuest(host, limits=Limits(max_tensor_bytes=100))
    ctx = ready_context(g, digits_onnx)
    assert g.call("set_input", ctx, 0, g.tensor([1, 64], F32, digit_image)) == TOO_LARGE


# -- compute and get_output ---------------------------------------------------------


def test_compute_without_inputs(guest, digits_onnx):
    ctx = ready_context(guest, digits_onnx)
    assert guest.call("compute", ctx) == INVALID_ARGUMENT
    assert guest.call("get_output", ctx, 0, guest.alloc(40), 40, guest.alloc(4)) == INVALID_ARGUMENT


def test_get_output_too_small_reports_required_size(guest, digits_onnx, digit_image):
    ctx = ready_context(guest, digits_onnx)
    infer(guest, ctx, digit_image)
    guard = guest.alloc(b"\xaa" * 64)
    out, written = guard + 16, guest.alloc(4)
    assert guest.call("get_output", ctx, 0, out, 39, written) == TOO_LARGE
    assert guest.u32(written) == 40
    assert guest.read(guard, 64) == b"\xaa" * 64  # nothing written into the too-small buffer
    assert guest.call("get_output", ctx, 0, out, 0, written) == TOO_LARGE


def test_get_output_writes_only_its_span(guest, digits_onnx, digit_image, reference_probs):
    ctx = ready_context(guest, digits_onnx)
    infer(guest, ctx, digit_image)
    region = guest.alloc(b"\xaa" * 128)
    out, written = region + 32, guest.alloc(4)
    assert guest.call("get_output", ctx, 0, out, 64, written) == OK  # a bigger buffer than needed
    assert guest.u32(written) == 40
    assert guest.read(region, 32) == b"\xaa" * 32
    assert guest.read(out + 40, 56) == b"\xaa" * 56
    np.testing.assert_array_equal(np.frombuffer(guest.read(out, 40), np.float32).reshape(1, 10), reference_probs)


def test_get_output_hostile_pointers(guest, digits_onnx, digit_image):
    ctx = ready_context(guest, digits_onnx)
    infer(guest, ctx, digit_image)
    size = guest.size
    out, written = guest.alloc(40), guest.alloc(4)
    assert guest.call("get_output", ctx, 0, out, 40, size - 2) == INVALID_ARGUMENT
    assert guest.call("get_output", ctx, 0, size - 20, 40, written) == INVALID_ARGUMENT
    assert guest.call("get_output", ctx, 0, out, 0x7FFF_FFFF, written) == INVALID_ARGUMENT
    assert guest.call("get_output", ctx, 0, 0xFFFF_FFF0, 40, written) == INVALID_ARGUMENT
    assert guest.call("get_output", ctx, 1, out, 40, written) == INVALID_ARGUMENT  # one output only


def test_streaming_calls_are_unsupported_for_onnx(guest, digits_onnx):
    ctx = ready_context(guest, digits_onnx)
    assert guest.call("compute_single", ctx) == UNSUPPORTED
    assert guest.call("get_output_single", ctx, 0, guest.alloc(40), 40, guest.alloc(4)) == UNSUPPORTED
    assert guest.call("fini_single", ctx) == UNSUPPORTED


def test_missing_memory(host, digits_onnx):
    g = ForwardingGuest(host, export_memory=False)
    assert g.call("load_by_name", 0, 6, 16) == MISSING_MEMORY
    assert g.call("compute", 0) == INVALID_ARGUMENT  # no memory needed to reject a bad handle


def test_session_closed_then_load_is_invalid(guest, digits_onnx):
    guest.session.close()
    assert load_onnx(guest, digits_onnx)[0] == INVALID_ARGUMENT


def test_errno_table_is_the_current_witx():
    from wasinn_core import ErrorCode
    from wasinn_core._abi._witx import WITX_ERRNO, WITX_TENSOR_TYPES

    assert [WITX_ERRNO[c] for c in ErrorCode] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [t.value for t in WITX_TENSOR_TYPES.values()] == ["f16", "f32", "f64", "u8", "i32", "i64"]


def test_no_backend_installed_lists_nothing_claimed(digits_onnx, caplog):
    host = Host(Config(), plugins=PluginManager(autoload=False, environ={}))
    g = ForwardingGuest(host)
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        assert load_onnx(g, digits_onnx)[0] == INVALID_ENCODING
    assert "no backend plugin is installed" in caplog.text


def test_onnx_model_from_file_path_config(plugins):
    cfg = Config.from_dict(
        {"models": [{"name": "m", "encoding": "ONNX", "paths": ["digits.onnx"]}]}, base_dir=DIGITS_MODEL
    )
    host = Host(cfg, plugins=plugins)
    host.preload()
    assert host.named_graph("m").info.backend == "onnxruntime"


@pytest.mark.parametrize("path", ["fast", "public"])
def test_both_abi_paths_give_the_same_results(host, digits_onnx, digit_image, reference_probs, monkeypatch, path):
    monkeypatch.setenv("WASINN_ABI_PATH", path)
    g = ForwardingGuest(host)
    assert g.binding.path == path
    np.testing.assert_array_equal(infer(g, ready_context(g, digits_onnx), digit_image), reference_probs)
    assert g.call("compute", 99) == INVALID_ARGUMENT


def test_abi_path_choice(host, monkeypatch):
    import wasmtime

    from wasinn_core import fast_path_available

    assert fast_path_available()  # wasmtime-py 50 is pinned by wasinn-core
    monkeypatch.setenv("WASINN_ABI_PATH", "turbo")
    with pytest.raises(ValueError, match="allowed: auto, fast, public"):
        ForwardingGuest(host)
    monkeypatch.setenv("WASINN_ABI_PATH", "auto")
    monkeypatch.setattr(wasmtime, "__version__", "51.0.0", raising=False)  # a version the fast path does not know
    assert not fast_path_available()
    assert ForwardingGuest(host).binding.path == "public"
    monkeypatch.setenv("WASINN_ABI_PATH", "fast")
    with pytest.raises(RuntimeError, match="fast ABI path needs wasmtime-py 50"):
        ForwardingGuest(host)
