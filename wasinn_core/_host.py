"""The process-wide host: plugins, registry, config, and named models shared by every instance."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._abi._wasmedge import model_not_found, wasmedge_named
from ._config import Config, Limits, ModelConfig
from ._errors import BackendError, ConfigError, InvalidArgument, NotFound
from ._plugins._manager import PluginManager
from ._registry import LoadedGraph, Registry
from ._session import Session
from ._stats import HostStats

if TYPE_CHECKING:
    import wasmtime

__all__ = ["Host", "read_model_files"]

log = logging.getLogger("wasinn.host")

PROGRESS_THRESHOLD = 100 * 1000 * 1000
_CHUNK = 8 * 1024 * 1024


def read_model_files(
    paths: Sequence[Path], *, progress: bool | None = None, stream: TextIO | None = None
) -> list[memoryview]:
    """Read model files, with a progress bar on ``stream`` for big models on a terminal.

    ``progress=None`` shows the bar when the files total more than about 100 MB
    and ``stream`` (default stderr) is a terminal.
    """
    stream = stream or sys.stderr
    sizes = []
    for path in paths:
        try:
            sizes.append(path.stat().st_size)
        except OSError as exc:
            raise FileNotFoundError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    total = sum(sizes)
    show = progress if progress is not None else total > PROGRESS_THRESHOLD and stream.isatty()
    done = 0
    blobs: list[memoryview] = []
    for path, size in zip(paths, sizes, strict=True):
        buf = bytearray(size)
        view = memoryview(buf)
        with path.open("rb") as f:
            pos = 0
            while pos < size:
                n = f.readinto(view[pos : pos + _CHUNK])
                if not n:
                    break
                pos += n
                done += n
                if show:
                    pct = 100 * done / total if total else 100
                    bar = "#" * int(pct / 4)
                    stream.write(f"\rloading {path.name}: [{bar:<25}] {pct:5.1f}% of {total / 1e6:.0f} MB")
                    stream.flush()
        blobs.append(view[:pos])
    if show:
        stream.write("\n")
    return blobs


class Host:
    """Everything a process shares: plugins, the registry, config and named models.

    :param config: the embedder config (default: no named models, strict policy).
    :param plugins: a plugin manager (default: load installed plugins, honouring
        the ``WASINN_*`` environment variables).

    Named models are loaded once per host, with their configured options, and
    shared by every instance that asks for them; a guest's option overrides
    (``load_by_name_with_config``) get a build of their own, owned by its instance.
    """

    def __init__(self, config: Config | None = None, *, plugins: PluginManager | None = None) -> None:
        self.config = config or Config()
        self.plugins = plugins or PluginManager()
        self._registry = Registry(self.plugins.backends(), self.config, self.plugins)
        self._generation = self.plugins.generation
        #: computes and tensor bytes in and out of every instance of this host
        self.stats = HostStats()
        self._named: dict[str, LoadedGraph] = {}  # the shared build of each named model, by name
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    @property
    def registry(self) -> Registry:
        """The registry over the current plugins (rebuilt when plugins are registered or removed)."""
        if self.plugins.generation != self._generation:
            self._registry = Registry(self.plugins.backends(), self.config, self.plugins)
            self._generation = self.plugins.generation
        return self._registry

    @classmethod
    def from_config_file(cls, path: str | Path, *, plugins: PluginManager | None = None) -> Host:
        """A host configured from a ``wasinn.toml``."""
        return cls(Config.from_file(path), plugins=plugins)

    # -- named models ----------------------------------------------------------

    def named_graph(self, name: str) -> LoadedGraph:
        """The shared graph of a named model, with its configured options, loaded on first use."""
        return self._shared(self._model(name), None)

    def guest_build_options(self, name: str, guest_options: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The options of a private build of ``name`` when ``guest_options`` change its own, else ``None``.

        Raises :class:`InvalidArgument` for a key that is not in the model's ``guest_options``.
        """
        model = self._model(name)
        options = dict(model.options)
        for key, value in (guest_options or {}).items():
            if key not in model.guest_options:
                allowed = ", ".join(model.guest_options) or "none"
                raise InvalidArgument(f"model {name!r}: the guest may not set option {key!r}; allowed: {allowed}")
            options[key] = value
        return options if options != dict(model.options) else None

    def build_named(self, name: str, options: Mapping[str, Any]) -> LoadedGraph:
        """A new build of named model ``name`` with ``options`` (see :meth:`guest_build_options`).

        Owned by the caller, never cached: one build per distinct guest option set would otherwise stay
        for the life of the host, outside every per-instance limit.
        """
        model = self._model(name)
        try:
            return self._load_model(model, options)
        except ConfigError as exc:
            raise InvalidArgument(f"model {name!r}: bad option from the guest: {exc}") from exc

    def _model(self, name: str) -> ModelConfig:
        model = self.config.model(name)
        if model is None:
            known = ", ".join(repr(m.name) for m in self.config.models) or "none configured"
            raise NotFound(f"no model named {name!r} (known: {known})")
        return model

    def _shared(self, model: ModelConfig, progress: bool | None) -> LoadedGraph:
        """The one shared build of ``model`` with its configured options; concurrent first loads collapse."""
        with self._lock:
            lock = self._locks.setdefault(model.name, threading.Lock())
        with lock:
            loaded = self._named.get(model.name)
            if loaded is None:
                loaded = self._load_model(model, model.options, progress)
                self._named[model.name] = loaded
        return loaded

    def named_graph_with_metadata(self, name: str, metadata: bytes | None = None) -> LoadedGraph:
        """A GGML named model under WasmEdge's rules (:mod:`wasinn_core._abi._wasmedge`).

        Without ``metadata`` the graph is shared and cached like :meth:`named_graph`; with it, the
        metadata is one more builder and the graph is new (the caller owns and closes it). A missing
        model file is ``model_not_found`` (103).
        """
        model = self.config.model(name)
        if model is None:
            return self.named_graph(name)  # not found, with the known names
        missing = next((str(p) for p in model.paths if not p.is_file()), None)
        if missing is not None:
            raise model_not_found(name, missing)
        if metadata:
            return self._load_model(model, model.options, extra=(memoryview(metadata),))
        return self.named_graph(name)

    def _load_model(
        self,
        model: ModelConfig,
        options: Mapping[str, Any],
        progress: bool | None = None,
        extra: Sequence[memoryview] = (),
    ) -> LoadedGraph:
        try:
            blobs = read_model_files(model.paths, progress=progress) + list(extra)
        except FileNotFoundError as exc:
            if wasmedge_named(model):
                raise model_not_found(model.name, str(exc)) from exc
            raise BackendError(f"model {model.name!r}: {exc}") from exc
        loaded = self.registry.load(
            blobs,
            model.encoding,
            model.targets,
            backend=model.backend,
            options=options,
            fallback=model.fallback,
            name=model.name,
            source=f"{self.config.source}: models.{model.name}.options",
        )
        info = loaded.info
        log.info(
            "model %r loaded: %s on %s with %s (device %s), isolation %s: %s",
            model.name,
            info.encoding.value,
            info.target.value,
            info.backend,
            info.device,
            info.isolation,
            info.isolation_reason,
        )
        return loaded

    def preload(self, names: Iterable[str] | None = None, *, progress: bool | None = None) -> None:
        """Load named models now (all by default), so errors surface before any guest runs."""
        # GGML models load when a guest first asks (WasmEdge reads no GGUF at start-up, and the first
        # load_by_name_with_config decides the graph's metadata)
        wanted = list(names) if names is not None else [m.name for m in self.config.models if not wasmedge_named(m)]
        for name in wanted:
            model = self.config.model(name)
            if model is None:
                raise ConfigError(self.config.source, name, "no such named model")
            self._shared(model, progress)

    # -- instances ---------------------------------------------------------------

    def new_session(self, limits: Limits | None = None) -> Session:
        """A fresh per-instance state, for the Python API or a custom front end."""
        return Session(self, limits or self.config.limits)

    #: The ABI binding class ``add_to_linker`` uses (a subclass may replace it).
    binding_class: type[WitxBinding] | None = None

    def add_to_linker(
        self, linker: wasmtime.Linker, store: wasmtime.Store, *, limits: Limits | None = None
    ) -> WitxBinding:
        """Define ``wasi_ephemeral_nn`` in ``linker`` for ``store``; see :func:`add_to_linker`."""
        from ._abi._linking import add_to_linker
        from ._abi._witx import WitxBinding

        return add_to_linker(linker, store, self.new_session(limits), binding_class=self.binding_class or WitxBinding)

    def add_to_component_linker(
        self, linker: component.Linker, store: wasmtime.Store, *, limits: Limits | None = None
    ) -> WitBinding:
        """Define ``wasi:nn`` (WIT, both versions in :data:`~wasinn_core.WIT_VERSIONS`) in a component
        ``linker`` for ``store``; the binding's resources and session belong to that store."""
        from ._abi._wit import WitBinding

        binding = WitBinding(self.new_session(limits))
        binding.define(linker)
        return binding

    def close(self) -> None:
        """Release named models and backends."""
        for loaded in self._named.values():
            loaded.graph.close()
        self._named.clear()
        self.registry.close()


if TYPE_CHECKING:
    from wasmtime import component

    from ._abi._wit import WitBinding
    from ._abi._witx import WitxBinding
