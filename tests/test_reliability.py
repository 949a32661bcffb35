"""Reliability and security: untrusted models, policy, limits, path safety, concurrency, soak."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from wasinn_core import (
    Availability,
    Backend,
    BackendError,
    BackendSpec,
    Busy,
    Config,
    ConfigError,
    ExecutionContext,
    ExecutionTarget,
    Graph,
    GraphEncoding,
    Host,
    InvalidArgument,
    Limits,
    NotFound,
    PluginManager,
    Tensor,
    TensorKey,
    TooLarge,
    UnsupportedOperation,
)
from wasinn_core.testing import ForwardingGuest, registered

from . import soak
from .conftest import DIGITS_MODEL, GUESTS
from .fuzzing import MODEL_FORMATS, fuzz_models_isolated
from .test_plugins import run_cli

ONNX, PT, OV = GraphEncoding.ONNX, GraphEncoding.PYTORCH, GraphEncoding.OPENVINO
CPU = ExecutionTarget.CPU


@pytest.fixture(scope="module", autouse=True)
def _quiet():
    logging.getLogger("wasinn").setLevel(logging.CRITICAL)
    yield
    logging.getLogger("wasinn").setLevel(logging.NOTSET)


@pytest.mark.parametrize("fmt", sorted(MODEL_FORMATS))
def test_mutated_models_never_crash_or_hang(fmt):
    """Truncated, bit-flipped and random model bytes: loaded or refused with runtime_error/invalid_argument."""
    outcomes, killed = fuzz_models_isolated(fmt, 40, seed=7)  # in a child: a crash is a failure, not the end
    assert killed == [], outcomes
    refused = {k for k in outcomes if k != "ran" and not k.startswith("run: ")}
    assert refused <= {"runtime_error", "invalid_argument"}, outcomes
    assert refused, outcomes  # most mutations are rejected, and they were rejected cleanly


# -- policy and path safety ----------------------------------------------------------------------------


def test_guest_load_can_be_disabled_for_named_models_only(plugins, digits_onnx):
    config = Config.from_dict(
        {
            "policy": {"guest_load": False},
            "models": [{"name": "digits", "encoding": "onnx", "path": str(DIGITS_MODEL / "digits.onnx")}],
        }
    )
    session = Host(config, plugins=plugins).new_session()
    with pytest.raises(UnsupportedOperation, match=r"disabled by policy\.guest_load"):
        session.load([memoryview(digits_onnx)], ONNX, CPU)
    assert session.load_by_name("digits") == 0


def test_guest_load_per_encoding_applies_after_autodetect(plugins, digits_onnx):
    session = Host(Config.from_dict({"policy": {"guest_load": ["onnx"]}}), plugins=plugins).new_session()
    assert session.load([memoryview(digits_onnx)], ONNX, CPU) == 0
    torchscript = memoryview((DIGITS_MODEL / "digits.pt").read_bytes())
    for encoding in (PT, GraphEncoding.AUTODETECT):
        with pytest.raises(UnsupportedOperation, match="pytorch models are disabled"):
            session.load([torchscript], encoding, CPU)


def test_guest_load_cli_flag():
    result = run_cli(
        "run",
        "--guest-load",
        "none",
        "--dir",
        f"{DIGITS_MODEL.parent}::/d",
        str(GUESTS / "digits.wasm"),
        "--model",
        "/d/model/digits.onnx",
        "/d/images",
    )
    assert result.returncode == 1 and "load failed: unsupported_operation" in result.stderr
    bad = run_cli("run", "--guest-load", "onyx", str(GUESTS / "digits.wasm"))
    assert bad.returncode == 2 and "--guest-load onyx: unknown graph encoding 'onyx'" in bad.stderr


def test_guest_can_never_set_a_path_option(plugins):
    with pytest.raises(ConfigError, match="'cache_dir' can never be set by a guest"):
        Host(
            Config.from_dict(
                {
                    "models": [
                        {
                            "name": "ir",
                            "encoding": "openvino",
                            "guest_options": ["cache_dir"],
                            "paths": [str(DIGITS_MODEL / "digits.xml"), str(DIGITS_MODEL / "digits.bin")],
                        }
                    ]
                }
            ),
            plugins=plugins,
        )
    with pytest.raises(ConfigError, match="'provider_options' can never be set"):
        Host(
            Config.from_dict(
                {
                    "models": [
                        {
                            "name": "m",
                            "encoding": "onnx",
                            "guest_options": ["provider_options"],
                            "path": str(DIGITS_MODEL / "digits.onnx"),
                        }
                    ]
                }
            ),
            plugins=plugins,
        )


def test_guest_config_json_cannot_name_paths(plugins, tmp_path):
    host = Host(
        Config.from_dict(
            {
                "models": [
                    {
                        "name": "ir",
                        "encoding": "openvino",
                        "paths": [str(DIGITS_MODEL / "digits.xml"), str(DIGITS_MODEL / "digits.bin")],
                    }
                ]
            }
        ),
        plugins=plugins,
    )
    session = host.new_session()
    for config in (b'{"cache_dir": "/tmp/evil"}', b'{"config": {"CACHE_DIR": "/tmp/evil"}}'):
        with pytest.raises(InvalidArgument, match="may not set option"):
            session.load_by_name("ir", config)
    for name in ("../../etc/passwd", str(DIGITS_MODEL / "digits.xml"), "ir/../ir"):
        with pytest.raises(NotFound):  # names are looked up, never opened
            session.load_by_name(name)
    assert not (tmp_path / "evil").exists()


# -- limits ----------------------------------------------------------------------------------------------


def test_host_memory_limit_counts_models_and_inputs(plugins, digits_onnx, digit_image):
    limit = len(digits_onnx) + 300
    session = Host(Config(), plugins=plugins).new_session(Limits(max_host_memory_bytes=limit))
    graph = session.load([memoryview(digits_onnx)], ONNX, CPU)
    with pytest.raises(TooLarge, match="max_host_memory_bytes"):
        session.load([memoryview(digits_onnx)], ONNX, CPU)
    ctx = session.init_execution_context(graph)
    session.set_input(ctx, 0, Tensor.from_array(digit_image))  # 256 bytes: fits
    assert session.held_bytes == len(digits_onnx) + 256
    with pytest.raises(TooLarge):
        session.set_input(ctx, 0, Tensor.from_array(np.zeros((2, 64), np.float32)))
    session.finalize_execution_context(ctx)
    session.unload(graph)
    assert session.held_bytes == 0
    session.load([memoryview(digits_onnx)], ONNX, CPU)  # room again


class _Slow(Backend):
    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        target: ExecutionTarget,
        options: Mapping[str, Any],
    ) -> Graph:
        time.sleep(float(bytes(builders[0]).decode()))
        return _SlowGraph()


class _SlowGraph(Graph):
    device = "slow"

    def init_execution_context(self) -> ExecutionContext:
        return _SlowContext()


class _SlowContext(ExecutionContext):
    """A test double standing in for a long inference (the busy case needs one in flight)."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        pass

    def compute(self) -> None:
        self.started.set()
        time.sleep(0.5)

    def get_output(self, key: TensorKey) -> Tensor:
        return Tensor.from_array(np.zeros(1, np.float32))


SLOW = BackendSpec(
    name="slow",
    factory=_Slow,
    encodings={GraphEncoding.TENSORFLOW: 1},
    targets=frozenset({CPU}),
    probe=lambda t, o: Availability.yes("slow"),
)


def test_load_timeout_returns_and_the_host_keeps_serving(digits_onnx):
    pm = PluginManager(environ={})
    with registered(pm, SLOW):
        session = Host(Config(), plugins=pm).new_session(Limits(load_timeout_s=0.3))
        session.load([memoryview(b"0")], GraphEncoding.TENSORFLOW, CPU)  # a worker is warm
        start = time.perf_counter()
        with pytest.raises(BackendError, match=r"did not finish load within 0\.3 s \(load_timeout_s\); it was killed"):
            session.load([memoryview(b"5")], GraphEncoding.TENSORFLOW, CPU)
        assert time.perf_counter() - start < 3
        assert session.load([memoryview(b"0")], GraphEncoding.TENSORFLOW, CPU) == 1  # a failed load takes no handle
        assert session.load([memoryview(digits_onnx)], ONNX, CPU) == 2  # other backends unaffected


def test_one_context_from_two_threads_is_busy_not_corrupt():
    pm = PluginManager(environ={})
    with registered(pm, SLOW):
        session = Host(Config.from_dict({"isolation": {"guest": "none"}}), plugins=pm).new_session()
        ctx = session.init_execution_context(session.load([memoryview(b"0")], GraphEncoding.TENSORFLOW, CPU))
        context = session._context(ctx).context
        worker = threading.Thread(target=session.compute, args=(ctx,))
        worker.start()
        assert context.started.wait(5)
        for call in (
            lambda: session.compute(ctx),
            lambda: session.get_output(ctx, 0),
            lambda: session.finalize_execution_context(ctx),
        ):
            with pytest.raises(Busy, match=f"execution context {ctx} is in use"):
                call()
        worker.join(5)
        session.compute(ctx)  # free again
        session.finalize_execution_context(ctx)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--timeout", "0.5"], "ran out of time (guest_timeout_s = 0.5)"),
        (["-W", "timeout=500ms"], "ran out of time (guest_timeout_s = 0.5)"),
        (["--fuel", "100000"], "ran out of fuel (guest_fuel = 100000)"),
    ],
)
def test_guest_cpu_limits_stop_an_endless_loop(tmp_path, flags, message):
    spin = tmp_path / "spin.wat"
    spin.write_text('(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))')
    start = time.perf_counter()
    result = run_cli("run", *flags, str(spin))
    assert result.returncode == 134 and message in result.stderr
    assert time.perf_counter() - start < 30


def test_guest_memory_limit(tmp_path):
    grow = tmp_path / "grow.wat"
    grow.write_text("""(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (call $exit (select (i32.const 3) (i32.const 0) (i32.eq (memory.grow (i32.const 100)) (i32.const -1))))))""")
    assert run_cli("run", "--max-memory", "1MiB", str(grow)).returncode == 3  # the grow failed
    assert run_cli("run", "-W", "max-memory-size=16MiB", str(grow)).returncode == 0
    assert run_cli("run", str(grow)).returncode == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-graphs", "x"], "--max-graphs x: "),
        (["--max-tensor-bytes", "lots"], "--max-tensor-bytes lots: invalid size"),
        (["--timeout", "-3"], "--timeout -3: "),
        (["--load-timeout", "soon"], "--load-timeout soon: invalid duration"),
        (["-W", "threads=4"], "-W threads=4: unsupported; supported: timeout=, max-memory-size=, fuel="),
    ],
)
def test_limit_flag_errors(flags, message):
    result = run_cli("run", *flags, str(GUESTS / "echo.wasm"))
    assert result.returncode == 2 and message in result.stderr


def test_limits_from_the_config_file(tmp_path):
    config = tmp_path / "wasinn.toml"
    config.write_text('[limits]\nguest_timeout_s = "400ms"\n')
    spin = tmp_path / "spin.wat"
    spin.write_text('(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))')
    result = run_cli("run", "--config", str(config), str(spin))
    assert result.returncode == 134 and "guest_timeout_s = 0.4" in result.stderr
    config.write_text('[limits]\nguest_timeout_s = "soon"\n')
    bad = run_cli("run", "--config", str(config), str(spin))
    assert bad.returncode == 2 and f"{config}: limits.guest_timeout_s: invalid duration" in bad.stderr


# -- concurrency -------------------------------------------------------------------------------------------


def test_threads_with_their_own_stores_share_named_graphs(plugins):
    models = [
        {"name": f"digits-{b}", "encoding": enc, "backend": b, "paths": [str(DIGITS_MODEL / f) for f in fs]}
        for b, (enc, fs) in [
            ("onnxruntime", ("onnx", ["digits.onnx"])),
            ("pytorch", ("pytorch", ["digits.pt"])),
            ("openvino", ("openvino", ["digits.xml", "digits.bin"])),
        ]
    ]
    host = Host(Config.from_dict({"models": models}), plugins=plugins)
    host.preload()
    import onnxruntime as ort

    reference = ort.InferenceSession(str(DIGITS_MODEL / "digits.onnx"))
    inputs = [np.random.default_rng(i).random((1, 64), np.float32) for i in range(24)]
    expected = [reference.run(None, {"pixels": x})[0] for x in inputs]
    errors: list[str] = []

    def worker(t: int) -> None:
        try:
            guest = ForwardingGuest(host)  # a store and an instance per thread
            name, length = guest.string(models[t % 3]["name"])
            graph_out, ctx_out, buf, written = guest.alloc(4), guest.alloc(4), guest.alloc(40), guest.alloc(4)
            assert guest.call("load_by_name", name, length, graph_out) == 0
            assert guest.call("init_execution_context", guest.u32(graph_out), ctx_out) == 0
            ctx = guest.u32(ctx_out)
            for i in range(40):
                k = (t * 7 + i) % len(inputs)
                assert guest.call("set_input", ctx, 0, guest.tensor([1, 64], 1, inputs[k])) == 0
                assert guest.call("compute", ctx) == 0
                assert guest.call("get_output", ctx, 0, buf, 40, written) == 0
                got = np.frombuffer(guest.read(buf, 40), np.float32).reshape(1, 10)
                np.testing.assert_allclose(got, expected[k], atol=1e-5)
        except Exception as exc:  # reported below, with the thread's number
            errors.append(f"thread {t}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert errors == []


# -- soak (bounded here; `make soak` runs 10,000 cycles and 1,000 lifetimes per backend) ---------------------


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(soak.BACKENDS))
def test_soak_rss_and_fds_stay_flat(backend):
    count = 300 if backend == "openvino" else 1000
    for result in (soak.cycles(backend, count), soak.lifetimes(backend, 200)):
        print(result.line())
        assert result.rss_growth < 0.05, result.line()
        assert result.fds_end <= result.fds_settled, result.line()


def external_data_model(location: str) -> bytes:
    """y = x + w, where w's data is 'in' an external file: a guest trying to read a host file."""
    from onnx import TensorProto, helper

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in {"location": location, "offset": "0", "length": "16"}.items():
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("relative", [False, True])
def test_guest_onnx_cannot_read_host_files_through_external_data(plugins, tmp_path, monkeypatch, backend, relative):
    """OpenVINO's ONNX frontend follows external-data paths from in-memory models; wasinn refuses them first."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.array([4, 3, 2, 1], np.float32).tobytes())
    monkeypatch.chdir(tmp_path)
    model = external_data_model("secret.bin" if relative else str(secret))
    session = Host(Config.from_dict({"preferences": {"onnx": [backend]}}), plugins=plugins).new_session()
    with pytest.raises(InvalidArgument, match="references external data"):
        session.load([memoryview(model)], ONNX, CPU)
    guest = ForwardingGuest(Host(Config.from_dict({"preferences": {"onnx": [backend]}}), plugins=plugins))
    builders, n = guest.builders([model])
    assert guest.call("load", builders, n, 5, 0, guest.alloc(4)) == 1  # autodetect too: invalid_argument
