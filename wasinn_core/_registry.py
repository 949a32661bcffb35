"""The registry: (encoding, target) → ordered candidate backends, and loading through them.

It is the only place that knows more than one backend exists. Order is
deterministic: the config's preference list for ``encoding:target``, then for
``encoding``, then the backends' own claim preferences (higher first), then
name. A GPU or TPU request is never moved to the CPU silently: with the default
``strict`` policy it fails with the reasons; with ``fallback = "cpu"`` the move
is logged and recorded in :class:`GraphInfo`. Each graph is placed in the host
process or in a confined worker process (:mod:`._isolation`), and
:class:`GraphInfo` says which and why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

from ._backend import Backend, BackendSpec, Graph
from ._config import Config, Fallback, Limits
from ._errors import BackendError, ConfigError, InvalidArgument, InvalidEncoding, UnsupportedOperation
from ._isolation import Isolator
from ._plugins._manager import PluginManager
from ._types import ExecutionTarget, GraphEncoding

__all__ = ["GraphInfo", "LoadedGraph", "Registry"]

log = logging.getLogger("wasinn.registry")


@final
@dataclass(frozen=True, slots=True)
class GraphInfo:
    """Where a graph actually runs.

    :param encoding: the graph's encoding (after ``autodetect``).
    :param requested_target: the target the guest or config asked for.
    :param target: the target actually used (differs under ``auto`` or a fallback policy).
    :param backend: the backend's name.
    :param device: the device actually used, in the library's words.
    :param name: the named model's name, or ``None`` for guest bytes.
    :param isolation: ``"process"`` (a confined worker process of its own) or ``"none"`` (the host process).
    :param isolation_reason: why, and how the worker is confined.
    """

    encoding: GraphEncoding
    requested_target: ExecutionTarget
    target: ExecutionTarget
    backend: str
    device: str
    name: str | None = None
    isolation: str = "none"
    isolation_reason: str = ""


@final
@dataclass(frozen=True, slots=True)
class LoadedGraph:
    """A backend graph with the facts of how it was loaded."""

    graph: Graph
    info: GraphInfo


def _check_type(spec: BackendSpec, key: str, value: Any, source: str) -> None:
    option = spec.option(key)
    if option is None:
        allowed = ", ".join(o.name for o in spec.options) or "none"
        raise ConfigError(source, key, f"unknown option for backend {spec.name!r}; allowed: {allowed}")
    ok = isinstance(value, option.type) and not (option.type is not bool and isinstance(value, bool))
    if option.type is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise ConfigError(source, key, f"expected {option.type.__name__} for backend {spec.name!r}, got {value!r}")
    if option.choices is not None and value not in option.choices:
        raise ConfigError(source, key, f"invalid value {value!r}; allowed: {', '.join(option.choices)}")


class Registry:
    """Chooses and drives backends for (encoding, target), steered by the config."""

    def __init__(self, specs: Sequence[BackendSpec], config: Config, plugins: PluginManager) -> None:
        self.specs = {s.name: s for s in specs}
        self.config = config
        self._plugins = plugins
        self._instances: dict[str, Backend] = {}
        self._lock = threading.Lock()
        #: places graphs in the host process or in worker processes
        self.isolator = Isolator(config)
        self._validate_config()

    def _validate_config(self) -> None:
        src, installed = self.config.source, ", ".join(self.specs) or "none"
        for name, options in self.config.backends.items():
            spec = self.specs.get(name)
            if spec is None:
                raise ConfigError(
                    src, f"backends.{name}", f"no installed backend is called {name!r}; installed: {installed}"
                )
            for key, value in options.items():
                _check_type(spec, key, value, f"{src}: backends.{name}")
        for name in self.config.isolation.backends:
            if name not in self.specs:
                raise ConfigError(
                    src,
                    f"isolation.backends.{name}",
                    f"no installed backend is called {name!r}; installed: {installed}",
                )
        for key, names in self.config.preferences.items():
            for name in names:
                if name not in self.specs:
                    raise ConfigError(
                        src, f"preferences.{key}", f"no installed backend is called {name!r}; installed: {installed}"
                    )
        for model in self.config.models:
            if model.backend is not None and model.backend not in self.specs:
                raise ConfigError(
                    src,
                    f"models.{model.name}.backend",
                    f"no installed backend is called {model.backend!r}; installed: {installed}",
                )
            specs = [self.specs[model.backend]] if model.backend else self._ordered(model.encoding, None)
            for key in model.guest_options:
                for spec in specs:
                    option = spec.option(key)
                    if option is not None and not option.guest:
                        raise ConfigError(
                            src,
                            f"models.{model.name}.guest_options",
                            f"{spec.name}'s option {key!r} can never be set by a guest (it names host paths or "
                            "library internals)",
                        )

    # -- queries ---------------------------------------------------------

    def claims(self) -> dict[GraphEncoding, list[tuple[str, tuple[ExecutionTarget, ...]]]]:
        """What the installed backends claim: encoding → [(backend, targets)] in registry order."""
        out: dict[GraphEncoding, list[tuple[str, tuple[ExecutionTarget, ...]]]] = {}
        for enc in GraphEncoding:
            specs = self._ordered(enc, None)
            if specs:
                out[enc] = [(s.name, tuple(t for t in ExecutionTarget if t in s.targets)) for s in specs]
        return out

    def describe_claims(self) -> str:
        """One line listing every claim, for error messages."""
        parts = [
            f"{enc.value}: " + ", ".join(f"{name} ({'/'.join(t.value for t in targets)})" for name, targets in specs)
            for enc, specs in self.claims().items()
        ]
        return "; ".join(parts) or "no backend plugin is installed (see `wasinn plugins`)"

    def candidates(self, encoding: GraphEncoding, target: ExecutionTarget) -> list[BackendSpec]:
        """Backends claiming (encoding, target), in the order they are tried."""
        return [s for s in self._ordered(encoding, target) if target in s.targets]

    def _ordered(self, encoding: GraphEncoding, target: ExecutionTarget | None) -> list[BackendSpec]:
        prefs: list[str] = []
        if target is not None:
            prefs += self.config.preferences.get(f"{encoding.value}:{target.value}", ())
        prefs += self.config.preferences.get(encoding.value, ())
        # a preference of 0 claims the encoding only where the config names the backend (pins, preferences)
        claimers = [s for s in self.specs.values() if s.encodings.get(encoding, 0) > 0 or s.name in prefs]
        rank = {name: i for i, name in reversed(list(enumerate(prefs)))}
        return sorted(claimers, key=lambda s: (rank.get(s.name, len(prefs)), -s.encodings[encoding], s.name))

    def options(self, spec: BackendSpec, extra: Mapping[str, Any] | None = None, source: str = "") -> dict[str, Any]:
        """The backend's defaults, then ``[backends.NAME]``, then ``extra``; all type-checked."""
        merged = spec.defaults()
        merged.update(self.config.backends.get(spec.name, {}))
        for key, value in (extra or {}).items():
            _check_type(spec, key, value, source or self.config.source)
            merged[key] = value
        return merged

    def backend(self, spec: BackendSpec) -> Backend:
        """The process-wide instance of a backend, created on first use."""
        with self._lock:
            instance = self._instances.get(spec.name)
            if instance is None:
                try:
                    instance = spec.factory()
                except Exception as exc:
                    raise BackendError(f"backend {spec.name!r} failed to initialise: {exc}") from exc
                self._instances[spec.name] = instance
            return instance

    # -- loading ---------------------------------------------------------

    def resolve_encoding(self, builders: Sequence[memoryview], encoding: GraphEncoding) -> GraphEncoding:
        """``encoding``, or for ``autodetect`` what the sniffers recognise."""
        if encoding is not GraphEncoding.AUTODETECT:
            return encoding
        found = self._plugins.detect_encoding(builders)
        if found is None or found is GraphEncoding.AUTODETECT:
            raise InvalidEncoding(
                "autodetect: the builders match no known model format (ONNX, TorchScript/ExportedProgram, "
                "OpenVINO IR, TFLite, GGUF)"
            )
        log.info("autodetect: builders recognised as %s", found.value)
        return found

    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        targets: Sequence[ExecutionTarget],
        *,
        backend: str | None = None,
        options: Mapping[str, Any] | None = None,
        fallback: Fallback | None = None,
        name: str | None = None,
        source: str = "",
        guest: bool = False,
        limits: Limits | None = None,
        domain: object | None = None,
    ) -> LoadedGraph:
        """Load ``builders`` on the first target that a backend can serve.

        ``targets`` is tried in order; under the ``cpu`` fallback policy the CPU
        is tried last. Raises :class:`InvalidEncoding` when nothing claims the
        encoding and targets, :class:`UnsupportedOperation` with every reason
        when nothing available can serve them. ``guest`` says the bytes come
        from a guest, ``limits`` bound a worker process, and workers are reused
        only within one ``domain`` (a guest's session).
        """
        encoding = self.resolve_encoding(builders, encoding)
        policy = fallback or self.config.fallback
        tried = list(targets)
        if policy == "cpu" and ExecutionTarget.CPU not in tried:
            tried.append(ExecutionTarget.CPU)
        pinned = [self.specs[backend]] if backend is not None and backend in self.specs else None
        if not any(self._claimers(encoding, t, pinned) for t in tried):
            what = f"{encoding.value} on {'/'.join(t.value for t in tried)}"
            pin = f" with backend {backend!r}" if backend else ""
            raise InvalidEncoding(
                f"no installed backend claims {what}{pin}; installed claims: {self.describe_claims()}"
            )
        reasons: list[str] = []
        for target in tried:
            for spec in self._claimers(encoding, target, pinned):
                want = spec.builders.get(encoding)
                if want is not None and want != len(builders):
                    raise InvalidArgument(
                        f"{spec.name} loads {encoding.value} from {want} builder(s), got {len(builders)}"
                    )
                opts = self.options(spec, options, source)
                available = spec.probe(target, opts)
                if not available.available:
                    reasons.append(f"{spec.name} on {target.value}: {available.reason}")
                    continue
                try:
                    placement = self.isolator.where(spec, self.config.model(name) if name else None, guest, encoding)
                    if placement.mode == "process":
                        isolated = self.isolator.backend(spec, encoding, guest, limits or self.config.limits, domain)
                        graph = isolated.load(builders, encoding, target, opts)
                        reason = f"{placement.reason}; worker confinement: {self.isolator.describe_confinement()}"
                    else:
                        graph = self.backend(spec).load(builders, encoding, target, opts)
                        reason = placement.reason
                except UnsupportedOperation as exc:
                    reasons.append(f"{spec.name} on {target.value}: {exc.message}")
                    continue
                device = graph.device or available.device
                info = GraphInfo(encoding, tried[0], target, spec.name, device, name, placement.mode, reason)
                if target is not tried[0]:
                    # a target the caller listed (``auto`` is GPU then CPU) is a choice; the policy's CPU is a warning
                    chosen = target in targets
                    log.log(
                        logging.INFO if chosen else logging.WARNING,
                        "%s requested on %s but it cannot be served there (%s); running on %s with %s (device %s) %s",
                        name or encoding.value,
                        tried[0].value,
                        "; ".join(reasons),
                        target.value,
                        spec.name,
                        info.device,
                        "the next target asked for" if chosen else "as the fallback policy allows",
                    )
                return LoadedGraph(graph, info)
        hint = ""
        if policy == "strict" and tried[0] is not ExecutionTarget.CPU:
            hint = ' (fallback policy is strict; set [policy] fallback = "cpu" to allow the CPU)'
        raise UnsupportedOperation(f"cannot run {encoding.value} on {tried[0].value}: " + "; ".join(reasons) + hint)

    def _claimers(
        self, encoding: GraphEncoding, target: ExecutionTarget, pinned: list[BackendSpec] | None
    ) -> list[BackendSpec]:
        if pinned is not None:
            return [s for s in pinned if encoding in s.encodings and target in s.targets]
        return self.candidates(encoding, target)

    def close(self) -> None:
        """Close every backend instance."""
        with self._lock:
            instances, self._instances = list(self._instances.values()), {}
        for instance in instances:
            instance.close()
