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
    record_copy,
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

NUMPY_TYPES: dict[np.dtype[Any], TensorType] = {t.numpy_dtype: t for t in TensorType if t is not TensorType.BF16}

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
    """One inference state, on ONNX Runtime's IOBinding.

    Inputs are copied once from the guest into buffers bound to ORT. Outputs are written by ORT straight into
    buffers this context owns and reuses while the input shapes stay the same, so a steady-state inference
    allocates nothing; the first run with new input shapes lets ORT allocate and learns the output shapes.
    An output is valid until the next ``compute``.
    """

    def __init__(self, graph: OnnxGraph) -> None:
        self._graph = graph
        self._io = graph.session.io_binding()
        # ORT's Python wrapper re-validates every call; its C++ binding does the same work without that
        # (measured: 3.3 → 2.3 µs a run on a tiny model). Fall back where the private names are absent.
        inner, binding = getattr(graph.session, "_sess", None), getattr(self._io, "_iobinding", None)
        if inner is not None and binding is not None and hasattr(inner, "run_with_iobinding"):
            self._run = lambda: inner.run_with_iobinding(binding, None)
        else:  # pragma: no cover - other onnxruntime versions
            self._run = lambda: graph.session.run_with_iobinding(self._io)
        self._feeds: dict[str, np.ndarray[Any, Any]] = {}
        self._checked: dict[tuple[TensorKey, TensorType, tuple[int, ...]], _IO] = {}
        # output tensors (over buffers ORT writes into), by the input shapes they go with
        self._out_buffers: dict[tuple[tuple[int, ...], ...], list[Tensor]] = {}
        self._bound: tuple[tuple[int, ...], ...] | None = None
        self._results: list[Tensor] | None = None
        self._signature: tuple[tuple[int, ...], ...] = ()  # the input shapes, kept by set_input
        self._plain = any(not io.ort_type.startswith("tensor(") for io in graph.outputs)

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        check = (key, tensor.type, tensor.dimensions)
        meta = self._checked.get(check)
        if meta is None:
            meta = self._validate(key, tensor)
            if len(self._checked) >= 64:
                self._checked.clear()
            self._checked[check] = meta
        buf = self._feeds.get(meta.name)
        if buf is None or buf.shape != tensor.dimensions:
            buf = np.empty(tensor.dimensions, tensor.type.numpy_dtype)
            self._feeds[meta.name] = buf
            self._io.bind_cpu_input(meta.name, buf)
            self._bound = None  # input shapes changed: the outputs are rebound at compute
            self._signature = tuple(self._feeds[io.name].shape for io in self._graph.inputs if io.name in self._feeds)
        np.copyto(buf, tensor.data)  # the one copy in
        record_copy(buf.nbytes)

    def _validate(self, key: TensorKey, tensor: Tensor) -> _IO:
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
        return meta

    def compute(self) -> None:
        graph = self._graph
        if len(self._feeds) < len(graph.inputs):
            missing = [io.name for io in graph.inputs if io.name not in self._feeds]
            raise InvalidArgument(f"inputs not set: {', '.join(missing)}")
        self._results = None
        if self._plain:  # sequences or maps among the outputs: IOBinding cannot hold them
            values = graph.session.run(None, self._feeds)
            self._results = [self._tensor(io, v) for io, v in zip(graph.outputs, values, strict=True)]
            return
        signature = self._signature
        outputs = self._out_buffers.get(signature)
        if outputs is None and (outputs := self._static_outputs()) is not None:
            self._out_buffers[signature] = outputs  # ORT writes into them from the first run on
        if outputs is not None:
            if self._bound != signature:
                self._bind_outputs(outputs)
                self._bound = signature
            try:
                self._run()
                self._results = outputs
                return
            except Exception:  # an output whose shape depends on the data: let ORT allocate instead
                del self._out_buffers[signature]
        self._io.clear_binding_outputs()
        for io in graph.outputs:
            self._io.bind_output(io.name, "cpu")
        self._bound = None
        graph.session.run_with_iobinding(self._io)
        values = self._io.copy_outputs_to_cpu()
        for value in values:  # ORT's own buffers are copied out on the first run with new input shapes
            record_copy(getattr(value, "nbytes", 0))
        self._results = [self._tensor(io, v) for io, v in zip(graph.outputs, values, strict=True)]
        # ORT writes into these from the next run with the same input shapes on
        self._out_buffers[signature] = [
            self._tensor(io, np.empty_like(v)) for io, v in zip(graph.outputs, values, strict=True)
        ]

    def _static_outputs(self) -> list[Tensor] | None:
        """Output buffers, when the model declares every output's type and full shape (else ORT decides)."""
        buffers = []
        for io in self._graph.outputs:
            ttype = io.tensor_type
            if ttype is None or io.ort_type == "tensor(bool)" or not io.shape:  # no shape: the rank is unknown
                return None
            if any(d is None or d < 0 for d in io.shape):
                return None
            shape = tuple(int(d) for d in io.shape if d is not None)
            buffers.append(Tensor(shape, ttype, np.empty(shape, ttype.numpy_dtype)))
        return buffers

    def _bind_outputs(self, outputs: list[Tensor]) -> None:
        self._io.clear_binding_outputs()
        for io, out in zip(self._graph.outputs, outputs, strict=True):
            buf = out.data
            dtype = np.bool_ if io.ort_type == "tensor(bool)" else buf.dtype  # bool outputs are shown as u8
            self._io.bind_output(io.name, "cpu", 0, dtype, list(buf.shape), buf.ctypes.data)

    @staticmethod
    def _tensor(meta: _IO, value: Any) -> Tensor:
        if not isinstance(value, np.ndarray):
            raise _BackendError(f"output {meta.name!r} is a {meta.ort_type}, not a tensor")
        if value.dtype == np.bool_:
            value = value.view(np.uint8)
        ttype = NUMPY_TYPES.get(value.dtype)
        if ttype is None:
            raise _BackendError(f"output {meta.name!r} has type {meta.ort_type}, which wasi-nn cannot express")
        return Tensor(value.shape, ttype, value)

    def get_output(self, key: TensorKey) -> Tensor:
        results = self._results
        if results is None:
            raise InvalidArgument("no outputs: compute has not run on this context")
        if type(key) is int and 0 <= key < len(results):
            return results[key]
        return results[self._graph.lookup(self._graph.outputs, key, "output").index]

    def output_names(self) -> Sequence[str]:
        return [io.name for io in self._graph.outputs]

    def close(self) -> None:
        self._feeds.clear()
        self._out_buffers.clear()
        self._results = None


#: y = x + x on f32 [1]: the smallest model, for warming up a worker (ONNX IR 8, opset 13).
_WARM_UP_MODEL = (
    b'\x08\x08:8\n\x0e\n\x01x\n\x01x\x12\x01y"\x03Add\x12\x04warmZ\x0f\n\x01x\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08'
    b"\x01b\x0f\n\x01y\x12\n\n\x08\x08\x01\x12\x04\n\x02\x08\x01B\x04\n\x00\x10\r"
)


class OnnxBackend(Backend):
    """Creates one ``InferenceSession`` per graph."""

    def warm_up(self) -> None:
        """Create onnxruntime's environment and thread pools on a one-node model (a worker's first load is then
        as quick as a later one)."""
        session = ort.InferenceSession(_WARM_UP_MODEL, providers=[CPU_PROVIDER])
        session.run(None, {"x": np.ones(1, np.float32)})

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
