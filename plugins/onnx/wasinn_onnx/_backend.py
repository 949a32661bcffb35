"""ONNX Runtime backend: graphs are ``InferenceSession`` objects, contexts hold feeds and outputs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from wasinn_core import (
    Availability,
    Backend,
    ExecutionContext,
    ExecutionTarget,
    Graph,
    GraphEncoding,
    InvalidArgument,
    Tensor,
    TensorKey,
    TensorType,
    UnsupportedOperation,
)
from wasinn_core import BackendError as _BackendError

log = logging.getLogger("wasinn.onnx")

CPU_PROVIDER = "CPUExecutionProvider"

#: ONNX Runtime element types that wasi-nn can express. ``bool`` outputs are
#: returned as ``u8`` (same bytes, 0 or 1); bool inputs cannot be expressed.
ORT_TYPES: dict[str, TensorType] = {
    "tensor(float16)": TensorType.F16,
    "tensor(float)": TensorType.F32,
    "tensor(double)": TensorType.F64,
    "tensor(bfloat16)": TensorType.BF16,
    "tensor(uint8)": TensorType.U8,
    "tensor(int32)": TensorType.I32,
    "tensor(int64)": TensorType.I64,
}

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_EXEC_MODES = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL, "parallel": ort.ExecutionMode.ORT_PARALLEL}


def providers_for(target: ExecutionTarget, options: Mapping[str, Any]) -> list[str]:
    """The execution providers a target maps to, by the backend options."""
    if target is ExecutionTarget.CPU:
        return [CPU_PROVIDER]
    key = "gpu_providers" if target is ExecutionTarget.GPU else "tpu_providers"
    return [str(p) for p in options[key]]


def probe(target: ExecutionTarget, options: Mapping[str, Any]) -> Availability:
    """Whether ``target`` has a usable provider in this onnxruntime build."""
    wanted = providers_for(target, options)
    if not wanted:
        return Availability.no(
            f"no execution provider is configured for {target.value}: set [backends.onnxruntime] "
            f'{target.value}_providers, e.g. ["QNNExecutionProvider"]'
        )
    available = ort.get_available_providers()
    for name in wanted:
        if name in available:
            suffix = f":{options['device_id']}" if target is not ExecutionTarget.CPU else ""
            return Availability.yes(name + suffix)
    hint = " (for CUDA install onnxruntime-gpu instead of onnxruntime)" if "CUDAExecutionProvider" in wanted else ""
    return Availability.no(
        f"{', '.join(wanted)} not available in onnxruntime {ort.__version__} (available: {', '.join(available)}){hint}"
    )


@dataclass(frozen=True, slots=True)
class _IO:
    index: int
    name: str
    ort_type: str
    shape: tuple[int | None, ...]

    @property
    def tensor_type(self) -> TensorType | None:
        return ORT_TYPES.get(self.ort_type)


def _io(args: Sequence[Any]) -> tuple[_IO, ...]:
    return tuple(
        _IO(i, a.name, a.type, tuple(d if isinstance(d, int) else None for d in (a.shape or ())))
        for i, a in enumerate(args)
    )


class OnnxGraph(Graph):
    """One ``InferenceSession``; thread-safe, shared by every context."""

    def __init__(self, session: ort.InferenceSession, device: str) -> None:
        self.session = session
        self.device = device
        self.inputs = _io(session.get_inputs())
        self.outputs = _io(session.get_outputs())

    def lookup(self, table: tuple[_IO, ...], key: TensorKey, what: str) -> _IO:
        if isinstance(key, int):
            if 0 <= key < len(table):
                return table[key]
            raise InvalidArgument(
                f"{what} index {key} is out of range: the model has {len(table)} {what}s "
                f"({', '.join(io.name for io in table)})"
            )
        for io in table:
            if io.name == key:
                return io
        raise InvalidArgument(f"the model has no {what} named {key!r} (has: {', '.join(io.name for io in table)})")

    def init_execution_context(self) -> ExecutionContext:
        return OnnxContext(self)

    def close(self) -> None:
        self.__dict__.pop("session", None)


class OnnxContext(ExecutionContext):
    """Feeds copied once from the guest into reused buffers; outputs replaced on every compute."""

    def __init__(self, graph: OnnxGraph) -> None:
        self._graph = graph
        self._feeds: dict[str, np.ndarray[Any, Any]] = {}
        self._outputs: list[Any] | None = None

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        meta = self._graph.lookup(self._graph.inputs, key, "input")
        want = meta.tensor_type
        if want is None:
            raise InvalidArgument(f"input {meta.name!r} has type {meta.ort_type}, which wasi-nn cannot express")
        if tensor.type is not want:
            raise InvalidArgument(
                f"input {meta.name!r} expects {want.value} ({meta.ort_type}), got {tensor.type.value}"
            )
        dims = tensor.dimensions
        if meta.shape and (
            len(dims) != len(meta.shape) or any(m is not None and m != d for m, d in zip(meta.shape, dims, strict=True))
        ):
            shape = "x".join("?" if d is None else str(d) for d in meta.shape)
            raise InvalidArgument(f"input {meta.name!r} expects shape {shape}, got {'x'.join(map(str, dims))}")
        buf = self._feeds.get(meta.name)
        if buf is None or buf.shape != dims:
            buf = np.empty(dims, want.numpy_dtype)
            self._feeds[meta.name] = buf
        np.copyto(buf, tensor.data)

    def compute(self) -> None:
        missing = [io.name for io in self._graph.inputs if io.name not in self._feeds]
        if missing:
            raise InvalidArgument(f"inputs not set: {', '.join(missing)}")
        self._outputs = None
        self._outputs = self._graph.session.run(None, self._feeds)

    def get_output(self, key: TensorKey) -> Tensor:
        if self._outputs is None:
            raise InvalidArgument("no outputs: compute has not run on this context")
        meta = self._graph.lookup(self._graph.outputs, key, "output")
        value = self._outputs[meta.index]
        if not isinstance(value, np.ndarray):
            raise _BackendError(f"output {meta.name!r} is a {meta.ort_type}, not a tensor")
        if value.dtype == np.bool_:
            value = value.view(np.uint8)
        try:
            ttype = TensorType.from_numpy(value.dtype)
        except ValueError:
            raise _BackendError(
                f"output {meta.name!r} has type {meta.ort_type}, which wasi-nn cannot express"
            ) from None
        return Tensor(tuple(int(d) for d in value.shape), ttype, value)

    def output_names(self) -> Sequence[str]:
        return [io.name for io in self._graph.outputs]

    def close(self) -> None:
        self._feeds.clear()
        self._outputs = None


class OnnxBackend(Backend):
    """Creates one ``InferenceSession`` per graph."""

    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        target: ExecutionTarget,
        options: Mapping[str, Any],
    ) -> Graph:
        so = ort.SessionOptions()
        so.intra_op_num_threads = options["intra_op_num_threads"]
        so.inter_op_num_threads = options["inter_op_num_threads"]
        so.graph_optimization_level = _OPT_LEVELS[options["graph_optimization_level"]]
        so.execution_mode = _EXEC_MODES[options["execution_mode"]]
        so.log_severity_level = options["log_severity_level"]
        providers = [p for p in providers_for(target, options) if p in ort.get_available_providers()]
        provider_options = [self._provider_options(p, target, options) for p in providers]
        if target is not ExecutionTarget.CPU and not options["allow_cpu_nodes"]:
            so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        try:
            session = ort.InferenceSession(
                bytes(builders[0]), sess_options=so, providers=providers, provider_options=provider_options
            )
        except Exception as exc:
            if target is ExecutionTarget.CPU:
                raise
            raise UnsupportedOperation(
                f"onnxruntime could not create a session on {', '.join(providers)}: {exc}"
            ) from exc
        actual = session.get_providers()
        if target is not ExecutionTarget.CPU and (not actual or actual[0] not in providers):
            raise UnsupportedOperation(
                f"onnxruntime fell back to {', '.join(actual)} instead of {', '.join(providers)} "
                "(are the CUDA/cuDNN libraries installed?)"
            )
        device = actual[0] + (f":{options['device_id']}" if target is not ExecutionTarget.CPU else "")
        log.debug("session on %s (providers %s)", device, actual)
        return OnnxGraph(session, device)

    @staticmethod
    def _provider_options(name: str, target: ExecutionTarget, options: Mapping[str, Any]) -> dict[str, Any]:
        per = dict(options["provider_options"].get(name, {}))
        if target is not ExecutionTarget.CPU and name != CPU_PROVIDER:
            per.setdefault("device_id", options["device_id"])
        return {k: str(v) for k, v in per.items()}
