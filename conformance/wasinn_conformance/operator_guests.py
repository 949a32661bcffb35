"""The operator layer's guests on wasinn: a core module on the witx ABI and a component per WIT version.

Each is instantiated once per backend and serves every case of the run through the public host API
(``Host.add_to_linker``, ``Host.add_to_component_linker``). A case that traps the guest is reported,
and the next case gets a fresh instance: a failure in one case never stops the rest. After every case
the host must hold nothing of it (graphs, contexts, tensors, errors).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np
import wasmtime
from wasmtime import component

from wasinn_core import WIT_VERSIONS, Host, TensorType

from . import operator_templates as t
from .component_templates import ERROR_CODES, TENSOR_TYPES

__all__ = ["GuestOutput", "GuestResult", "WitGuest", "WitxGuest"]

#: witx ``tensor_type`` codes (witx has no bf16) and ``nn_errno`` names.
WITX_TYPES = {TensorType.F16: 0, TensorType.F32: 1, TensorType.F64: 2, TensorType.U8: 3, TensorType.I32: 4}
WITX_TYPES[TensorType.I64] = 5
WITX_ERRNOS = ("success", "invalid_argument", "invalid_encoding", "missing_memory", "busy", "runtime_error")
WITX_ERRNOS += ("unsupported_operation", "too_large", "not_found")
WIT_TYPES = {
    TensorType.F16: "FP16",
    TensorType.F32: "FP32",
    TensorType.F64: "FP64",
    TensorType.BF16: "BF16",
    TensorType.U8: "U8",
    TensorType.I32: "I32",
    TensorType.I64: "I64",
}
TARGETS = {"cpu": 0, "gpu": 1, "tpu": 2}


@final
@dataclass(frozen=True)
class GuestOutput:
    """An output as the guest received it: its data, and its name, shape and type where the ABI carries them."""

    data: bytes
    name: str | None = None
    dims: tuple[int, ...] | None = None
    type: TensorType | None = None


@final
@dataclass
class GuestResult:
    """What one path gave for a case: outputs, or the failing step and its error."""

    outputs: list[GuestOutput] = field(default_factory=list)
    failure: str = ""  # "compute → runtime_error: <the host's log line or the error's message>"
    trapped: bool = False
    leaks: str = ""  # what the host still held after the case


class _Log(logging.Handler):
    """The host's warnings during one case (the witx ABI's only account of an errno)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def _host_log() -> Iterator[_Log]:
    handler = _Log()
    logger = logging.getLogger("wasinn")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _leaks(*counts: tuple[int, str]) -> str:
    return ", ".join(f"{n} {what}" for n, what in counts if n)


class WitxGuest:
    """The witx operator guest: the host writes a case into guest memory, the guest makes every call."""

    def __init__(self, host: Host, engine: wasmtime.Engine, module: wasmtime.Module) -> None:
        self.host, self.engine, self.module = host, engine, module
        self._instance: Any = None

    def _start(self) -> None:
        self.store = wasmtime.Store(self.engine)
        linker = wasmtime.Linker(self.engine)
        self.binding = self.host.add_to_linker(linker, self.store)
        self._instance = linker.instantiate(self.store, self.module)
        exports = self._instance.exports(self.store)
        self.memory, self._alloc, self._reset, self._run = (exports[n] for n in ("memory", "alloc", "reset", "run"))

    def _put(self, data: bytes, size: int | None = None) -> int:
        ptr = int(self._alloc(self.store, max(size if size is not None else len(data), 1)))
        if ptr == 0:
            raise MemoryError("the operator guest is out of memory")
        if data:
            self.memory.write(self.store, data, ptr)
        return ptr

    def _u32s(self, ptr: int, n: int) -> tuple[int, ...]:
        return struct.unpack(f"<{n}I", self.memory.read(self.store, ptr, ptr + 4 * n))

    def run(self, model: bytes, inputs: Sequence[np.ndarray], output_sizes: Sequence[int], target: str) -> GuestResult:
        """Run a case: ``output_sizes`` are the buffers given to ``get_output`` (the expected sizes)."""
        if self._instance is None:
            self._start()
        try:
            with _host_log() as log:
                result = self._case(model, inputs, output_sizes, target)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            self._instance = None
            return GuestResult(failure=f"the guest trapped: {str(exc).splitlines()[0]}", trapped=True)
        if result.failure and log.lines:
            result.failure += f": {log.lines[-1]}"  # the witx ABI's only account of an errno
        session = self.binding.session
        result.leaks = _leaks((session.live_graphs, "graphs"), (session.live_contexts, "execution contexts"))
        return result

    def _case(
        self, model: bytes, inputs: Sequence[np.ndarray], output_sizes: Sequence[int], target: str
    ) -> GuestResult:
        self._reset(self.store)
        blob = self._put(model)
        builders = self._put(struct.pack("<II", blob, len(model)))
        records = b""
        for array in inputs:
            dims = self._put(struct.pack(f"<{array.ndim}I", *array.shape))
            data = np.ascontiguousarray(array).tobytes()
            ttype = TensorType.from_numpy(array.dtype)
            records += struct.pack("<IIBxxxII", dims, array.ndim, WITX_TYPES[ttype], self._put(data), len(data))
        tensors = self._put(records)
        buffers = b"".join(struct.pack("<IIII", self._put(b"", n), n, 0, 0) for n in output_sizes)
        outputs = self._put(buffers)
        fields = [builders, 1, 1, TARGETS[target], len(inputs), tensors, len(output_sizes), outputs]
        case = self._put(struct.pack(f"<{t.CASE_SIZE // 4}I", *fields, *[0] * (t.CASE_SIZE // 4 - len(fields))))
        step = int(self._run(self.store, case))
        _, errno, index = self._u32s(case + 32, 3)
        if step:
            where = t.STEPS[step] + (f"({index})" if step in (3, 5) else "")
            return GuestResult(failure=f"{where} returned {_errno(errno)}")
        found = []
        for i in range(len(output_sizes)):
            ptr, _, written, _ = self._u32s(outputs + 16 * i, 4)
            found.append(GuestOutput(bytes(self.memory.read(self.store, ptr, ptr + written))))
        return GuestResult(found)


def _errno(code: int) -> str:
    return f"{WITX_ERRNOS[code] if code < len(WITX_ERRNOS) else 'unknown'} ({code})"


class WitGuest:
    """The operator component of one WIT version: a case goes in as the arguments of its ``run`` export."""

    def __init__(self, host: Host, engine: wasmtime.Engine, guest: component.Component, version: str) -> None:
        assert version in WIT_VERSIONS
        self.host, self.engine, self.guest, self.version = host, engine, guest, version
        self._run: Any = None

    def _start(self) -> None:
        self.store = wasmtime.Store(self.engine)
        linker = component.Linker(self.engine)
        self.binding = self.host.add_to_component_linker(linker, self.store)
        instance = linker.instantiate(self.store, self.guest)
        self._run = instance.get_func(self.store, "run")

    def run(
        self, model: bytes, inputs: Sequence[tuple[str, np.ndarray]], output_names: Sequence[str], target: str
    ) -> GuestResult:
        if self._run is None:
            self._start()
        args = []
        for name, array in inputs:
            code = TENSOR_TYPES.index(WIT_TYPES[TensorType.from_numpy(array.dtype)])
            args.append((name, list(array.shape), code, np.ascontiguousarray(array).tobytes()))
        try:
            step, code, message, outputs = self._run(self.store, model, args, list(output_names), TARGETS[target])
            self._run.post_return(self.store)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            self._run = None
            return GuestResult(failure=f"the component trapped: {str(exc).splitlines()[0]}", trapped=True)
        if step:
            name = ERROR_CODES[code] if code < len(ERROR_CODES) else str(code)
            result = GuestResult(failure=f"{t.COMPONENT_STEPS[step]} returned error {name}: {message}")
        else:
            result = GuestResult(
                [GuestOutput(bytes(data), name, tuple(dims), _wit_type(ty)) for name, dims, ty, data in outputs]
            )
        b = self.binding
        result.leaks = _leaks(
            (len(b.tensors), "tensor resources"),
            (len(b.errors), "error resources"),
            (b.session.live_graphs, "graphs"),
            (b.session.live_contexts, "execution contexts"),
        )
        return result


def _wit_type(code: int) -> TensorType | None:
    names = {v: k for k, v in WIT_TYPES.items()}
    return names.get(TENSOR_TYPES[code]) if code < len(TENSOR_TYPES) else None
