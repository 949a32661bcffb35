"""The control channel between the host and a worker: length-prefixed JSON over a Unix socket.

The worker is the untrusted side: the host never unpickles anything from it, reads at most
:data:`MAX_MESSAGE` bytes per message, waits no longer than the call's deadline, and treats a
message that does not parse, or a closed socket, as the worker's death. File descriptors (arenas)
travel host to worker only, as ``SCM_RIGHTS``.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import struct
import time
from typing import Any, final

from .._errors import (
    BackendErrno,
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
#: The longest a reader polls before it sleeps in the kernel. Waking a sleeping process costs tens of
#: microseconds; a reader that saw the last messages come quickly polls for about that long again (1.5×
#: the recent wait, up to this), one that waits for long computes sleeps at once. Off where there is one
#: CPU: polling would keep the other side from running.
SPIN_MAX_S = 400e-6 if (os.cpu_count() or 1) > 1 else 0.0
_LEN = struct.Struct("<I")
_MAX_FDS = 8
_FDS_SPACE = socket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)
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
    """One end of a worker's control socket.

    The socket stays blocking; a deadline becomes the kernel's receive timeout (``SO_RCVTIMEO``), set
    only when it changes, and a message is read with as few ``recv`` calls as the kernel allows.
    """

    __slots__ = ("_buf", "_data", "_timeout", "_wait", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.settimeout(None)
        self._buf = bytearray(64 * 1024)
        self._data = bytearray()  # received, not yet consumed
        self._timeout = 0.0  # SO_RCVTIMEO now set (0: none)
        self._wait = SPIN_MAX_S  # recent time to the next message (a moving average), for polling

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
        if not self._data:
            start = time.perf_counter()
            self._poll(start)
            if not self._data:
                self._fill(_LEN.size, deadline)
            self._waited(start)
        self._fill(_LEN.size, deadline)
        (length,) = _LEN.unpack_from(self._data)
        if length > MAX_MESSAGE:
            raise ChannelClosed(f"the worker sent a {length}-byte message (at most {MAX_MESSAGE})")
        self._fill(_LEN.size + length, deadline)
        body = bytes(self._data[_LEN.size : _LEN.size + length])
        del self._data[: _LEN.size + length]
        return _parse(body)

    def receive_with_fds(self) -> tuple[dict[str, Any], list[int]]:
        """The next message and the descriptors sent with it (the worker's side: no deadline)."""
        fds: list[int] = []
        if not self._data:
            start = time.perf_counter()
            end = start + self._spin()
            while True:
                try:
                    flags = socket.MSG_DONTWAIT if time.perf_counter() < end else 0
                    # into the channel's own buffer: socket.recv_fds allocates one per call (tens of µs)
                    count, ancillary, msg_flags, _ = self.sock.recvmsg_into([self._buf], _FDS_SPACE, flags)
                    break
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise ChannelClosed(f"cannot read: {exc}") from None
            fds = _fds_in(ancillary)
            if msg_flags & socket.MSG_CTRUNC:
                for fd in fds:
                    os.close(fd)
                raise ChannelClosed(f"a message carried more than {_MAX_FDS} descriptors")
            if not count:
                raise ChannelClosed("the other side closed the socket")
            self._data += memoryview(self._buf)[:count]
            self._waited(start)
        return self.receive(None), fds

    def _spin(self) -> float:
        return min(SPIN_MAX_S, 1.5 * self._wait) if self._wait < SPIN_MAX_S else 0.0

    def _waited(self, start: float) -> None:
        self._wait = 0.8 * self._wait + 0.2 * (time.perf_counter() - start)

    def _poll(self, start: float) -> None:
        """Take what arrives while polling (see :data:`SPIN_MAX_S`), without sleeping."""
        end = start + self._spin()
        while time.perf_counter() < end:
            try:
                count = self.sock.recv_into(self._buf, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                return  # the blocking read says what is wrong
            if count:
                self._data += memoryview(self._buf)[:count]
            return

    def _fill(self, n: int, deadline: float | None) -> None:
        """Receive until ``n`` bytes are buffered."""
        while len(self._data) < n:
            self._set_timeout(deadline)
            try:
                count = self.sock.recv_into(self._buf)
            except (BlockingIOError, TimeoutError):
                raise ChannelTimeout() from None
            except OSError as exc:
                raise ChannelClosed(f"cannot read from the worker: {exc}") from None
            if count == 0:
                raise ChannelClosed("the worker closed its end")
            self._data += memoryview(self._buf)[:count]

    def _set_timeout(self, deadline: float | None) -> None:
        want = 0.0
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout()
            want = max(left, 0.001)
        if abs(want - self._timeout) > 0.05 or (want == 0.0) != (self._timeout == 0.0):
            seconds = int(want)
            value = struct.pack("@ll", seconds, int((want - seconds) * 1e6))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
            self._timeout = want

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _fds_in(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors an ``SCM_RIGHTS`` message brought (whole ints only)."""
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return list(fds)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ChannelClosed(f"the worker sent a message that is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ChannelClosed("the worker sent a message that is not a JSON object")
    return message


def error_reply(exc: BaseException) -> dict[str, Any]:
    """A reply carrying ``exc`` (worker side): its code and message; other exceptions are ``runtime_error``."""
    if isinstance(exc, BackendErrno):  # a backend's own witx errno (GGML's 100-103) crosses as is
        return {"ok": False, "code": exc.code.value, "message": exc.message, "errno": exc.errno, "quiet": exc.quiet}
    if isinstance(exc, WasiNNError):
        return {"ok": False, "code": exc.code.value, "message": exc.message}
    return {"ok": False, "code": ErrorCode.RUNTIME_ERROR.value, "message": f"{type(exc).__name__}: {exc}"}


def error_from_reply(reply: dict[str, Any], where: str) -> WasiNNError:
    """The error a worker reported (host side), checked: an unknown code is a ``runtime_error``."""
    cls = _ERRORS.get(str(reply.get("code")), BackendError)
    message = str(reply.get("message", ""))[:_MESSAGE_CHARS]
    message = "".join(c if c.isprintable() else " " for c in message)  # no forged log lines
    message = message or f"{where} failed in the worker with no message"
    errno = reply.get("errno")
    if cls is BackendError and type(errno) is int and 100 <= errno <= 0xFFFF:
        return BackendErrno(errno, message, quiet=reply.get("quiet") is True)
    return cls(message)
