"""The PyTorch backend with real torch: both archive formats, every tensor type, names, errors, devices, leaks."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is installed by `make test`")

from wasinn_core import (  # noqa: E402
    BackendError,
    Config,
    ExecutionTarget,
    GraphEncoding,
    Host,
    InvalidArgument,
    Tensor,
    TensorType,
)
from wasinn_core.testing import ForwardingGuest  # noqa: E402
from wasinn_pytorch._devices import DeviceFacts, device_for  # noqa: E402

from . import models  # noqa: E402
from .conftest import DIGITS_IMAGES, DIGITS_MODEL, GUESTS, digits_config  # noqa: E402
from .test_abi import INVALID_ARGUMENT, OK, RUNTIME_ERROR, UNSUPPORTED  # noqa: E402
from .test_plugins import run_cli  # noqa: E402

PT, CPU, GPU, TPU = GraphEncoding.PYTORCH, ExecutionTarget.CPU, ExecutionTarget.GPU, ExecutionTarget.TPU
PYTORCH_CODE = 3
DTYPES = {
    TensorType.F16: np.float16,
    TensorType.F32: np.float32,
    TensorType.F64: np.float64,
    TensorType.U8: np.uint8,
    TensorType.I32: np.int32,
    TensorType.I64: np.int64,
}
WITX_CODE = {
    TensorType.F16: 0,
    TensorType.F32: 1,
    TensorType.F64: 2,
    TensorType.U8: 3,
    TensorType.I32: 4,
    TensorType.I64: 5,
}


@pytest.fixture
def session(host):
    s = host.new_session()
    yield s
    s.close()


def load(session, data: bytes, target=CPU) -> int:
    return session.load([memoryview(data)], PT, target)


def run(session, graph: int, *inputs, key=None) -> list[Tensor]:
    ctx = session.init_execution_context(graph)
    for i, x in enumerate(inputs):
        session.set_input(ctx, i if key is None else key[i], Tensor.from_array(x))
    session.compute(ctx)
    return [session.get_output(ctx, i) for i in range(len(session._context(ctx).context.output_names()))]


@pytest.fixture(scope="module")
def digits_pt() -> bytes:
    return (DIGITS_MODEL / "digits.pt").read_bytes()


@pytest.fixture(scope="module")
def digits_pt2() -> bytes:
    return (DIGITS_MODEL / "digits.pt2").read_bytes()


# -- formats --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["digits.pt", "digits.pt2"])
@pytest.mark.parametrize("encoding", [PYTORCH_CODE, 5])  # pytorch and autodetect
def test_both_formats_through_the_abi(guest, name, encoding, digit_image, reference_probs):
    model = (DIGITS_MODEL / name).read_bytes()
    builders, n = guest.builders([model])
    out = guest.alloc(4)
    assert guest.call("load", builders, n, encoding, 0, out) == OK
    info = guest.session.graph_info(guest.u32(out))
    assert (info.backend, info.encoding, info.device) == ("pytorch", PT, "cpu")
    ctx_out = guest.alloc(4)
    assert guest.call("init_execution_context", guest.u32(out), ctx_out) == OK
    ctx = guest.u32(ctx_out)
    assert guest.call("set_input", ctx, 0, guest.tensor([1, 64], 1, digit_image)) == OK
    assert guest.call("compute", ctx) == OK
    buf, written = guest.alloc(40), guest.alloc(4)
    assert guest.call("get_output", ctx, 0, buf, 40, written) == OK
    np.testing.assert_allclose(
        np.frombuffer(guest.read(buf, 40), np.float32).reshape(1, 10), reference_probs, atol=1e-6
    )


def test_format_sniffing():
    from wasinn_pytorch._backend import EXPORTED_PROGRAM, TORCHSCRIPT, sniff_format

    assert sniff_format(memoryview((DIGITS_MODEL / "digits.pt").read_bytes())) == TORCHSCRIPT
    assert sniff_format(memoryview((DIGITS_MODEL / "digits.pt2").read_bytes())) == EXPORTED_PROGRAM
    assert sniff_format(memoryview((DIGITS_MODEL / "digits.onnx").read_bytes())) is None


def fake_archive() -> bytes:
    """A zip that looks like TorchScript by its entry names but holds garbage."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("m/constants.pkl", b"garbage")
        z.writestr("m/code/__torch__.py", b"garbage")
        z.writestr("m/data.pkl", b"garbage")
    return buf.getvalue()


def test_not_an_archive_and_corrupt_archive(guest, digits_pt, caplog):
    cases = [
        (b"definitely not torch", INVALID_ARGUMENT),
        (digits_pt[:-200], INVALID_ARGUMENT),
        (fake_archive(), RUNTIME_ERROR),
    ]
    for data, errno in cases:
        builders, n = guest.builders([data])
        assert guest.call("load", builders, n, PYTORCH_CODE, 0, guest.alloc(4)) == errno


# -- tensor types ---------------------------------------------------------------------


@pytest.mark.parametrize("ttype", list(DTYPES))
def test_every_witx_tensor_type_both_ways(guest, ttype):
    model = models.scripted_bytes(models.double_module(), torch.zeros(2, 3))
    builders, n = guest.builders([model])
    graph_out, ctx_out = guest.alloc(4), guest.alloc(4)
    assert guest.call("load", builders, n, PYTORCH_CODE, 0, graph_out) == OK
    assert guest.call("init_execution_context", guest.u32(graph_out), ctx_out) == OK
    ctx = guest.u32(ctx_out)
    x = (np.arange(6).reshape(2, 3) + 1).astype(DTYPES[ttype])
    assert guest.call("set_input", ctx, 0, guest.tensor([2, 3], WITX_CODE[ttype], x)) == OK
    assert guest.call("compute", ctx) == OK
    buf, written = guest.alloc(64), guest.alloc(4)
    assert guest.call("get_output", ctx, 0, buf, 64, written) == OK
    assert guest.u32(written) == x.nbytes  # the real type's size: no conversion
    np.testing.assert_array_equal(np.frombuffer(guest.read(buf, x.nbytes), DTYPES[ttype]).reshape(2, 3), x * 2)


@pytest.mark.parametrize("ttype", [*DTYPES, TensorType.BF16])
def test_output_type_is_the_real_one(session, ttype):
    model = models.scripted_bytes(models.double_module(), torch.zeros(2))
    graph = load(session, model)
    data = np.array([1.0, 3.0]).astype(ttype.numpy_dtype)
    (out,) = run(session, graph, data)
    assert out.type is ttype and out.dimensions == (2,) and out.data.dtype == ttype.numpy_dtype
    np.testing.assert_array_equal(out.data.astype(np.float64), [2.0, 6.0])


def test_exported_program_checks_dtype_and_shape_at_set_input(session):
    model = models.exported_bytes(
        models.linear64(), (torch.zeros(2, 64),), dynamic_shapes={"input": {0: torch.export.Dim("batch")}}
    )
    graph = load(session, model)
    ctx = session.init_execution_context(graph)
    with pytest.raises(InvalidArgument, match="expects f32, got f64"):
        session.set_input(ctx, 0, Tensor.from_array(np.zeros((1, 64), np.float64)))
    with pytest.raises(InvalidArgument, match=r"expects shape \?x64, got 1x32"):
        session.set_input(ctx, 0, Tensor.from_array(np.zeros((1, 32), np.float32)))
    session.set_input(ctx, 0, Tensor.from_array(np.zeros((5, 64), np.float32)))  # dynamic batch
    session.compute(ctx)
    assert session.get_output(ctx, 0).dimensions == (5, 10)


def test_torchscript_dtype_and_shape_errors_carry_the_library_message(guest, caplog):
    model = models.scripted_bytes(models.linear64(), torch.zeros(1, 64))
    builders, n = guest.builders([model])
    graph_out, ctx_out = guest.alloc(4), guest.alloc(4)
    assert guest.call("load", builders, n, PYTORCH_CODE, 0, graph_out) == OK
    assert guest.call("init_execution_context", guest.u32(graph_out), ctx_out) == OK
    ctx = guest.u32(ctx_out)
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        assert guest.call("set_input", ctx, 0, guest.tensor([1, 64], 2, np.zeros((1, 64), np.float64))) == OK
        assert guest.call("compute", ctx) == INVALID_ARGUMENT
        assert "the model rejected its inputs" in caplog.text and "dtype" in caplog.text
        caplog.clear()
        assert guest.call("set_input", ctx, 0, guest.tensor([1, 32], 1, np.zeros((1, 32), np.float32))) == OK
        assert guest.call("compute", ctx) == INVALID_ARGUMENT
        assert re.search(r"shape|size|mat1", caplog.text)


# -- names, multiple outputs, contexts ----------------------------------------------------


@pytest.mark.parametrize("fmt", ["torchscript", "exported_program"])
def test_inputs_by_index_and_by_name(session, fmt):
    example = (torch.ones(3), torch.ones(3))
    model = (models.scripted_bytes if fmt == "torchscript" else models.exported_bytes)(models.two_in_two_out(), example)
    graph = load(session, model)
    a, b = np.array([1.0, 2, 3], np.float32), np.array([10.0, 20, 30], np.float32)
    by_index = run(session, graph, a, b)
    by_name = run(session, graph, b, a, key=["b", "a"])  # names, in any order
    for outs in (by_index, by_name):
        np.testing.assert_array_equal(outs[0].data, a + b)
        np.testing.assert_array_equal(outs[1].data, a * b)
    ctx = session.init_execution_context(graph)
    with pytest.raises(InvalidArgument, match="no input named 'c'"):
        session.set_input(ctx, "c", Tensor.from_array(a))
    with pytest.raises(InvalidArgument, match="input index 2 is out of range"):
        session.set_input(ctx, 2, Tensor.from_array(a))
    session.set_input(ctx, 0, Tensor.from_array(a))
    with pytest.raises(InvalidArgument, match="inputs not set: b"):
        session.compute(ctx)


def test_dict_outputs_become_names(session):
    graph = load(session, models.scripted_bytes(models.dict_out(), torch.ones(1, 4)))
    ctx = session.init_execution_context(graph)
    session.set_input(ctx, 0, Tensor.from_array(np.array([[1.0, 2, 3, 4]], np.float32)))
    session.compute(ctx)
    context = session._context(ctx).context
    assert list(context.output_names()) == ["double", "total"]
    np.testing.assert_array_equal(session.get_output(ctx, "total").data, [[10.0]])
    np.testing.assert_array_equal(session.get_output(ctx, 0).data, [[2.0, 4, 6, 8]])
    with pytest.raises(InvalidArgument, match="no output named 'x'"):
        session.get_output(ctx, "x")
    with pytest.raises(InvalidArgument, match="out of range"):
        session.get_output(ctx, 2)


def test_repeated_computes_replace_outputs(session):
    graph = load(session, models.scripted_bytes(models.two_in_two_out(), (torch.ones(2), torch.ones(2))))
    ctx = session.init_execution_context(graph)
    context = session._context(ctx).context
    for step in range(5):
        session.set_input(ctx, 0, Tensor.from_array(np.full(2, step, np.float32)))
        session.set_input(ctx, 1, Tensor.from_array(np.ones(2, np.float32)))
        session.compute(ctx)
        assert len(context.output_names()) == 2  # not accumulating (WasmEdge's bug)
        np.testing.assert_array_equal(session.get_output(ctx, 0).data, np.full(2, step + 1))


def test_many_contexts_on_one_graph(session):
    graph = load(session, models.scripted_bytes(models.double_module(), torch.zeros(3)))
    contexts = [session.init_execution_context(graph) for _ in range(8)]
    for i, ctx in enumerate(contexts):
        session.set_input(ctx, 0, Tensor.from_array(np.full(3, i, np.float32)))
    for ctx in reversed(contexts):
        session.compute(ctx)
    for i, ctx in enumerate(contexts):
        np.testing.assert_array_equal(session.get_output(ctx, 0).data, np.full(3, 2 * i))
    with pytest.raises(InvalidArgument, match="compute has not run"):
        session.get_output(session.init_execution_context(graph), 0)


# -- devices ----------------------------------------------------------------------------


def test_gpu_request_without_gpu_is_unsupported_with_the_reason(guest, digits_pt, caplog):
    builders, n = guest.builders([digits_pt])
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        assert guest.call("load", builders, n, PYTORCH_CODE, 1, guest.alloc(4)) == UNSUPPORTED
        if not torch.cuda.is_available():
            assert "CUDA not available" in caplog.text
        assert guest.call("load", builders, n, PYTORCH_CODE, 2, guest.alloc(4)) == UNSUPPORTED
        assert "no TPU target" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="this machine has a GPU")
def test_gpu_fallback_policy_runs_on_cpu_and_reports_it(plugins, digit_image, reference_probs):
    host = Host(
        Config.from_dict(
            {
                "policy": {"fallback": "cpu"},
                "models": [
                    {"name": "d", "encoding": "pytorch", "target": "gpu", "path": str(DIGITS_MODEL / "digits.pt")}
                ],
            }
        ),
        plugins=plugins,
    )
    info = host.named_graph("d").info
    assert (info.requested_target, info.target, info.device) == (GPU, CPU, "cpu")


def facts(cuda: int = 0, mps: bool = False, built: str | None = None) -> DeviceFacts:
    """Machine facts for device selection on machines this is not (a double for missing GPUs)."""
    return DeviceFacts(
        "2.13.0",
        built if built or not cuda else "12.4",
        cuda,
        "no CUDA device is visible" if built and not cuda else "",
        mps,
        mps,
    )


@pytest.mark.parametrize(
    ("machine", "options", "expected"),
    [
        (facts(cuda=2), {}, "cuda:0"),
        (facts(cuda=2), {"device_index": 1}, "cuda:1"),
        (facts(cuda=2, mps=True), {"gpu_device": "mps"}, "mps"),
        (facts(mps=True), {}, "mps"),
        (facts(cuda=1), {"gpu_device": "mps"}, "MPS not available: torch 2.13.0 was built without MPS"),
        (facts(cuda=2), {"device_index": 2}, "cuda:2 requested but only 2 CUDA device(s) exist"),
        (facts(mps=True), {"gpu_device": "cuda"}, "torch 2.13.0 was built without CUDA"),
        (facts(built="12.4"), {"gpu_device": "cuda"}, "torch 2.13.0 (CUDA 12.4): no CUDA device is visible"),
        (facts(), {}, "built without CUDA; MPS not available"),
    ],
)
def test_device_selection(machine, options, expected):
    opts = {"gpu_device": "auto", "device_index": 0, **options}
    result = device_for(GPU, opts, machine)
    assert (result.device if result.available else result.reason).startswith(expected) or expected in result.reason
    assert device_for(CPU, opts, machine).device == "cpu"
    assert not device_for(TPU, opts, machine).available


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_inference_and_release(session, digits_pt, digit_image, reference_probs):
    before = torch.cuda.memory_allocated()
    graph = load(session, digits_pt, target=GPU)
    assert session.graph_info(graph).device == "cuda:0"
    (out,) = run(session, graph, digit_image)
    np.testing.assert_allclose(out.data, reference_probs, atol=1e-5)
    session.close()
    assert torch.cuda.memory_allocated() == before


@pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no MPS device on this machine")
def test_mps_inference(session, digits_pt, digit_image, reference_probs):
    graph = load(session, digits_pt, target=GPU)
    assert session.graph_info(graph).device == "mps"
    (out,) = run(session, graph, digit_image)
    np.testing.assert_allclose(out.data, reference_probs, atol=1e-4)


# -- end to end ---------------------------------------------------------------------------


def test_digits_demo_on_pytorch():
    result = run_cli(
        "run",
        "--dir",
        f"{DIGITS_IMAGES}::/images",
        "--nn-preload",
        f"digits:pytorch:cpu:{DIGITS_MODEL / 'digits.pt2'}",
        str(GUESTS / "digits.wasm"),
        "/images",
    )
    assert result.returncode == 0, result.stderr
    assert "accuracy: 38/40" in result.stdout


def test_image_classification_top5_matches_torch(tmp_path):
    """A 1x3x224x224 -> 1x1000 TorchScript classifier through the C `classify` guest (the Rust crate's ABI)."""
    module = models.classifier224()
    image = models.image224()
    models.write(tmp_path / "model.pt", models.scripted_bytes(module, torch.from_numpy(image)))
    models.write(tmp_path / "image.bin", image.tobytes())
    with torch.no_grad():
        expected = torch.topk(module(torch.from_numpy(image))[0], 5).indices.tolist()
    result = run_cli(
        "run",
        "--dir",
        f"{tmp_path}::/m",
        str(GUESTS / "classify.wasm"),
        "--model",
        "/m/model.pt",
        "--encoding",
        "pytorch",
        "--dims",
        "1x3x224x224",
        "/m/image.bin",
    )
    assert result.returncode == 0, result.stderr
    assert "output 0: 4000 bytes" in result.stdout
    top5 = [int(item.split(":")[0]) for item in result.stdout.split("top-5:")[1].split()]
    assert top5 == expected


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
def test_no_leak_over_1000_load_compute_unload_cycles(plugins, digits_pt, digit_image):
    guest = ForwardingGuest(Host(digits_config(), plugins=plugins))
    model_builders, n = guest.builders([digits_pt])
    tensor = guest.tensor([1, 64], 1, digit_image)
    graph_out, ctx_out, buf, written = guest.alloc(4), guest.alloc(4), guest.alloc(40), guest.alloc(4)
    settled = 0
    for cycle in range(1000):
        assert guest.call("load", model_builders, n, PYTORCH_CODE, 0, graph_out) == OK
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
    assert guest.session.live_graphs == 0 and guest.session.live_contexts == 0


# -- what a review found ------------------------------------------------------------------------------------


class _FailsInside(torch.nn.Module):
    """A model whose forward fails for a reason of its own, whatever the input: it indexes past a table."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[5]


class _Raises(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > -1.0):
            raise RuntimeError("lookup table not initialised")
        return x


def test_a_models_own_failure_is_a_runtime_error_not_the_guests_input(session):
    """Only torch's shape, rank and dtype errors are the input's fault (invalid_argument); the rest is runtime_error."""
    for module, message in [(_FailsInside(), "index 5 out of range"), (_Raises(), "lookup table not initialised")]:
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(module), buffer)
        graph = load(session, buffer.getvalue())
        with pytest.raises(BackendError, match=f"the model failed: .*{message}") as info:
            run(session, graph, np.zeros((1, 3), np.float32))
        assert not isinstance(info.value, InvalidArgument)
    wrong_shape = load(session, models.scripted_bytes(models.linear64(), torch.zeros(1, 64)))
    with pytest.raises(InvalidArgument, match=r"the model rejected its inputs: .*(shape|mat1)"):
        run(session, wrong_shape, np.zeros((1, 32), np.float32))


def test_num_threads_is_set_once_for_the_process_and_a_conflict_is_refused(tmp_path):
    """torch.set_num_threads is process-wide: a later load may not change it under an earlier model."""
    script = f"""
import torch
from wasinn_core import Config, Host, UnsupportedOperation
def model(name, threads):
    return {{"name": name, "encoding": "pytorch", "path": {str(DIGITS_MODEL / "digits.pt")!r},
             "options": {{"num_threads": threads}}}}
host = Host(Config.from_dict({{"models": [model("a", 1), model("b", 2), model("c", 0), model("d", 1)]}}))
default = torch.get_num_threads()
host.named_graph("a")
assert torch.get_num_threads() == 1, torch.get_num_threads()
try:
    host.named_graph("b")
except UnsupportedOperation as exc:
    assert "process-wide and an earlier load set it to 1" in exc.message, exc.message
else:
    raise SystemExit(f"b loaded and torch now runs {{torch.get_num_threads()}} threads")
host.named_graph("c"), host.named_graph("d")
assert torch.get_num_threads() == 1
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stdout + result.stderr
