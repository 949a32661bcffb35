"""The zygote: one process per backend that forks a fresh worker for every isolated graph.

Started once per backend and host process (``python -P -m wasinn_core._isolation._zygote``), it
creates the backend, importing its library: a worker is then a ``fork`` (about 25 ms with torch
loaded) instead of a fresh interpreter and library import. Forking is safe only while the process is
single-threaded; where importing the library started a thread, the zygote starts over without it
(``exec``), and each worker imports the library itself. It never sees a model byte. Each forked
worker confines itself before anything else (:mod:`._confine`), while it is still the only thread
of its process, and serves one graph (:mod:`._worker`).

Requests from the host (JSON lines over the control socket, descriptors with ``SCM_RIGHTS``):
``fork`` (with the worker's socket) → ``{"pid"}``; ``reap`` a worker the host has killed →
``{"status"}``. The zygote never reaps on its own, so a worker's pid cannot be reused before the
host has reaped it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
from typing import Any

__all__ = ["main"]

_MODULE = "wasinn_core._isolation._zygote"


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the host is already gone
        os._exit(0)


def _fork_worker(fd: int, control: socket.socket, params: dict[str, Any], backend: Any) -> int:
    if _threads() != 1:
        raise RuntimeError(f"the zygote has {_threads()} threads; it forks only while single-threaded")
    pid = os.fork()
    if pid != 0:
        os.close(fd)
        return pid
    try:  # the worker: never returns
        control.close()
        from ._worker import run_worker

        run_worker(fd, params, backend)
    finally:
        os._exit(70)


def main() -> None:
    from ._channel import Channel, ChannelClosed

    _die_with_parent()
    fd, factory, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    control = socket.socket(fileno=fd)
    channel = Channel(control)
    try:
        from ._worker import make_backend

        if _threads() != 1:
            raise RuntimeError(f"{_threads()} threads after importing wasinn_core; set OPENBLAS_NUM_THREADS=1")
        backend = make_backend(factory) if mode == "preload" else None
        if backend is not None:
            backend.warm_up()
        if _threads() != 1:  # the library started a thread: start over, leaving the import to each worker
            control.set_inheritable(True)
            os.execv(sys.executable, [sys.executable, "-P", "-m", _MODULE, str(fd), factory, "light"])
        channel.send({"ok": True, "pid": os.getpid(), "preloaded": backend is not None})
    except Exception as exc:
        channel.send({"ok": False, "code": "runtime_error", "message": f"{type(exc).__name__}: {exc}"})
        return
    while True:
        try:
            message, fds = channel.receive_with_fds()
        except ChannelClosed:
            return
        try:
            if message.get("op") == "fork" and len(fds) == 1:
                reply: dict[str, Any] = {"ok": True, "pid": _fork_worker(fds.pop(), control, message, backend)}
            elif message.get("op") == "reap":
                _, status = os.waitpid(int(message["pid"]), 0)
                reply = {"ok": True, "status": status}
            else:
                reply = {"ok": False, "code": "invalid_argument", "message": f"bad request {message.get('op')!r}"}
        except Exception as exc:
            reply = {"ok": False, "code": "runtime_error", "message": f"{type(exc).__name__}: {exc}"}
        for extra in fds:
            os.close(extra)
        channel.send(reply)


if __name__ == "__main__":
    main()
