"""WasmEdge's GGML metadata: the JSON of builder 1, ``load_by_name_with_config`` and ``set_input(1)``.

The keys, types and defaults are WasmEdge's (``GGML/metadata/metadata_parser``): integer keys need a
JSON integer (``512.0`` and ``"512"`` are refused), float keys take integers too, booleans need
``true``/``false``, strings need strings; unknown keys are ignored. Metadata that is not JSON is
``invalid_encoding``, a value of the wrong type ``invalid_argument``. Unlike WasmEdge, a refused
update changes nothing (WasmEdge keeps the keys it parsed before the bad one).

Keys that make WasmEdge open a host path (``mmproj``, ``image``, ``model-vocoder``, the TTS files)
are refused: a guest never makes the host read or write a file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, final

from wasinn_core import InvalidArgument, InvalidEncoding

__all__ = ["CONTEXT_KEYS", "HOST_PATH_KEYS", "KEYS", "Metadata", "parse"]

DEFAULT_SEED = 0xFFFF_FFFF  # llama.cpp's LLAMA_DEFAULT_SEED: a random seed on every reset

# key -> (Metadata field, JSON type)
KEYS: dict[str, tuple[str, type]] = {
    "n-predict": ("n_predict", int),
    "reverse-prompt": ("reverse_prompt", str),
    "stream-stdout": ("stream_stdout", bool),
    "ctx-size": ("ctx_size", int),
    "batch-size": ("batch_size", int),
    "ubatch-size": ("ubatch_size", int),
    "threads": ("threads", int),
    "threads-batch": ("threads_batch", int),
    "embedding": ("embedding", bool),
    "pooling-type": ("pooling_type", int),
    "attention-type": ("attention_type", int),
    "rope-scaling-type": ("rope_scaling_type", int),
    "rope-freq-base": ("rope_freq_base", float),
    "rope-freq-scale": ("rope_freq_scale", float),
    "yarn-ext-factor": ("yarn_ext_factor", float),
    "yarn-attn-factor": ("yarn_attn_factor", float),
    "yarn-beta-fast": ("yarn_beta_fast", float),
    "yarn-beta-slow": ("yarn_beta_slow", float),
    "yarn-orig-ctx": ("yarn_orig_ctx", int),
    "n-gpu-layers": ("n_gpu_layers", int),
    "main-gpu": ("main_gpu", int),
    "split-mode": ("split_mode", str),
    "tensor-split": ("tensor_split", str),
    "flash-attn": ("flash_attn", str),
    "cache-type-k": ("cache_type_k", int),
    "cache-type-v": ("cache_type_v", int),
    "no-kv-offload": ("no_kv_offload", bool),
    "check-tensors": ("check_tensors", bool),
    "temp": ("temp", float),
    "top-k": ("top_k", int),
    "top-p": ("top_p", float),
    "min-p": ("min_p", float),
    "typ-p": ("typ_p", float),
    "repeat-penalty": ("repeat_penalty", float),
    "presence-penalty": ("presence_penalty", float),
    "frequency-penalty": ("frequency_penalty", float),
    "last-n-penalty": ("last_n_penalty", int),
    "dry-multipier": ("dry_multiplier", float),  # sic: WasmEdge's spelling
    "dry-base": ("dry_base", float),
    "dry-allowed-length": ("dry_allowed_length", int),
    "dry-last-n-penalty": ("last_n_penalty", int),  # WasmEdge writes the penalties' field (its bug, kept)
    "xtc-probability": ("xtc_probability", float),
    "xtc-threshold": ("xtc_threshold", float),
    "dynatemp-range": ("dynatemp_range", float),
    "dynatemp-exponent": ("dynatemp_exponent", float),
    "mirostat": ("mirostat", int),
    "mirostat-eta": ("mirostat_eta", float),
    "seed": ("seed", int),
    "n-probs": ("n_probs", int),
    "min-keep": ("min_keep", int),
    "ignore-eos": ("ignore_eos", bool),
    "grammar": ("grammar", str),
    "json-schema": ("json_schema", str),
    "embd-normalize": ("embd_normalize", int),
    "enable-log": ("enable_log", bool),
    "enable-debug-log": ("enable_debug_log", bool),
    "use-mmap": ("use_mmap", bool),
    "use-mlock": ("use_mlock", bool),
    "warmup": ("warmup", bool),
}
#: Keys local to one execution context (the others are the graph's, in WasmEdge).
CONTEXT_KEYS = frozenset({"n-predict", "reverse-prompt", "stream-stdout", "image", "always-regenerate-image-embd"})
#: Keys that WasmEdge treats as host paths (and the features that need them): refused when set.
HOST_PATH_KEYS = ("mmproj", "image", "model-vocoder", "tts-output-file", "tts-speaker-file")
#: Keys of features this backend does not offer, refused when enabled.
_UNSUPPORTED_FLAGS = ("tts", "reranking")


@final
@dataclass(frozen=True, slots=True)
class Metadata:
    """Every setting, at WasmEdge's defaults (llama.cpp's where WasmEdge takes the library's)."""

    n_predict: int = -1
    reverse_prompt: str = ""
    stream_stdout: bool = False
    ctx_size: int = 0  # 0: the model's training context
    batch_size: int = 2048
    ubatch_size: int = 512
    threads: int = 0  # 0: the backend's option
    threads_batch: int = 0
    embedding: bool = False
    pooling_type: int = -1  # the model's
    attention_type: int = -1
    rope_scaling_type: int = -1
    rope_freq_base: float = 0.0
    rope_freq_scale: float = 0.0
    yarn_ext_factor: float = -1.0
    yarn_attn_factor: float = 1.0
    yarn_beta_fast: float = 32.0
    yarn_beta_slow: float = 1.0
    yarn_orig_ctx: int = 0
    n_gpu_layers: int = -1  # all layers, on a gpu target
    main_gpu: int = 0
    split_mode: str = "layer"
    tensor_split: str = ""
    flash_attn: str = "auto"
    cache_type_k: int = 1  # GGML_TYPE_F16
    cache_type_v: int = 1
    no_kv_offload: bool = False
    check_tensors: bool = False
    temp: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typ_p: float = 1.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    last_n_penalty: int = 64
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    xtc_probability: float = 0.0
    xtc_threshold: float = 0.1
    dynatemp_range: float = 0.0
    dynatemp_exponent: float = 1.0
    mirostat: int = 0
    mirostat_eta: float = 0.1
    seed: int = DEFAULT_SEED
    n_probs: int = 0
    min_keep: int = 0
    ignore_eos: bool = False
    grammar: str = ""
    json_schema: str = ""
    embd_normalize: int = 2  # parsed, unused: embeddings are always L2-normalised (as WasmEdge does)
    enable_log: bool = False
    enable_debug_log: bool = False
    use_mmap: bool = True
    use_mlock: bool = False
    warmup: bool = False
    given: frozenset[str] = field(default=frozenset(), compare=False)  # keys ever set explicitly

    def sampling(self) -> tuple[Any, ...]:
        """What the sampler depends on (a change means a new sampler)."""
        names = (
            "temp top_k top_p min_p typ_p repeat_penalty presence_penalty frequency_penalty last_n_penalty "
            "dry_multiplier dry_base dry_allowed_length xtc_probability xtc_threshold dynatemp_range "
            "dynatemp_exponent mirostat mirostat_eta seed min_keep grammar json_schema"
        )
        return tuple(getattr(self, n) for n in names.split())

    def context(self) -> tuple[Any, ...]:
        """What the llama context depends on, at creation (WasmEdge rebuilds it only for ``embedding``)."""
        return (self.embedding, self.pooling_type)


_FIELDS = {f.name for f in fields(Metadata)}
assert all(name in _FIELDS for name, _ in KEYS.values())


def _check(key: str, value: Any, kind: type) -> Any:
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if kind is float and ok and not math.isfinite(value):
        ok = False
    if not ok:
        names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        raise InvalidArgument(f"metadata key {key!r}: expected {names[kind]}, got {json.dumps(value)}")
    if kind is int and not -(2**63) <= value < 2**64:
        raise InvalidArgument(f"metadata key {key!r}: integer {value} is out of range")
    return value


def decode(raw: bytes | memoryview) -> dict[str, Any]:
    """The JSON object in ``raw``; ``invalid_encoding`` when it is not JSON, ``invalid_argument`` when not an object."""
    try:
        data = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEncoding(f"metadata is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"metadata must be a JSON object, got {type(data).__name__}")
    return data


def parse(raw: bytes | memoryview, base: Metadata | None = None) -> tuple[Metadata, frozenset[str]]:
    """``base`` (default: the defaults) updated with the JSON object in ``raw``; also the keys it set."""
    data = decode(raw)
    for key in HOST_PATH_KEYS:
        if data.get(key) not in (None, ""):
            raise InvalidArgument(
                f"metadata key {key!r} names a host file: a guest never makes the host open a path "
                "(multimodal and text-to-speech models are not supported from guests)"
            )
    for key in _UNSUPPORTED_FLAGS:
        if key in data and data[key] not in (False, None):
            raise InvalidArgument(f"metadata key {key!r}: this backend has no {key} mode")
    changes: dict[str, Any] = {}
    for key, value in data.items():
        spec = KEYS.get(key)
        if spec is None:
            continue  # unknown keys are ignored, as in WasmEdge
        name, kind = spec
        changes[name] = _check(key, value, kind)
    _validate(changes)
    base = base or Metadata()
    given = frozenset(k for k in data if k in KEYS)
    return replace(base, **changes, given=base.given | given), given


def _validate(changes: Mapping[str, Any]) -> None:
    if "split_mode" in changes and changes["split_mode"] not in ("none", "layer", "row"):
        raise InvalidArgument(f"metadata key 'split-mode': {changes['split_mode']!r}; allowed: none, layer, row")
    if "flash_attn" in changes and changes["flash_attn"] not in ("on", "off", "auto", "enabled", "disabled"):
        raise InvalidArgument(
            f"metadata key 'flash-attn': {changes['flash_attn']!r}; allowed: on, off, auto (enabled, disabled)"
        )
    if changes.get("tensor_split"):
        try:
            [float(x) for x in changes["tensor_split"].split(",")]
        except ValueError:
            raise InvalidArgument(
                f"metadata key 'tensor-split': {changes['tensor_split']!r} is not a list like \"3,2\""
            ) from None
    for name in ("ctx_size", "batch_size", "ubatch_size", "threads", "threads_batch", "min_keep"):
        if changes.get(name, 0) < 0:
            raise InvalidArgument(f"metadata: {name.replace('_', '-')} must not be negative")
    if changes.get("batch_size", 1) == 0 or changes.get("ubatch_size", 1) == 0:
        raise InvalidArgument("metadata: batch-size and ubatch-size must be positive")
    if "seed" in changes and not 0 <= changes["seed"] <= 0xFFFF_FFFF:
        raise InvalidArgument(f"metadata key 'seed': {changes['seed']} is not a 32-bit unsigned seed")
