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
ERROR_CODES = (
    "invalid-argument",
    "invalid-encoding",
    "timeout",
    "runtime-error",
    "unsupported-operation",
    "too-large",
    "not-found",
    "security",
    "unknown",
)
ENCODINGS = ("openvino", "onnx", "tensorflow", "pytorch", "tensorflowlite", "ggml", "autodetect")
TENSOR_TYPES = ("FP16", "FP32", "FP64", "BF16", "U8", "I32", "I64")
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


def _imports(version: str) -> str:
    stateful = version == "0.2.0-rc-2024-08-19"
    codes = " ".join(f'"{c}"' for c in ERROR_CODES)
    types = " ".join(f'"{t}"' for t in TENSOR_TYPES)
    encodings = " ".join(f'"{e}"' for e in ENCODINGS)
    if stateful:
        inference = """
    (export "[method]graph-execution-context.set-input"
      (func (param "self" $b) (param "name" string) (param "tensor" $own_t) (result (result (error $own_e)))))
    (export "[method]graph-execution-context.compute" (func (param "self" $b) (result (result (error $own_e)))))
    (export "[method]graph-execution-context.get-output"
      (func (param "self" $b) (param "name" string) (result (result $own_t (error $own_e)))))"""
    else:
        inference = """
    (type $named (tuple string $own_t))
    (export "[method]graph-execution-context.compute"
      (func (param "self" $b) (param "inputs" (list $named)) (result (result (list $named) (error $own_e)))))"""
    return f"""
  (import "wasi:nn/errors@{version}" (instance $errors
    (export "error" (type $error (sub resource)))
    (type $code_def (enum {codes}))
    (export "error-code" (type $code (eq $code_def)))
    (type $b (borrow $error))
    (export "[method]error.code" (func (param "self" $b) (result $code)))
    (export "[method]error.data" (func (param "self" $b) (result string)))))
  (alias export $errors "error" (type $error_t))
  (import "wasi:nn/tensor@{version}" (instance $tensor
    (export "tensor" (type $t (sub resource)))
    (type $tt_def (enum {types}))
    (export "tensor-type" (type $tt (eq $tt_def)))
    (type $own (own $t))
    (type $b (borrow $t))
    (export "[constructor]tensor"
      (func (param "dimensions" (list u32)) (param "ty" $tt) (param "data" (list u8)) (result $own)))
    (export "[method]tensor.dimensions" (func (param "self" $b) (result (list u32))))
    (export "[method]tensor.ty" (func (param "self" $b) (result $tt)))
    (export "[method]tensor.data" (func (param "self" $b) (result (list u8))))))
  (alias export $tensor "tensor" (type $tensor_t))
  (import "wasi:nn/inference@{version}" (instance $inference
    (alias outer $c $error_t (type $error_o))
    (export "error" (type $err (eq $error_o)))
    (alias outer $c $tensor_t (type $tensor_o))
    (export "tensor" (type $ten (eq $tensor_o)))
    (export "graph-execution-context" (type $ctx (sub resource)))
    (type $b (borrow $ctx))
    (type $own_t (own $ten))
    (type $own_e (own $err)){inference}))
  (alias export $inference "graph-execution-context" (type $ctx_t))
  (import "wasi:nn/graph@{version}" (instance $graph
    (alias outer $c $error_t (type $error_o))
    (export "error" (type $err (eq $error_o)))
    (alias outer $c $ctx_t (type $ctx_o))
    (export "graph-execution-context" (type $ctx (eq $ctx_o)))
    (export "graph" (type $g (sub resource)))
    (type $enc_def (enum {encodings}))
    (export "graph-encoding" (type $enc (eq $enc_def)))
    (type $tgt_def (enum "cpu" "gpu" "tpu"))
    (export "execution-target" (type $tgt (eq $tgt_def)))
    (type $own_g (own $g))
    (type $own_e (own $err))
    (type $own_c (own $ctx))
    (type $b (borrow $g))
    (export "[method]graph.init-execution-context" (func (param "self" $b) (result (result $own_c (error $own_e)))))
    (export "load" (func (param "builder" (list (list u8))) (param "encoding" $enc) (param "target" $tgt)
      (result (result $own_g (error $own_e)))))
    (export "load-by-name" (func (param "name" string) (result (result $own_g (error $own_e)))))))
  (alias export $graph "graph" (type $graph_t))"""


_LOWERED = """
  (core func $error_code (canon lower (func $errors "[method]error.code")))
  (core func $error_data (canon lower (func $errors "[method]error.data") (memory $mem) (realloc $realloc)))
  (core func $error_drop (canon resource.drop $error_t))
  (core func $tensor_new (canon lower (func $tensor "[constructor]tensor") (memory $mem)))
  (core func $tensor_dims (canon lower (func $tensor "[method]tensor.dimensions") (memory $mem) (realloc $realloc)))
  (core func $tensor_ty (canon lower (func $tensor "[method]tensor.ty")))
  (core func $tensor_data (canon lower (func $tensor "[method]tensor.data") (memory $mem) (realloc $realloc)))
  (core func $tensor_drop (canon resource.drop $tensor_t))
  (core func $graph_load (canon lower (func $graph "load") (memory $mem) (realloc $realloc)))
  (core func $graph_by_name (canon lower (func $graph "load-by-name") (memory $mem) (realloc $realloc)))
  (core func $graph_init (canon lower (func $graph "[method]graph.init-execution-context") (memory $mem)))
  (core func $graph_drop (canon resource.drop $graph_t))
  (core func $ctx_drop (canon resource.drop $ctx_t))"""

_LOWERED_INFERENCE = {
    "0.2.0-rc-2024-10-28": """
  (core func $ctx_compute (canon lower (func $inference "[method]graph-execution-context.compute")
    (memory $mem) (realloc $realloc)))""",
    "0.2.0-rc-2024-08-19": """
  (core func $ctx_set_input (canon lower (func $inference "[method]graph-execution-context.set-input")
    (memory $mem)))
  (core func $ctx_compute (canon lower (func $inference "[method]graph-execution-context.compute") (memory $mem)))
  (core func $ctx_get_output (canon lower (func $inference "[method]graph-execution-context.get-output")
    (memory $mem)))""",
}

_INFER_IMPORTS = {
    "0.2.0-rc-2024-10-28": """
    (import "nn" "ctx_compute" (func $ctx_compute (param i32 i32 i32 i32)))""",
    "0.2.0-rc-2024-08-19": """
    (import "nn" "ctx_set_input" (func $ctx_set_input (param i32 i32 i32 i32 i32)))
    (import "nn" "ctx_compute" (func $ctx_compute (param i32 i32)))
    (import "nn" "ctx_get_output" (func $ctx_get_output (param i32 i32 i32 i32)))""",
}

_INFER = {
    "0.2.0-rc-2024-10-28": """
  (func $infer (param $ctx i32) (param $t i32) (param $name i32) (param $len i32) (result i32)
    (local $p i32) (local $n i32) (local $i i32)
    (i32.store (i32.const NAMED) (local.get $name))
    (i32.store offset=4 (i32.const NAMED) (local.get $len))
    (i32.store offset=8 (i32.const NAMED) (local.get $t))
    (call $ctx_compute (local.get $ctx) (i32.const NAMED) (i32.const 1) (i32.const RET))
    (if (i32.load8_u (i32.const RET))
      (then (global.set $err (i32.load offset=4 (i32.const RET))) (return (i32.const -1))))
    (local.set $p (i32.load offset=4 (i32.const RET)))
    (local.set $n (i32.load offset=8 (i32.const RET)))
    (if (i32.eqz (local.get $n)) (then (return (i32.const -2))))
    (global.set $out_name_ptr (i32.load (local.get $p)))
    (global.set $out_name_len (i32.load offset=4 (local.get $p)))
    (local.set $i (i32.const 1))
    (block $done (loop $more
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (call $tensor_drop (i32.load offset=8 (i32.add (local.get $p) (i32.mul (local.get $i) (i32.const 12)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $more)))
    (i32.load offset=8 (local.get $p)))""",
    "0.2.0-rc-2024-08-19": """
  (func $infer (param $ctx i32) (param $t i32) (param $name i32) (param $len i32) (result i32)
    (call $ctx_set_input (local.get $ctx) (local.get $name) (local.get $len) (local.get $t) (i32.const RET))
    (if (i32.load8_u (i32.const RET))
      (then (global.set $err (i32.load offset=4 (i32.const RET))) (return (i32.const -1))))
    (call $ctx_compute (local.get $ctx) (i32.const RET))
    (if (i32.load8_u (i32.const RET))
      (then (global.set $err (i32.load offset=4 (i32.const RET))) (return (i32.const -1))))
    (call $ctx_get_output (local.get $ctx) (i32.const OUT_NAME) (i32.const OUT_NAME_LEN) (i32.const RET))
    (call $ok (i32.const RET)))""",
}

_MAIN = """
  (core module $main
    (import "libc" "memory" (memory 1))
    (import "libc" "reset_heap" (func $reset_heap))
    (import "nn" "error_code" (func $error_code (param i32) (result i32)))
    (import "nn" "error_data" (func $error_data (param i32 i32)))
    (import "nn" "error_drop" (func $error_drop (param i32)))
    (import "nn" "tensor_new" (func $tensor_new (param i32 i32 i32 i32 i32) (result i32)))
    (import "nn" "tensor_dims" (func $tensor_dims (param i32 i32)))
    (import "nn" "tensor_ty" (func $tensor_ty (param i32) (result i32)))
    (import "nn" "tensor_data" (func $tensor_data (param i32 i32)))
    (import "nn" "tensor_drop" (func $tensor_drop (param i32)))
    (import "nn" "graph_load" (func $graph_load (param i32 i32 i32 i32 i32)))
    (import "nn" "graph_by_name" (func $graph_by_name (param i32 i32 i32)))
    (import "nn" "graph_init" (func $graph_init (param i32 i32)))
    (import "nn" "graph_drop" (func $graph_drop (param i32)))
    (import "nn" "ctx_drop" (func $ctx_drop (param i32)))INFER_IMPORTS
    (global $err (mut i32) (i32.const 0))
    (global $out_name_ptr (mut i32) (i32.const 0))
    (global $out_name_len (mut i32) (i32.const 0))
    (func $ok (param $ret i32) (result i32)
      (if (result i32) (i32.eqz (i32.load8_u (local.get $ret)))
        (then (i32.load offset=4 (local.get $ret)))
        (else (global.set $err (i32.load offset=4 (local.get $ret))) (i32.const -1))))
    (func $by_name (param $p i32) (param $n i32) (result i32)
      (call $graph_by_name (local.get $p) (local.get $n) (i32.const RET))
      (call $ok (i32.const RET)))
    (func $load (param $builders i32) (param $n i32) (result i32)
      (call $graph_load (local.get $builders) (local.get $n) (i32.const ENCODING) (i32.const 0) (i32.const RET))
      (call $ok (i32.const RET)))
    (func $init (param $g i32) (result i32)
      (call $graph_init (local.get $g) (i32.const RET))
      (call $ok (i32.const RET)))
    (func $input (result i32)
      (call $tensor_new (i32.const DIMS) (i32.const RANK) (i32.const TYPE) (i32.const IN) (i32.const IN_LEN)))
    (func $memeq (param $a i32) (param $b i32) (param $n i32) (result i32)
      (local $i i32)
      (block $done (loop $more
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $more)))
      (i32.const 1))
    (func $check (param $t i32) (result i32)
      (call $tensor_data (local.get $t) (i32.const RET2))
      (if (i32.ne (i32.load offset=4 (i32.const RET2)) (i32.const EXP_LEN)) (then (return (i32.const 0))))
      (call $memeq (i32.load (i32.const RET2)) (i32.const EXP) (i32.const EXP_LEN)))
    INFER
    (func $one_inference (param $g i32) (result i32)
      (local $ctx i32) (local $out i32)
      (local.set $ctx (call $init (local.get $g)))
      (if (i32.lt_s (local.get $ctx) (i32.const 0)) (then (return (i32.const 11))))
      (local.set $out (call $infer (local.get $ctx) (call $input) (i32.const IN_NAME) (i32.const IN_NAME_LEN)))
      (if (i32.lt_s (local.get $out) (i32.const 0)) (then (call $ctx_drop (local.get $ctx)) (return (i32.const 12))))
      (if (i32.eqz (call $check (local.get $out))) (then (return (i32.const 13))))
      (call $tensor_drop (local.get $out))
      (call $ctx_drop (local.get $ctx))
      (i32.const 0))
    (func $case (export "case") (result i32)
      (local $g i32) (local $ctx i32) (local $out i32) (local $r i32) (local $i i32)
      BODY)
    (func (export "run") (result i32) (i32.ne (call $case) (i32.const 0))))"""

_LIBC = """
  (core module $libc
    (memory (export "memory") PAGES)
    DATA
    (global $heap (mut i32) (i32.const HEAP))
    (func (export "reset_heap") (global.set $heap (i32.const HEAP)))
    (func (export "realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32) (local $pages i32)
      (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
      (global.set $heap (i32.add (local.get $p) (local.get $size)))
      (local.set $pages (i32.shr_u (i32.add (global.get $heap) (i32.const 65535)) (i32.const 16)))
      (if (i32.gt_u (local.get $pages) (memory.size))
        (then (if (i32.lt_s (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const 0))
          (then unreachable))))
      (local.get $p)))"""


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
        _MAIN.replace("INFER_IMPORTS", _INFER_IMPORTS[version])
        .replace("INFER", _INFER[version])
        .replace("BODY", case.body)
    )
    libc = _LIBC.replace("PAGES", str(heap // 0x10000 + 1)).replace("HEAP", str(heap))
    libc = libc.replace(
        "DATA", "\n    ".join(f"(data (i32.const {a}) {_bytes(b)})" for a, b in sorted(segments.items()))
    )
    for key in sorted(constants, key=len, reverse=True):  # longest first: NAME_LEN before NAME
        main = main.replace(f"(i32.const {key})", f"(i32.const {constants[key]})")
    lowered_inference = _LOWERED_INFERENCE[version]
    infer_exports = (
        '(export "ctx_compute" (func $ctx_compute))'
        if version == "0.2.0-rc-2024-10-28"
        else '(export "ctx_set_input" (func $ctx_set_input)) (export "ctx_compute" (func $ctx_compute))'
        ' (export "ctx_get_output" (func $ctx_get_output))'
    )
    nn_exports = " ".join(f'(export "{name}" (func ${name}))' for name in _NN_FUNCS)
    return f""";; wasinn-conformance component case {case.name} for wasi:nn@{version}
(component $c{_imports(version)}{libc}
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "realloc" (core func $realloc)){_LOWERED}{lowered_inference}{main}
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "nn" (instance {nn_exports} {infer_exports}))))
  (func $case (result u32) (canon lift (core func $main "case")))
  (export "case" (func $case))
  (func $run (result (result)) (canon lift (core func $main "run")))
  (instance $run (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run)))
"""


_NN_FUNCS = (
    "error_code",
    "error_data",
    "error_drop",
    "tensor_new",
    "tensor_dims",
    "tensor_ty",
    "tensor_data",
    "tensor_drop",
    "graph_load",
    "graph_by_name",
    "graph_init",
    "graph_drop",
    "ctx_drop",
)
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
