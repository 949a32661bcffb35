"""The witx ABI front end: module ``wasi_ephemeral_nn`` on a wasmtime ``Linker``.

It decodes guest arguments, calls the :class:`~wasinn_core.Session`, and
encodes results. Every failure becomes an errno plus one log line naming the
call, its arguments (handles included) and the cause; no exception ever
reaches wasmtime, so a guest's bad input never traps.

Layouts (wasm32, little-endian): a tensor record is 20 bytes:
dimensions ``{ptr u32, len u32}`` at 0, the type as ONE byte at 8 (bytes 9-11
are padding that real guests leave dirty), data ``{ptr u32, len u32}`` at 12.
A graph builder array is ``len`` consecutive ``{ptr u32, len u32}`` entries.
"""

from __future__ import annotations

import logging
import struct
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import wasmtime

from .._errors import BackendErrno, ErrorCode, InvalidArgument, InvalidEncoding, TooLarge, WasiNNError
from .._session import Session
from .._stats import record_copy
from .._types import ExecutionTarget, GraphEncoding, Tensor, TensorType
from ._memory import GuestMemory, check_span, write_u32

__all__ = [
    "MODULE",
    "WITX_ENCODINGS",
    "WITX_ERRNO",
    "WITX_TARGETS",
    "WITX_TENSOR_TYPES",
    "WitxBinding",
]

log = logging.getLogger("wasinn.abi")

#: The import module name.
MODULE = "wasi_ephemeral_nn"

#: ``nn_errno`` codes (current witx; 0 is success).
WITX_ERRNO: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 1,
    ErrorCode.INVALID_ENCODING: 2,
    ErrorCode.MISSING_MEMORY: 3,
    ErrorCode.BUSY: 4,
    ErrorCode.RUNTIME_ERROR: 5,
    ErrorCode.UNSUPPORTED_OPERATION: 6,
    ErrorCode.TOO_LARGE: 7,
    ErrorCode.NOT_FOUND: 8,
}
#: ``tensor_type`` codes since wasi-nn PR #54 (u8 = 3, i32 = 4); witx has no bf16.
WITX_TENSOR_TYPES: dict[int, TensorType] = {
    0: TensorType.F16,
    1: TensorType.F32,
    2: TensorType.F64,
    3: TensorType.U8,
    4: TensorType.I32,
    5: TensorType.I64,
}
#: ``graph_encoding`` codes; ggml = 6 as in WasmEdge.
WITX_ENCODINGS: dict[int, GraphEncoding] = {
    0: GraphEncoding.OPENVINO,
    1: GraphEncoding.ONNX,
    2: GraphEncoding.TENSORFLOW,
    3: GraphEncoding.PYTORCH,
    4: GraphEncoding.TENSORFLOWLITE,
    5: GraphEncoding.AUTODETECT,
    6: GraphEncoding.GGML,
}
#: ``execution_target`` codes.
WITX_TARGETS: dict[int, ExecutionTarget] = {0: ExecutionTarget.CPU, 1: ExecutionTarget.GPU, 2: ExecutionTarget.TPU}

_TENSOR = struct.Struct("<IIBxxxII")
_U32 = struct.Struct("<I")
_BUILDER = struct.Struct("<II")
MAX_RANK = 64
MAX_BUILDERS = 64
_U32_MASK = 0xFFFF_FFFF

# name -> parameter names (all i32); the result is always the errno.
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "load": ("builder_ptr", "builder_len", "encoding", "target", "graph_out"),
    "load_by_name": ("name_ptr", "name_len", "graph_out"),
    "load_by_name_with_config": ("name_ptr", "name_len", "config_ptr", "config_len", "graph_out"),
    "unload": ("graph",),
    "init_execution_context": ("graph", "ctx_out"),
    "finalize_execution_context": ("ctx",),
    "set_input": ("ctx", "index", "tensor_ptr"),
    "compute": ("ctx",),
    "get_output": ("ctx", "index", "out_ptr", "out_max", "bytes_written_out"),
    "compute_single": ("ctx",),
    "get_output_single": ("ctx", "index", "out_ptr", "out_max", "bytes_written_out"),
    "fini_single": ("ctx",),
}


class WitxBinding:
    """``wasi_ephemeral_nn`` host functions bound to one :class:`Session` and guest memory."""

    def __init__(self, session: Session, memory: GuestMemory | None = None) -> None:
        self.session = session
        self.memory = memory or GuestMemory()
        # decoded tensor records, keyed by their bytes and their dimensions' bytes: a guest that calls
        # set_input in a loop with the same record skips decoding (the data is read afresh every time)
        self._tensors: dict[tuple[bytes, bytes], Tensor] = {}
        self._tensors_generation = -1
        #: how the functions are linked: "fast" (unchecked C callbacks) or "public"
        self.path = "public"

    def bind_memory(self, memory: wasmtime.Memory) -> None:
        """Bind the instance's exported memory (skips a lookup on every call)."""
        self.memory.bind(memory)

    def host_function(self, name: str) -> Callable[..., int]:
        """The errno-returning host function ``name``, taking ``(caller, *u32)``.

        Arguments must already be unsigned (``i32 & 0xFFFFFFFF``); see :func:`add_to_linker`.
        """
        impl: Callable[..., None] = getattr(self, f"_{name}")
        params = _SIGNATURES[name]

        def host(caller: Any, *args: int) -> int:
            try:
                impl(caller, *args)
                return 0
            except BackendErrno as exc:  # the backend's own code (GGML's end of sequence...), passed through
                self._log(name, params, args, exc.code, f"errno {exc.errno}: {exc.message}", quiet=exc.quiet)
                return exc.errno
            except WasiNNError as exc:
                self._log(name, params, args, exc.code, exc.message)
                return WITX_ERRNO[exc.code]
            except Exception as exc:  # a bug (the session maps library errors): never a trap, always loud
                self.session.host.stats.internal_errors += 1
                self._log(name, params, args, ErrorCode.RUNTIME_ERROR, f"{type(exc).__name__}: {exc}")
                log.error("internal error in %s: %s", name, "".join(traceback.format_exception(exc)))
                return WITX_ERRNO[ErrorCode.RUNTIME_ERROR]

        host.__name__ = name
        return host

    @staticmethod
    def _log(
        name: str, params: tuple[str, ...], args: tuple[int, ...], code: ErrorCode, message: str, quiet: bool = False
    ) -> None:
        call = ", ".join(
            f"{p}={a & _U32_MASK:#x}" if p.endswith(("_ptr", "_out")) else f"{p}={a & _U32_MASK}"
            for p, a in zip(params, args, strict=False)
        )
        # a too-small output buffer is how guests ask for the size (they retry), and the end of an answer
        # is how streaming guests stop: neither is worth a warning
        quiet = quiet or (code is ErrorCode.TOO_LARGE and name.startswith("get_output"))
        level = logging.INFO if quiet else logging.WARNING
        log.log(level, "%s(%s): %s: %s", name, call, code.value, message)

    # -- graphs ---------------------------------------------------------------

    def _load(
        self, caller: Any, builder_ptr: int, builder_len: int, encoding: int, target: int, graph_out: int
    ) -> None:
        view = self.memory.view(caller)
        check_span(view, graph_out, 4, "graph out-pointer")
        if builder_len > MAX_BUILDERS:
            raise InvalidArgument(f"{builder_len} graph builders (at most {MAX_BUILDERS})")
        check_span(view, builder_ptr, 8 * builder_len, "graph builder array")
        enc = WITX_ENCODINGS.get(encoding)
        if enc is None:
            raise InvalidEncoding(
                f"unknown graph encoding code {encoding}; known: "
                + ", ".join(f"{c}={e.value}" for c, e in WITX_ENCODINGS.items())
            )
        tgt = WITX_TARGETS.get(target)
        if tgt is None:
            raise InvalidArgument(f"unknown execution target code {target}; known: 0=cpu, 1=gpu, 2=tpu")
        builders = []
        for i in range(builder_len):
            ptr, length = _BUILDER.unpack_from(view.data, builder_ptr + 8 * i)
            check_span(view, ptr, length, f"graph builder {i}")
            builders.append(view[ptr : ptr + length].data)
        handle = self.session.load(builders, enc, tgt)
        write_u32(view, graph_out, handle, "graph out-pointer")

    def _read_str(self, view: np.ndarray[Any, Any], ptr: int, length: int, what: str) -> str:
        check_span(view, ptr, length, what)
        try:
            text = bytes(view[ptr : ptr + length]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"{what} is not valid UTF-8: {exc}") from None
        if "\x00" in text:
            raise InvalidArgument(f"{what} contains a NUL byte")
        return text

    def _load_by_name(self, caller: Any, name_ptr: int, name_len: int, graph_out: int) -> None:
        self._load_by_name_with_config(caller, name_ptr, name_len, 0, 0, graph_out)

    def _load_by_name_with_config(
        self, caller: Any, name_ptr: int, name_len: int, config_ptr: int, config_len: int, graph_out: int
    ) -> None:
        view = self.memory.view(caller)
        check_span(view, graph_out, 4, "graph out-pointer")
        name = self._read_str(view, name_ptr, name_len, "model name")
        check_span(view, config_ptr, config_len, "config")
        config = bytes(view[config_ptr : config_ptr + config_len]) if config_len else None
        handle = self.session.load_by_name(name, config)
        write_u32(view, graph_out, handle, "graph out-pointer")

    def _unload(self, caller: Any, graph: int) -> None:
        self.session.unload(graph)

    # -- contexts ---------------------------------------------------------------

    def _init_execution_context(self, caller: Any, graph: int, ctx_out: int) -> None:
        view = self.memory.view(caller)
        check_span(view, ctx_out, 4, "context out-pointer")
        handle = self.session.init_execution_context(graph)
        write_u32(view, ctx_out, handle, "context out-pointer")

    def _finalize_execution_context(self, caller: Any, ctx: int) -> None:
        self.session.finalize_execution_context(ctx)

    def _set_input(self, caller: Any, ctx: int, index: int, tensor_ptr: int) -> None:
        view = self.memory.view(caller)
        check_span(view, tensor_ptr, _TENSOR.size, "tensor record")
        record = view[tensor_ptr : tensor_ptr + _TENSOR.size].tobytes()
        dims_ptr, rank, type_code, data_ptr, data_len = _TENSOR.unpack(record)
        if rank > MAX_RANK:
            raise InvalidArgument(f"tensor rank {rank} is over {MAX_RANK}")
        check_span(view, dims_ptr, 4 * rank, "tensor dimensions")
        key = (record, view[dims_ptr : dims_ptr + 4 * rank].tobytes())
        if self._tensors_generation != self.memory.generation:
            self._tensors.clear()  # the memory grew or moved: cached views are stale
            self._tensors_generation = self.memory.generation
        tensor = self._tensors.get(key)
        if tensor is None:
            tensor = self._decode_tensor(view, type_code, key[1], data_ptr, data_len)
            if len(self._tensors) >= 64:
                self._tensors.clear()
            self._tensors[key] = tensor
        self.session.set_input(ctx, index, tensor)

    @staticmethod
    def _decode_tensor(
        view: np.ndarray[Any, Any], type_code: int, dims_raw: bytes, data_ptr: int, data_len: int
    ) -> Tensor:
        ttype = WITX_TENSOR_TYPES.get(type_code)
        if ttype is None:
            raise InvalidArgument(
                f"unknown tensor type code {type_code}; known: "
                + ", ".join(f"{c}={t.value}" for c, t in WITX_TENSOR_TYPES.items())
            )
        dims = struct.unpack(f"<{len(dims_raw) // 4}I", dims_raw)
        check_span(view, data_ptr, data_len, "tensor data")
        return Tensor.from_guest(dims, ttype, view[data_ptr : data_ptr + data_len])

    def _compute(self, caller: Any, ctx: int) -> None:
        self.session.compute(ctx)

    def _write_output(
        self, caller: Any, tensor_of: Callable[[], Tensor], out_ptr: int, out_max: int, written: int
    ) -> None:
        view = self.memory.view(caller)
        check_span(view, written, 4, "bytes_written out-pointer")
        check_span(view, out_ptr, out_max, "output buffer")
        tensor = tensor_of()
        data = tensor.data  # the session checked that its size matches the tensor's dimensions and type
        nbytes = data.nbytes
        _U32.pack_into(view.data, written, nbytes)
        if nbytes > out_max:
            raise TooLarge(f"output is {nbytes} bytes but the buffer holds {out_max}", required=nbytes)
        if data.flags.c_contiguous and data.dtype.byteorder != ">":
            view[out_ptr : out_ptr + nbytes] = data.reshape(-1).view(np.uint8)  # the one copy out
        else:  # strided or big-endian: still one copy, converted on the way into guest memory
            target = view[out_ptr : out_ptr + nbytes].view(tensor.type.numpy_dtype).reshape(data.shape)
            np.copyto(target, data, casting="unsafe")
        record_copy(nbytes)
        self.session.host.stats.bytes_out += nbytes

    def _get_output(self, caller: Any, ctx: int, index: int, out_ptr: int, out_max: int, written: int) -> None:
        self._write_output(caller, lambda: self.session.get_output(ctx, index), out_ptr, out_max, written)

    def _compute_single(self, caller: Any, ctx: int) -> None:
        self.session.compute_single(ctx)

    def _get_output_single(self, caller: Any, ctx: int, index: int, out_ptr: int, out_max: int, written: int) -> None:
        self._write_output(caller, lambda: self.session.get_output_single(ctx, index), out_ptr, out_max, written)

    def _fini_single(self, caller: Any, ctx: int) -> None:
        self.session.fini_single(ctx)
