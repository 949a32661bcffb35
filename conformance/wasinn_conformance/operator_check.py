"""Judging one operator case: wasinn against the library run natively, then the library against ONNX.

The order decides who a difference belongs to. Every path through wasinn (the witx guest, the WIT
components) must give what the library gives natively for the same model and inputs: the bytes within
the tensor type's tolerance, and through WIT the same shapes, types and names. Only then is the
library's own result compared with ONNX's expected outputs; a difference there is the library's, and
the message says so. A case the library cannot run natively is skipped with the library's error (wasinn
must still answer it with an error, never a trap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import final

import numpy as np

from wasinn_core import TensorType

from .native import NativeRun
from .operator_guests import GuestOutput, GuestResult
from .operators import OperatorCase

FLOATS = ("f16", "bf16", "f32", "f64")
#: Native reruns (on the same loaded model) before a difference between wasinn and the library is the host's.
RERUNS = 3

__all__ = ["HostFailure", "LibraryDeviation", "NotRunnable", "Paths", "check_case", "differences"]


class HostFailure(AssertionError):
    """wasinn does not give what the library gives natively: the host's failure."""


class LibraryDeviation(AssertionError):
    """wasinn gives the library's results exactly, and the library differs from ONNX's expected outputs."""


class NotRunnable(Exception):
    """The library cannot run the case natively; the reason is the library's error."""


@final
@dataclass(frozen=True)
class Paths:
    """How to run a case through wasinn, ``label -> run(case, output buffer sizes)``, and why a path does not."""

    runs: dict[str, Callable[[OperatorCase, list[int]], GuestResult]]
    not_applicable: dict[str, str]


def _dtype(array: np.ndarray) -> str:
    try:
        return TensorType.from_numpy(array.dtype).value
    except ValueError:
        return array.dtype.name


def differences(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str | None:
    """What differs between two arrays of one shape (NaN equals NaN, infinities must match), or ``None``."""
    if got.shape != want.shape:
        return f"shape {list(got.shape)}, expected {list(want.shape)}"
    if got.size == 0:
        return None
    if got.dtype.kind in "iub" and want.dtype.kind in "iub":
        bad = got.astype(np.int64) != want.astype(np.int64)
        limit = "exact"
    else:
        g, w = got.astype(np.float64), want.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            close = np.abs(g - w) <= atol + rtol * np.abs(w)
        bad = ~((g == w) | (np.isnan(g) & np.isnan(w)) | (np.isfinite(w) & close))
        limit = f"rtol {rtol:g}, atol {atol:g}"
    if not bad.any():
        return None
    at = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"{int(bad.sum())} of {bad.size} values off ({limit}); at {list(at)} got {got[at]!r}, expected {want[at]!r}"


def _path_differences(
    label: str,
    case: OperatorCase,
    outputs: Sequence[GuestOutput],
    native: Sequence[np.ndarray],
    tol: dict[str, dict],
    against: str = "the library's own result",
) -> str | None:
    if len(outputs) != len(native):
        return f"{label}: {len(outputs)} outputs, the library gives {len(native)}"
    for name, out, want in zip(case.output_names, outputs, native, strict=True):
        what = f"{label}: output {name!r}"
        if out.name is not None and out.name != name:
            return f"{what} is named {out.name!r}"
        if out.type is not None and out.type.value != _dtype(want):
            return f"{what} has type {out.type.value}, the library's is {_dtype(want)}"
        if out.dims is not None and out.dims != want.shape:
            return f"{what} has shape {list(out.dims)}, the library's is {list(want.shape)}"
        if len(out.data) != want.nbytes:
            shape = f"{_dtype(want)} {list(want.shape)}"
            return f"{what} is {len(out.data)} bytes, the library's is {want.nbytes} ({shape})"
        got = np.frombuffer(out.data, want.dtype).reshape(want.shape)
        limits = tol.get(_dtype(want), {"rtol": 0.0, "atol": 0.0})
        diff = differences(got, want, limits["rtol"], limits["atol"])
        if diff:
            return f"{what}: {diff}, against {against}"
    return None


def _outputs(arrays: Sequence[np.ndarray]) -> list[GuestOutput]:
    return [GuestOutput(np.ascontiguousarray(a).tobytes(), None, a.shape, None) for a in arrays]


def check_case(
    case: OperatorCase, library: str, native: NativeRun | None, paths: Paths, tol: dict[str, dict[str, float]]
) -> str:
    """Judge ``case``; returns what ran (for the report), raises one of this module's exceptions otherwise."""
    reference: list[np.ndarray] = list(case.expected)  # without a native run: ONNX's expected outputs
    native_error = ""
    if native is not None:
        try:
            reference = native(case.model, list(case.inputs))
        except Exception as exc:
            native_error = " ".join(str(exc).split())[:400] or type(exc).__name__
    sizes = [max(a.nbytes for a in pair) for pair in zip(reference, case.expected, strict=False)]
    sizes += [a.nbytes for a in case.expected[len(sizes) :]]
    results = {label: run(case, sizes) for label, run in paths.runs.items()}
    for label, result in results.items():
        if result.trapped:
            raise HostFailure(f"{label}: {result.failure}")
        if result.leaks:
            raise HostFailure(f"{label}: after the case the host still holds {result.leaks}")
    if native_error:
        answered = "; ".join(f"{label}: {r.failure or 'ran'}" for label, r in results.items())
        raise NotRunnable(f"{library} cannot run it natively: {native_error} (through wasinn: {answered})")
    for label, result in results.items():
        if result.failure:
            natively = f" ({library} runs it natively)" if native is not None else ""
            raise HostFailure(f"{label}: {result.failure}{natively}")
        diff = _path_differences(label, case, result.outputs, reference, tol)
        if diff and native is not None:
            for _ in range(RERUNS):  # the library may differ from itself: then wasinn cannot match either run
                rerun = _outputs(native(case.model, list(case.inputs)))
                again = _path_differences("another native run", case, rerun, reference, tol, "the first")
                if again:
                    raise LibraryDeviation(f"{library} itself gives different results for the same inputs: {again}")
        if diff:
            raise HostFailure(diff)
    if native is not None:
        for name, got, want in zip(case.output_names, reference, case.expected, strict=True):
            limits = tol.get(_dtype(want), {"rtol": 0.0, "atol": 0.0})
            if _dtype(want) in FLOATS:  # ONNX's own tolerance for the case, or the type's if looser
                limits = {"rtol": max(case.rtol, limits["rtol"]), "atol": max(case.atol, limits["atol"])}
            if _dtype(got) != _dtype(want):
                diff: str | None = f"type {_dtype(got)}, ONNX expects {_dtype(want)}"
            else:
                diff = differences(got, want, limits["rtol"], limits["atol"])
            if diff:
                raise LibraryDeviation(
                    f"{library} itself differs from ONNX's expected output (wasinn gives the library's result "
                    f"through {', '.join(results)}): output {name!r}: {diff}"
                )
    skipped = "".join(f"; {label} not run: {why}" for label, why in paths.not_applicable.items())
    return ", ".join(results) + skipped
