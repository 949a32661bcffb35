"""The state of one conformance run: which backends and runtime, the cases, capability checks, results."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from wasinn_core import Config, ExecutionTarget, GraphEncoding, Host, PluginManager, TensorType

from . import execute
from .cases import FORMATS, Case, abi_cases, backend_cases, component_cases
from .components import component_case, component_wat, reference_model
from .expectations import Expectations
from .models import ModelStore
from .runtimes import MODEL_NAME, CommandRuntime, Runtime, WasinnRuntime

__all__ = ["Result", "Suite"]

UNSUPPORTED_CANDIDATES = ("tensorflow", "tensorflowlite", "ggml")


@dataclass
class Result:
    """The outcome of one case, for the matrix and the JSON report."""

    case: Case
    outcome: str  # passed, failed, skipped, xfailed, xpassed
    duration: float
    message: str = ""
    device: str = ""


@dataclass
class Suite:
    """One run of the suite.

    :param backends: backend names to test (``None``: every installed backend).
    :param target: the execution target of every case.
    :param runtime: an external runtime for the ABI layer (``None``: wasinn itself).
    :param layers: which layers run.
    :param config: an embedder config whose backend options (``[backends.NAME]``) the suite's hosts use.
    """

    backends: list[str] | None = None
    target: str = "cpu"
    runtime: CommandRuntime | None = None
    layers: frozenset[str] = frozenset({"abi", "component", "backend"})
    expectations: Expectations = field(default_factory=Expectations)
    plugins: PluginManager = field(default_factory=PluginManager)
    host_class: type[Host] = Host
    config: Config | None = None
    results: list[Result] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="wasinn-conformance-"))
        self.models = ModelStore(self.root / "models")
        self.host = Host(self.config or Config(source="<conformance>"), plugins=self.plugins)
        self.specs = {s.name: s for s in self.plugins.backends()}
        self.tolerances = execute.tolerances()
        self._runtimes: dict[str, Runtime] = {}
        unknown = [b for b in self.backends or [] if b not in self.specs]
        if unknown:
            raise ValueError(f"no installed backend is called {', '.join(unknown)}; installed: {', '.join(self.specs)}")

    # -- cases -----------------------------------------------------------------------------------------

    def selected(self) -> list[str]:
        return self.backends if self.backends is not None else sorted(self.specs)

    def abi_encoding(self, backend: str) -> str | None:
        """The encoding the ABI layer uses for a backend: its most preferred one the suite can generate."""
        if self.runtime is not None:
            return self.runtime.encoding
        spec = self.specs[backend]
        known = [e for e in spec.encodings if e.value in FORMATS]
        return max(known, key=lambda e: spec.encodings[e]).value if known else None

    def cases(self, layer: str) -> list[Case]:
        if layer not in self.layers:
            return []
        by_runtime = {"abi": abi_cases, "component": component_cases}
        if self.runtime is not None:
            make = by_runtime.get(layer)
            return make(self.runtime.name, self.runtime.encoding, self.target) if make else []
        out: list[Case] = []
        for name in self.selected():
            spec = self.specs[name]
            if layer == "backend":
                out += backend_cases(name, [e.value for e, p in spec.encodings.items() if p > 0], self.target)
            elif (encoding := self.abi_encoding(name)) is not None:
                out += by_runtime[layer](name, encoding, self.target)
        return out

    # -- capabilities ------------------------------------------------------------------------------------

    def missing(self, case: Case) -> str | None:
        """Why ``case`` cannot run here, or ``None``; such a case is skipped, never failed."""
        if case.layer in ("abi", "component"):
            return self._missing_abi(case)
        spec = self.specs[case.backend]
        unusable = self._unusable_target(case)
        if unusable is not None:
            return unusable
        formats = {f for f in spec.capabilities.features if ":" in f}
        if formats and f"{case.encoding}:{case.format}" not in formats:
            return f"{spec.name} declares the model formats {', '.join(sorted(formats))} only"
        notes = spec.capabilities.notes
        if TensorType(case.dtype) not in spec.capabilities.dtypes:
            why = notes.get(case.dtype)
            return f"{spec.name} does not declare tensor type {case.dtype}" + (f": {why}" if why else "")
        lacking = [f for f in case.requires if f not in spec.capabilities.features]
        if lacking:
            whys = [f"{f}: {notes[f]}" for f in lacking if f in notes]
            return f"{spec.name} does not declare {', '.join(lacking)}" + (f" ({'; '.join(whys)})" if whys else "")
        return None

    def _unusable_target(self, case: Case) -> str | None:
        spec = self.specs[case.backend]
        target = ExecutionTarget(case.target)
        if target not in spec.targets:
            return f"{spec.name} does not claim target {case.target}"
        available = spec.probe(target, self.host.registry.options(spec))
        if not available.available:
            return f"{spec.name} cannot use {case.target} here: {available.reason}"
        return None

    def _missing_abi(self, case: Case) -> str | None:
        runtime = self.runtime_for(case)
        if self.runtime is None and (unusable := self._unusable_target(case)) is not None:
            return unusable
        features = set(runtime.features)
        if self.runtime is None:
            features |= self.specs[case.backend].capabilities.features
        if "unavailable_target" in case.requires and self.unavailable_target(case) is None:
            return f"every target is available to {runtime.name} here, or the runtime declares none unavailable"
        lacking = [f for f in case.requires if f not in features and f != "unavailable_target"]
        if lacking:
            return f"{runtime.name} does not declare {', '.join(lacking)}"
        return None

    def unsupported_encoding(self) -> int:
        if self.runtime is not None:
            return execute.WITX_ENCODING["tensorflow"]
        claimed = {e.value for s in self.specs.values() for e, preference in s.encodings.items() if preference > 0}
        free = next((e for e in UNSUPPORTED_CANDIDATES if e not in claimed), "tensorflow")
        return execute.WITX_ENCODING[free]

    def unavailable_target(self, case: Case) -> int | None:
        """A target no installed backend can serve for the case's encoding (wasinn runtime only)."""
        if self.runtime is not None:
            return None
        encoding = GraphEncoding(case.encoding)
        for target in (ExecutionTarget.TPU, ExecutionTarget.GPU):
            served = any(
                s.probe(target, self.host.registry.options(s)).available
                for s in self.host.registry.candidates(encoding, target)
            )
            if not served:
                return execute.WITX_TARGET[target.value]
        return None

    # -- running -----------------------------------------------------------------------------------------

    def abi_models(self, case: Case) -> list[Path]:
        """The reference model for the ABI layer, in a folder named ``conformance`` (its model name)."""
        folder = self.root / "abi" / case.format / "conformance"
        if not folder.exists():
            folder.mkdir(parents=True)
            for path in self.models.files(case.format, "affine", "f32"):
                shutil.copy(path, folder / path.name)
        files = sorted(folder.iterdir())
        return sorted(files, key=lambda p: p.suffix != ".xml")  # OpenVINO: xml first

    def component_wat(self, case: Case) -> Path:
        """The WAT file of a component case, generated around the ABI layer's model."""
        path = self.root / "components" / case.format / case.variant / f"{case.family}.wat"
        if not path.exists():
            files = self.abi_models(case)
            model = reference_model(MODEL_NAME, case.encoding, case.format, [p.read_bytes() for p in files])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(component_wat(case.variant, component_case(case.family), model))
        return path

    def runtime_for(self, case: Case) -> Runtime:
        if self.runtime is not None:
            self.runtime.models = self.abi_models(case)[0].parent
            return self.runtime
        runtime = self._runtimes.get(case.backend)
        if runtime is None:
            folder = self.abi_models(case)[0].parent
            runtime = WasinnRuntime(
                case.backend,
                case.encoding,
                case.target,
                folder,
                self.plugins,
                host_class=self.host_class,
                backends=self.config.backends if self.config else None,
            )
            self._runtimes[case.backend] = runtime
        return runtime

    def run(self, case: Case) -> str:
        """Run ``case``; returns the device used (backend layer) or the runtime's name and version (ABI)."""
        if case.layer == "backend":
            return execute.run_backend_case(case, self.host.registry, self.models, self.tolerances)
        runtime = self.runtime_for(case)
        if case.layer == "component":
            execute.run_component_case(case, runtime, self.component_wat(case))
            return f"{runtime.name} {runtime.version}"
        args = execute.abi_arguments(
            case, self.abi_models(case), self.unsupported_encoding(), self.unavailable_target(case)
        )
        execute.run_abi_case(case, runtime, args)
        return f"{runtime.name} {runtime.version}"

    def close(self) -> None:
        for runtime in self._runtimes.values():
            if isinstance(runtime, WasinnRuntime):
                runtime.close()
        self.host.close()
        shutil.rmtree(self.root, ignore_errors=True)
