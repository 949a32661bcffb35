"""wasinn.toml parsing: every value checked, every error naming the file, the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasinn_core import Config, ConfigError, ExecutionTarget, GraphEncoding, Limits, parse_size

FULL = """
version = 1

[policy]
fallback = "cpu"

[[models]]
name = "digits"
encoding = "ONNX"
target = "gpu"
backend = "onnxruntime"
path = "model/digits.onnx"
options = { intra_op_num_threads = 2 }
guest_options = ["intra_op_num_threads"]

[[models]]
name = "ir"
encoding = "openvino"
target = "auto"
paths = ["model/digits.xml", "model/digits.bin"]
fallback = "strict"

[preferences]
onnx = ["onnxruntime", "openvino"]
"onnx:gpu" = "onnxruntime"

[backends.onnxruntime]
intra_op_num_threads = 4

[limits]
max_model_bytes = "64MiB"
max_tensor_bytes = 1048576
max_graphs = 8
max_contexts = 16
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wasinn.toml"
    path.write_text(text)
    return path


def test_full_config(tmp_path):
    config = Config.from_file(write(tmp_path, FULL))
    digits, ir = config.models
    assert digits.encoding is GraphEncoding.ONNX and digits.targets == (ExecutionTarget.GPU,)
    assert digits.paths == ((tmp_path / "model/digits.onnx").resolve(),)  # relative to the file
    assert digits.backend == "onnxruntime" and digits.options == {"intra_op_num_threads": 2}
    assert digits.guest_options == ("intra_op_num_threads",) and digits.fallback is None
    assert ir.targets == (ExecutionTarget.GPU, ExecutionTarget.CPU) and len(ir.paths) == 2 and ir.fallback == "strict"
    assert config.preferences == {"onnx": ("onnxruntime", "openvino"), "onnx:gpu": ("onnxruntime",)}
    assert config.backends == {"onnxruntime": {"intra_op_num_threads": 4}}
    assert config.fallback == "cpu"
    assert config.limits == Limits(64 * 1024**2, 1048576, 8, 16)
    assert config.model("ir") is ir and config.model("nope") is None


def test_defaults():
    config = Config()
    assert config.fallback == "strict" and config.models == () and config.limits == Limits()


@pytest.mark.parametrize(
    ("text", "key", "allowed"),
    [
        ("modles = []", "modles", "allowed: version, models"),
        ("version = 2", "version", "allowed: 1"),
        ("[policy]\nfallback = 'gpu'", "policy.fallback", "allowed: strict, cpu"),
        ("[policy]\nstrict = true", "policy.strict", "allowed: fallback"),
        ("[[models]]\nencoding = 'onnx'\npath = 'a'", "models[0].name", "missing required key"),
        ("[[models]]\nname = 'a'\npath = 'a'", "models[0].encoding", "missing required key"),
        ("[[models]]\nname = 'a'\nencoding = 'onyx'\npath = 'a'", "models[0].encoding", "allowed: openvino, onnx"),
        (
            "[[models]]\nname = 'a'\nencoding = 'onnx'\ntarget = 'npu'\npath = 'a'",
            "models[0].target",
            "allowed: cpu, gpu, tpu, auto",
        ),
        ("[[models]]\nname = 'a'\nencoding = 'onnx'", "models[0].paths", "exactly one of 'paths'"),
        ("[[models]]\nname = 'a'\nencoding = 'onnx'\npaths = []", "models[0].paths", "non-empty list"),
        ("[[models]]\nname = 'a'\nencoding = 'onnx'\npath = 'a'\nsize = 1", "models[0].size", "allowed: name"),
        (
            "[[models]]\nname = 'a'\nencoding = 'onnx'\npath = 'a'\n"
            "[[models]]\nname = 'a'\nencoding = 'onnx'\npath = 'b'",
            "models[1].name",
            "duplicate model name",
        ),
        ("[[models]]\nname = 'a'\nencoding = 'onnx'\npath = 'a'\noptions = 3", "models[0].options", "expected a table"),
        ("[limits]\nmax_model_bytes = '12 parsecs'", "limits.max_model_bytes", "KB, MB, GB"),
        ("[limits]\nmax_graphs = -1", "limits.max_graphs", "non-negative integer"),
        ("[limits]\nmax_graphs = true", "limits.max_graphs", "non-negative integer"),
        ("[limits]\nmax_memory = 1", "limits.max_memory", "allowed: max_model_bytes"),
        ("[preferences]\n'onnx:npu' = ['x']", "preferences.onnx:npu", "ENCODING:TARGET"),
        ("[preferences]\nonnx = []", "preferences.onnx", "non-empty list"),
        ("models = 3", "models", "array of tables"),
        ("[backends]\nonnxruntime = 3", "backends.onnxruntime", "expected a table"),
    ],
)
def test_errors_name_file_key_and_allowed(tmp_path, text, key, allowed):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        Config.from_file(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert key in message and allowed in message, message


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        Config.from_file(write(tmp_path, "a = = 1"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.from_file(tmp_path / "missing.toml")


def test_from_dict_and_with_models():
    config = Config.from_dict({"models": [{"name": "a", "encoding": "pytorch", "path": "/m.pt"}]}, source="api")
    extra = Config.from_dict(
        {
            "models": [
                {"name": "a", "encoding": "onnx", "path": "/m.onnx"},
                {"name": "b", "encoding": "onnx", "path": "/b.onnx"},
            ]
        }
    ).models
    merged = config.with_models(*extra)
    assert [(m.name, m.encoding.value) for m in merged.models] == [("a", "onnx"), ("b", "onnx")]
    with pytest.raises(ConfigError, match=r"^api: models"):
        Config.from_dict({"models": [{}]}, source="api")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (4096, 4096),
        ("4096", 4096),
        ("1KB", 1000),
        ("1 KiB", 1024),
        ("64MiB", 64 << 20),
        ("1.5GB", 1_500_000_000),
    ],
)
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", [-1, "x", "1 parsec", True, "-5MB"])
def test_parse_size_rejects(value):
    with pytest.raises(ValueError):
        parse_size(value)
