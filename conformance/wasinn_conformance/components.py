"""The component layer: wasi:nn (WIT) from hand-written WAT components, for both versions wasinn hosts.

Each case is one component, generated here as WAT text around the case's body. It imports the four
wasi:nn interfaces of its version, holds the reference model and its tensors in data segments, and
exports ``case: func() -> u32`` (0: passed, else the number of the step that failed) and
``wasi:cli/run`` (so any runtime that runs components can be graded: ``err`` when a step failed).
In-process, wasinn also checks that nothing leaked: no tensor or error resource left in the host's
tables, no live graph or context once the guest dropped its handles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import component_templates as wat
from .component_templates import ENCODINGS, TENSOR_TYPES

__all__ = [
    "COMPONENT_CASES",
    "VERSIONS",
    "ComponentCase",
    "ComponentModel",
    "component_case",
    "component_wat",
    "reference_model",
]

VERSIONS = ("0.2.0-rc-2024-10-28", "0.2.0-rc-2024-08-19")
REPEAT = 1000
MANY_ERRORS = 100

# guest memory layout
RET, RET2, NAMED, DIMS = 0x10, 0x40, 0x80, 0x100
NAME, UNKNOWN, IN_NAME, OUT_NAME, BAD_NAME = 0x200, 0x240, 0x280, 0x2C0, 0x300
BUILDERS, BAD_BUILDERS, GARBAGE = 0x400, 0x440, 0x480
IN = 0x1000  # then the expected output, then the model files, then the heap


@dataclass(frozen=True)
class ComponentModel:
    """What a case component embeds: the reference model and one input with its expected output."""

    name: str  # the host's name for the model (load-by-name)
    encoding: str
    files: tuple[bytes, ...]
    input_name: str
    output_name: str
    input: np.ndarray
    expected: np.ndarray


@dataclass(frozen=True)
class ComponentCase:
    name: str
    doc: str
    body: str  # WAT instructions of `case`, returning a step number (0: passed)
    steps: dict[int, str] = field(default_factory=dict)
    versions: tuple[str, ...] = VERSIONS
    requires: tuple[str, ...] = ("named_models",)


_INFERENCE_STEPS = {
    11: "init-execution-context returned an error",
    12: "the inference returned an error or no output",
    13: "the output's data differs from the reference",
}

COMPONENT_CASES = (
    ComponentCase(
        "named_inference",
        "load-by-name, init-execution-context, a tensor in, the output's data equals the reference",
        "(local.set $g (call $by_name (i32.const NAME) (i32.const NAME_LEN)))"
        "(if (i32.lt_s (local.get $g) (i32.const 0)) (then (return (i32.const 1))))"
        "(local.set $r (call $one_inference (local.get $g)))"
        "(call $graph_drop (local.get $g)) (local.get $r)",
        {1: "load-by-name of the host's model returned an error", **_INFERENCE_STEPS},
    ),
    ComponentCase(
        "load_bytes",
        "load from the guest's own model bytes, then the same inference",
        "(local.set $g (call $load (i32.const BUILDERS) (i32.const N_BUILDERS)))"
        "(if (i32.lt_s (local.get $g) (i32.const 0)) (then (return (i32.const 1))))"
        "(local.set $r (call $one_inference (local.get $g)))"
        "(call $graph_drop (local.get $g)) (local.get $r)",
        {1: "load of the model bytes returned an error", **_INFERENCE_STEPS},
        requires=(),
    ),
    ComponentCase(
        "repeated_inference",
        f"{REPEAT} inferences on one context, every output dropped: the host's tables do not grow",
        "(local.set $g (call $by_name (i32.const NAME) (i32.const NAME_LEN)))"
        "(if (i32.lt_s (local.get $g) (i32.const 0)) (then (return (i32.const 1))))"
        "(local.set $ctx (call $init (local.get $g)))"
        "(if (i32.lt_s (local.get $ctx) (i32.const 0)) (then (return (i32.const 2))))"
        "(block $done (loop $more"
        "  (br_if $done (i32.ge_u (local.get $i) (i32.const REPEAT)))"
        "  (call $reset_heap)"
        "  (local.set $out (call $infer (local.get $ctx) (call $input) (i32.const IN_NAME) (i32.const IN_NAME_LEN)))"
        "  (if (i32.lt_s (local.get $out) (i32.const 0)) (then (return (i32.const 3))))"
        "  (if (i32.eqz (call $check (local.get $out))) (then (return (i32.const 4))))"
        "  (call $tensor_drop (local.get $out))"
        "  (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $more)))"
        "(call $ctx_drop (local.get $ctx)) (call $graph_drop (local.get $g)) (i32.const 0)",
        {
            1: "load-by-name returned an error",
            2: "init-execution-context returned an error",
            3: "an inference returned an error",
            4: "an output's data differs from the reference",
        },
    ),
    ComponentCase(
        "error_not_found",
        "load-by-name of an unknown name: an error resource with code not-found and a message",
        "(if (i32.ge_s (call $by_name (i32.const UNKNOWN) (i32.const UNKNOWN_LEN)) (i32.const 0))"
        "  (then (return (i32.const 1))))"
        "(if (i32.ne (call $error_code (global.get $err)) (i32.const 6)) (then (return (i32.const 2))))"
        "(call $error_data (global.get $err) (i32.const RET2))"
        "(if (i32.eqz (i32.load offset=4 (i32.const RET2))) (then (return (i32.const 3))))"
        "(call $error_drop (global.get $err)) (i32.const 0)",
        {
            1: "load-by-name of an unknown name succeeded",
            2: "the error's code is not not-found",
            3: "the error's data is empty",
        },
    ),
    ComponentCase(
        "error_bad_model",
        "load of bytes that are no model: an error (invalid-argument or runtime-error), never a trap",
        "(if (i32.ge_s (call $load (i32.const BAD_BUILDERS) (i32.const 1)) (i32.const 0))"
        "  (then (return (i32.const 1))))"
        "(local.set $r (call $error_code (global.get $err)))"
        "(call $error_drop (global.get $err))"
        "(if (i32.and (i32.ne (local.get $r) (i32.const 0)) (i32.ne (local.get $r) (i32.const 3)))"
        "  (then (return (i32.const 2))))"
        "(i32.const 0)",
        {1: "loading garbage succeeded", 2: "the error's code is neither invalid-argument nor runtime-error"},
        requires=(),
    ),
    ComponentCase(
        "error_unknown_input",
        "an input name the model does not have: invalid-argument, the input tensor consumed",
        "(local.set $g (call $by_name (i32.const NAME) (i32.const NAME_LEN)))"
        "(if (i32.lt_s (local.get $g) (i32.const 0)) (then (return (i32.const 1))))"
        "(local.set $ctx (call $init (local.get $g)))"
        "(if (i32.lt_s (local.get $ctx) (i32.const 0)) (then (return (i32.const 2))))"
        "(if (i32.ge_s (call $infer (local.get $ctx) (call $input) (i32.const BAD_NAME) (i32.const BAD_NAME_LEN))"
        "  (i32.const 0)) (then (return (i32.const 3))))"
        "(local.set $r (call $error_code (global.get $err)))"
        "(call $error_drop (global.get $err))"
        "(if (i32.ne (local.get $r) (i32.const 0)) (then (return (i32.const 4))))"
        "(call $ctx_drop (local.get $ctx)) (call $graph_drop (local.get $g)) (i32.const 0)",
        {
            1: "load-by-name returned an error",
            2: "init-execution-context returned an error",
            3: "an unknown input name was accepted",
            4: "the error's code is not invalid-argument",
        },
    ),
    ComponentCase(
        "many_errors",
        f"{MANY_ERRORS} error resources created and dropped: none left in the host",
        "(block $done (loop $more"
        "  (br_if $done (i32.ge_u (local.get $i) (i32.const MANY_ERRORS)))"
        "  (if (i32.ge_s (call $by_name (i32.const UNKNOWN) (i32.const UNKNOWN_LEN)) (i32.const 0))"
        "    (then (return (i32.const 1))))"
        "  (call $error_drop (global.get $err))"
        "  (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $more)))"
        "(i32.const 0)",
        {1: "load-by-name of an unknown name succeeded"},
    ),
    ComponentCase(
        "tensor_accessors",
        "a tensor's dimensions, ty and data return what its constructor was given",
        "(local.set $out (call $input))"
        "(if (i32.ne (call $tensor_ty (local.get $out)) (i32.const TYPE)) (then (return (i32.const 1))))"
        "(call $tensor_dims (local.get $out) (i32.const RET2))"
        "(if (i32.ne (i32.load offset=4 (i32.const RET2)) (i32.const RANK)) (then (return (i32.const 2))))"
        "(if (i32.eqz (call $memeq (i32.load (i32.const RET2)) (i32.const DIMS) (i32.const RANK_BYTES)))"
        "  (then (return (i32.const 2))))"
        "(call $tensor_data (local.get $out) (i32.const RET2))"
        "(if (i32.ne (i32.load offset=4 (i32.const RET2)) (i32.const IN_LEN)) (then (return (i32.const 3))))"
        "(if (i32.eqz (call $memeq (i32.load (i32.const RET2)) (i32.const IN) (i32.const IN_LEN)))"
        "  (then (return (i32.const 3))))"
        "(call $tensor_drop (local.get $out)) (i32.const 0)",
        {1: "ty() differs", 2: "dimensions() differ", 3: "data() differs"},
        requires=(),
    ),
    ComponentCase(
        "output_names",
        "compute returns the outputs under the model's own names",
        "(local.set $g (call $by_name (i32.const NAME) (i32.const NAME_LEN)))"
        "(if (i32.lt_s (local.get $g) (i32.const 0)) (then (return (i32.const 1))))"
        "(local.set $ctx (call $init (local.get $g)))"
        "(if (i32.lt_s (local.get $ctx) (i32.const 0)) (then (return (i32.const 2))))"
        "(local.set $out (call $infer (local.get $ctx) (call $input) (i32.const IN_NAME) (i32.const IN_NAME_LEN)))"
        "(if (i32.lt_s (local.get $out) (i32.const 0)) (then (return (i32.const 3))))"
        "(if (i32.ne (global.get $out_name_len) (i32.const OUT_NAME_LEN)) (then (return (i32.const 4))))"
        "(if (i32.eqz (call $memeq (global.get $out_name_ptr) (i32.const OUT_NAME) (i32.const OUT_NAME_LEN)))"
        "  (then (return (i32.const 4))))"
        "(call $tensor_drop (local.get $out)) (call $ctx_drop (local.get $ctx)) (call $graph_drop (local.get $g))"
        "(i32.const 0)",
        {
            1: "load-by-name returned an error",
            2: "init-execution-context returned an error",
            3: "compute returned an error",
            4: "the first output is not named as in the model",
        },
        versions=("0.2.0-rc-2024-10-28",),
    ),
)


#: The input of every case (the ABI layer's ``affine`` model, y = 2x + 3): exact in f32, so outputs compare bytewise.
INPUT = np.array([[0.0, 0.5, 1.0], [-1.0, 2.25, 3.0]], np.float32)


def reference_model(name: str, encoding: str, fmt: str, files: list[bytes]) -> ComponentModel:
    """The ``affine`` model with its input, expected output and names (formats without output names: "0")."""
    output = "y" if fmt in ("onnx", "ir") else "0"  # TorchScript and ExportedProgram outputs are positional
    return ComponentModel(name, encoding, tuple(files), "x", output, INPUT, 2 * INPUT + 3)


def component_case(name: str) -> ComponentCase:
    return next(c for c in COMPONENT_CASES if c.name == name)


def _bytes(data: bytes) -> str:
    return '"' + "".join(f"\\{b:02x}" for b in data) + '"'


def _align(value: int, to: int) -> int:
    return (value + to - 1) & ~(to - 1)


def _u32s(values: list[int]) -> bytes:
    return np.asarray(values, "<u4").tobytes()


def component_wat(version: str, case: ComponentCase, model: ComponentModel) -> str:
    """The WAT text of ``case``'s component for ``version`` around ``model``."""
    data = np.ascontiguousarray(model.input)
    expected = np.ascontiguousarray(model.expected).tobytes()
    strings = {
        NAME: model.name.encode(),
        UNKNOWN: b"no-such-model",
        IN_NAME: model.input_name.encode(),
        OUT_NAME: model.output_name.encode(),
        BAD_NAME: b"no-such-input",
    }
    exp = _align(IN + data.nbytes, 16)
    offset = model_at = _align(exp + len(expected), 0x10000)
    builders: list[int] = []
    segments = {DIMS: _u32s(list(data.shape)), IN: data.tobytes(), exp: expected, GARBAGE: b"this is not a model"}
    for blob in model.files:
        segments[offset] = blob
        builders += [offset, len(blob)]
        offset = _align(offset + len(blob), 16)
    segments[BUILDERS] = _u32s(builders)
    segments[BAD_BUILDERS] = _u32s([GARBAGE, len(segments[GARBAGE])])
    segments.update(strings)
    heap = _align(offset, 0x10000)
    constants = {
        "NAME_LEN": len(strings[NAME]),
        "UNKNOWN_LEN": len(strings[UNKNOWN]),
        "IN_NAME_LEN": len(strings[IN_NAME]),
        "OUT_NAME_LEN": len(strings[OUT_NAME]),
        "BAD_NAME_LEN": len(strings[BAD_NAME]),
        "N_BUILDERS": len(model.files),
        "ENCODING": ENCODINGS.index(model.encoding),
        "RANK_BYTES": 4 * data.ndim,
        "RANK": data.ndim,
        "TYPE": TENSOR_TYPES.index("FP32"),
        "IN_LEN": data.nbytes,
        "EXP_LEN": len(expected),
        "REPEAT": REPEAT,
        "MANY_ERRORS": MANY_ERRORS,
        "EXP": exp,
        "MODEL": model_at,
        **{k: v for k, v in globals().items() if k in _ADDRESSES},
    }
    main = (
        wat.MAIN.replace("INFER_IMPORTS", wat.INFER_IMPORTS[version])
        .replace("INFER", wat.INFER[version])
        .replace("BODY", case.body)
    )
    libc = wat.LIBC.replace("PAGES", str(heap // 0x10000 + 1)).replace("HEAP", str(heap))
    libc = libc.replace(
        "DATA", "\n    ".join(f"(data (i32.const {a}) {_bytes(b)})" for a, b in sorted(segments.items()))
    )
    for key in sorted(constants, key=len, reverse=True):  # longest first: NAME_LEN before NAME
        main = main.replace(f"(i32.const {key})", f"(i32.const {constants[key]})")
    lowered_inference = wat.LOWERED_INFERENCE[version]
    infer_exports = (
        '(export "ctx_compute" (func $ctx_compute))'
        if version == "0.2.0-rc-2024-10-28"
        else '(export "ctx_set_input" (func $ctx_set_input)) (export "ctx_compute" (func $ctx_compute))'
        ' (export "ctx_get_output" (func $ctx_get_output))'
    )
    nn_exports = " ".join(f'(export "{name}" (func ${name}))' for name in wat.NN_FUNCS)
    return f""";; wasinn-conformance component case {case.name} for wasi:nn@{version}
(component $c{wat.imports(version)}{libc}
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "realloc" (core func $realloc)){wat.LOWERED}{lowered_inference}{main}
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "nn" (instance {nn_exports} {infer_exports}))))
  (func $case (result u32) (canon lift (core func $main "case")))
  (export "case" (func $case))
  (func $run (result (result)) (canon lift (core func $main "run")))
  (instance $run (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run)))
"""


_ADDRESSES = {
    "RET",
    "RET2",
    "NAMED",
    "DIMS",
    "NAME",
    "UNKNOWN",
    "IN_NAME",
    "OUT_NAME",
    "BAD_NAME",
    "BUILDERS",
    "BAD_BUILDERS",
    "GARBAGE",
    "IN",
}
