"""Plugin discovery with per-plugin failure isolation, and the one typed facade over pluggy.

Environment variables (read when a :class:`PluginManager` is created):

``WASINN_DISABLE_PLUGIN_AUTOLOAD``
    ``1``/``true``: load no entry-point plugin at all.
``WASINN_PLUGINS``
    Comma-separated allow-list of entry-point or distribution names; only
    these are loaded.
``WASINN_DISABLED_PLUGINS``
    Comma-separated block-list of entry-point or distribution names.
``WASINN_STRICT_PLUGINS``
    ``1``/``true``: a plugin that fails to load or returns invalid backends
    raises :class:`~wasinn_core.PluginError` (chained to the plugin's own
    exception, whose traceback ``wasinn`` prints) instead of being skipped.

A plugin module is checked before it is registered: a ``wasinn_*`` function
without ``@hookimpl``, a marked function naming no wasinn hook, or no hook at
all fails the plugin with the fix, where pluggy would accept it silently.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import logging
import os
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast, final

import pluggy

from .._backend import KNOWN_FEATURES, PLUGIN_API_VERSION, BackendSpec, Capabilities
from .._errors import PluginError
from .._formats._detect import BuiltinDetector
from .._types import ExecutionTarget, GraphEncoding, TensorType
from . import _hookspecs
from ._hookcheck import hook_problems, implemented_hooks

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "PluginManager"]

log = logging.getLogger("wasinn.plugins")

#: The entry-point group plugins register in.
ENTRY_POINT_GROUP = "wasinn"

PluginStatus = Literal["active", "failed", "blocked", "builtin"]


@final
@dataclass(frozen=True, slots=True)
class PluginInfo:
    """One plugin as ``wasinn plugins`` shows it."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    status: PluginStatus = "active"
    error: str = ""
    backends: tuple[BackendSpec, ...] = ()
    #: The hooks the plugin implements (``wasinn_backends``, ``wasinn_detect_encoding``).
    hooks: tuple[str, ...] = ()


def _env_flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_list(environ: Mapping[str, str], name: str) -> frozenset[str] | None:
    raw = environ.get(name)
    if raw is None:
        return None
    return frozenset(item.strip() for item in raw.split(",") if item.strip())


class PluginManager:
    """Loads plugins and calls their hooks; the only place that touches pluggy.

    :param autoload: load entry-point plugins (default: unless
        ``WASINN_DISABLE_PLUGIN_AUTOLOAD`` is set).
    :param allow: only these entry-point/distribution names (default:
        ``WASINN_PLUGINS``).
    :param block: never these names (default: ``WASINN_DISABLED_PLUGINS``).
    :param strict: raise on a broken plugin (default: ``WASINN_STRICT_PLUGINS``).
    :param environ: where to read the ``WASINN_*`` variables (default: ``os.environ``).
    """

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        allow: Iterable[str] | None = None,
        block: Iterable[str] | None = None,
        strict: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._pm = pluggy.PluginManager(_hookspecs.PROJECT)
        self._pm.add_hookspecs(_hookspecs)
        self.strict = _env_flag(env, "WASINN_STRICT_PLUGINS") if strict is None else strict
        self._allow = frozenset(allow) if allow is not None else _env_list(env, "WASINN_PLUGINS")
        self._block = (
            frozenset(block) if block is not None else (_env_list(env, "WASINN_DISABLED_PLUGINS") or frozenset())
        )
        self._infos: dict[str, PluginInfo] = {}
        self._backends: list[BackendSpec] | None = None
        #: Bumped whenever the set of plugins changes, so users of :meth:`backends` can refresh.
        self.generation = 0
        builtin = BuiltinDetector()
        self._pm.register(builtin, name="wasinn.builtin")
        self._infos["wasinn.builtin"] = PluginInfo(
            "wasinn.builtin", __name__, status="builtin", hooks=self._hooks_of(builtin)
        )
        if autoload if autoload is not None else not _env_flag(env, "WASINN_DISABLE_PLUGIN_AUTOLOAD"):
            self.load_entrypoints()

    # -- loading ---------------------------------------------------------

    def load_entrypoints(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load every plugin of the entry-point group, sorted by name, isolating failures."""
        eps = sorted(importlib.metadata.entry_points(group=group), key=lambda ep: ep.name)
        for ep in eps:
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            names = {ep.name, dist} - {None}
            if ep.name in self._infos:
                continue
            if (self._allow is not None and not names & self._allow) or names & self._block:
                self._infos[ep.name] = PluginInfo(ep.name, ep.value, dist, version, status="blocked")
                continue
            info = PluginInfo(ep.name, ep.value, dist, version)
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not break the host
                self._fail(info, f"cannot load: {exc!r}", exc)
                continue
            problems = self._hook_problems(plugin)
            if problems:
                self._fail(info, "; ".join(problems))
                continue
            try:
                self._pm.register(plugin, name=ep.name)
            except Exception as exc:  # pluggy's own validation (a hook's arguments)
                self._fail(info, f"cannot register: {exc}", exc)
                continue
            self._infos[ep.name] = replace(info, hooks=self._hooks_of(plugin))
        self._backends = None
        self.generation += 1

    def register(self, plugin: object, name: str) -> None:
        """Register a plugin object under ``name`` (for embedders and tests).

        Raises :class:`~wasinn_core.PluginError` when the plugin would do nothing (see :meth:`check`).
        """
        problems = self._hook_problems(plugin)
        if problems:
            raise PluginError(f"plugin {name!r}: {'; '.join(problems)}")
        self._pm.register(plugin, name=name)
        module = getattr(plugin, "__name__", type(plugin).__name__)
        self._infos[name] = PluginInfo(name, module, hooks=self._hooks_of(plugin))
        self._backends = None
        self.generation += 1

    def unregister(self, name: str) -> None:
        """Remove the plugin registered under ``name``."""
        if self._pm.get_plugin(name) is not None:
            self._pm.unregister(name=name)
        self._infos.pop(name, None)
        self._backends = None
        self.generation += 1

    def _hook_problems(self, plugin: object) -> list[str]:
        known = [name for name in dir(_hookspecs) if name.startswith("wasinn_")]
        return hook_problems(plugin, known, self._pm.parse_hookimpl_opts)

    def _hooks_of(self, plugin: object) -> tuple[str, ...]:
        return tuple(implemented_hooks(plugin, self._pm.parse_hookimpl_opts))

    def check(self, plugin: object) -> list[str]:
        """Why ``plugin`` (a module or object) would silently do nothing, each with the fix; empty if fine.

        A ``wasinn_*`` function without ``@hookimpl``, a marked function whose name is no wasinn hook, or no
        hook at all. Entry-point plugins with such problems are marked failed; :meth:`register` raises.
        """
        return self._hook_problems(plugin)

    def _fail(self, info: PluginInfo, message: str, exc: BaseException | None = None) -> None:
        self._infos[info.name] = replace(info, status="failed", error=message, backends=())
        if self.strict:
            raise PluginError(f"plugin {info.name!r}: {message}") from exc
        log.warning(
            "plugin %r skipped: %s (WASINN_STRICT_PLUGINS=1 makes this fatal and shows the traceback)",
            info.name,
            message,
        )
        if exc is not None:
            log.debug("%s", "".join(traceback.format_exception(exc)))

    # -- hooks, typed ----------------------------------------------------

    def backends(self) -> list[BackendSpec]:
        """Every valid backend of every active plugin (computed once)."""
        if self._backends is None:
            self._backends = self._collect_backends()
        return list(self._backends)

    def _collect_backends(self) -> list[BackendSpec]:
        found: list[BackendSpec] = []
        owner: dict[str, str] = {}
        for impl in self._pm.hook.wasinn_backends.get_hookimpls():
            name = self._pm.get_name(impl.plugin) or repr(impl.plugin)
            info = self._infos.get(name, PluginInfo(name, repr(impl.plugin)))
            try:
                specs: list[BackendSpec] = list(cast(Iterable[BackendSpec], impl.function()))
                for spec in specs:
                    self._validate(spec)
                    if spec.name in owner:
                        raise PluginError(
                            f"backend name {spec.name!r} is already provided by plugin {owner[spec.name]!r}"
                        )
            except Exception as exc:
                self._fail(info, f"wasinn_backends() failed: {exc}", exc)
                continue
            for spec in specs:
                owner[spec.name] = name
            found.extend(specs)
            self._infos[name] = replace(info, backends=tuple(specs))
        return sorted(found, key=lambda s: s.name)

    @staticmethod
    def _validate(spec: Any) -> None:
        if not isinstance(spec, BackendSpec):
            raise PluginError(f"expected a BackendSpec, got {type(spec).__name__}")
        major, minor = spec.api_version
        if major != PLUGIN_API_VERSION[0] or minor > PLUGIN_API_VERSION[1]:
            want = "{}.{}".format(*PLUGIN_API_VERSION)
            raise PluginError(f"backend {spec.name!r} needs plugin API {major}.{minor}; this wasinn provides {want}")
        if not spec.name or not spec.name.replace("-", "").replace("_", "").isalnum():
            raise PluginError(f"invalid backend name {spec.name!r}: use letters, digits, '-' and '_'")
        if not spec.encodings or any(not isinstance(e, GraphEncoding) for e in spec.encodings):
            raise PluginError(f"backend {spec.name!r}: encodings must be a non-empty mapping of GraphEncoding")
        if not spec.targets or any(not isinstance(t, ExecutionTarget) for t in spec.targets):
            raise PluginError(f"backend {spec.name!r}: targets must be a non-empty set of ExecutionTarget")
        if spec.isolation not in ("process", "none"):
            raise PluginError(f"backend {spec.name!r}: isolation must be 'process' or 'none', got {spec.isolation!r}")
        PluginManager._validate_capabilities(spec)

    @staticmethod
    def _validate_capabilities(spec: BackendSpec) -> None:
        caps = spec.capabilities
        if not isinstance(caps, Capabilities):
            raise PluginError(f"backend {spec.name!r}: capabilities must be a Capabilities, got {type(caps).__name__}")
        if not isinstance(caps.features, set | frozenset) or not isinstance(caps.dtypes, set | frozenset):
            raise PluginError(f"backend {spec.name!r}: capability features and dtypes must be sets (frozenset)")
        bad_types = [t for t in caps.dtypes if not isinstance(t, TensorType)]
        if bad_types:
            raise PluginError(
                f"backend {spec.name!r}: capability dtypes must be TensorType members, got {bad_types[0]!r}"
            )
        unknown = sorted(f for f in caps.features if f not in KNOWN_FEATURES)
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(str(name), sorted(KNOWN_FEATURES), n=1, cutoff=0.6)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise PluginError(
                f"backend {spec.name!r}: unknown capability feature {', '.join(hints)}; "
                f"known features: {', '.join(sorted(KNOWN_FEATURES))}"
            )

    def detect_encoding(self, builders: Sequence[memoryview]) -> GraphEncoding | None:
        """The first plugin's guess of the encoding of ``builders`` (``autodetect``)."""
        result = self._pm.hook.wasinn_detect_encoding(builders=builders)
        return result if isinstance(result, GraphEncoding) else None

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen, with its status; backends are collected first."""
        self.backends()
        return sorted(self._infos.values(), key=lambda i: (i.status == "builtin", i.name))
