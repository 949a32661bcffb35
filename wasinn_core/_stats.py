"""Counters of what crosses the host: inferences, tensor bytes in and out, and bytes the host copies.

Every place where wasinn's code (core and the in-tree backends) copies tensor data calls
:func:`record_copy`, so ``wasinn run --stats`` can show how many times each byte is copied per
inference: the claim is one copy in (guest → library buffer) and one copy out (library → guest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

__all__ = ["COPIES", "CopyCounter", "HostStats", "record_copy"]


@final
class CopyCounter:
    """Bytes copied by host code, process-wide (approximate under concurrent use)."""

    __slots__ = ("bytes", "copies")

    def __init__(self) -> None:
        self.bytes = 0
        self.copies = 0

    def add(self, nbytes: int) -> None:
        self.bytes += nbytes
        self.copies += 1


#: The process-wide copy counter.
COPIES = CopyCounter()


def record_copy(nbytes: int) -> None:
    """Count one copy of ``nbytes`` of tensor data made by host code (backends call this too)."""
    COPIES.bytes += nbytes
    COPIES.copies += 1


@dataclass
class HostStats:
    """What a host's instances did: computes, tensor bytes in (``set_input``) and out (``get_output``), and
    internal errors."""

    computes: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    #: exceptions other than :class:`~wasinn_core.WasiNNError` that reached a host function (each became
    #: ``runtime_error`` and an error log line with its traceback): each one is a bug in wasinn or a plugin
    internal_errors: int = 0

    def describe(self) -> str:
        """One line for ``wasinn run --stats``: computes, bytes moved, bytes copied and copies per byte."""
        moved = self.bytes_in + self.bytes_out
        per = f"{COPIES.bytes / moved:.2f}" if moved else "-"
        return (
            f"{self.computes} computes, {self.bytes_in} bytes in, {self.bytes_out} bytes out, "
            f"{COPIES.bytes} bytes copied by the host in {COPIES.copies} copies ({per} copies per byte moved)"
        )
