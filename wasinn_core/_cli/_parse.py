"""Parsers for the ``wasinn run`` flags; each error names the flag and the allowed form."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._config import IsolationConfig, IsolationMode, Limits, ModelConfig, parse_seconds, parse_size
from .._types import ExecutionTarget, GraphEncoding

__all__ = [
    "UsageError",
    "parse_dir",
    "parse_env",
    "parse_guest_load",
    "parse_limits",
    "parse_nn_graph",
    "parse_nn_preload",
    "parse_prefer",
    "parse_wasi_option",
]


class UsageError(Exception):
    """A bad command-line value."""


#: Files wasmtime's ``--nn-graph ENCODING::DIR`` expects in DIR, per encoding.
NN_GRAPH_FILES: dict[GraphEncoding, tuple[str, ...]] = {
    GraphEncoding.OPENVINO: ("model.xml", "model.bin"),
    GraphEncoding.ONNX: ("model.onnx",),
    GraphEncoding.PYTORCH: ("model.pt",),
    GraphEncoding.TENSORFLOWLITE: ("model.tflite",),
}


def _existing_dir(path: str, flag: str, spec: str) -> str:
    if not Path(path).is_dir():
        raise UsageError(f"{flag} {spec}: host directory {path!r} does not exist")
    return path


def parse_dir(spec: str, *, legacy_mapdir: bool = False) -> tuple[str, str, bool]:
    """``--dir`` in every form users know, as ``(host, guest, read_only)``.

    wasmtime: ``HOST`` or ``HOST::GUEST``; WasmEdge: ``GUEST:HOST`` with an
    optional ``:readonly``; ``--mapdir GUEST::HOST`` (old wasmtime).
    """
    flag = "--mapdir" if legacy_mapdir else "--dir"
    if legacy_mapdir:
        guest, sep, host = spec.partition("::")
        if not sep or not guest or not host:
            raise UsageError(f"--mapdir {spec}: expected GUEST::HOST")
        return _existing_dir(host, flag, spec), guest, False
    if "::" in spec:
        host, _, guest = spec.partition("::")
        if not host or not guest:
            raise UsageError(f"--dir {spec}: expected HOST::GUEST (wasmtime) or GUEST:HOST (WasmEdge)")
        return _existing_dir(host, flag, spec), guest, False
    if ":" in spec:
        parts = spec.split(":")
        read_only = parts[-1] == "readonly" and len(parts) == 3
        if read_only:
            parts = parts[:-1]
        if len(parts) != 2 or not all(parts):
            raise UsageError(f"--dir {spec}: expected GUEST:HOST[:readonly] (WasmEdge) or HOST::GUEST (wasmtime)")
        guest, host = parts
        return _existing_dir(host, flag, spec), guest, read_only
    if not spec:
        raise UsageError("--dir: empty directory")
    return _existing_dir(spec, flag, spec), spec, False


def parse_env(spec: str, host_env: Mapping[str, str]) -> tuple[str, str]:
    """``--env KEY=VALUE``, or ``--env KEY`` to pass the host's value through."""
    key, sep, value = spec.partition("=")
    if not key:
        raise UsageError(f"--env {spec}: expected KEY=VALUE or KEY")
    if not sep:
        if key not in host_env:
            raise UsageError(f"--env {key}: not set in the host environment (use KEY=VALUE)")
        value = host_env[key]
    return key, value


def _encoding(text: str, flag: str, spec: str) -> GraphEncoding:
    try:
        return GraphEncoding.parse(text)
    except ValueError as exc:
        raise UsageError(f"{flag} {spec}: {exc}") from None


def _targets(text: str, flag: str, spec: str) -> tuple[ExecutionTarget, ...]:
    if text.lower() == "auto":
        return (ExecutionTarget.GPU, ExecutionTarget.CPU)
    try:
        return (ExecutionTarget.parse(text),)
    except ValueError as exc:
        raise UsageError(f"{flag} {spec}: {exc}, auto") from None


def _files(paths: list[str], flag: str, spec: str) -> tuple[Path, ...]:
    out = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise UsageError(f"{flag} {spec}: model file {p!r} does not exist")
        out.append(path.resolve())
    return tuple(out)


def parse_nn_preload(spec: str) -> ModelConfig:
    """WasmEdge's ``--nn-preload NAME:ENCODING:TARGET:PATH[:PATH...]`` (case-insensitive names)."""
    parts = spec.split(":")
    if len(parts) < 4 or not all(parts):
        raise UsageError(
            f"--nn-preload {spec}: expected NAME:ENCODING:TARGET:PATH[:PATH...], "
            "e.g. default:OpenVINO:CPU:model.xml:model.bin"
        )
    name, enc, target, *paths = parts
    flag = "--nn-preload"
    encoding = _encoding(enc, flag, spec)
    if encoding is GraphEncoding.GGML:
        # WasmEdge: one GGUF path (a ':' in it is part of it), and a missing file is no start-up error
        # but the guest's model_not_found (103) at load_by_name
        files: tuple[Path, ...] = (Path(":".join(paths)).resolve(),)
    else:
        files = _files(paths, flag, spec)
    return ModelConfig(name, encoding, _targets(target, flag, spec), files)


def parse_nn_graph(spec: str, flag: str = "--nn-graph") -> ModelConfig:
    """wasmtime's ``ENCODING::DIR`` (also ``ENCODING:TARGET::DIR``): the name is DIR's basename."""
    head, sep, directory = spec.partition("::")
    if not sep or not head or not directory:
        raise UsageError(f"{flag} {spec}: expected ENCODING::DIR, e.g. onnx::./mobilenet")
    enc_text, _, target_text = head.partition(":")
    encoding = _encoding(enc_text, flag, spec)
    targets = _targets(target_text, flag, spec) if target_text else (ExecutionTarget.CPU,)
    files = NN_GRAPH_FILES.get(encoding)
    if files is None:
        known = ", ".join(e.value for e in NN_GRAPH_FILES)
        raise UsageError(f"{flag} {spec}: no directory layout for {encoding.value}; known: {known}")
    _existing_dir(directory, flag, spec)
    missing = [f for f in files if not (Path(directory) / f).is_file()]
    if missing:
        raise UsageError(
            f"{flag} {spec}: {directory} lacks {', '.join(missing)} (a {encoding.value} directory holds "
            f"{' + '.join(files)})"
        )
    name = Path(directory).resolve().name
    return ModelConfig(name, encoding, targets, tuple((Path(directory) / f).resolve() for f in files))


_WASI_KEYS = ("nn", "nn-graph", "inherit-env", "cli")


def parse_wasi_option(spec: str) -> list[tuple[str, str]]:
    """wasmtime's ``-S KEY[=VALUE][,KEY[=VALUE]...]`` for the keys that matter here."""
    out = []
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key not in _WASI_KEYS:
            raise UsageError(f"-S {spec}: unsupported WASI option {key!r}; supported: {', '.join(_WASI_KEYS)}")
        if key == "nn" and value in ("n", "no", "false"):
            raise UsageError("-S nn=n: wasinn always provides wasi-nn")
        out.append((key, value))
    return out


def parse_prefer(spec: str) -> tuple[str, tuple[str, ...]]:
    """``--nn-prefer ENCODING[:TARGET]=BACKEND[,BACKEND...]``."""
    key, sep, names = spec.partition("=")
    backends = tuple(n.strip() for n in names.split(",") if n.strip())
    if not sep or not backends:
        raise UsageError(f"--nn-prefer {spec}: expected ENCODING[:TARGET]=BACKEND[,BACKEND...]")
    enc, _, target = key.partition(":")
    parts = [_encoding(enc, "--nn-prefer", spec).value]
    if target:
        parts.append(_targets(target, "--nn-prefer", spec)[0].value)
    return ":".join(parts), backends


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


# flag -> (Limits field, parser, allowed form)
_LIMIT_FLAGS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "max_model_bytes": ("max_model_bytes", parse_size, "a size like 64MiB"),
    "max_tensor_bytes": ("max_tensor_bytes", parse_size, "a size like 16MiB"),
    "max_graphs": ("max_graphs", _count, "a non-negative integer"),
    "max_contexts": ("max_contexts", _count, "a non-negative integer"),
    "max_host_memory": ("max_host_memory_bytes", parse_size, "a size like 1GiB"),
    "load_timeout": ("load_timeout_s", parse_seconds, "a duration like 30s"),
    "compute_timeout": ("compute_timeout_s", parse_seconds, "a duration like 30s"),
    "worker_memory": ("worker_memory_bytes", parse_size, "a size like 4GiB"),
    "timeout": ("guest_timeout_s", parse_seconds, "a duration like 30s, 500ms, 2m"),
    "fuel": ("guest_fuel", _count, "a non-negative integer"),
    "max_memory": ("guest_memory_bytes", parse_size, "a size like 256MiB"),
}
# wasmtime's -W names for the same limits
_WASMTIME_W = {"timeout": "timeout", "max-memory-size": "max_memory", "fuel": "fuel"}


def parse_limits(args: argparse.Namespace, base: Limits) -> Limits:
    """Limits from the ``run`` flags (and wasmtime-style ``-W KEY=VALUE``) over ``base``."""
    values: dict[str, str] = {}
    for item in args.wasm:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if key not in _WASMTIME_W or not sep:
                raise UsageError(f"-W {item}: unsupported; supported: {', '.join(k + '=' for k in _WASMTIME_W)}")
            values[_WASMTIME_W[key]] = value
    for dest in _LIMIT_FLAGS:
        if getattr(args, dest, None) is not None:
            values[dest] = getattr(args, dest)
    changes = {}
    for dest, text in values.items():
        field, parse, form = _LIMIT_FLAGS[dest]
        try:
            changes[field] = parse(text)
        except ValueError as exc:
            raise UsageError(f"--{dest.replace('_', '-')} {text}: {exc}; expected {form}") from None
    return replace(base, **changes)


def parse_guest_load(text: str) -> frozenset[GraphEncoding] | None:
    """``--guest-load all|none|ENC[,ENC...]``."""
    if text == "all":
        return None
    if text == "none":
        return frozenset()
    return frozenset(_encoding(e, "--guest-load", text) for e in text.split(",") if e)


#: ``--isolation`` values: which models run in confined worker processes.
ISOLATION_CHOICES = ("guest", "all", "none")


def parse_isolation(text: str, base: IsolationConfig) -> IsolationConfig:
    """``--isolation guest|all|none``: guest models only (the default), every model, or none."""
    if text not in ISOLATION_CHOICES:
        raise UsageError(f"--isolation {text}: expected one of {', '.join(ISOLATION_CHOICES)}")
    guest: IsolationMode = "none" if text == "none" else "process"
    named: IsolationMode = "process" if text == "all" else "none"
    return replace(base, guest=guest, named=named)
