"""Running a WASI command with wasi-nn, as ``wasinn run`` does: a preview1 core module or a preview2 component."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import wasmtime

from ._config import Limits
from ._host import Host
from ._session import Session

__all__ = ["EXIT_TRAP", "RunSpec", "is_component", "run_command"]

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


def is_component(path: Path) -> bool:
    """Whether ``path`` holds a component (binary layer 1, or WAT text starting with ``(component``)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if head[:4] == b"\0asm":
        return head[6:8] == b"\x01\x00"  # version 0x0d, layer 1; a core module has layer 0
    text = head.decode("utf-8", errors="replace")
    while True:  # skip WAT comments before the first form
        text = text.lstrip()
        if text.startswith(";;"):
            text = text.partition("\n")[2]
        elif text.startswith("(;"):
            text = text.partition(";)")[2]
        else:
            return text.startswith("(component")


def run_command(host: Host, spec: RunSpec) -> int:
    """Run ``spec`` to completion; returns the process exit status.

    A core module runs as a WASI preview1 command (its ``_start``) with ``wasi_ephemeral_nn``; a
    component as a WASI preview2 command (its ``wasi:cli/run`` export) with ``wasi:nn`` (WIT, both
    versions). The guest's own exit code is returned as is; a trap prints its message on stderr and
    gives :data:`EXIT_TRAP`. Raises :class:`GuestError` when the guest cannot be loaded or instantiated.
    The guest limits of the host's config apply: ``guest_timeout_s`` (epoch interruption: it stops wasm
    code, not a host call already running), ``guest_fuel`` and ``guest_memory_bytes``.
    """
    limits = host.config.limits
    config = wasmtime.Config()
    config.epoch_interruption = limits.guest_timeout_s is not None
    config.consume_fuel = limits.guest_fuel is not None
    try:
        component = is_component(spec.module)
    except OSError as exc:
        raise GuestError(f"cannot load module {spec.module}: {exc}") from exc
    # wasmtime's compilation cache, as its CLI uses: an 18 MB Python component compiles in 6 s, 0.1 s cached;
    # a small module in 35 ms, 5 ms cached
    try:
        config.cache = True
    except wasmtime.WasmtimeError as exc:  # no writable cache folder: compile every time
        log.debug("wasmtime's compilation cache is off: %s", exc)
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    if limits.guest_fuel is not None:
        store.set_fuel(limits.guest_fuel)
    if limits.guest_memory_bytes is not None:
        store.set_limits(memory_size=limits.guest_memory_bytes)
    store.set_wasi(_wasi_config(spec))
    start, session = (_instantiate_component if component else _instantiate_module)(host, engine, store, spec)
    try:
        timer = None
        if limits.guest_timeout_s is not None:
            store.set_epoch_deadline(1)
            timer = threading.Timer(limits.guest_timeout_s, engine.increment_epoch)
            timer.daemon = True
            timer.start()
        try:
            return start()
        except wasmtime.ExitTrap as exc:
            return exc.code
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            code = _exit_code(exc)
            if code is not None:
                return code
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
    finally:
        session.close()


def _wasi_config(spec: RunSpec) -> wasmtime.WasiConfig:
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
    return wasi


Start = Callable[[], int]


def _instantiate_module(
    host: Host, engine: wasmtime.Engine, store: wasmtime.Store, spec: RunSpec
) -> tuple[Start, Session]:
    try:
        module = wasmtime.Module.from_file(engine, os.fspath(spec.module))
    except (OSError, wasmtime.WasmtimeError) as exc:
        raise GuestError(f"cannot load module {spec.module}: {exc}") from exc
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
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
    except BaseException:
        binding.session.close()
        raise

    def run() -> int:
        start(store)
        return 0

    return run, binding.session


def _instantiate_component(
    host: Host, engine: wasmtime.Engine, store: wasmtime.Store, spec: RunSpec
) -> tuple[Start, Session]:
    from wasmtime import component

    try:
        guest = component.Component.from_file(engine, os.fspath(spec.module))
    except (OSError, wasmtime.WasmtimeError) as exc:
        raise GuestError(f"cannot load component {spec.module}: {exc}") from exc
    linker = component.Linker(engine)
    linker.add_wasip2()
    binding = host.add_to_component_linker(linker, store)
    try:
        try:
            instance = linker.instantiate(store, guest)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise GuestError(f"cannot instantiate {spec.module.name}: {exc}") from exc
        run = _cli_run(store, instance)
        if run is None:
            raise GuestError(f"{spec.module.name} exports no wasi:cli/run interface: it is not a WASI preview2 command")
    except BaseException:
        binding.session.close()
        raise

    def start() -> int:
        result = run(store)
        run.post_return(store)
        return 0 if getattr(result, "tag", "ok") == "ok" else 1

    return start, binding.session


def _cli_run(store: wasmtime.Store, instance: Any) -> Any:
    """The ``run`` function of the instance's ``wasi:cli/run@0.2.x`` export, if any."""
    for patch in range(32, -1, -1):
        interface = instance.get_export_index(store, f"wasi:cli/run@0.2.{patch}")
        if interface is not None:
            index = instance.get_export_index(store, "run", interface)
            return instance.get_func(store, index) if index is not None else None
    return None


def _exit_code(exc: Exception) -> int | None:
    """The status of a preview2 guest that called ``wasi:cli/exit`` (wasmtime reports it as an error)."""
    match = _EXIT.search(str(exc))
    return int(match.group(1)) if match else None


_EXIT = re.compile(r"^Exited with i32 exit status (\d+)", re.M)


def _why(exc: Exception, limits: Limits) -> str:
    """A plain reason for the traps that limits cause."""
    code = getattr(exc, "trap_code", None)
    if code == wasmtime.TrapCode.INTERRUPT:
        return f"it ran out of time (guest_timeout_s = {limits.guest_timeout_s:g}): "
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return f"it ran out of fuel (guest_fuel = {limits.guest_fuel}): "
    return ""
