"""Shared memory between the host and a worker: sealed anonymous files, mapped by both.

The host creates every arena (``memfd_create``), sizes it and seals its size before the worker sees
it: a worker cannot shrink a mapping the host reads from (which would make the host fault), and has
no file system to create one in. Tensors cross by one copy into an arena on one side and one copy
out of it on the other; control messages carry only offsets and lengths, checked by the reader.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from collections.abc import Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = ["Arena"]

_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
_MIN = 64 * 1024


@final
class Arena:
    """A fixed-size shared byte region: ``view`` is a writable ``uint8`` numpy array over all of it."""

    __slots__ = ("_map", "fd", "size", "view")

    def __init__(self, fd: int, size: int, mapping: mmap.mmap) -> None:
        self.fd = fd
        self.size = size
        self._map = mapping
        self.view: npt.NDArray[np.uint8] = np.frombuffer(mapping, np.uint8)

    @classmethod
    def create(cls, size: int, name: str = "wasinn") -> Arena:
        """A new sealed arena of at least ``size`` bytes (host side)."""
        size = max(_MIN, -(-size // mmap.PAGESIZE) * mmap.PAGESIZE)
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            return cls(fd, size, mmap.mmap(fd, size))
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def sealed_copy(cls, chunks: Sequence[memoryview], name: str = "wasinn") -> tuple[int, list[tuple[int, int]]]:
        """A new sealed anonymous file holding ``chunks`` one after another (host side, not mapped here);
        returns its descriptor (the caller closes it) and each chunk's ``(offset, length)``.

        ``write`` copies into the file's pages directly, faster than faulting in a fresh mapping.
        """
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            spans, offset = [], 0
            for chunk in chunks:
                data = memoryview(chunk).cast("B")
                spans.append((offset, len(data)))
                done = 0
                while done < len(data):
                    done += os.write(fd, data[done:])
                offset += len(data)
            os.ftruncate(fd, max(_MIN, -(-offset // mmap.PAGESIZE) * mmap.PAGESIZE))
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            return fd, spans
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def attach(cls, fd: int, *, populate: bool = False) -> Arena:
        """Map an arena received from the host (worker side); its size is the file's.

        ``populate`` maps every page at once (a model the host has written whole), instead of one page
        fault at a time as the library reads it.
        """
        size = os.fstat(fd).st_size
        flags = mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0)
        return cls(fd, size, mmap.mmap(fd, size, flags=flags))

    def region(self, offset: int, nbytes: int) -> npt.NDArray[np.uint8]:
        """``nbytes`` at ``offset``; ``ValueError`` if that is not inside the arena."""
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            raise ValueError(f"region [{offset}, {offset + nbytes}) is outside the {self.size}-byte arena")
        return self.view[offset : offset + nbytes]

    def close(self) -> None:
        """Unmap and close (views of it must be gone)."""
        view: Any = self.view
        self.view = np.zeros(0, np.uint8)
        del view
        with contextlib.suppress(BufferError):  # a view is still alive: the mapping goes with it
            self._map.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)
