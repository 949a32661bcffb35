"""The state of one conformance run: which backends and runtime, the cases, capability checks, results."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from wasinn_core import Config, ExecutionTarget, GraphEncoding, Host, PluginManager, TensorType

from . import execute
from .cases import FORMATS, Case, abi_cases, backend_cases, component_cases, undeclared_types
from .components import component_case, component_wat, reference_model
from .expectations import Expectations
from .llm_layer import MODEL as LLM_MODEL
from .llm_layer import llm_cases, model_config, run_llm_case
from .models import ModelStore
from .operator_layer import OperatorLayer
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
    :param operators: the operator layer's cases: ``quick`` (a deterministic selection) or ``complete``.
    """

    backends: list[str] | None = None
    target: str = "cpu"
    runtime: CommandRuntime | None = None
    layers: frozenset[str] = frozenset({"abi", "component", "backend", "operators", "llm"})
    expectations: Expectations = field(default_factory=Expectations)
    plugins: PluginManager = field(default_factory=PluginManager)
    host_class: type[Host] = Host
    config: Config | None = None
    results: list[Result] = field(default_factory=list)
    #: Case ids generated per backend (or runtime), and those a selection (``-k``) left out.
    generated: dict[str, set[str]] = field(default_factory=dict)
    deselected: set[str] = field(default_factory=set)
    #: What :meth:`problems` found at the end of the run (set by the pytest plugin for its summary).
    run_problems: list[str] = field(default_factory=list)
    operators: str = "quick"

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="wasinn-conformance-"))
        self.models = ModelStore(self.root / "models")
        self.host = Host(self.config or Config(source="<conformance>"), plugins=self.plugins)
        self.specs = {s.name: s for s in self.plugins.backends()}
        self.tolerances = execute.tolerances()
        self._runtimes: dict[str, Runtime] = {}
        options = self.config.backends if self.config else None
        self.operator_layer = OperatorLayer(self.plugins, options, self.tolerances, self.operators, self.host_class)
        self._llm_hosts: dict[str, Host | str] = {}
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
        """The cases of ``layer`` for every selected backend (or the runtime), recorded for :meth:`problems`."""
        out = self._cases(layer)
        for case in out:
            self.generated.setdefault(case.backend, set()).add(case.id)
        return out

    def _cases(self, layer: str) -> list[Case]:
        if layer not in self.layers:
            return []
        by_runtime = {"abi": abi_cases, "component": component_cases}
        if self.runtime is not None:
            make = by_runtime.get(layer)
            return make(self.runtime.name, self.runtime.encoding, self.target) if make else []
        out: list[Case] = []
        for name in self.selected():
            spec = self.specs[name]
            if layer == "operators":
                out += self.operator_layer.cases(spec, self.target)
            elif layer == "backend":
                out += backend_cases(name, [e.value for e, p in spec.encodings.items() if p > 0], self.target)
            elif layer == "llm":
                pinned = (
                    self.config is not None and (m := self.config.model(LLM_MODEL)) is not None and m.backend == name
                )
                if spec.encodings.get(GraphEncoding.GGML, 0) > 0 or pinned:
                    out += llm_cases(name, self.target)
            elif (encoding := self.abi_encoding(name)) is not None:
                out += by_runtime[layer](name, encoding, self.target)
        return out

    def problems(self) -> list[str]:
        """Why the run tested nothing on a backend it was asked to test: a run that is green with nothing
        tested is a failure, and the message says what is missing."""
        owners = [self.runtime.name] if self.runtime is not None else self.selected()
        ran = {r.case.backend for r in self.results if r.outcome in ("passed", "failed", "xfailed", "xpassed")}
        out = []
        for name in owners:
            if name in ran:
                continue
            ids = self.generated.get(name, set())
            if ids and ids <= self.deselected and ran:
                continue  # the selection (-k) left this backend out, and others were tested
            skipped = [r for r in self.results if r.case.backend == name and r.outcome == "skipped"]
            if skipped:
                reasons = Counter(r.message for r in skipped).most_common(3)
                why = "; ".join(f"{reason} ({count} cases)" for reason, count in reasons)
                out.append(f"nothing was tested on {name}: all {len(skipped)} of its cases were skipped: {why}")
            elif ids:
                out.append(f"nothing was tested on {name}: the selection (-k) left out all its {len(ids)} cases")
            else:
                out.append(self._no_cases(name))
        return out

    def _no_cases(self, name: str) -> str:
        spec = self.specs.get(name)
        claimed = ", ".join(e.value for e in spec.encodings) if spec is not None else "no encoding"
        known = ", ".join(sorted({*FORMATS, "ggml"}))  # ggml: the LLM layer's own model
        layers = ", ".join(sorted(self.layers))
        return (
            f"no conformance case applies to backend {name!r}: it claims {claimed}, and the suite has models for "
            f"{known} only (layers run: {layers}; every layer loads a model the suite generates); nothing was "
            "tested. A backend for another encoding has no conformance cases until the suite can make its models"
        )

    # -- capabilities ------------------------------------------------------------------------------------

    def missing(self, case: Case) -> str | None:
        """Why ``case`` cannot run here, or ``None``; such a case is skipped, never failed."""
        if case.layer in ("abi", "component"):
            return self._missing_abi(case)
        if case.layer == "llm":
            return self._missing_llm(case)
        spec = self.specs[case.backend]
        unusable = self._unusable_target(case)
        if unusable is not None:
            return unusable
        formats = {f for f in spec.capabilities.features if ":" in f}
        if formats and f"{case.encoding}:{case.format}" not in formats:
            return f"{spec.name} declares the model formats {', '.join(sorted(formats))} only"
        notes = spec.capabilities.notes
        if case.layer == "operators":
            undeclared = self.operator_layer.missing(case, spec)
            if undeclared is not None:
                return undeclared
        elif TensorType(case.dtype) not in spec.capabilities.dtypes:
            return undeclared_types(spec.name, [case.dtype], notes)
        lacking = [f for f in case.requires if f not in spec.capabilities.features]
        if lacking:
            whys = [f"{f}: {notes[f]}" for f in lacking if f in notes]
            return f"{spec.name} does not declare {', '.join(lacking)}" + (f" ({'; '.join(whys)})" if whys else "")
        return None

    def _missing_llm(self, case: Case) -> str | None:
        host = self.llm_host(case)
        if isinstance(host, str):
            return host
        spec, model = self.specs[case.backend], host.config.model(LLM_MODEL)
        target = ExecutionTarget(case.target)
        if target not in spec.targets:
            return f"{spec.name} does not claim target {case.target}"
        available = spec.probe(target, host.registry.options(spec, model.options if model else None))
        return None if available.available else f"{spec.name} cannot use {case.target} here: {available.reason}"

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
                isolation=self.config.isolation if self.config else None,
            )
            self._runtimes[case.backend] = runtime
        return runtime

    def llm_host(self, case: Case) -> Host | str:
        """A host whose ``conformance-llm`` model runs on the case's backend, or why there is none."""
        host = self._llm_hosts.get(case.backend)
        if host is None:
            model = model_config(self.config, case.backend, case.target)
            if isinstance(model, str):
                host = model
            else:
                base = self.config or Config(source="<conformance>")
                host = self.host_class(base.with_models(model), plugins=self.plugins)
            self._llm_hosts[case.backend] = host
        return host

    def run(self, case: Case) -> str:
        """Run ``case``; returns the device used (backend layer) or the runtime's name and version (ABI)."""
        if case.layer == "llm":
            host = self.llm_host(case)
            assert not isinstance(host, str)
            return run_llm_case(case, host)
        if case.layer == "backend":
            return execute.run_backend_case(case, self.host.registry, self.models, self.tolerances)
        if case.layer == "operators":
            return self.operator_layer.run(case, self.specs[case.backend])
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
        self.operator_layer.close()
        for runtime in self._runtimes.values():
            if isinstance(runtime, WasinnRuntime):
                runtime.close()
        for host in self._llm_hosts.values():
            if not isinstance(host, str):
                host.close()
        self.host.close()
        shutil.rmtree(self.root, ignore_errors=True)
