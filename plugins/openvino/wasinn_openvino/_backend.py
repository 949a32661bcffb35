"""OpenVINO backend: one compiled model per graph, one infer request per context.

Inputs are copied once from guest memory straight into the infer request's own
input tensor; outputs are the request's output tensors, read in place by the
host when it writes them into the guest.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from wasinn_core import (
    Availability,
    Backend,
    BackendError,
    ExecutionContext,
    ExecutionTarget,
    Graph,
    GraphEncoding,
    InvalidArgument,
    OnnxPort,
    OnnxSignature,
    Tensor,
    TensorKey,
    TensorType,
    UnsupportedOperation,
    match_ports,
    onnx_signature,
    record_copy,
)

if "openvino" not in sys.modules and os.environ.get("WASINN_OPENVINO_TELEMETRY", "").lower() not in ("1", "true"):
    # `import openvino` starts the converter's telemetry, which writes under $HOME/intel. Its own
    # fallback (a stub) is used when the telemetry package cannot be imported.
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]

import openvino as ov

log = logging.getLogger("wasinn.openvino")

OV_TYPES: dict[str, TensorType] = {
    "f16": TensorType.F16,
    "f32": TensorType.F32,
    "f64": TensorType.F64,
    "bf16": TensorType.BF16,
    "u8": TensorType.U8,
    "i32": TensorType.I32,
    "i64": TensorType.I64,
}
_VIRTUAL = ("AUTO", "MULTI", "HETERO", "BATCH")


@functools.cache
def core() -> ov.Core:
    """The process-wide OpenVINO core."""
    return ov.Core()


def device_name(target: ExecutionTarget, options: Mapping[str, Any]) -> str:
    """The OpenVINO device string a wasi-nn target maps to under ``options``."""
    if target is ExecutionTarget.CPU:
        return str(options["cpu_device"])
    if target is ExecutionTarget.TPU:
        return str(options["tpu_device"])
    device, index = str(options["gpu_device"]), options["device_index"]
    return f"{device}.{index}" if device == "GPU" and index else device


def _present(name: str, devices: Sequence[str]) -> bool:
    if name in devices:
        return True
    base, _, index = name.partition(".")
    if not index:  # "GPU" means the first GPU, listed as "GPU" or "GPU.0"
        return any(d.split(".")[0] == base for d in devices)
    return index == "0" and base in devices


def probe(target: ExecutionTarget, options: Mapping[str, Any]) -> Availability:
    """Whether the target's device exists here, from ``Core().available_devices``."""
    name = device_name(target, options)
    devices = core().available_devices
    head, _, rest = name.partition(":")
    if head in _VIRTUAL:
        parts = [p.strip() for p in rest.split(",") if p.strip()]
        ok = any(_present(p, devices) for p in parts) if parts else bool(devices)
    else:
        ok = _present(name, devices)
    if ok:
        return Availability.yes(name)
    return Availability.no(
        f"OpenVINO {ov.__version__.split('-')[0]} has no {name} device here (available: {', '.join(devices) or 'none'})"
    )


def compile_config(options: Mapping[str, Any]) -> dict[str, Any]:
    """OpenVINO properties from the backend options."""
    config: dict[str, Any] = {}
    if options["inference_precision"] != "default":
        config["INFERENCE_PRECISION_HINT"] = options["inference_precision"]
    if options["performance_hint"]:
        config["PERFORMANCE_HINT"] = options["performance_hint"]
    if options["num_streams"]:
        config["NUM_STREAMS"] = str(options["num_streams"])
    if options["inference_num_threads"]:
        config["INFERENCE_NUM_THREADS"] = options["inference_num_threads"]
    if options["cache_dir"]:
        config["CACHE_DIR"] = options["cache_dir"]
    config.update(options["config"])
    return config


def _is_ir(data: memoryview) -> bool:
    """Whether ``data`` starts as OpenVINO IR XML does."""
    head = bytes(data[:512]).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<net") or (head.startswith(b"<?xml") and b"<net" in bytes(data[:4096]))


class _IO:
    """A wasi-nn input or output: the library's port ``index`` (``None``: OpenVINO dropped it) and its names."""

    __slots__ = ("declared", "index", "name", "names", "ov_type", "shape")

    def __init__(self, index: int | None, port: Any, declared: OnnxPort | None = None) -> None:
        self.index = index
        self.declared = declared  # the ONNX graph's declaration (ONNX models only)
        self.names = set(port.get_names()) if port is not None else set()
        if declared is not None:
            self.names.add(declared.name)
            self.name = declared.name
        else:
            self.name = port.get_any_name() if self.names else str(index)
        if port is None:
            self.ov_type, self.shape = "", ()
        else:
            self.ov_type = port.get_element_type().get_type_name()
            self.shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())


def _ports(ports: Sequence[Any], declared: Sequence[OnnxPort] | None, what: str) -> list[_IO]:
    """wasi-nn's numbering: the compiled model's ports for IR; the ONNX graph's own ports for ONNX.

    OpenVINO drops inputs it folds away (unused, zero-size) and renames an input that feeds an output
    directly; such a port keeps its ONNX index, and a dropped input is only checked against its
    declaration.
    """
    if declared is None:
        return [_IO(i, p) for i, p in enumerate(ports)]

    def fits(port: OnnxPort, k: int) -> bool:
        ov_type = OV_TYPES.get(ports[k].get_element_type().get_type_name())
        return (port.type is None or port.type is ov_type) and (
            port.shape is None or ports[k].get_partial_shape().rank.get_length() == len(port.shape)
        )

    try:
        indexes = match_ports(declared, [p.get_names() for p in ports], fits)
    except ValueError as exc:
        raise BackendError(f"OpenVINO's compiled model does not follow the ONNX graph's {what}s: {exc}") from None
    return [_IO(k, ports[k] if k is not None else None, d) for k, d in zip(indexes, declared, strict=True)]


class OpenVINOGraph(Graph):
    """A compiled model, shared by every context (and every instance, for named models)."""

    def __init__(self, compiled: Any, weights: Any, signature: OnnxSignature | None = None) -> None:
        self.compiled = compiled
        self._weights = weights  # the model may reference the weights buffer
        self.device = ",".join(compiled.get_property("EXECUTION_DEVICES"))
        self.inputs = _ports(compiled.inputs, signature.inputs if signature else None, "input")
        self.outputs = _ports(compiled.outputs, signature.outputs if signature else None, "output")

    @staticmethod
    def lookup(table: Sequence[_IO], key: TensorKey, what: str) -> _IO:
        if isinstance(key, int):
            if 0 <= key < len(table):
                return table[key]
            raise InvalidArgument(
                f"{what} index {key} is out of range: the model has {len(table)} {what}s "
                f"({', '.join(io.name for io in table)})"
            )
        for io in table:
            if key in io.names or key == io.name:
                return io
        raise InvalidArgument(f"the model has no {what} named {key!r} (has: {', '.join(io.name for io in table)})")

    def init_execution_context(self) -> ExecutionContext:
        if self.compiled is None:
            raise BackendError("the graph was released")
        return OpenVINOContext(self)

    def close(self) -> None:
        self.compiled = None
        self._weights = None


class OpenVINOContext(ExecutionContext):
    """One infer request.

    Each input is copied once, straight into the request's own input tensor; the numpy view of that
    tensor is kept while the input's shape stays the same (a new shape reallocates it, so the view is
    dropped first). Outputs are the request's output tensors, read in place.
    """

    def __init__(self, graph: OpenVINOGraph) -> None:
        self._graph = graph
        self._request = graph.compiled.create_infer_request()
        self._set = [False] * len(graph.inputs)
        self._position = {io.index: i for i, io in enumerate(graph.inputs) if io.index is not None}
        self._computed = False
        self._checked: dict[tuple[TensorKey, TensorType, tuple[int, ...]], _IO] = {}
        self._views: dict[int, tuple[tuple[int, ...], np.ndarray[Any, Any]]] = {}  # index -> (dims, view)

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        dims = tensor.dimensions
        check = (key, tensor.type, dims)
        meta = self._checked.get(check)
        if meta is None:
            meta = self._validate(key, tensor)
            if len(self._checked) >= 64:
                self._checked.clear()
            self._checked[check] = meta
        if meta.index is None:  # an input OpenVINO folded away: checked, then ignored
            self._set[self._graph.inputs.index(meta)] = True
            self._computed = False
            return
        cached = self._views.get(meta.index)
        if cached is None or cached[0] != dims:
            self._views.pop(meta.index, None)  # resizing reallocates the tensor under the old view
            target = self._request.get_input_tensor(meta.index)
            if tuple(target.shape) != dims:
                target.shape = list(dims)
            cached = (dims, target.data.reshape(dims))
            self._views[meta.index] = cached
        dst, src = cached[1], tensor.data
        if dst.dtype != src.dtype:  # bf16: OpenVINO exposes the raw 16-bit words
            src = src.view(dst.dtype)
        np.copyto(dst, src)  # the one copy in
        record_copy(src.nbytes)
        self._set[self._position[meta.index]] = True
        self._computed = False

    def _validate(self, key: TensorKey, tensor: Tensor) -> _IO:
        meta = self._graph.lookup(self._graph.inputs, key, "input")
        if meta.index is None and meta.declared is not None:
            meta.declared.check(tensor)
            return meta
        want = OV_TYPES.get(meta.ov_type)
        if want is None:
            raise InvalidArgument(f"input {meta.name!r} has type {meta.ov_type}, which wasi-nn cannot express")
        if tensor.type is not want:
            raise InvalidArgument(f"input {meta.name!r} expects {want.value}, got {tensor.type.value}")
        dims = tensor.dimensions
        if len(dims) != len(meta.shape) or any(m is not None and m != d for m, d in zip(meta.shape, dims, strict=True)):
            shape = "x".join("?" if d is None else str(d) for d in meta.shape)
            raise InvalidArgument(f"input {meta.name!r} expects shape {shape}, got {'x'.join(map(str, dims))}")
        return meta

    def compute(self) -> None:
        if not all(self._set):
            missing = [io.name for io, done in zip(self._graph.inputs, self._set, strict=True) if not done]
            raise InvalidArgument(f"inputs not set: {', '.join(missing)}")
        self._computed = False
        self._request.infer(share_outputs=True)  # by default the wrapper copies every output into a new array
        self._computed = True

    def get_output(self, key: TensorKey) -> Tensor:
        if not self._computed:
            raise InvalidArgument("no outputs: compute has not run on this context since its inputs changed")
        outputs = self._graph.outputs
        meta = (
            outputs[key] if type(key) is int and 0 <= key < len(outputs) else self._graph.lookup(outputs, key, "output")
        )
        if meta.index is None:
            raise BackendError(f"output {meta.name!r} of the ONNX graph is missing from OpenVINO's compiled model")
        data = self._request.get_output_tensor(meta.index).data
        ttype = OV_TYPES.get(meta.ov_type)
        if meta.ov_type == "boolean":
            ttype, data = TensorType.U8, data.view(np.uint8)
        elif ttype is None:
            raise BackendError(f"output {meta.name!r} has type {meta.ov_type}, which wasi-nn cannot express")
        elif ttype is TensorType.BF16:
            data = data.view(TensorType.BF16.numpy_dtype)
        return Tensor(data.shape, ttype, data)

    def output_names(self) -> Sequence[str]:
        return [io.name for io in self._graph.outputs]

    def close(self) -> None:
        self._views.clear()
        self._request = None


class OpenVINOBackend(Backend):
    def warm_up(self) -> None:
        """Load OpenVINO's CPU plugin and its thread pools on a one-node model."""
        import openvino.opset13 as ops

        x = ops.parameter([1], ov.Type.f32, name="x")
        compiled = core().compile_model(ov.Model([ops.add(x, x)], [x], "warm_up"), "CPU")
        compiled.create_infer_request().infer({0: np.ones(1, np.float32)})

    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        target: ExecutionTarget,
        options: Mapping[str, Any],
    ) -> Graph:
        weights = signature = None
        if encoding is GraphEncoding.OPENVINO:
            if not _is_ir(builders[0]):
                # OpenVINO would also read ONNX (and follow its external-data paths) under this encoding
                raise InvalidArgument(
                    "encoding openvino takes OpenVINO IR (the model XML, then the weights); "
                    "these bytes are not IR XML: load ONNX models with encoding onnx"
                )
            weights = ov.Tensor(np.array(builders[1], dtype=np.uint8))  # a copy: the guest's bytes are borrowed
            model = core().read_model(model=bytes(builders[0]), weights=weights)
        else:
            model = core().read_model(model=bytes(builders[0]))
            signature = onnx_signature(builders[0])  # OpenVINO read it: well-formed
        device = device_name(target, options)
        config = compile_config(options)
        try:
            compiled = core().compile_model(model, device, config)
        except RuntimeError as exc:
            if target is ExecutionTarget.CPU:
                raise
            raise UnsupportedOperation(f"OpenVINO could not compile for {device}: {exc}") from exc
        graph = OpenVINOGraph(compiled, weights, signature)
        log.debug("compiled for %s on %s with %s", device, graph.device, config)
        return graph
