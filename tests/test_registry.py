"""Registry selection: deterministic order, preferences, pinning, strict vs fallback, autodetect."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from wasinn_core import (
    BackendError,
    BackendSpec,
    Config,
    ConfigError,
    ExecutionTarget,
    GraphEncoding,
    Host,
    InvalidArgument,
    InvalidEncoding,
    PluginManager,
    Tensor,
    UnsupportedOperation,
)

from .backends import Plugin, gpudouble_spec, refonnx_spec
from .conftest import DIGITS_MODEL

CPU, GPU, TPU = ExecutionTarget.CPU, ExecutionTarget.GPU, ExecutionTarget.TPU
ONNX = GraphEncoding.ONNX


def names(specs, among=("onnxruntime", "refonnx")) -> list[str]:
    """Backend names in order, restricted to those the test controls (other plugins may be installed)."""
    return [s.name for s in specs if s.name in among]


def host_with(*specs: BackendSpec, config: dict | None = None) -> Host:
    pm = PluginManager(environ={})
    pm.register(Plugin(*specs), name="test-backends")
    return Host(Config.from_dict(config or {}, base_dir=DIGITS_MODEL), plugins=pm)


@pytest.fixture(scope="module")
def model() -> list[memoryview]:
    return [memoryview((DIGITS_MODEL / "digits.onnx").read_bytes())]


def run(host: Host, loaded, image: np.ndarray) -> np.ndarray:
    ctx = loaded.graph.init_execution_context()
    ctx.set_input(0, Tensor.from_array(image))
    ctx.compute()
    return np.asarray(ctx.get_output(0).data)


def test_dedicated_engine_first_by_claim_preference():
    host = host_with(refonnx_spec())
    assert names(host.registry.candidates(ONNX, CPU)) == ["onnxruntime", "refonnx"]
    claims = [c for c in host.registry.claims()[ONNX] if c[0] in ("onnxruntime", "refonnx")]
    assert claims == [("onnxruntime", (CPU, GPU, TPU)), ("refonnx", (CPU,))]


def test_config_preference_reorders(model, digit_image, reference_probs):
    host = host_with(refonnx_spec(), config={"preferences": {"onnx": ["refonnx"]}})
    assert names(host.registry.candidates(ONNX, CPU)) == ["refonnx", "onnxruntime"]
    loaded = host.registry.load(model, ONNX, (CPU,))
    assert loaded.info.backend == "refonnx" and loaded.info.device == "python"
    np.testing.assert_allclose(run(host, loaded, digit_image), reference_probs, atol=1e-6)


def test_target_specific_preference_wins_over_encoding_preference():
    host = host_with(refonnx_spec(), config={"preferences": {"onnx": ["refonnx"], "onnx:cpu": ["onnxruntime"]}})
    assert host.registry.candidates(ONNX, CPU)[0].name == "onnxruntime"


def test_order_is_independent_of_registration_order():
    a = host_with(refonnx_spec(), gpudouble_spec())
    b = host_with(gpudouble_spec(), refonnx_spec())
    for t in (CPU, GPU):
        assert [s.name for s in a.registry.candidates(ONNX, t)] == [s.name for s in b.registry.candidates(ONNX, t)]


def test_model_pin(model):
    host = host_with(
        refonnx_spec(),
        config={"models": [{"name": "pinned", "encoding": "onnx", "path": "digits.onnx", "backend": "refonnx"}]},
    )
    assert host.named_graph("pinned").info.backend == "refonnx"


def test_pin_to_backend_without_the_target_is_invalid_encoding(model):
    host = host_with(refonnx_spec())
    with pytest.raises(InvalidEncoding, match="with backend 'refonnx'"):
        host.registry.load(model, ONNX, (GPU,), backend="refonnx")


def test_strict_gpu_request_fails_with_every_reason(model):
    host = host_with(refonnx_spec())
    with pytest.raises(UnsupportedOperation) as err:
        host.registry.load(model, ONNX, (GPU,))
    assert "onnxruntime on gpu: CUDAExecutionProvider not available" in err.value.message
    assert "fallback policy is strict" in err.value.message


def test_cpu_fallback_policy_is_logged_and_recorded(model, caplog):
    host = host_with(config={"policy": {"fallback": "cpu"}})
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        loaded = host.registry.load(model, ONNX, (GPU,))
    assert loaded.info.requested_target is GPU and loaded.info.target is CPU
    assert loaded.info.device == "CPUExecutionProvider"
    assert "requested on gpu but it cannot be served there" in caplog.text
    assert "running on cpu with onnxruntime" in caplog.text
    assert [r.levelno for r in caplog.records if "cannot be served there" in r.getMessage()] == [logging.WARNING]


def test_per_model_fallback_overrides_global():
    host = host_with(
        config={
            "models": [{"name": "m", "encoding": "onnx", "path": "digits.onnx", "target": "gpu", "fallback": "cpu"}]
        }
    )
    info = host.named_graph("m").info
    assert (info.requested_target, info.target) == (GPU, CPU)


def test_gpu_double_serves_gpu_requests(model, digit_image, reference_probs):
    host = host_with(gpudouble_spec())
    loaded = host.registry.load(model, ONNX, (GPU,))
    assert loaded.info.backend == "gpudouble" and loaded.info.device == "gpu-double:0"
    assert loaded.info.target is GPU
    np.testing.assert_allclose(run(host, loaded, digit_image), reference_probs, atol=1e-6)


def test_auto_target_prefers_gpu_then_cpu(caplog):
    with_gpu = host_with(
        gpudouble_spec(),
        config={"models": [{"name": "m", "encoding": "onnx", "path": "digits.onnx", "target": "auto"}]},
    )
    assert with_gpu.named_graph("m").info.target is GPU
    without = host_with(
        gpudouble_spec(available=False),
        config={"models": [{"name": "m", "encoding": "onnx", "path": "digits.onnx", "target": "AUTO"}]},
    )
    with caplog.at_level(logging.INFO, logger="wasinn"):
        info = without.named_graph("m").info
    assert info.target is CPU and info.backend == "onnxruntime"
    # the CPU was asked for (auto is gpu, then cpu): said at INFO, not as a warning
    moved = [r for r in caplog.records if "cannot be served there" in r.getMessage()]
    assert [r.levelno for r in moved] == [logging.INFO]
    assert "the next target asked for" in moved[0].getMessage()


def test_unavailable_gpu_double_with_strict_policy(model):
    host = host_with(gpudouble_spec(available=False))
    with pytest.raises(UnsupportedOperation, match="gpudouble on gpu: no GPU double device"):
        host.registry.load(model, ONNX, (GPU,))


def test_autodetect_then_select(model):
    host = host_with()
    assert host.registry.load(model, GraphEncoding.AUTODETECT, (CPU,)).info.encoding is ONNX


def test_wrong_builder_count_is_invalid_argument(model):
    host = host_with()
    with pytest.raises(InvalidArgument, match="from 1 builder"):
        host.registry.load([*model, memoryview(b"x")], ONNX, (CPU,))


def test_backend_factory_failure_is_backend_error(model):
    spec = refonnx_spec(preference=500)
    broken = BackendSpec(**{**{f: getattr(spec, f) for f in spec.__slots__}, "factory": _explode})
    host = host_with(broken)
    with pytest.raises(BackendError, match="failed to initialise: no device"):
        host.registry.load(model, ONNX, (CPU,))


def _explode():
    raise OSError("no device")


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"backends": {"nosuch": {}}}, "backends.nosuch", "no installed backend is called 'nosuch'; installed: "),
        ({"backends": {"onnxruntime": {"threads": 2}}}, "threads", "allowed: intra_op_num_threads"),
        ({"backends": {"onnxruntime": {"intra_op_num_threads": "2"}}}, "intra_op_num_threads", "expected int"),
        (
            {"backends": {"onnxruntime": {"graph_optimization_level": "max"}}},
            "graph_optimization_level",
            "allowed: disable, basic, extended, all",
        ),
        ({"backends": {"onnxruntime": {"allow_cpu_nodes": 1}}}, "allow_cpu_nodes", "expected bool"),
        ({"preferences": {"onnx": ["onnxrt"]}}, "preferences.onnx", "no installed backend is called 'onnxrt'"),
        (
            {"models": [{"name": "m", "encoding": "onnx", "path": "x.onnx", "backend": "ort"}]},
            "models.m.backend",
            "'ort'",
        ),
    ],
)
def test_config_errors_against_installed_backends(config, key, message):
    with pytest.raises(ConfigError) as err:
        host_with(config=config)
    assert key in str(err.value) and message in str(err.value)


def test_model_option_errors_name_the_model(model):
    host = host_with(
        config={"models": [{"name": "m", "encoding": "onnx", "path": "digits.onnx", "options": {"nope": 1}}]}
    )
    with pytest.raises(ConfigError, match=r"models\.m\.options: nope: unknown option"):
        host.preload()


def test_options_reach_the_backend(model):
    host = host_with(config={"backends": {"onnxruntime": {"intra_op_num_threads": 1}}})
    loaded = host.registry.load(model, ONNX, (CPU,))
    assert loaded.graph.session.get_session_options().intra_op_num_threads == 1
