"""Running a WASI preview1 command module with wasi-nn, as ``wasinn run`` does."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import final

import wasmtime

from ._config import Limits
from ._host import Host

__all__ = ["EXIT_TRAP", "RunSpec", "run_command"]

log = logging.getLogger("wasinn.run")

#: Exit status after a trap: 128 + SIGABRT, as wasmtime's CLI does on Unix.
EXIT_TRAP = 134


@final
@dataclass(frozen=True, slots=True)
class RunSpec:
    """What to run and the WASI environment to give it.

    :param module: the ``.wasm`` (or ``.wat``) file.
    :param args: arguments after the module name.
    :param dirs: preopened directories as ``(host_path, guest_path, read_only)``.
    :param env: environment variables for the guest.
    :param argv0: ``argv[0]``; the module's file name by default.
    :param stdout: a file for the guest's stdout (default: inherit the host's).
    :param stderr: a file for the guest's stderr and the trap message (default: inherit).
    """

    module: Path
    args: Sequence[str] = ()
    dirs: Sequence[tuple[str, str, bool]] = ()
    env: Sequence[tuple[str, str]] = field(default_factory=tuple)
    argv0: str | None = None
    stdout: Path | None = None
    stderr: Path | None = None


class GuestError(Exception):
    """The module could not be compiled, linked or started."""


def run_command(host: Host, spec: RunSpec) -> int:
    """Run ``spec`` to completion; returns the process exit status.

    The guest's own exit code is returned as is; a trap prints its message on
    stderr and gives :data:`EXIT_TRAP`. Raises :class:`GuestError` when the
    module cannot be loaded or instantiated. The guest limits of the host's
    config apply: ``guest_timeout_s`` (epoch interruption: it stops wasm code,
    not a host call already running), ``guest_fuel`` and ``guest_memory_bytes``.
    """
    limits = host.config.limits
    config = wasmtime.Config()
    config.epoch_interruption = limits.guest_timeout_s is not None
    config.consume_fuel = limits.guest_fuel is not None
    engine = wasmtime.Engine(config)
    try:
        module = wasmtime.Module.from_file(engine, os.fspath(spec.module))
    except (OSError, wasmtime.WasmtimeError) as exc:
        raise GuestError(f"cannot load module {spec.module}: {exc}") from exc
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    if limits.guest_fuel is not None:
        store.set_fuel(limits.guest_fuel)
    if limits.guest_memory_bytes is not None:
        store.set_limits(memory_size=limits.guest_memory_bytes)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [spec.argv0 or spec.module.name, *spec.args]
    wasi.env = [list(kv) for kv in spec.env]
    for host_dir, guest_dir, read_only in spec.dirs:
        wasi.preopen_dir(host_dir, guest_dir, fs_mutable=not read_only)
    wasi.inherit_stdin()
    if spec.stdout is None:
        wasi.inherit_stdout()
    else:
        wasi.stdout_file = os.fspath(spec.stdout)
    if spec.stderr is None:
        wasi.inherit_stderr()
    else:
        wasi.stderr_file = os.fspath(spec.stderr)
    store.set_wasi(wasi)
    binding = host.add_to_linker(linker, store)
    try:
        try:
            instance = linker.instantiate(store, module)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise GuestError(f"cannot instantiate {spec.module.name}: {exc}") from exc
        exports = instance.exports(store)
        memory = exports.get("memory")
        if isinstance(memory, wasmtime.Memory):
            binding.bind_memory(memory)
        start = exports.get("_start")
        if not isinstance(start, wasmtime.Func):
            raise GuestError(f"{spec.module.name} exports no _start function: it is not a WASI command")
        timer = None
        if limits.guest_timeout_s is not None:
            store.set_epoch_deadline(1)
            timer = threading.Timer(limits.guest_timeout_s, engine.increment_epoch)
            timer.daemon = True
            timer.start()
        try:
            start(store)
        except wasmtime.ExitTrap as exc:
            return exc.code
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            sys.stdout.flush()
            message = f"wasinn: error: {spec.module.name} trapped: {_why(exc, limits)}{exc}\n"
            if spec.stderr is None:
                sys.stderr.write(message)
            else:
                with open(spec.stderr, "a", encoding="utf-8") as f:
                    f.write(message)
            return EXIT_TRAP
        finally:
            if timer is not None:
                timer.cancel()
        return 0
    finally:
        binding.session.close()


def _why(exc: Exception, limits: Limits) -> str:
    """A plain reason for the traps that limits cause."""
    code = getattr(exc, "trap_code", None)
    if code == wasmtime.TrapCode.INTERRUPT:
        return f"it ran out of time (guest_timeout_s = {limits.guest_timeout_s:g}): "
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return f"it ran out of fuel (guest_fuel = {limits.guest_fuel}): "
    return ""
