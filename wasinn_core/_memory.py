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

from ._errors import InvalidArgument, MissingMemory

__all__ = ["GuestMemory", "check_span", "read_u32", "write_u32"]

_U32 = struct.Struct("<I")


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

    The view is rebuilt whenever the memory's base address or length changes
    (``memory.grow``, or a moving memory). Bind the instance's memory export
    once it exists to skip the per-call export lookup; until then the memory
    is looked up on each call through the ``Caller``.
    """

    def __init__(self, memory: wasmtime.Memory | None = None) -> None:
        self._memory = memory
        self._key: tuple[int, int] = (0, -1)
        self._view: npt.NDArray[np.uint8] = np.zeros(0, np.uint8)

    def bind(self, memory: wasmtime.Memory) -> None:
        """Use ``memory`` from now on instead of looking it up per call."""
        self._memory = memory

    def view(self, caller: Any) -> npt.NDArray[np.uint8]:
        """The current view; ``caller`` is a ``wasmtime.Caller`` or store."""
        memory = self._memory
        if memory is None:
            found = caller.get("memory") if isinstance(caller, wasmtime.Caller) else None
            if not isinstance(found, wasmtime.Memory):
                raise MissingMemory("the calling module exports no memory named 'memory'")
            memory = found
        length = memory.data_len(caller)
        address = ctypes.cast(memory.data_ptr(caller), ctypes.c_void_p).value or 0
        if (address, length) != self._key:
            buffer = memoryview((ctypes.c_ubyte * length).from_address(address)) if length else memoryview(b"")
            self._view = np.frombuffer(buffer, np.uint8)
            self._key = (address, length)
        return self._view
