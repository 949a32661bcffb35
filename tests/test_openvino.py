"""The OpenVINO backend with real OpenVINO: IR from bytes, ONNX through OpenVINO, precision, types, devices."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="openvino is installed by `make test`")

from wasinn_core import (  # noqa: E402
    Config,
    ExecutionTarget,
    GraphEncoding,
    Host,
    InvalidArgument,
    Tensor,
    TensorType,
)
from wasinn_core.testing import ForwardingGuest  # noqa: E402
from wasinn_openvino import OPTIONS  # noqa: E402
from wasinn_openvino._backend import compile_config, device_name, probe  # noqa: E402

from . import models  # noqa: E402
from .conftest import DIGITS_IMAGES, DIGITS_MODEL, GUESTS, digits_config, in_process  # noqa: E402
from .test_abi import INVALID_ARGUMENT, OK, RUNTIME_ERROR, UNSUPPORTED  # noqa: E402
from .test_plugins import run_cli  # noqa: E402
from .test_pytorch import rss_bytes  # noqa: E402

OPENVINO, ONNX, CPU, GPU, TPU = (
    GraphEncoding.OPENVINO,
    GraphEncoding.ONNX,
    ExecutionTarget.CPU,
    ExecutionTarget.GPU,
    ExecutionTarget.TPU,
)
DEFAULTS = {o.name: o.default for o in OPTIONS}
WITX = {
    "f16": (0, np.float16),
    "f32": (1, np.float32),
    "f64": (2, np.float64),
    "u8": (3, np.uint8),
    "i32": (4, np.int32),
    "i64": (5, np.int64),
}


@pytest.fixture(scope="module")
def digits_ir() -> tuple[bytes, bytes]:
    return (DIGITS_MODEL / "digits.xml").read_bytes(), (DIGITS_MODEL / "digits.bin").read_bytes()


@pytest.fixture
def session(host):
    s = host.new_session()
    yield s
    s.close()


def load_ir(session, xml: bytes, weights: bytes, target=CPU) -> int:
    return session.load([memoryview(xml), memoryview(weights)], OPENVINO, target)


def infer(session, graph: int, *inputs, keys=None) -> list[Tensor]:
    ctx = session.init_execution_context(graph)
    for i, x in enumerate(inputs):
        session.set_input(ctx, keys[i] if keys else i, Tensor.from_array(x))
    session.compute(ctx)
    n = len(session._context(ctx).context.output_names())
    return [session.get_output(ctx, i) for i in range(n)]


# -- loading ----------------------------------------------------------------------------


def test_ir_from_bytes_through_the_abi(guest, digits_ir, digit_image, reference_probs):
    builders, n = guest.builders(list(digits_ir))
    out = guest.alloc(4)
    assert guest.call("load", builders, n, 0, 0, out) == OK
    info = guest.session.graph_info(guest.u32(out))
    assert (info.backend, info.device) == ("openvino", "CPU")
    ctx_out = guest.alloc(4)
    assert guest.call("init_execution_context", guest.u32(out), ctx_out) == OK
    ctx = guest.u32(ctx_out)
    assert guest.call("set_input", ctx, 0, guest.tensor([1, 64], 1, digit_image)) == OK
    assert guest.call("compute", ctx) == OK
    buf, written = guest.alloc(40), guest.alloc(4)
    assert guest.call("get_output", ctx, 0, buf, 40, written) == OK
    got = np.frombuffer(guest.read(buf, 40), np.float32).reshape(1, 10)
    np.testing.assert_allclose(got, reference_probs, atol=1e-5)


def test_ir_needs_two_builders(guest, digits_ir):
    builders, n = guest.builders([digits_ir[0]])
    assert guest.call("load", builders, n, 0, 0, guest.alloc(4)) == INVALID_ARGUMENT


def test_corrupt_ir_is_runtime_error(guest, digits_ir, caplog):
    xml, weights = digits_ir
    for bad in ([xml[: len(xml) // 2], weights], [xml, weights[:100]]):
        builders, n = guest.builders(bad)
        with caplog.at_level(logging.WARNING, logger="wasinn"):
            assert guest.call("load", builders, n, 0, 0, guest.alloc(4)) == RUNTIME_ERROR


def test_autodetect_ir(guest, digits_ir):
    builders, n = guest.builders(list(digits_ir))
    out = guest.alloc(4)
    assert guest.call("load", builders, n, 5, 0, out) == OK
    assert guest.session.graph_info(guest.u32(out)).encoding is OPENVINO


def test_onnx_through_openvino_when_preferred(plugins, digits_onnx, digit_image, reference_probs):
    host = Host(Config.from_dict({"preferences": {"onnx": ["openvino"]}}), plugins=plugins)
    session = host.new_session()
    graph = session.load([memoryview(digits_onnx)], ONNX, CPU)
    assert session.graph_info(graph).backend == "openvino"
    (out,) = infer(session, graph, digit_image)
    np.testing.assert_allclose(out.data, reference_probs, atol=1e-5)


def test_onnx_goes_to_onnxruntime_by_default_and_both_claims_show(session, digits_onnx):
    graph = session.load([memoryview(digits_onnx)], ONNX, CPU)
    assert session.graph_info(graph).backend == "onnxruntime"
    claims = session.host.registry.claims()[ONNX]
    assert [name for name, _ in claims if name in ("onnxruntime", "openvino")] == ["onnxruntime", "openvino"]
    listing = run_cli("plugins").stdout
    assert "backend openvino" in listing and "encodings: openvino (preference 100), onnx (preference 50)" in listing
    assert "encodings: onnx (preference 100)" in listing  # onnxruntime


def test_onnx_runs_on_openvino_when_it_is_the_only_onnx_backend(digits_onnx):
    result = run_cli(
        "run",
        "--dir",
        f"{DIGITS_IMAGES}::/images",
        "--nn-preload",
        f"digits:onnx:cpu:{DIGITS_MODEL / 'digits.onnx'}",
        "-v",
        str(GUESTS / "digits.wasm"),
        "/images",
        env={"WASINN_DISABLED_PLUGINS": "wasinn-onnx"},
    )
    assert result.returncode == 0, result.stderr
    assert "onnx on cpu with openvino" in result.stderr and "accuracy: 38/40" in result.stdout


# -- numerics ------------------------------------------------------------------------------


def test_default_precision_matches_onnxruntime_and_torch_within_1e_5(tmp_path, plugins):
    torch = pytest.importorskip("torch", reason="torch is installed by `make test`")
    import onnxruntime as ort

    module, image = models.classifier224(1001), models.image224()
    xml, weights = models.torch_to_ir(module, torch.from_numpy(image), tmp_path)
    onnx = models.torch_to_onnx(module, torch.from_numpy(image), tmp_path / "m.onnx")
    with torch.no_grad():
        reference = module(torch.from_numpy(image)).numpy()
    session = Host(in_process(digits_config()), plugins=plugins).new_session()
    graph = load_ir(session, xml, weights)
    compiled = session._graph(graph).loaded.graph.compiled
    assert str(compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")
    (out,) = infer(session, graph, image)
    assert out.dimensions == (1, 1001)
    np.testing.assert_allclose(out.data, reference, atol=1e-5)
    np.testing.assert_allclose(out.data, ort.InferenceSession(onnx).run(None, {"image": image})[0], atol=1e-5)


def test_compile_config_from_options():
    assert compile_config(DEFAULTS) == {"INFERENCE_PRECISION_HINT": "f32"}
    config = compile_config(
        {
            **DEFAULTS,
            "inference_precision": "default",
            "performance_hint": "THROUGHPUT",
            "num_streams": 2,
            "cache_dir": "/c",
            "config": {"ENABLE_MMAP": "NO"},
        }
    )
    assert config == {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2", "CACHE_DIR": "/c", "ENABLE_MMAP": "NO"}


def test_cache_dir_is_off_by_default_and_used_when_configured(tmp_path, plugins, digits_ir):
    cache = tmp_path / "ovcache"  # a host folder: used by graphs in the host process (a worker cannot write it)
    config = Config.from_dict({"backends": {"openvino": {"cache_dir": str(cache)}}, "isolation": {"guest": "none"}})
    host = Host(config, plugins=plugins)
    load_ir(host.new_session(), *digits_ir)
    assert cache.is_dir() and any(cache.iterdir())


def test_nothing_written_under_home(tmp_path):
    code = (
        "import numpy as np, wasinn_openvino._backend as b, openvino as ov;"
        "m=b.core().read_model(model=open('examples/digits/model/digits.onnx','rb').read());"
        "b.core().compile_model(m,'CPU').create_infer_request().infer({0: np.zeros((1,64),np.float32)})"
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["HOME"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=DIGITS_MODEL.parents[2], timeout=120)
    assert list(tmp_path.iterdir()) == []


# -- types, names, contexts ------------------------------------------------------------------


@pytest.mark.parametrize("type_name", list(WITX))
def test_every_witx_tensor_type(guest, tmp_path, type_name):
    code, dtype = WITX[type_name]
    xml, weights = models.ir_bytes(models.ir_double(type_name), tmp_path)
    builders, n = guest.builders([xml, weights])
    graph_out, ctx_out = guest.alloc(4), guest.alloc(4)
    assert guest.call("load", builders, n, 0, 0, graph_out) == OK
    assert guest.call("init_execution_context", guest.u32(graph_out), ctx_out) == OK
    ctx = guest.u32(ctx_out)
    x = (np.arange(6).reshape(2, 3) + 1).astype(dtype)
    other = 1 if code != 1 else 2
    assert guest.call("set_input", ctx, 0, guest.tensor([2, 3], other, x.astype(WITX_dtype(other)))) == INVALID_ARGUMENT
    assert guest.call("set_input", ctx, 0, guest.tensor([2, 3], code, x)) == OK
    assert guest.call("compute", ctx) == OK
    buf, written = guest.alloc(64), guest.alloc(4)
    assert guest.call("get_output", ctx, 0, buf, 64, written) == OK
    assert guest.u32(written) == x.nbytes
    np.testing.assert_array_equal(np.frombuffer(guest.read(buf, x.nbytes), dtype).reshape(2, 3), x + x)


def WITX_dtype(code: int):
    return next(d for c, d in WITX.values() if c == code)


def test_bf16_both_ways_for_wit_guests(session, tmp_path):
    xml, weights = models.ir_bytes(models.ir_double("bf16"), tmp_path)
    graph = load_ir(session, xml, weights)
    x = np.array([[1.0, 2, 3], [4, 5, 6]]).astype(TensorType.BF16.numpy_dtype)
    (out,) = infer(session, graph, x)
    assert out.type is TensorType.BF16
    np.testing.assert_array_equal(out.data.astype(np.float32), [[2, 4, 6], [8, 10, 12]])


def test_inputs_and_outputs_by_index_and_name(session, tmp_path):
    graph = load_ir(session, *models.ir_bytes(models.ir_two_in_two_out(), tmp_path))
    a, b = np.array([1.0, 2, 3], np.float32), np.array([4.0, 5, 6], np.float32)
    for outs in (infer(session, graph, a, b), infer(session, graph, b, a, keys=["b", "a"])):
        np.testing.assert_array_equal(outs[0].data, a + b)
        np.testing.assert_array_equal(outs[1].data, a * b)
    ctx = session.init_execution_context(graph)
    assert list(session._context(ctx).context.output_names()) == ["sum", "product"]
    session.set_input(ctx, "a", Tensor.from_array(a))
    with pytest.raises(InvalidArgument, match="inputs not set: b"):
        session.compute(ctx)
    session.set_input(ctx, "b", Tensor.from_array(b))
    session.compute(ctx)
    np.testing.assert_array_equal(session.get_output(ctx, "product").data, a * b)
    for bad, message in [("c", "no input named 'c'"), (2, "input index 2 is out of range")]:
        with pytest.raises(InvalidArgument, match=message):
            session.set_input(ctx, bad, Tensor.from_array(a))
    with pytest.raises(InvalidArgument, match="expects shape 3, got 4"):
        session.set_input(ctx, 0, Tensor.from_array(np.zeros(4, np.float32)))
    with pytest.raises(InvalidArgument, match="no output named 'x'"):
        session.get_output(ctx, "x")


def test_repeated_computes_and_many_contexts(session, digits_ir):
    graph = load_ir(session, *digits_ir)
    contexts = [session.init_execution_context(graph) for _ in range(6)]
    images = [np.full((1, 64), i / 6, np.float32) for i in range(6)]
    for step in range(3):
        for ctx, image in zip(contexts, images, strict=True):
            session.set_input(ctx, 0, Tensor.from_array(image * step))
        for ctx in contexts:
            session.compute(ctx)
        results = [session.get_output(ctx, 0).data.copy() for ctx in contexts]
        single = session.init_execution_context(graph)
        for image, result in zip(images, results, strict=True):
            session.set_input(single, 0, Tensor.from_array(image * step))
            session.compute(single)
            np.testing.assert_array_equal(session.get_output(single, 0).data, result)
    # contexts own their infer requests; the compiled model is shared (looked at in the host process)
    local = Host(in_process(digits_config()), plugins=session.host.plugins).new_session()
    graph = load_ir(local, *digits_ir)
    contexts = [local.init_execution_context(graph) for _ in range(6)]
    requests = {id(local._context(c).context._request) for c in contexts}
    assert len(requests) == len(contexts)
    local.close()


def test_named_model_compiled_once_shared_by_instances(plugins, digits_ir):
    paths = [str(DIGITS_MODEL / "digits.xml"), str(DIGITS_MODEL / "digits.bin")]
    cfg = Config.from_dict({"models": [{"name": "d", "encoding": "openvino", "paths": paths}]})
    host = Host(cfg, plugins=plugins)
    sessions = [host.new_session() for _ in range(3)]
    graphs = [s._graph(s.load_by_name("d")).loaded.graph for s in sessions]
    assert graphs[0] is graphs[1] is graphs[2]


# -- devices ---------------------------------------------------------------------------------


def test_device_mapping():
    assert device_name(CPU, DEFAULTS) == "CPU"
    assert device_name(GPU, DEFAULTS) == "GPU"
    assert device_name(GPU, {**DEFAULTS, "device_index": 1}) == "GPU.1"
    assert device_name(TPU, DEFAULTS) == "NPU"
    assert device_name(GPU, {**DEFAULTS, "gpu_device": "AUTO:GPU,CPU"}) == "AUTO:GPU,CPU"


def test_probe_says_which_devices_exist():
    devices = ov.Core().available_devices
    assert probe(CPU, DEFAULTS).available
    gpu = probe(GPU, DEFAULTS)
    assert gpu.available == any(d.startswith("GPU") for d in devices)
    if not gpu.available:
        assert "has no GPU device here (available: CPU" in gpu.reason
    assert probe(GPU, {**DEFAULTS, "gpu_device": "AUTO:GPU,CPU"}).available  # AUTO may use the CPU: configured
    assert not probe(GPU, {**DEFAULTS, "gpu_device": "HETERO:NOPE"}).available


@pytest.mark.skipif(any(d.startswith("GPU") for d in ov.Core().available_devices), reason="this machine has a GPU")
def test_gpu_request_is_strict(guest, digits_ir, caplog):
    builders, n = guest.builders(list(digits_ir))
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        assert guest.call("load", builders, n, 0, 1, guest.alloc(4)) == UNSUPPORTED
        assert guest.call("load", builders, n, 0, 2, guest.alloc(4)) == UNSUPPORTED
    assert "openvino on gpu: OpenVINO" in caplog.text and "has no GPU device here" in caplog.text
    assert "has no NPU device here" in caplog.text


@pytest.mark.skipif(not any(d.startswith("GPU") for d in ov.Core().available_devices), reason="no OpenVINO GPU here")
def test_gpu_inference(session, digits_ir, digit_image, reference_probs):
    graph = load_ir(session, *digits_ir, target=GPU)
    assert session.graph_info(graph).device.startswith("GPU")
    (out,) = infer(session, graph, digit_image)
    np.testing.assert_allclose(out.data, reference_probs, atol=1e-3)


@pytest.mark.skipif("NPU" not in ov.Core().available_devices, reason="no OpenVINO NPU here")
def test_npu_inference(session, digits_ir, digit_image, reference_probs):
    graph = load_ir(session, *digits_ir, target=TPU)
    (out,) = infer(session, graph, digit_image)
    np.testing.assert_allclose(out.data, reference_probs, atol=1e-2)


# -- end to end ------------------------------------------------------------------------------


def test_image_classification_1001_top5_matches_direct(tmp_path):
    """IR with two builders, 1x3x224x224 f32 -> 1x1001, through the C classify guest (the Rust crate's ABI)."""
    module, image = models.classifier224(1001), models.image224(seed=3)
    models.ir_bytes(ov.convert_model(module, example_input=image), tmp_path)  # model.xml + model.bin
    (tmp_path / "image.bin").write_bytes(image.tobytes())
    compiled = ov.Core().compile_model(
        ov.Core().read_model(tmp_path / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    expected = np.argsort(-compiled(image)[0][0])[:5].tolist()
    result = run_cli(
        "run",
        "--dir",
        f"{tmp_path}::/m",
        str(GUESTS / "classify.wasm"),
        "--model",
        "/m/model.xml",
        "--model",
        "/m/model.bin",
        "--encoding",
        "openvino",
        "--dims",
        "1x3x224x224",
        "/m/image.bin",
    )
    assert result.returncode == 0, result.stderr
    assert "output 0: 4004 bytes" in result.stdout
    assert [int(x.split(":")[0]) for x in result.stdout.split("top-5:")[1].split()] == expected


@pytest.mark.slow
def test_no_leak_over_1000_load_compute_unload_cycles(plugins, digits_ir, digit_image):
    guest = ForwardingGuest(Host(digits_config(), plugins=plugins))
    builders, n = guest.builders(list(digits_ir))
    tensor = guest.tensor([1, 64], 1, digit_image)
    graph_out, ctx_out, buf, written = guest.alloc(4), guest.alloc(4), guest.alloc(40), guest.alloc(4)
    settled = 0
    for cycle in range(1000):
        assert guest.call("load", builders, n, 0, 0, graph_out) == OK
        assert guest.call("init_execution_context", guest.u32(graph_out), ctx_out) == OK
        ctx = guest.u32(ctx_out)
        assert guest.call("set_input", ctx, 0, tensor) == OK
        assert guest.call("compute", ctx) == OK
        assert guest.call("get_output", ctx, 0, buf, 40, written) == OK
        assert guest.call("finalize_execution_context", ctx) == OK
        assert guest.call("unload", guest.u32(graph_out)) == OK
        if cycle == 49:
            settled = rss_bytes()
    growth = (rss_bytes() - settled) / settled
    print(f"RSS {settled / 1e6:.1f} MB after 50 cycles, growth to 1000: {growth:+.2%}")
    assert growth < 0.10, f"RSS grew {growth:.1%} from cycle 50 to 1000"
