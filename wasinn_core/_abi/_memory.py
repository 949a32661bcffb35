"""Guest linear memory as a zero-copy numpy view; the only place that touches raw pointers.

Every pointer and length from a guest is checked here, as Python integers,
before use: numpy would silently truncate an out-of-range slice.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

import numpy as np
import numpy.typing as npt
import wasmtime
from wasmtime import _ffi as ffi

from .._errors import InvalidArgument, MissingMemory

__all__ = ["GuestMemory", "check_span", "read_u32", "write_u32"]

_U32 = struct.Struct("<I")
_EMPTY = np.zeros(0, np.uint8)


def check_span(view: npt.NDArray[np.uint8], ptr: int, length: int, what: str) -> None:
    """Raise :class:`InvalidArgument` unless ``[ptr, ptr + length)`` lies inside ``view``."""
    if ptr < 0 or length < 0 or ptr + length > view.shape[0]:
        raise InvalidArgument(f"{what} [{ptr:#x}, {ptr + length:#x}) is outside guest memory ({view.shape[0]} bytes)")


def read_u32(view: npt.NDArray[np.uint8], ptr: int, what: str) -> int:
    """A little-endian u32 read from guest memory, bounds-checked."""
    check_span(view, ptr, 4, what)
    value: int = _U32.unpack_from(view.data, ptr)[0]
    return value


def write_u32(view: npt.NDArray[np.uint8], ptr: int, value: int, what: str) -> None:
    """A little-endian u32 written to guest memory, bounds-checked."""
    check_span(view, ptr, 4, what)
    _U32.pack_into(view.data, ptr, value)


class GuestMemory:
    """The calling instance's linear memory, as a cached writable numpy ``uint8`` view.

    The view is rebuilt whenever the memory's length changes (``memory.grow``;
    a moving memory only moves when it grows) or, for a memory looked up per
    call, its base address. :attr:`generation` counts rebuilds, so callers can
    key their own caches of views into guest memory on it. Bind the instance's
    memory export once it exists to skip the per-call export lookup; until
    then the memory is looked up on each call through the ``Caller``.
    """

    def __init__(self, memory: wasmtime.Memory | None = None) -> None:
        self._memory: wasmtime.Memory | None = None
        self._ref: Any = None
        self._key: tuple[int, int] = (0, -1)
        self._view: npt.NDArray[np.uint8] = _EMPTY
        self.generation = 0
        if memory is not None:
            self.bind(memory)

    @property
    def bound(self) -> bool:
        """Whether a memory is bound (else it is looked up per call)."""
        return self._memory is not None

    def bind(self, memory: wasmtime.Memory) -> None:
        """Use ``memory`` from now on instead of looking it up per call."""
        self._memory = memory
        self._ref = ctypes.byref(memory._memory)
        self._key = (0, -1)

    def view(self, caller: Any) -> npt.NDArray[np.uint8]:
        """The current view; ``caller`` is a ``wasmtime.Caller`` or anything store-like."""
        if self._memory is not None:
            context = caller._context()
            length = ffi.wasmtime_memory_data_size(context, self._ref)
            if length == self._key[1]:
                return self._view  # same memory, same length: the base has not moved
            return self._rebuild(ffi.wasmtime_memory_data(context, self._ref), length)
        found = caller.get("memory") if isinstance(caller, wasmtime.Caller) else None
        if not isinstance(found, wasmtime.Memory):
            raise MissingMemory("the calling module exports no memory named 'memory'")
        view = self._rebuild(found.data_ptr(caller), found.data_len(caller))
        return view

    def _rebuild(self, pointer: Any, length: int) -> npt.NDArray[np.uint8]:
        address = ctypes.cast(pointer, ctypes.c_void_p).value or 0
        if (address, length) != self._key:
            buffer = memoryview((ctypes.c_ubyte * length).from_address(address)) if length else memoryview(b"")
            self._view = np.frombuffer(buffer, np.uint8)
            self._key = (address, length)
            self.generation += 1
        return self._view
