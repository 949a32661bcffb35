"""pytest fixtures for backend authors, loaded automatically with wasinn-core (entry point ``pytest11``).

``wasinn_plugins``
    A plugin manager that loaded nothing (no entry points, no environment): register what you test. It is
    strict: a spec wasinn refuses (an unknown capability feature, a bad name) raises PluginError with why.
``wasinn_register``
    ``wasinn_register(*specs)`` registers backend specs on ``wasinn_plugins`` until the test ends.
``wasinn_host``
    A :class:`~wasinn_core.Host` over ``wasinn_plugins`` (with the default config), closed after the test.
``wasinn_guest``
    ``wasinn_guest(host=None)``: a :class:`~wasinn_core.testing.ForwardingGuest` to drive the ABI byte by byte.
``wasinn_run_guest``
    ``wasinn_run_guest(wasm, args=(), dirs=(), host=None)``: run a WASI command, get exit code, stdout, stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest

from ._backend import BackendSpec
from ._host import Host
from ._plugins._manager import PluginManager
from .testing import ForwardingGuest, GuestRun, registered, run_guest


@pytest.fixture
def wasinn_plugins() -> PluginManager:
    return PluginManager(autoload=False, environ={}, strict=True)


@pytest.fixture
def wasinn_register(wasinn_plugins: PluginManager) -> Iterator[Callable[..., PluginManager]]:
    with ExitStack() as stack:
        count = 0

        def register(*specs: BackendSpec) -> PluginManager:
            nonlocal count
            count += 1
            return stack.enter_context(registered(wasinn_plugins, *specs, name=f"wasinn-testing-{count}"))

        yield register


@pytest.fixture
def wasinn_host(wasinn_plugins: PluginManager) -> Iterator[Host]:
    host = Host(plugins=wasinn_plugins)
    yield host
    host.close()


@pytest.fixture
def wasinn_guest(wasinn_host: Host) -> Callable[..., ForwardingGuest]:
    def make(host: Host | None = None, **kwargs: object) -> ForwardingGuest:
        return ForwardingGuest(host or Host(plugins=wasinn_host.plugins), **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def wasinn_run_guest(wasinn_host: Host) -> Callable[..., GuestRun]:
    def run(
        wasm: str | Path, args: Sequence[str] = (), dirs: Sequence[tuple[str, str, bool]] = (), host: Host | None = None
    ) -> GuestRun:
        return run_guest(host or Host(plugins=wasinn_host.plugins), wasm, args, dirs)

    return run
