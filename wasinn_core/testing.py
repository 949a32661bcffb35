"""Test helpers for wasinn and for backend authors.

:class:`ForwardingGuest` is a real wasm module whose exports forward their
arguments to the ``wasi_ephemeral_nn`` imports unchanged, with a memory the
test writes byte by byte: the way to drive the ABI exactly as a hostile or
sloppy guest would. :func:`run_guest` runs a WASI command and captures its
output; :func:`registered` adds backends to a plugin manager for a while. The
pytest fixtures over these live in :mod:`wasinn_core.pytest_plugin`.
:func:`check_onnx_numbering` checks that an ONNX backend numbers inputs and
outputs as the graph does (the wasi-nn rule for ONNX; needs the ``onnx`` package).
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

import numpy as np
import numpy.typing as npt
import wasmtime

from ._abi._linking import add_to_linker
from ._abi._witx import _SIGNATURES, MODULE, WitxBinding
from ._backend import BackendSpec
from ._config import Limits
from ._formats._numbering_check import check_onnx_numbering
from ._host import Host
from ._plugins._hookspecs import hookimpl
from ._plugins._manager import PluginManager
from ._run import RunSpec, run_command

__all__ = ["ForwardingGuest", "GuestRun", "check_onnx_numbering", "forwarding_wat", "registered", "run_guest"]

PAGE = 65536


def forwarding_wat(pages: int = 4, export_memory: bool = True) -> str:
    """WAT of a module that imports every ``wasi_ephemeral_nn`` function and re-exports it."""
    lines = ["(module"]
    for name, params in _SIGNATURES.items():
        sig = " ".join(["i32"] * len(params))
        lines.append(f'  (import "{MODULE}" "{name}" (func ${name} (param {sig}) (result i32)))')
    memory = f'(memory (export "memory") {pages})' if export_memory else f"(memory {pages})"
    lines.append(f"  {memory}")
    for name, params in _SIGNATURES.items():
        sig = " ".join(["i32"] * len(params))
        gets = " ".join(f"(local.get {i})" for i in range(len(params)))
        lines.append(f'  (func (export "{name}") (param {sig}) (result i32) (call ${name} {gets}))')
    lines.append(")")
    return "\n".join(lines)


class ForwardingGuest:
    """A forwarding wasm module instantiated on a host, with helpers to lay out guest memory.

    :param host: the host to attach to.
    :param pages: linear memory size in 64 KiB pages.
    :param limits: per-instance limits (default: the host config's).
    :param export_memory: export ``memory`` (set ``False`` to test ``missing_memory``).
    """

    def __init__(self, host: Host, *, pages: int = 4, limits: Limits | None = None, export_memory: bool = True) -> None:
        self.engine = wasmtime.Engine()
        self.store = wasmtime.Store(self.engine)
        linker = wasmtime.Linker(self.engine)
        module = wasmtime.Module(self.engine, forwarding_wat(pages, export_memory))
        self.session = host.new_session(limits)
        self.binding: WitxBinding = add_to_linker(linker, self.store, self.session)
        self.instance = linker.instantiate(self.store, module)
        self.exports = self.instance.exports(self.store)
        self._memory = self.exports.get("memory") if export_memory else None
        self._next = 1024

    # -- memory ----------------------------------------------------------------

    @property
    def memory(self) -> npt.NDArray[np.uint8]:
        """A writable view of all of guest memory (re-derived on every access)."""
        if not isinstance(self._memory, wasmtime.Memory):
            raise RuntimeError("this guest exports no memory")
        return _view(self._memory, self.store)

    @property
    def size(self) -> int:
        """Guest memory size in bytes."""
        return int(self.memory.shape[0])

    def alloc(self, data: bytes | bytearray | memoryview | npt.NDArray[Any] | int, align: int = 8) -> int:
        """Copy ``data`` (or reserve ``data`` zeroed bytes) into guest memory; returns its address."""
        raw = np.ascontiguousarray(data).tobytes() if isinstance(data, np.ndarray) else bytes(data)
        ptr = (self._next + align - 1) // align * align
        if ptr + len(raw) > self.size:
            raise MemoryError(f"forwarding guest out of memory ({self.size} bytes)")
        self.memory[ptr : ptr + len(raw)] = np.frombuffer(raw, np.uint8)
        self._next = ptr + len(raw)
        return ptr

    def read(self, ptr: int, length: int) -> bytes:
        """Bytes of guest memory."""
        return bytes(self.memory[ptr : ptr + length])

    def u32(self, ptr: int) -> int:
        """A u32 of guest memory."""
        value: int = struct.unpack_from("<I", self.memory.data, ptr)[0]
        return value

    def builders(self, blobs: Sequence[bytes]) -> tuple[int, int]:
        """Lay out a graph builder array; returns ``(ptr, count)``."""
        entries = b"".join(struct.pack("<II", self.alloc(b), len(b)) for b in blobs)
        return self.alloc(entries or b"\0" * 8), len(blobs)

    def tensor(
        self,
        dims: Sequence[int],
        type_code: int,
        data: bytes | npt.NDArray[Any],
        *,
        padding: bytes = b"\0\0\0",
        data_len: int | None = None,
    ) -> int:
        """Lay out a 20-byte tensor record (with chosen padding bytes); returns its address."""
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        dims_ptr = self.alloc(struct.pack(f"<{len(dims)}I", *dims) or b"\0\0\0\0", align=4)
        data_ptr = self.alloc(raw or b"\0", align=8)
        record = struct.pack("<IIB", dims_ptr, len(dims), type_code) + padding[:3].ljust(3, b"\0")
        record += struct.pack("<II", data_ptr, len(raw) if data_len is None else data_len)
        return self.alloc(record, align=4)

    def string(self, text: str) -> tuple[int, int]:
        """A UTF-8 string in guest memory; returns ``(ptr, len)``."""
        raw = text.encode()
        return self.alloc(raw or b"\0", align=1), len(raw)

    # -- calls ---------------------------------------------------------------------

    def call(self, name: str, *args: int) -> int:
        """Call the forwarding export ``name``; returns the errno."""
        func = self.exports[name]
        assert isinstance(func, wasmtime.Func)
        result: int = func(self.store, *args)
        return result


def _view(memory: wasmtime.Memory, store: wasmtime.Store) -> npt.NDArray[np.uint8]:
    return np.frombuffer(memoryview(memory.get_buffer_ptr(store)), np.uint8)


@final
@dataclass(frozen=True, slots=True)
class GuestRun:
    """What a guest run produced."""

    exit_code: int
    stdout: str
    stderr: str


def run_guest(
    host: Host, wasm: str | Path, args: Sequence[str] = (), dirs: Sequence[tuple[str, str, bool]] = ()
) -> GuestRun:
    """Run a WASI command on ``host`` like ``wasinn run``, capturing stdout and stderr."""
    with tempfile.TemporaryDirectory(prefix="wasinn-guest-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        code = run_command(host, RunSpec(Path(wasm), tuple(args), tuple(dirs), stdout=out, stderr=err))
        return GuestRun(code, out.read_text(errors="replace"), err.read_text(errors="replace"))


class _SpecsPlugin:
    def __init__(self, specs: Sequence[BackendSpec]) -> None:
        self.specs = list(specs)

    @hookimpl
    def wasinn_backends(self) -> list[BackendSpec]:
        return self.specs


@contextmanager
def registered(plugins: PluginManager, *specs: BackendSpec, name: str = "wasinn-testing") -> Iterator[PluginManager]:
    """Register ``specs`` as a plugin called ``name`` for the duration of the ``with`` block."""
    plugins.register(_SpecsPlugin(specs), name=name)
    try:
        yield plugins
    finally:
        plugins.unregister(name)
