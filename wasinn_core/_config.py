"""The embedder's configuration: ``wasinn.toml`` into frozen values.

Every error names the source (file), the key and what is allowed. See
``docs/configuration.md`` for every key with its type, default and an example.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, final

from ._errors import ConfigError
from ._types import ExecutionTarget, GraphEncoding

__all__ = ["Config", "IsolationConfig", "Limits", "ModelConfig", "parse_seconds", "parse_size"]

Fallback = Literal["strict", "cpu"]
FALLBACKS: tuple[Fallback, ...] = ("strict", "cpu")
IsolationMode = Literal["process", "none"]
ISOLATION_MODES: tuple[IsolationMode, ...] = ("process", "none")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: int | str) -> int:
    """A byte size from an int or a string like ``"64MiB"``, ``"1.5GB"``, ``"4096"``."""
    if isinstance(value, bool):
        raise ValueError("expected a size, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    match = _SIZE.match(str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"invalid size {value!r}; use bytes or a unit: KB, MB, GB, KiB, MiB, GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}


def parse_seconds(value: int | float | str) -> float:
    """Seconds from a number or a string like ``"500ms"``, ``"10s"``, ``"2m"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration, got a boolean")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"duration must be positive, got {value}")
        return float(value)
    match = _DURATION.match(str(value))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"invalid duration {value!r}; use seconds or a unit: 500ms, 10s, 2m, 1h")
    return float(match.group(1)) * _SECONDS[match.group(2)]


@final
@dataclass(frozen=True, slots=True)
class Limits:
    """Per-instance limits; ``None`` means unlimited.

    :param max_model_bytes: total builder bytes of one ``load`` (``too_large``).
    :param max_tensor_bytes: bytes of one input or output tensor (``too_large``).
    :param max_graphs: live graph handles per instance (``busy``).
    :param max_contexts: live execution contexts per instance (``busy``).
    :param max_host_memory_bytes: host memory an instance may make the host hold: the bytes of
        its guest-loaded models plus the input tensors of its live contexts (``too_large``).
    :param load_timeout_s: seconds a worker may take to load a model (``runtime_error`` after, and the worker
        is killed). In-process loads cannot be interrupted: isolate a model to bound its load.
    :param compute_timeout_s: seconds a worker may take for one ``compute`` (``runtime_error`` after, and the
        worker is killed); isolated graphs only.
    :param worker_memory_bytes: address space a worker may add to what it had at start-up (the library's
        allocations fail past it); isolated graphs only.
    :param guest_timeout_s: wall-clock seconds the guest may run (a trap after; epoch interruption).
    :param guest_fuel: wasm instructions the guest may execute, in wasmtime fuel (a trap after).
    :param guest_memory_bytes: the most linear memory the guest may grow to.
    """

    max_model_bytes: int | None = None
    max_tensor_bytes: int | None = None
    max_graphs: int | None = None
    max_contexts: int | None = None
    max_host_memory_bytes: int | None = None
    load_timeout_s: float | None = None
    compute_timeout_s: float | None = None
    worker_memory_bytes: int | None = None
    guest_timeout_s: float | None = None
    guest_fuel: int | None = None
    guest_memory_bytes: int | None = None


@final
@dataclass(frozen=True, slots=True)
class ModelConfig:
    """A named model a guest loads with ``load_by_name``.

    :param name: the name the guest asks for.
    :param encoding: its graph encoding.
    :param targets: targets to try in order (``("gpu",)``; ``auto`` is gpu then cpu).
    :param paths: its files (OpenVINO: xml then bin); none for a model its pinned backend serves by itself.
    :param backend: pin this backend, or ``None`` to let the registry choose.
    :param options: backend options for this model, over ``[backends.NAME]``.
    :param fallback: overrides the global fallback policy for this model.
    :param guest_options: option keys a guest may set through
        ``load_by_name_with_config`` (none by default).
    :param isolation: ``"process"`` or ``"none"``, over ``[isolation]`` (``None``: as configured there).
    """

    name: str
    encoding: GraphEncoding
    targets: tuple[ExecutionTarget, ...]
    paths: tuple[Path, ...]
    backend: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    fallback: Fallback | None = None
    guest_options: tuple[str, ...] = ()
    isolation: IsolationMode | None = None


#: Encodings a guest may load into a worker the kernel cannot confine: formats that are data, not
#: programs, and whose known routes to host files are closed in process (``docs/reliability.md``).
DEFAULT_UNCONFINED = frozenset(
    {GraphEncoding.ONNX, GraphEncoding.OPENVINO, GraphEncoding.TENSORFLOWLITE, GraphEncoding.GGML}
)


@final
@dataclass(frozen=True, slots=True)
class IsolationConfig:
    """Where backends run: in the host process (``"none"``) or in a confined worker process per graph.

    :param guest: models a guest supplies with ``load`` (default ``"process"``).
    :param named: named models, the embedder's own files (default ``"none"``).
    :param backends: per backend name, over ``guest`` and ``named``.
    :param confine: confine workers with the kernel (Landlock, seccomp) where it can (default true).
    :param unconfined_guest_load: encodings a guest may still load when workers cannot be confined
        (another platform, an old kernel, ``confine = false``); others get ``unsupported_operation``.
    :param warm: workers kept started ahead, per backend.
    """

    guest: IsolationMode = "process"
    named: IsolationMode = "none"
    backends: Mapping[str, IsolationMode] = field(default_factory=dict)
    confine: bool = True
    unconfined_guest_load: frozenset[GraphEncoding] = DEFAULT_UNCONFINED
    warm: int = 1


@final
@dataclass(frozen=True, slots=True)
class Config:
    """The whole embedder configuration.

    :param models: named models.
    :param preferences: backend order per ``"encoding"`` or ``"encoding:target"``.
    :param backends: options per backend name (``[backends.onnxruntime]``).
    :param fallback: ``"strict"`` (default): a GPU/TPU request that cannot be
        served fails with ``unsupported_operation``; ``"cpu"``: it runs on the
        CPU and the device actually used is logged and queryable.
    :param limits: per-instance limits.
    :param guest_load: encodings a guest may ``load`` from its own bytes (``None``: all; empty: none,
        only named models).
    :param isolation: which graphs run in confined worker processes.
    :param source: where this came from, for error messages.
    """

    models: tuple[ModelConfig, ...] = ()
    preferences: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    backends: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    fallback: Fallback = "strict"
    limits: Limits = Limits()
    guest_load: frozenset[GraphEncoding] | None = None
    isolation: IsolationConfig = IsolationConfig()
    source: str = "<defaults>"

    @classmethod
    def from_file(cls, path: str | Path) -> Config:
        """Read a ``wasinn.toml``; relative model paths are relative to its folder."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(str(path), "", f"cannot read config file: {exc.strerror or exc}") from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), "", f"invalid TOML: {exc}") from exc
        return cls.from_dict(data, source=str(path), base_dir=path.parent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>", base_dir: Path | None = None) -> Config:
        """Build a config from a mapping shaped like the TOML file."""
        return _Parser(source, base_dir or Path.cwd()).config(data)

    def with_models(self, *models: ModelConfig) -> Config:
        """A copy with ``models`` added; a model of the same name is replaced."""
        names = {m.name for m in models}
        return replace(self, models=tuple(m for m in self.models if m.name not in names) + models)

    def model(self, name: str) -> ModelConfig | None:
        """The named model called ``name``."""
        return next((m for m in self.models if m.name == name), None)


_TOP_KEYS = ("version", "models", "preferences", "backends", "policy", "limits", "isolation")
_MODEL_KEYS = (
    "name", "encoding", "target", "paths", "path", "backend", "options", "fallback", "guest_options", "isolation",
)  # fmt: skip
_ISOLATION_KEYS = ("guest", "named", "backends", "confine", "unconfined_guest_load", "warm")


class _Parser:
    def __init__(self, source: str, base_dir: Path) -> None:
        self.source, self.base_dir = source, base_dir

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.source, key, message)

    def table(self, value: Any, key: str, allowed: Sequence[str] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a table, got {type(value).__name__}")
        if allowed is not None:
            for k in value:
                if k not in allowed:
                    raise self.error(f"{key}.{k}" if key else k, f"unknown key; allowed: {', '.join(allowed)}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(key, f"expected a non-empty string, got {value!r}")
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.error(key, f"expected a non-empty list of strings, got {value!r}")
        return tuple(self.string(v, f"{key}[{i}]") for i, v in enumerate(value))

    def config(self, data: Mapping[str, Any]) -> Config:
        data = self.table(data, "", _TOP_KEYS)
        version = data.get("version", 1)
        if version != 1:
            raise self.error("version", f"unsupported config version {version!r}; allowed: 1")
        policy = self.table(data.get("policy", {}), "policy", ("fallback", "guest_load"))
        fallback = self.fallback(policy.get("fallback", "strict"), "policy.fallback")
        guest_load = self.guest_load(policy.get("guest_load", True), "policy.guest_load")
        models_raw = data.get("models", [])
        if not isinstance(models_raw, list):
            raise self.error("models", "expected an array of tables ([[models]])")
        models = tuple(self.model(m, f"models[{i}]") for i, m in enumerate(models_raw))
        seen: set[str] = set()
        for i, m in enumerate(models):
            if m.name in seen:
                raise self.error(f"models[{i}].name", f"duplicate model name {m.name!r}")
            seen.add(m.name)
        return Config(
            models=models,
            preferences=self.preferences(data.get("preferences", {})),
            backends={
                k: dict(self.table(v, f"backends.{k}"))
                for k, v in self.table(data.get("backends", {}), "backends").items()
            },
            fallback=fallback,
            limits=self.limits(data.get("limits", {})),
            guest_load=guest_load,
            isolation=self.isolation(data.get("isolation", {})),
            source=self.source,
        )

    def isolation_mode(self, value: Any, key: str) -> IsolationMode:
        if value not in ISOLATION_MODES:
            raise self.error(key, f"invalid isolation {value!r}; allowed: {', '.join(ISOLATION_MODES)}")
        return value  # type: ignore[no-any-return]

    def isolation(self, value: Any) -> IsolationConfig:
        table = self.table(value, "isolation", _ISOLATION_KEYS)
        defaults = IsolationConfig()
        backends = {
            name: self.isolation_mode(mode, f"isolation.backends.{name}")
            for name, mode in self.table(table.get("backends", {}), "isolation.backends").items()
        }
        confine = table.get("confine", True)
        if not isinstance(confine, bool):
            raise self.error("isolation.confine", f"expected true or false, got {confine!r}")
        unconfined = defaults.unconfined_guest_load
        if "unconfined_guest_load" in table:
            chosen = self.guest_load(table["unconfined_guest_load"], "isolation.unconfined_guest_load")
            unconfined = frozenset(GraphEncoding) if chosen is None else chosen
        try:
            warm = self.count(table.get("warm", defaults.warm))
        except ValueError as exc:
            raise self.error("isolation.warm", str(exc)) from None
        return IsolationConfig(
            guest=self.isolation_mode(table.get("guest", defaults.guest), "isolation.guest"),
            named=self.isolation_mode(table.get("named", defaults.named), "isolation.named"),
            backends=backends,
            confine=confine,
            unconfined_guest_load=unconfined,
            warm=warm,
        )

    def guest_load(self, value: Any, key: str) -> frozenset[GraphEncoding] | None:
        if value is True:
            return None
        if value is False:
            return frozenset()
        try:
            return frozenset(GraphEncoding.parse(v) for v in self.strings(value, key))
        except ValueError as exc:
            raise self.error(key, f"{exc} (or true for all, false for none)") from None

    def fallback(self, value: Any, key: str) -> Fallback:
        if value not in FALLBACKS:
            raise self.error(key, f"invalid fallback {value!r}; allowed: {', '.join(FALLBACKS)}")
        return value  # type: ignore[no-any-return]

    def preferences(self, value: Any) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for key, names in self.table(value, "preferences").items():
            out[self.preference_key(key, f"preferences.{key}")] = self.strings(names, f"preferences.{key}")
        return out

    def preference_key(self, key: str, where: str) -> str:
        enc, _, target = key.partition(":")
        try:
            parts = [GraphEncoding.parse(enc).value]
            if target:
                parts.append(ExecutionTarget.parse(target).value)
        except ValueError as exc:
            raise self.error(where, f"{exc} (keys are ENCODING or ENCODING:TARGET)") from None
        return ":".join(parts)

    def limits(self, value: Any) -> Limits:
        table = self.table(value, "limits", Limits.__slots__)
        kwargs: dict[str, Any] = {}
        for k, v in table.items():
            try:
                if k.endswith("_bytes"):
                    kwargs[k] = parse_size(v)
                elif k.endswith("_s"):
                    kwargs[k] = parse_seconds(v)
                else:
                    kwargs[k] = self.count(v)
            except ValueError as exc:
                raise self.error(f"limits.{k}", str(exc)) from None
        return Limits(**kwargs)

    @staticmethod
    def count(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"expected a non-negative integer, got {value!r}")
        return value

    def model(self, value: Any, key: str) -> ModelConfig:
        table = self.table(value, key, _MODEL_KEYS)
        for required in ("name", "encoding"):
            if required not in table:
                raise self.error(f"{key}.{required}", "missing required key")
        if "paths" in table and "path" in table:
            raise self.error(f"{key}.paths", "give exactly one of 'paths' (a list) or 'path'")
        if "paths" not in table and "path" not in table and "backend" not in table:
            raise self.error(
                f"{key}.paths",
                "give exactly one of 'paths' (a list) or 'path' (only a model a backend serves by itself, "
                "with backend = ..., e.g. a remote server's, has no files)",
            )
        name = self.string(table["name"], f"{key}.name")
        try:
            encoding = GraphEncoding.parse(self.string(table["encoding"], f"{key}.encoding"))
        except ValueError as exc:
            raise self.error(f"{key}.encoding", str(exc)) from None
        targets = self.targets(table.get("target", "cpu"), f"{key}.target")
        raw_paths = (
            self.strings(table.get("paths", table.get("path")), f"{key}.paths")
            if ("paths" in table or "path" in table)
            else ()
        )
        paths = tuple((self.base_dir / p).resolve() for p in raw_paths)
        backend = self.string(table["backend"], f"{key}.backend") if "backend" in table else None
        fallback = self.fallback(table["fallback"], f"{key}.fallback") if "fallback" in table else None
        guest = self.strings(table["guest_options"], f"{key}.guest_options") if "guest_options" in table else ()
        options = dict(self.table(table.get("options", {}), f"{key}.options"))
        isolation = self.isolation_mode(table["isolation"], f"{key}.isolation") if "isolation" in table else None
        return ModelConfig(name, encoding, targets, paths, backend, options, fallback, guest, isolation)

    def targets(self, value: Any, key: str) -> tuple[ExecutionTarget, ...]:
        text = self.string(value, key)
        if text.lower() == "auto":
            return (ExecutionTarget.GPU, ExecutionTarget.CPU)
        try:
            return (ExecutionTarget.parse(text),)
        except ValueError as exc:
            raise self.error(key, f"{exc}, auto") from None
