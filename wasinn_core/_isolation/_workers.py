"""Worker processes seen from the host: zygotes (one per backend, process-wide) and the workers they fork.

A :class:`Worker` is one confined process serving one graph. Every call has a deadline; a worker
that misses it, closes its socket, sends something that is not a message, or dies, is killed
(``SIGKILL`` through a pidfd, so a reused pid is never hit), reaped, and reported with what
happened to it; the graph and its contexts are dead from then on, nothing else is.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any, final

from .._errors import BackendError
from ._channel import Channel, ChannelClosed, ChannelTimeout, error_from_reply

__all__ = ["Worker", "Zygote", "forget_domain", "zygote_for"]

log = logging.getLogger("wasinn.isolation")

#: Seconds a zygote or a freshly forked worker may take to be ready (it may import a big library).
STARTUP_S = 180.0
#: Seconds the zygote may take to fork or reap.
ZYGOTE_CALL_S = 30.0
_ZYGOTE = "wasinn_core._isolation._zygote"
#: Idle workers kept per domain (guest) and backend, for its next load.
_IDLE_PER_DOMAIN = 2
#: Worker settings (confinement, memory cap) spares are kept for, the most recently used: hosts with
#: many different limits in one process do not each leave a spare process behind.
_SPARE_SETTINGS = 4

# What a worker's environment keeps of the host's: locale, library threading and device selection,
# the plugin and library search paths. Not the host's secrets (tokens, credentials) nor its HOME.
_ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "PYTHONPATH", "LD_LIBRARY_PATH", "CI")
_ENV_PREFIXES = ("LC_", "OMP_", "MKL_", "KMP_", "GOMP_", "CUDA_", "NVIDIA_", "HIP_", "ROCR_", "OV_", "WASINN_")


def _worker_env(scratch: str, import_root: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith(_ENV_PREFIXES)}
    if import_root:  # where the host found the backend's plugin (a plugin not installed, say)
        env["PYTHONPATH"] = os.pathsep.join([import_root, *filter(None, [env.get("PYTHONPATH")])])
    # numpy's BLAS starts threads at import unless told not to; the zygote forks only while single-threaded
    env.update(OPENBLAS_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", HOME=scratch, TMPDIR=scratch)
    return env


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended with status {status:#x}"


@final
class Worker:
    """A forked, confined worker serving one graph; calls are serialized."""

    def __init__(self, zygote: Zygote, pid: int, channel: Channel, scratch: str, key: str) -> None:
        self.zygote = zygote
        self.key = key
        self.started = False
        self.pid = pid
        self.channel = channel
        self.scratch = scratch
        self.pidfd = os.pidfd_open(pid)
        self.lock = threading.Lock()
        self.confinement: dict[str, Any] = {}
        #: why the worker is gone, once it is
        self.dead: str | None = None

    @property
    def name(self) -> str:
        return f"{self.zygote.backend} worker (pid {self.pid})"

    def ready(self, deadline_s: float) -> None:
        """Wait for the worker's start-up report (once)."""
        if self.started:
            return
        self.started = True
        reply = self._receive("start", deadline_s, "its start-up")
        if not reply.get("ok"):
            error = error_from_reply(reply, "start-up")
            self.close()
            raise BackendError(f"the {self.name} could not start: {error.message}")
        confinement = reply.get("confinement")
        self.confinement = confinement if isinstance(confinement, dict) else {}

    def call(
        self, message: dict[str, Any], deadline_s: float | None, limit: str, fds: Sequence[int] = ()
    ) -> dict[str, Any]:
        """Send a request and return the worker's reply; its error, or ``BackendError`` if it died."""
        op = str(message.get("op"))
        with self.lock:
            if self.dead is not None:
                raise BackendError(f"the {self.name} is gone ({self.dead}); load the model again")
            try:
                self.channel.send(message, list(fds))
            except ChannelClosed:
                raise self._died(op) from None
            reply = self._receive(op, deadline_s, limit)
        if not reply.get("ok"):
            raise error_from_reply(reply, op)
        return reply

    def _receive(self, op: str, deadline_s: float | None, limit: str) -> dict[str, Any]:
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        try:
            return self.channel.receive(deadline)
        except ChannelTimeout:
            why = f"did not finish {op} within {deadline_s:g} s ({limit})"
            self._kill(why)
            log.error("the %s %s; it was killed", self.name, why)
            raise BackendError(f"the {self.name} {why}; it was killed") from None
        except ChannelClosed as exc:
            raise self._died(op, str(exc)) from None

    def _died(self, op: str, detail: str = "") -> BackendError:
        status = self._kill("")
        why = f"died during {op}: {status}"
        self.dead = why
        log.error("the %s %s%s", self.name, why, f" ({detail})" if detail and "closed" not in detail else "")
        return BackendError(f"the {self.name} {why}; the graph is gone, the host and other graphs are not")

    def _kill(self, why: str) -> str:
        """SIGKILL (idempotent), reap through the zygote; returns how the process ended."""
        if self.dead is not None:
            return self.dead
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        status = self.zygote.reap(self.pid)
        self.dead = why or status
        with contextlib.suppress(OSError):
            os.close(self.pidfd)
        self.channel.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
        return status

    def close(self) -> None:
        """End the worker (its graph is released): kill, reap, remove its scratch folder."""
        with self.lock:
            self._kill("closed")


@final
class Zygote:
    """The process that forks the workers of one backend (see :mod:`._zygote`)."""

    def __init__(self, backend: str, factory: str, warm: int = 1, import_root: str | None = None) -> None:
        self.backend = backend
        self.factory = factory
        self.import_root = import_root
        self.warm = warm
        self._idle: dict[tuple[int, str], list[Worker]] = {}
        self._spares: dict[str, list[Worker]] = {}
        self._workers: weakref.WeakSet[Worker] = weakref.WeakSet()  # every live one, to end with the zygote
        self.root = tempfile.mkdtemp(prefix=f"wasinn-{backend}-")
        self.lock = threading.Lock()
        self.preloaded = False
        self.last_words: collections.deque[str] = collections.deque(maxlen=20)
        self._count = 0
        self._start()

    def _start(self) -> None:
        host_end, zygote_end = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", _ZYGOTE, str(zygote_end.fileno()), self.factory, "preload"],
            pass_fds=(zygote_end.fileno(),),
            env=_worker_env(self.root, self.import_root),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # the host's stdout belongs to the guest
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        zygote_end.close()
        self.channel = Channel(host_end)
        threading.Thread(target=self._relay_stderr, name=f"wasinn-{self.backend}-stderr", daemon=True).start()
        try:
            reply = self.channel.receive(time.monotonic() + STARTUP_S)
        except (ChannelClosed, ChannelTimeout):
            self.close()
            raise BackendError(
                f"the {self.backend} zygote did not start; its last words: {' | '.join(self.last_words) or 'none'}"
            ) from None
        if not reply.get("ok"):
            self.close()
            raise BackendError(f"the {self.backend} zygote could not start: {error_from_reply(reply, 'start').message}")
        self.preloaded = bool(reply.get("preloaded"))
        log.info(
            "%s zygote pid %d started (%s)",
            self.backend,
            self.process.pid,
            "library preloaded" if self.preloaded else "library imported per worker",
        )

    def _relay_stderr(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()[:500]
            line = "".join(c if c.isprintable() else " " for c in line)
            if line:
                self.last_words.append(line)
                log.debug("%s worker: %s", self.backend, line)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _request(self, message: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        try:
            self.channel.send(message, list(fds))
            reply = self.channel.receive(time.monotonic() + ZYGOTE_CALL_S)
        except (ChannelClosed, ChannelTimeout) as exc:
            self.close()
            raise BackendError(f"the {self.backend} zygote stopped answering ({exc or 'timeout'})") from None
        if not reply.get("ok"):
            raise error_from_reply(reply, str(message.get("op")))
        return reply

    def _fork(self, params: dict[str, Any], key: str) -> Worker:
        """A new worker, forked and starting (not waited for); call with the lock held."""
        host_end, worker_end = socket.socketpair()
        if not self.alive:
            self._start()
        self._count += 1
        scratch = os.path.join(self.root, f"w{self._count}")
        try:
            reply = self._request(
                {"op": "fork", **params, "scratch": scratch, "factory": self.factory}, [worker_end.fileno()]
            )
        finally:
            worker_end.close()
        pid = reply.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            host_end.close()
            raise BackendError(f"the {self.backend} zygote answered a fork with {pid!r}")
        worker = Worker(self, pid, Channel(host_end), scratch, key)
        self._workers.add(worker)
        return worker

    def take(self, params: dict[str, Any], domain: object | None) -> Worker:
        """A ready worker for one graph: an idle one of ``domain`` (the same guest), a spare, or a new one.

        Workers are reused only within one domain: a worker that held a guest's model never serves
        another guest.
        """
        key = json.dumps(params, sort_keys=True)
        with self.lock:
            idle = self._idle.get((id(domain), key)) if domain is not None else None
            if idle:
                return idle.pop()
            spares = self._spares.setdefault(key, [])
            worker = spares.pop(0) if spares else self._fork(params, key)
        worker.ready(STARTUP_S)
        return worker

    def replenish(self, params: dict[str, Any]) -> None:
        """Start the spare workers taken since the last call, in the background.

        Called once a load is over: a spare importing its library beside a load would slow that load
        down wherever cores are few.
        """
        if self.warm:
            key = json.dumps(params, sort_keys=True)
            threading.Thread(target=self._refill, args=(params, key), name=f"wasinn-{self.backend}-spare").start()

    def _refill(self, params: dict[str, Any], key: str) -> None:
        with self.lock:
            spares = self._spares.pop(key, [])
            self._spares[key] = spares  # the most recently used settings last
            stale = []
            while len(self._spares) > _SPARE_SETTINGS:  # settings no load has used for a while: no spares
                stale += self._spares.pop(next(iter(self._spares)))
            try:
                while len(spares) < self.warm and self.alive:
                    spares.append(self._fork(params, key))
            except BackendError as exc:  # the next load forks its own worker and reports the problem
                log.debug("no spare %s worker: %s", self.backend, exc.message)
        for worker in stale:
            worker.close()

    def give_back(self, worker: Worker, domain: object | None) -> None:
        """A worker whose graph is released: kept for its domain's next load, or ended."""
        if domain is not None and worker.dead is None:
            with contextlib.suppress(BackendError):
                worker.call({"op": "close_graph"}, ZYGOTE_CALL_S, "releasing the graph")
            with self.lock:
                idle = self._idle.setdefault((id(domain), worker.key), [])
                if worker.dead is None and len(idle) < _IDLE_PER_DOMAIN:
                    if not idle:
                        weakref.finalize(domain, self.forget, id(domain))
                    idle.append(worker)
                    return
        worker.close()

    def forget(self, domain_id: int) -> None:
        """End the idle workers of a domain that is gone."""
        with self.lock:
            keys = [k for k in self._idle if k[0] == domain_id]
            workers = [w for k in keys for w in self._idle.pop(k)]
        for worker in workers:
            worker.close()

    def reap(self, pid: int) -> str:
        """Collect a killed worker's exit status (the zygote is its parent)."""
        with self.lock:
            if not self.alive:
                return "gone with its zygote"
            try:
                status = self._request({"op": "reap", "pid": pid}).get("status")
            except BackendError as exc:
                return f"not reaped: {exc.message}"
        return _describe_status(status) if isinstance(status, int) else "ended"

    def close(self) -> None:
        """End the zygote and every worker it forked (they die with it); later calls on them say so, quietly."""
        with self.lock:
            workers = list(self._workers)
            self._idle.clear()
            self._spares.clear()
        for worker in workers:
            worker.dead = worker.dead or "closed with its zygote"
            worker.channel.close()
        self.channel.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


_ZYGOTES: dict[tuple[str, str, str | None], Zygote] = {}
_LOCK = threading.Lock()


def forget_domain(domain: object) -> None:
    """End every idle worker kept for ``domain`` (its session closed)."""
    with _LOCK:
        zygotes = list(_ZYGOTES.values())
    for zygote in zygotes:
        zygote.forget(id(domain))


def zygote_for(backend: str, factory: str, warm: int = 1, import_root: str | None = None) -> Zygote:
    """The process-wide zygote of a backend, started on first use (and again if it died)."""
    key = (backend, factory, import_root)
    with _LOCK:
        zygote = _ZYGOTES.get(key)
        if zygote is None or not zygote.alive:
            zygote = _ZYGOTES[key] = Zygote(backend, factory, warm, import_root)
        zygote.warm = warm
        return zygote


@atexit.register
def _close_all() -> None:
    with _LOCK:
        zygotes = list(_ZYGOTES.values())
        _ZYGOTES.clear()
    for zygote in zygotes:
        zygote.close()
