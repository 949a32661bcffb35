"""The one error tree of wasinn.

Every error a guest can observe is a :class:`WasiNNError` subclass carrying a
symbolic :class:`ErrorCode`; each ABI front end turns the code into its own
number (witx ``nn_errno`` or a WIT ``error-code``) in one place. Backends raise
these classes (or any other exception, which the host reports as
``runtime_error`` with the library's message).

Errors of the embedder's own making are ordinary Python exceptions::

    Exception
    ├── WasiNNError                 (errno visible to the guest)
    │   ├── InvalidArgument         invalid_argument
    │   ├── InvalidEncoding         invalid_encoding
    │   ├── MissingMemory           missing_memory
    │   ├── Busy                    busy
    │   ├── BackendError            runtime_error
    │   │   └── BackendErrno        a backend's own witx errno (WasmEdge GGML: 100-103)
    │   ├── UnsupportedOperation    unsupported_operation
    │   ├── TooLarge                too_large
    │   └── NotFound                not_found
    ├── ConfigError (ValueError)    a bad config file, object or CLI flag
    └── PluginError                 a plugin that cannot be loaded or is invalid
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = [
    "BackendErrno",
    "BackendError",
    "Busy",
    "ConfigError",
    "ErrorCode",
    "InvalidArgument",
    "InvalidEncoding",
    "MissingMemory",
    "NotFound",
    "PluginError",
    "TooLarge",
    "UnsupportedOperation",
    "WasiNNError",
]


class ErrorCode(enum.Enum):
    """Symbolic wasi-nn error codes (the witx ``nn_errno`` names, without success)."""

    INVALID_ARGUMENT = "invalid_argument"
    INVALID_ENCODING = "invalid_encoding"
    MISSING_MEMORY = "missing_memory"
    BUSY = "busy"
    RUNTIME_ERROR = "runtime_error"
    UNSUPPORTED_OPERATION = "unsupported_operation"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"


class WasiNNError(Exception):
    """Base of every error a guest sees as an errno."""

    code: ClassVar[ErrorCode] = ErrorCode.RUNTIME_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(WasiNNError):
    """A handle, pointer, length, index, shape or type the call cannot accept."""

    code = ErrorCode.INVALID_ARGUMENT


class InvalidEncoding(WasiNNError):
    """An unknown graph encoding, or one that no installed backend claims."""

    code = ErrorCode.INVALID_ENCODING


class MissingMemory(WasiNNError):
    """The caller exports no linear memory named ``memory``."""

    code = ErrorCode.MISSING_MEMORY


class Busy(WasiNNError):
    """A resource is in use or a per-instance count limit is reached."""

    code = ErrorCode.BUSY


class BackendError(WasiNNError):
    """The backend library failed (``runtime_error``)."""

    code = ErrorCode.RUNTIME_ERROR


class BackendErrno(BackendError):
    """A backend's own outcome that guests branch on, with the backend's own witx errno.

    WasmEdge's GGML backend returns 100 (end of sequence), 101 (context full), 102 (prompt too
    long) and 103 (model not found) through ``wasi_ephemeral_nn``; the witx ABI returns ``errno``
    as is, the WIT ABI (which has no such codes) a ``runtime-error`` whose data names the cause.

    :param errno: the witx errno, 100 or more (below are the spec's codes).
    :param quiet: an expected outcome (the end of an answer), logged at info rather than as a warning.
    """

    def __init__(self, errno: int, message: str, *, quiet: bool = False) -> None:
        if not 100 <= errno <= 0xFFFF:
            raise ValueError(f"a backend's own errno is in 100..65535, got {errno}")
        super().__init__(message)
        self.errno = errno
        self.quiet = quiet


class UnsupportedOperation(WasiNNError):
    """The operation or target is not available (e.g. no GPU, strict policy)."""

    code = ErrorCode.UNSUPPORTED_OPERATION


class TooLarge(WasiNNError):
    """A buffer is too small, or a size limit is exceeded.

    ``required`` is the byte size that would have been needed, when known.
    """

    code = ErrorCode.TOO_LARGE

    def __init__(self, message: str, required: int | None = None) -> None:
        super().__init__(message)
        self.required = required


class NotFound(WasiNNError):
    """No named model has this name."""

    code = ErrorCode.NOT_FOUND


class ConfigError(ValueError):
    """A bad configuration value. The message names the source, the key and what is allowed."""

    def __init__(self, source: str, key: str, message: str) -> None:
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.key = key


class PluginError(Exception):
    """A plugin failed to load or returned something invalid."""
