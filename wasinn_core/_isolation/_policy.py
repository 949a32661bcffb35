"""Which graphs run in a worker process, and the process backend for them.

The choice, for one backend and one model, in this order:

1. the named model's own ``isolation`` (``[[models]] isolation = "process"``);
2. ``[isolation.backends] NAME``;
3. the plugin's own ``BackendSpec.isolation = "none"`` (a backend that only forwards bytes to a server);
4. ``[isolation] guest`` for models a guest supplies (default ``"process"``), ``[isolation] named`` for
   named models (default ``"none"``).

A guest model placed in a worker that the kernel cannot confine (no Landlock, or
``confine = false``) is refused unless its encoding is in ``unconfined_guest_load``: never a silent
downgrade.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, final

from .._backend import BackendSpec
from .._config import Config, IsolationMode, Limits, ModelConfig
from .._errors import UnsupportedOperation
from .._types import GraphEncoding
from ._confine import Confinement, probe, read_paths
from ._proxy import Deadlines, ProcessBackend
from ._workers import forget_domain, zygote_for

__all__ = ["WORKERS_MISSING", "Isolator", "Placement", "factory_path"]

#: Why this platform has no worker processes (they need Linux: memfd, pidfds), or ``None``.
WORKERS_MISSING: str | None = (
    None
    if sys.platform.startswith("linux") and hasattr(os, "pidfd_open") and hasattr(os, "memfd_create")
    else f"worker processes need Linux 5.3 or newer (memfd, pidfd), and this is {sys.platform}"
)


@final
@dataclass(frozen=True, slots=True)
class Placement:
    """Where a graph runs and why: ``mode`` is ``"process"`` or ``"none"`` (the host process)."""

    mode: IsolationMode
    reason: str


def factory_path(spec: BackendSpec) -> str | None:
    """``module:qualname`` of the backend's factory, if a worker can find it by that name."""
    factory = spec.factory
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or "<" in qualname:
        return None
    try:
        target: Any = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if target is factory else None


@functools.cache
def _read_paths(module: str) -> tuple[str, ...]:
    return tuple(read_paths([module]))


@functools.cache
def _import_root(module: str) -> str | None:
    """The ``sys.path`` entry ``module`` was found under, so a worker finds it the same way."""
    spec = importlib.util.find_spec(module.split(".")[0])
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    location = locations[0] if locations else spec.origin
    return os.path.dirname(os.path.realpath(location)) if location else None


class Isolator:
    """Places graphs and makes the process backends of one host's registry."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._confinement: Confinement | None = None

    @property
    def confinement(self) -> Confinement:
        """What the kernel can enforce here (probed once)."""
        if self._confinement is None:
            self._confinement = probe()
        return self._confinement

    @property
    def confined(self) -> bool:
        """Whether workers are confined: the kernel can, and the config wants it."""
        return self.config.isolation.confine and self.confinement.available

    def describe_confinement(self) -> str:
        """How workers are confined here, or why they are not and what that means for guests."""
        settings = self.config.isolation
        allowed = ", ".join(sorted(e.value for e in settings.unconfined_guest_load)) or "none"
        if WORKERS_MISSING is not None:
            return f"none: {WORKERS_MISSING}; guests may load only {allowed} models, in the host process"
        if self.confined:
            return self.confinement.describe()
        why = "off ([isolation] confine = false)" if not settings.confine else self.confinement.describe()
        return f"{why}; guests may load only {allowed} models ([isolation] unconfined_guest_load)"

    def placement(self, spec: BackendSpec, model: ModelConfig | None, guest: bool) -> Placement:
        """Where a graph of ``spec`` runs by the config (see the module docstring), before the platform has a say."""
        settings = self.config.isolation
        if model is not None and model.isolation is not None:
            return Placement(model.isolation, f'models.{model.name}.isolation = "{model.isolation}"')
        if spec.name in settings.backends:
            mode = settings.backends[spec.name]
            return Placement(mode, f'[isolation.backends] {spec.name} = "{mode}"')
        if spec.isolation == "none":
            return Placement("none", f"the {spec.name} plugin parses no model bytes itself")
        if guest:
            return Placement(settings.guest, f'a guest\'s model: [isolation] guest = "{settings.guest}"')
        return Placement(settings.named, f'a named model: [isolation] named = "{settings.named}"')

    def where(self, spec: BackendSpec, model: ModelConfig | None, guest: bool, encoding: GraphEncoding) -> Placement:
        """:meth:`placement`, then the platform: without worker processes (another OS than Linux) a graph
        placed in one runs in the host process, if the encoding may run unconfined; else
        ``UnsupportedOperation`` naming the setting."""
        placement = self.placement(spec, model, guest)
        if placement.mode == "none" or WORKERS_MISSING is None:
            return placement
        self.check_unconfined(encoding, guest, WORKERS_MISSING)
        return Placement("none", f"{placement.reason}, but {WORKERS_MISSING}: in the host process")

    def check_unconfined(self, encoding: GraphEncoding, guest: bool, why: str) -> None:
        """Refuse a guest model of an encoding that may run only confined, where it cannot be (``why``)."""
        settings = self.config.isolation
        if guest and encoding not in settings.unconfined_guest_load:
            allowed = ", ".join(sorted(e.value for e in settings.unconfined_guest_load)) or "none"
            raise UnsupportedOperation(
                f"guest-supplied {encoding.value} models run only in a confined worker, and workers cannot be "
                f"confined here ({why}); encodings allowed unconfined: {allowed} ([isolation] unconfined_guest_load; "
                f'add "{encoding.value}" to accept the risk, or use a named model)'
            )

    def backend(
        self, spec: BackendSpec, encoding: GraphEncoding, guest: bool, limits: Limits, domain: object | None
    ) -> ProcessBackend:
        """The process backend for ``spec``; ``UnsupportedOperation`` where policy or the plugin forbids it."""
        settings = self.config.isolation
        if not self.confined:
            self.check_unconfined(
                encoding, guest, "[isolation] confine = false" if not settings.confine else self.confinement.reason
            )
        factory = factory_path(spec)
        if factory is None:
            raise UnsupportedOperation(
                f"backend {spec.name!r} cannot run in a worker process: its factory is not a module-level "
                f'function a worker can import by name; set [isolation.backends] {spec.name} = "none"'
            )
        params = {
            "confine": self.confined,
            "read": list(_read_paths(factory.partition(":")[0])),
            "memory_bytes": limits.worker_memory_bytes,
        }
        zygote = zygote_for(spec.name, factory, settings.warm, _import_root(factory.partition(":")[0]))
        return ProcessBackend(zygote, params, Deadlines(limits.load_timeout_s, limits.compute_timeout_s), domain)

    def release(self, domain: object) -> None:
        """A guest's session is closed: end the idle workers kept for it."""
        forget_domain(domain)
