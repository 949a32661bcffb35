"""The operator layer's cases: ONNX's own node tests (``onnx.backend.test.case.node``) that wasi-nn can express.

ONNX ships about 1,900 node test cases, each a one-operator model (or its function expanded into
other operators) with inputs and expected outputs, all made in memory. A case is kept when every
graph input and output is a tensor of a type wasi-nn has (f16, bf16, f32, f64, u8, i32, i64); the
rest are counted with the reason (bool, string, int8, float8, sequences, optionals, ...).

The quick selection, run by default, is deterministic: for every operator its smallest case, plus the
smallest case of each property the layer must cover (rank 0, a zero-size dimension, rank 6 or more,
several outputs, every tensor type, a function expanded into other operators).
"""

from __future__ import annotations

import functools
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np

from wasinn_core import TensorType, onnx_signature

__all__ = ["FEATURES", "OperatorCase", "collected", "quick_selection"]

#: What the quick selection covers besides one case per operator, and how a case shows it.
FEATURES = ("rank0", "zero_size", "rank6", "multi_output", "expanded", *(t.value for t in TensorType))


@final
@dataclass(frozen=True)
class OperatorCase:
    """One ONNX node test case, with its model, inputs and ONNX's expected outputs."""

    name: str  # ONNX's test name, e.g. test_add_bcast
    op: str  # the operator, domain-qualified outside the default domain (ai.onnx.ml.Binarizer)
    model: bytes
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    inputs: tuple[np.ndarray, ...]
    expected: tuple[np.ndarray, ...]
    input_types: tuple[TensorType, ...]
    output_types: tuple[TensorType, ...]
    rtol: float
    atol: float
    features: frozenset[str] = field(default_factory=frozenset)

    @property
    def dtypes(self) -> frozenset[TensorType]:
        return frozenset(self.input_types + self.output_types)

    @property
    def size(self) -> int:
        """Bytes of model, inputs and expected outputs (the selection prefers small cases)."""
        return len(self.model) + sum(a.nbytes for a in self.inputs + self.expected)

    @property
    def dtype(self) -> str:
        """The case's tensor type for the capability matrix: its first output's."""
        return self.output_types[0].value if self.output_types else "-"


@final
@dataclass(frozen=True)
class Collection:
    """Every node test case: those wasi-nn can express, and a count of the others by reason."""

    cases: tuple[OperatorCase, ...]
    excluded: dict[str, int]
    total: int

    def by_name(self) -> dict[str, OperatorCase]:
        return {c.name: c for c in self.cases}


def _array(value: Any) -> np.ndarray | None:
    from onnx import TensorProto, numpy_helper

    if isinstance(value, TensorProto):
        return np.asarray(numpy_helper.to_array(value))
    return value if isinstance(value, np.ndarray) else None


def _contiguous(array: Any) -> np.ndarray:
    """A C-contiguous array of the same shape (``np.ascontiguousarray`` would make a 0-d array 1-d)."""
    array = np.asarray(array)
    return array if array.flags.c_contiguous else array.copy(order="C")


def _exclusion(model: Any, values: list[Any]) -> str | None:
    """Why wasi-nn cannot express this case, or ``None``."""
    from onnx import TensorProto

    signature = onnx_signature(model.SerializeToString())
    for port in signature.inputs + signature.outputs:
        if port.elem_type == 0:
            kinds = [
                v.type.WhichOneof("value") for v in [*model.graph.input, *model.graph.output] if v.name == port.name
            ]
            return f"a {(kinds[0] or 'value').removesuffix('_type')} input or output"
        if port.type is None:
            return f"a {TensorProto.DataType.Name(port.elem_type).lower()} input or output"
    if any(_array(v) is None for v in values):
        return "inputs or outputs that are not tensors"
    return None


def _features(inputs: tuple[np.ndarray, ...], expected: tuple[np.ndarray, ...], name: str) -> frozenset[str]:
    arrays = inputs + expected
    found: set[str] = set()
    if any(a.ndim == 0 for a in arrays):
        found.add("rank0")
    if any(a.size == 0 for a in arrays):
        found.add("zero_size")
    if any(a.ndim >= 6 for a in arrays):
        found.add("rank6")
    if len(expected) > 1:
        found.add("multi_output")
    if "_expanded" in name:
        found.add("expanded")
    return frozenset(found)


def _operator(model: Any, name: str, ops: dict[str, str]) -> str:
    nodes = model.graph.node
    if "_expanded" in name:
        return ops.get(name.split("_expanded")[0], nodes[0].op_type if nodes else "?")
    node = nodes[0]
    return f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type


@functools.cache
def collected() -> Collection:
    """ONNX's node test cases, made once per process (about 5 s: ONNX computes the expected outputs)."""
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        raw = collect_testcases()
    ops: dict[str, str] = {}
    for case in raw:
        if "_expanded" not in case.name and case.model.graph.node:
            ops[case.name] = _operator(case.model, case.name, ops)
    kept: list[OperatorCase] = []
    excluded: Counter[str] = Counter()
    for case in raw:
        if len(case.data_sets) != 1:
            excluded[f"{len(case.data_sets)} data sets"] += 1
            continue
        values = list(case.data_sets[0][0]) + list(case.data_sets[0][1])
        reason = _exclusion(case.model, values)
        if reason is not None:
            excluded[reason] += 1
            continue
        data = case.model.SerializeToString()
        signature = onnx_signature(data)
        inputs = tuple(_contiguous(_array(v)) for v in case.data_sets[0][0])
        expected = tuple(np.asarray(_array(v)) for v in case.data_sets[0][1])
        if len(inputs) != len(signature.inputs) or len(expected) != len(signature.outputs):
            excluded["data that does not match the graph's inputs and outputs"] += 1
            continue
        kept.append(
            OperatorCase(
                name=case.name,
                op=_operator(case.model, case.name, ops),
                model=data,
                input_names=tuple(p.name for p in signature.inputs),
                output_names=tuple(p.name for p in signature.outputs),
                inputs=inputs,
                expected=expected,
                input_types=tuple(p.type for p in signature.inputs if p.type is not None),
                output_types=tuple(p.type for p in signature.outputs if p.type is not None),
                rtol=float(case.rtol),
                atol=float(case.atol),
                features=_features(inputs, expected, case.name),
            )
        )
    return Collection(tuple(kept), dict(excluded), len(raw))


def quick_selection(cases: tuple[OperatorCase, ...]) -> list[OperatorCase]:
    """One case per operator (its smallest, not expanded when it can), plus the smallest case of each feature."""
    order = sorted(cases, key=lambda c: ("expanded" in c.features, c.size, c.name))
    chosen: dict[str, OperatorCase] = {}
    for case in order:
        chosen.setdefault(f"op:{case.op}", case)
    for feature in FEATURES:
        has = [c for c in sorted(cases, key=lambda c: (c.size, c.name)) if _shows(c, feature)]
        if has and not any(_shows(c, feature) for c in chosen.values()):
            chosen[f"feature:{feature}"] = has[0]
    return sorted({c.name: c for c in chosen.values()}.values(), key=lambda c: (c.op, c.name))


def _shows(case: OperatorCase, feature: str) -> bool:
    return feature in case.features or feature in {t.value for t in case.dtypes}
