"""The control channel between the host and a worker: length-prefixed JSON over a Unix socket.

The worker is the untrusted side: the host never unpickles anything from it, reads at most
:data:`MAX_MESSAGE` bytes per message, waits no longer than the call's deadline, and treats a
message that does not parse, or a closed socket, as the worker's death. File descriptors (arenas)
travel host to worker only, as ``SCM_RIGHTS``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from typing import Any, final

from .._errors import (
    BackendError,
    Busy,
    ErrorCode,
    InvalidArgument,
    InvalidEncoding,
    MissingMemory,
    NotFound,
    TooLarge,
    UnsupportedOperation,
    WasiNNError,
)

__all__ = ["MAX_MESSAGE", "Channel", "ChannelClosed", "ChannelTimeout", "error_from_reply", "error_reply"]

#: The largest control message accepted (a reply carries names, shapes and offsets, never tensors).
MAX_MESSAGE = 1 << 20
_LEN = struct.Struct("<I")
_MESSAGE_CHARS = 2000

_ERRORS: dict[str, type[WasiNNError]] = {
    ErrorCode.INVALID_ARGUMENT.value: InvalidArgument,
    ErrorCode.INVALID_ENCODING.value: InvalidEncoding,
    ErrorCode.MISSING_MEMORY.value: MissingMemory,
    ErrorCode.BUSY.value: Busy,
    ErrorCode.RUNTIME_ERROR.value: BackendError,
    ErrorCode.UNSUPPORTED_OPERATION.value: UnsupportedOperation,
    ErrorCode.TOO_LARGE.value: TooLarge,
    ErrorCode.NOT_FOUND.value: NotFound,
}


class ChannelClosed(Exception):
    """The other side is gone, or sent something that is not a message."""


class ChannelTimeout(Exception):
    """No reply before the deadline."""


@final
class Channel:
    """One end of a worker's control socket."""

    __slots__ = ("_buf", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray(64 * 1024)

    def send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        body = json.dumps(message, separators=(",", ":")).encode()
        data = _LEN.pack(len(body)) + body
        try:
            if fds:
                socket.send_fds(self.sock, [data], fds)
            else:
                self.sock.sendall(data)
        except OSError as exc:
            raise ChannelClosed(f"cannot write to the worker: {exc}") from None

    def receive(self, deadline: float | None) -> dict[str, Any]:
        """The next message; ``ChannelTimeout`` after ``deadline`` (``time.monotonic``), ``ChannelClosed``."""
        return self._body(self._read(_LEN.size, deadline), deadline)

    def receive_with_fds(self) -> tuple[dict[str, Any], list[int]]:
        """The next message and the descriptors sent with it (the worker's side: no deadline)."""
        try:
            head, fds, _, _ = socket.recv_fds(self.sock, _LEN.size, 8)
        except OSError as exc:
            raise ChannelClosed(f"cannot read: {exc}") from None
        if not head:
            raise ChannelClosed("the other side closed the socket")
        if len(head) < _LEN.size:
            head += self._read(_LEN.size - len(head), None)
        return self._body(head, None), list(fds)

    def _body(self, head: bytes, deadline: float | None) -> dict[str, Any]:
        (length,) = _LEN.unpack(head)
        if length > MAX_MESSAGE:
            raise ChannelClosed(f"the worker sent a {length}-byte message (at most {MAX_MESSAGE})")
        body = self._read(length, deadline)
        try:
            message = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ChannelClosed(f"the worker sent a message that is not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ChannelClosed("the worker sent a message that is not a JSON object")
        return message

    def _read(self, n: int, deadline: float | None) -> bytes:
        if len(self._buf) < n:
            self._buf = bytearray(n)
        view = memoryview(self._buf)[:n]
        got = 0
        while got < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChannelTimeout()
                self.sock.settimeout(left)
            else:
                self.sock.settimeout(None)
            try:
                count = self.sock.recv_into(view[got:])
            except TimeoutError:
                raise ChannelTimeout() from None
            except OSError as exc:
                raise ChannelClosed(f"cannot read from the worker: {exc}") from None
            if count == 0:
                raise ChannelClosed("the worker closed its end")
            got += count
        return bytes(view)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def error_reply(exc: BaseException) -> dict[str, Any]:
    """A reply carrying ``exc`` (worker side): its code and message; other exceptions are ``runtime_error``."""
    if isinstance(exc, WasiNNError):
        return {"ok": False, "code": exc.code.value, "message": exc.message}
    return {"ok": False, "code": ErrorCode.RUNTIME_ERROR.value, "message": f"{type(exc).__name__}: {exc}"}


def error_from_reply(reply: dict[str, Any], where: str) -> WasiNNError:
    """The error a worker reported (host side), checked: an unknown code is a ``runtime_error``."""
    cls = _ERRORS.get(str(reply.get("code")), BackendError)
    message = str(reply.get("message", ""))[:_MESSAGE_CHARS]
    message = "".join(c if c.isprintable() else " " for c in message)  # no forged log lines
    return cls(message or f"{where} failed in the worker with no message")
