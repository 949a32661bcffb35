"""The operator layer in a run: its cases per backend, what they need, and running them.

Every backend that claims ONNX gets ONNX's node test cases (the quick selection, or all of them with
``--operators complete``). Each case runs through the witx guest and the WIT components on a host of
its own that sends ONNX to the backend under test, and natively on the backend's library; see
:mod:`wasinn_conformance.operator_check` for how the results are judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import wasmtime
from wasmtime import component

from wasinn_core import WIT_VERSIONS, BackendSpec, Config, GraphEncoding, Host, PluginManager, TensorType

from .cases import Case, undeclared_types
from .native import NativeRun, native_runner
from .operator_check import Paths, check_case
from .operator_guests import GuestResult, WitGuest, WitxGuest
from .operator_templates import component_text, witx_text
from .operators import OperatorCase, collected, quick_selection

__all__ = ["MODES", "OperatorLayer", "operator_case_id"]

MODES = ("quick", "complete")


def operator_case_id(target: str, case: OperatorCase) -> str:
    return f"operators/onnx/{target}/{case.op}/{case.name}"


class _Backend:
    """What one backend's cases share: a host sending ONNX to it, the guests on that host, the native runner."""

    def __init__(self, spec: BackendSpec, host: Host, engine: wasmtime.Engine, guests: dict[str, Any]) -> None:
        self.spec, self.host = spec, host
        self.witx = WitxGuest(host, engine, guests["witx"])
        self.wit = {v: WitGuest(host, engine, guests[v], v) for v in WIT_VERSIONS}
        self.native: NativeRun | None = None
        self.no_native = ""
        try:
            self.native = native_runner(spec.name, spec.library, host.registry.options(spec))
        except LookupError as exc:
            self.no_native = str(exc)
        if self.native is None and not self.no_native:
            self.no_native = f"wasinn-conformance knows no native runner for the library {spec.library or '?'}"


class OperatorLayer:
    """The operator layer of one run (created lazily: collecting ONNX's cases takes a few seconds)."""

    def __init__(
        self,
        plugins: PluginManager,
        backends: Mapping[str, Mapping[str, Any]] | None,
        tolerances: dict[str, dict[str, float]],
        mode: str = "quick",
        host_class: type[Host] = Host,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"operators: expected one of {', '.join(MODES)}, got {mode!r}")
        self.plugins, self.options, self.tolerances, self.mode = plugins, backends or {}, tolerances, mode
        self.host_class = host_class
        self._by_id: dict[str, OperatorCase] = {}
        self._backends: dict[str, _Backend] = {}
        self._engine: wasmtime.Engine | None = None
        self._guests: dict[str, Any] = {}

    def cases(self, spec: BackendSpec, target: str) -> list[Case]:
        """The layer's cases for a backend claiming ONNX (none for any other)."""
        formats = {f for f in spec.capabilities.features if ":" in f}
        if spec.encodings.get(GraphEncoding.ONNX, 0) <= 0 or (formats and "onnx:onnx" not in formats):
            return []
        everything = collected().cases
        chosen = quick_selection(everything) if self.mode == "quick" else sorted(everything, key=lambda c: c.name)
        out = []
        for op in chosen:
            case_id = operator_case_id(target, op)
            self._by_id[case_id] = op
            requires = ("named_io",) + (("multi_output",) if len(op.output_names) > 1 else ())
            doc = f"ONNX node test {op.name} ({op.op})"
            out.append(
                Case(case_id, "operators", spec.name, "onnx", target, op.dtype, op.op, op.name, "onnx", requires, doc)
            )
        return out

    def operator(self, case: Case) -> OperatorCase:
        return self._by_id[case.id]

    def missing(self, case: Case, spec: BackendSpec) -> str | None:
        """Why the backend's declarations rule the case out (a tensor type it does not declare), or ``None``."""
        lacking = {t.value for t in self.operator(case).dtypes - spec.capabilities.dtypes}
        return undeclared_types(spec.name, lacking, spec.capabilities.notes)

    def _backend(self, spec: BackendSpec) -> _Backend:
        backend = self._backends.get(spec.name)
        if backend is None:
            if self._engine is None:
                self._engine = wasmtime.Engine()
                self._guests["witx"] = wasmtime.Module(self._engine, witx_text())
                for version in WIT_VERSIONS:
                    self._guests[version] = component.Component(self._engine, component_text(version))
            config = Config.from_dict(
                {
                    "preferences": {"onnx": [spec.name]},  # the guests' load() must reach the backend under test
                    "backends": {name: dict(options) for name, options in self.options.items()},
                },
                source="<conformance operators>",
            )
            host = self.host_class(config, plugins=self.plugins)
            backend = self._backends[spec.name] = _Backend(spec, host, self._engine, self._guests)
        return backend

    def run(self, case: Case, spec: BackendSpec) -> str:
        """Run and judge the case; returns what ran it (the report's ``device``)."""
        op = self.operator(case)
        backend = self._backend(spec)
        runs: dict[str, Any] = {}
        not_applicable: dict[str, str] = {}
        if TensorType.BF16 in op.input_types:
            not_applicable["witx"] = "the witx ABI has no bf16 tensor type"
        else:
            runs["witx"] = lambda c, sizes: backend.witx.run(c.model, c.inputs, sizes, case.target)
        for version, guest in backend.wit.items():
            runs[f"wit@{version.removeprefix('0.2.0-rc-')}"] = _wit_runner(guest, case.target)
        if backend.native is None:
            not_applicable["native"] = backend.no_native
        library = f"{spec.library} {spec.library_version}".strip()
        ran = check_case(op, spec.library or spec.name, backend.native, Paths(runs, not_applicable), self.tolerances)
        return f"{library}; {ran}"

    def summary(self) -> dict[str, Any]:
        """What the layer ran: ONNX's version, how many node tests wasi-nn can express, the mode."""
        import onnx

        found = collected()
        return {
            "onnx": onnx.__version__,
            "node_tests": found.total,
            "expressible": len(found.cases),
            "excluded": dict(sorted(found.excluded.items())),
            "mode": self.mode,
        }

    def close(self) -> None:
        for backend in self._backends.values():
            backend.host.close()
        self._backends.clear()


def _wit_runner(guest: WitGuest, target: str) -> Any:
    def run(case: OperatorCase, _sizes: list[int]) -> GuestResult:
        return guest.run(case.model, list(zip(case.input_names, case.inputs, strict=True)), case.output_names, target)

    return run
