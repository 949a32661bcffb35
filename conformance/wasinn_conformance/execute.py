"""Running one case: a backend-layer case through the backend protocol, an ABI case through a runtime."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np

from wasinn_core import ExecutionTarget, GraphEncoding, Host, Registry, Tensor

from . import models
from .cases import Case
from .components import component_case
from .runtimes import GUEST_MODELS, MODEL_NAME, Runtime, WasinnRuntime

__all__ = [
    "GUESTS",
    "WITX_ENCODING",
    "WITX_TARGET",
    "abi_arguments",
    "run_abi_case",
    "run_backend_case",
    "run_component_case",
    "tolerances",
]

GUESTS = Path(str(resources.files("wasinn_conformance") / "guests"))
WITX_ENCODING = {
    "openvino": 0,
    "onnx": 1,
    "tensorflow": 2,
    "pytorch": 3,
    "tensorflowlite": 4,
    "autodetect": 5,
    "ggml": 6,
}
WITX_TARGET = {"cpu": 0, "gpu": 1, "tpu": 2}


class CaseFailure(AssertionError):
    """A case's check failed; the message says what was expected and what came."""


def tolerances() -> dict[str, dict[str, float]]:
    data = tomllib.loads((resources.files("wasinn_conformance") / "tolerances.toml").read_text())
    return {k: {"rtol": float(v["rtol"]), "atol": float(v["atol"])} for k, v in data["dtype"].items()}


def _compare(name: str, got: Tensor, want: np.ndarray, dtype: str, tol: dict[str, float]) -> None:
    if got.type.value != dtype:
        raise CaseFailure(f"output {name!r}: type {got.type.value}, expected {dtype}")
    if got.dimensions != want.shape:
        raise CaseFailure(f"output {name!r}: shape {got.dimensions}, expected {want.shape}")
    values = np.asarray(got.data).astype(np.float64)
    target = want.astype(np.float64)
    diff = np.abs(values - target)
    limit = tol["atol"] + tol["rtol"] * np.abs(target)
    if np.any(diff > limit):
        at = np.unravel_index(int(np.argmax(diff - limit)), diff.shape)
        raise CaseFailure(
            f"output {name!r}: {int(np.sum(diff > limit))} of {diff.size} values off; at {tuple(map(int, at))} got "
            f"{values[at]!r}, expected {target[at]!r} (rtol {tol['rtol']}, atol {tol['atol']})"
        )


def run_backend_case(case: Case, registry: Registry, store: models.ModelStore, tol: dict[str, dict[str, float]]) -> str:
    """Load the case's model on its backend, run it and compare with the reference; returns the device used."""
    files = store.files(case.format, case.family, case.dtype)
    builders = [memoryview(p.read_bytes()) for p in files]
    loaded = registry.load(
        builders, GraphEncoding(case.encoding), (ExecutionTarget(case.target),), backend=case.backend
    )
    by_name = case.variant == "by_name"
    try:
        ctx = loaded.graph.init_execution_context()
        feeds = models.inputs(case.family, case.dtype, case.variant)
        order = list(feeds.items())
        if by_name:
            order.reverse()  # names must work in any order
        for name, array in order:
            ctx.set_input(name if by_name else list(feeds).index(name), Tensor.from_array(array))
        ctx.compute()
        for index, (name, want) in enumerate(models.reference(case.family, case.dtype, feeds).items()):
            _compare(name, ctx.get_output(name if by_name else index), want, case.dtype, tol[case.dtype])
        ctx.close()
    finally:
        loaded.graph.close()
    return loaded.info.device


def abi_arguments(
    case: Case, model_files: list[Path], unsupported_encoding: int, unavailable_target: int | None
) -> list[str]:
    """The guest's command line for an ABI case."""
    args = [
        case.family,
        "--encoding",
        str(WITX_ENCODING[case.encoding]),
        "--target",
        str(WITX_TARGET[case.target]),
        "--name",
        MODEL_NAME,
        "--unsupported-encoding",
        str(unsupported_encoding),
    ]
    if unavailable_target is not None:
        args += ["--unavailable-target", str(unavailable_target)]
    for path in model_files:
        args += ["--model", f"{GUEST_MODELS}/{path.name}"]
    return args


def run_abi_case(case: Case, runtime: Runtime, args: list[str]) -> None:
    """Run the case's guest on ``runtime``; raises :class:`CaseFailure` with its output unless it passed."""
    if case.guest == "missing_memory":
        result = runtime.run(GUESTS / "missing_memory.wat", [])
        if result.exit_code != 0:
            raise CaseFailure(
                "load_by_name from a module without memory did not return missing_memory (3): "
                f"exit {result.exit_code}\n{_head(result.stderr)}"
            )
        return
    result = runtime.run(GUESTS / f"{case.guest}.wasm", args)
    if result.exit_code == 0 and result.stdout.strip().endswith("PASS"):
        return
    text = "\n".join(part for part in (result.stdout.strip(), _head(result.stderr)) if part)
    raise CaseFailure(f"{case.family}: exit {result.exit_code}\n{text}")


def run_component_case(case: Case, runtime: Runtime, wat: Path) -> None:
    """Run a component case: in-process on wasinn (with its leak checks), else as a command on ``runtime``."""
    if isinstance(runtime, WasinnRuntime):
        _run_component_in_process(case, runtime.host, wat)
        return
    result = runtime.run(wat, [])
    if result.exit_code != 0:
        raise CaseFailure(
            f"{case.family}: exit {result.exit_code} (on wasinn the case reports its failing step)\n"
            f"{_head(result.stderr)}"
        )


def _run_component_in_process(case: Case, host: Host, wat: Path) -> None:
    import wasmtime
    from wasmtime import component

    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    guest = component.Component.from_file(engine, str(wat))
    linker = component.Linker(engine)
    binding = host.add_to_component_linker(linker, store)
    try:
        instance = linker.instantiate(store, guest)
        run = instance.get_func(store, "case")
        step = run(store)
        run.post_return(store)
        if step:
            why = component_case(case.family).steps.get(step, "?")
            raise CaseFailure(f"{case.family} (wasi:nn@{case.variant}): step {step}: {why}")
        leaks = [
            f"{count} {what}"
            for count, what in (
                (len(binding.tensors), "tensor resources"),
                (len(binding.errors), "error resources"),
                (binding.session.live_graphs, "graphs"),
                (binding.session.live_contexts, "execution contexts"),
            )
            if count
        ]
        if leaks:
            raise CaseFailure(f"{case.family}: the host still holds {', '.join(leaks)} that the guest dropped")
    finally:
        binding.session.close()


# wasm backtrace frames ("0:  0x5e63 - <unknown>!..."), Rust frames ("12: tokio::..."), and their notes
_FRAME = re.compile(r"\s*\d+:\s+(0x[0-9a-f]+ - |[\w<].*::)|\s+at |Stack backtrace:|note: ")


def _head(text: str, lines: int = 8) -> str:
    """The informative start of a runtime's stderr, without backtrace frames."""
    kept = [line for line in text.strip().splitlines() if line.strip() and not _FRAME.match(line)]
    return "\n".join(kept[:lines])
