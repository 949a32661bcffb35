"""The operator layer's guests, as WAT text: a core module on the witx ABI and a component per WIT version.

Both serve many cases from one instance. The host writes a case into the guest's memory (core module)
or passes it as arguments (component); the guest makes every wasi-nn call itself and reports each
step's result, then releases its graph and context, so the next case starts from a clean instance.
"""

from __future__ import annotations

from . import component_templates as wat

__all__ = ["component_text", "witx_text"]

#: The case record of the core module (u32 fields). The host fills 0-28; the guest writes 32-56.
CASE_FIELDS = (
    "builders",  # 0: {ptr, len} array
    "n_builders",  # 4
    "encoding",  # 8
    "target",  # 12
    "n_inputs",  # 16
    "inputs",  # 20: 20-byte witx tensor records
    "n_outputs",  # 24
    "outputs",  # 28: {ptr, max, written, errno} per output
    "step",  # 32: 0 done, 1 load, 2 init, 3 set_input, 4 compute, 5 get_output, 6 finalize, 7 unload
    "errno",  # 36
    "index",  # 40: the input or output of step 3 or 5
    "graph",  # 44
    "context",  # 48
)
CASE_SIZE = 4 * len(CASE_FIELDS)
STEPS = {
    1: "load",
    2: "init_execution_context",
    3: "set_input",
    4: "compute",
    5: "get_output",
    6: "finalize_execution_context",
    7: "unload",
}
HEAP = 1024


def witx_text() -> str:
    """A core module importing ``wasi_ephemeral_nn`` (with the unload and finalize extensions)."""
    imports = {
        "load": 5,
        "init_execution_context": 2,
        "set_input": 3,
        "compute": 1,
        "get_output": 5,
        "finalize_execution_context": 1,
        "unload": 1,
    }
    lines = [
        f'  (import "wasi_ephemeral_nn" "{name}" (func ${name} (param{" i32" * n}) (result i32)))'
        for name, n in imports.items()
    ]
    return f""";; wasinn-conformance operator guest (witx): one instance serves many cases
(module
{chr(10).join(lines)}
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const {HEAP}))
  (func (export "alloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then (if (i32.lt_s (memory.grow (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535))
                                                            (i32.const 16)) (memory.size))) (i32.const 0))
              (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))
  (func (export "reset") (global.set $heap (i32.const {HEAP})))
  (func $stop (param $c i32) (param $step i32) (param $errno i32) (param $index i32)
    (i32.store offset=32 (local.get $c) (local.get $step))
    (i32.store offset=36 (local.get $c) (local.get $errno))
    (i32.store offset=40 (local.get $c) (local.get $index)))
  (func (export "run") (param $c i32) (result i32)
    (local $e i32) (local $i i32) (local $o i32) (local $g i32) (local $ctx i32)
    (call $stop (local.get $c) (i32.const 0) (i32.const 0) (i32.const 0))
    (local.set $e (call $load (i32.load (local.get $c)) (i32.load offset=4 (local.get $c))
      (i32.load offset=8 (local.get $c)) (i32.load offset=12 (local.get $c)) (i32.add (local.get $c) (i32.const 44))))
    (if (local.get $e)
      (then (call $stop (local.get $c) (i32.const 1) (local.get $e) (i32.const 0)) (return (i32.const 1))))
    (local.set $g (i32.load offset=44 (local.get $c)))
    (local.set $e (call $init_execution_context (local.get $g) (i32.add (local.get $c) (i32.const 48))))
    (if (local.get $e) (then
      (call $stop (local.get $c) (i32.const 2) (local.get $e) (i32.const 0))
      (drop (call $unload (local.get $g)))
      (return (i32.const 2))))
    (local.set $ctx (i32.load offset=48 (local.get $c)))
    (block $done
      (block $inputs_set
        (loop $more
          (br_if $inputs_set (i32.ge_u (local.get $i) (i32.load offset=16 (local.get $c))))
          (local.set $e (call $set_input (local.get $ctx) (local.get $i)
            (i32.add (i32.load offset=20 (local.get $c)) (i32.mul (local.get $i) (i32.const 20)))))
          (if (local.get $e) (then (call $stop (local.get $c) (i32.const 3) (local.get $e) (local.get $i)) (br $done)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $more)))
      (local.set $e (call $compute (local.get $ctx)))
      (if (local.get $e) (then (call $stop (local.get $c) (i32.const 4) (local.get $e) (i32.const 0)) (br $done)))
      (local.set $i (i32.const 0))
      (block $outputs_read
        (loop $more
          (br_if $outputs_read (i32.ge_u (local.get $i) (i32.load offset=24 (local.get $c))))
          (local.set $o (i32.add (i32.load offset=28 (local.get $c)) (i32.mul (local.get $i) (i32.const 16))))
          (local.set $e (call $get_output (local.get $ctx) (local.get $i) (i32.load (local.get $o))
            (i32.load offset=4 (local.get $o)) (i32.add (local.get $o) (i32.const 8))))
          (i32.store offset=12 (local.get $o) (local.get $e))
          (if (i32.and (i32.ne (local.get $e) (i32.const 0)) (i32.eqz (i32.load offset=32 (local.get $c))))
            (then (call $stop (local.get $c) (i32.const 5) (local.get $e) (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $more))))
    (local.set $e (call $finalize_execution_context (local.get $ctx)))
    (if (i32.and (i32.ne (local.get $e) (i32.const 0)) (i32.eqz (i32.load offset=32 (local.get $c))))
      (then (call $stop (local.get $c) (i32.const 6) (local.get $e) (i32.const 0))))
    (local.set $e (call $unload (local.get $g)))
    (if (i32.and (i32.ne (local.get $e) (i32.const 0)) (i32.eqz (i32.load offset=32 (local.get $c))))
      (then (call $stop (local.get $c) (i32.const 7) (local.get $e) (i32.const 0))))
    (i32.load offset=32 (local.get $c))))
"""


# -- components ---------------------------------------------------------------------------------------

RET, BUILDERS, RESULT, COMPONENT_HEAP = 16, 64, 128, 4096
#: Steps a component reports: where the wasi:nn error came from.
COMPONENT_STEPS = {1: "load", 2: "init-execution-context", 3: "set-input", 4: "compute", 5: "get-output"}

_INFER = {
    "0.2.0-rc-2024-10-28": """
    (local.set $named (call $alloc (i32.mul (local.get $n_in) (i32.const 12))))
    (block $built (loop $more
      (br_if $built (i32.ge_u (local.get $i) (local.get $n_in)))
      (local.set $rec (i32.add (local.get $ins) (i32.mul (local.get $i) (i32.const 28))))
      (local.set $dst (i32.add (local.get $named) (i32.mul (local.get $i) (i32.const 12))))
      (i32.store (local.get $dst) (i32.load (local.get $rec)))
      (i32.store offset=4 (local.get $dst) (i32.load offset=4 (local.get $rec)))
      (i32.store offset=8 (local.get $dst) (call $tensor (local.get $rec)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $more)))
    (call $ctx_compute (global.get $ctx) (local.get $named) (local.get $n_in) (i32.const RET))
    (if (i32.load8_u (i32.const RET)) (then (return (call $fail (i32.const 4) (i32.load offset=4 (i32.const RET))))))
    (local.set $list (i32.load offset=4 (i32.const RET)))
    (local.set $n (i32.load offset=8 (i32.const RET)))
    (local.set $res (call $alloc (i32.mul (local.get $n) (i32.const 28))))
    (local.set $i (i32.const 0))
    (block $read (loop $more
      (br_if $read (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $rec (i32.add (local.get $list) (i32.mul (local.get $i) (i32.const 12))))
      (call $output (i32.add (local.get $res) (i32.mul (local.get $i) (i32.const 28)))
        (i32.load (local.get $rec)) (i32.load offset=4 (local.get $rec)) (i32.load offset=8 (local.get $rec)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $more)))""",
    "0.2.0-rc-2024-08-19": """
    (block $set (loop $more
      (br_if $set (i32.ge_u (local.get $i) (local.get $n_in)))
      (local.set $rec (i32.add (local.get $ins) (i32.mul (local.get $i) (i32.const 28))))
      (call $ctx_set_input (global.get $ctx) (i32.load (local.get $rec)) (i32.load offset=4 (local.get $rec))
        (call $tensor (local.get $rec)) (i32.const RET))
      (if (i32.load8_u (i32.const RET)) (then (return (call $fail (i32.const 3) (i32.load offset=4 (i32.const RET))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $more)))
    (call $ctx_compute (global.get $ctx) (i32.const RET))
    (if (i32.load8_u (i32.const RET)) (then (return (call $fail (i32.const 4) (i32.load offset=4 (i32.const RET))))))
    (local.set $n (local.get $n_out))
    (local.set $res (call $alloc (i32.mul (local.get $n) (i32.const 28))))
    (local.set $i (i32.const 0))
    (block $read (loop $more
      (br_if $read (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $rec (i32.add (local.get $outs) (i32.mul (local.get $i) (i32.const 8))))
      (call $ctx_get_output (global.get $ctx) (i32.load (local.get $rec)) (i32.load offset=4 (local.get $rec))
        (i32.const RET))
      (if (i32.load8_u (i32.const RET)) (then (return (call $fail (i32.const 5) (i32.load offset=4 (i32.const RET))))))
      (call $output (i32.add (local.get $res) (i32.mul (local.get $i) (i32.const 28)))
        (i32.load (local.get $rec)) (i32.load offset=4 (local.get $rec)) (i32.load offset=4 (i32.const RET)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $more)))""",
}

_MAIN = """
  (core module $main
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
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
    (import "nn" "graph_init" (func $graph_init (param i32 i32)))
    (import "nn" "graph_drop" (func $graph_drop (param i32)))
    (import "nn" "ctx_drop" (func $ctx_drop (param i32)))INFER_IMPORTS
    (global $g (mut i32) (i32.const -1))
    (global $ctx (mut i32) (i32.const -1))
    (func $alloc (param $size i32) (result i32)
      (call $realloc (i32.const 0) (i32.const 0) (i32.const 8) (local.get $size)))
    (func $release
      (if (i32.ge_s (global.get $ctx) (i32.const 0))
        (then (call $ctx_drop (global.get $ctx)) (global.set $ctx (i32.const -1))))
      (if (i32.ge_s (global.get $g) (i32.const 0))
        (then (call $graph_drop (global.get $g)) (global.set $g (i32.const -1)))))
    ;; the result tuple at RESULT: step u32, code u32, message string, outputs list
    (func $fail (param $step i32) (param $err i32) (result i32)
      (i32.store (i32.const RESULT) (local.get $step))
      (i32.store offset=4 (i32.const RESULT) (call $error_code (local.get $err)))
      (call $error_data (local.get $err) (i32.add (i32.const RESULT) (i32.const 8)))
      (call $error_drop (local.get $err))
      (i32.store offset=16 (i32.const RESULT) (i32.const 0))
      (i32.store offset=20 (i32.const RESULT) (i32.const 0))
      (call $release)
      (i32.const RESULT))
    ;; a tensor tuple (name string, dims list<u32>, ty u8, data list<u8>): 28 bytes
    (func $tensor (param $rec i32) (result i32)
      (call $tensor_new (i32.load offset=8 (local.get $rec)) (i32.load offset=12 (local.get $rec))
        (i32.load8_u offset=16 (local.get $rec))
        (i32.load offset=20 (local.get $rec)) (i32.load offset=24 (local.get $rec))))
    (func $output (param $dst i32) (param $name i32) (param $len i32) (param $t i32)
      (i32.store (local.get $dst) (local.get $name))
      (i32.store offset=4 (local.get $dst) (local.get $len))
      (call $tensor_dims (local.get $t) (i32.add (local.get $dst) (i32.const 8)))
      (i32.store8 offset=16 (local.get $dst) (call $tensor_ty (local.get $t)))
      (call $tensor_data (local.get $t) (i32.add (local.get $dst) (i32.const 20)))
      (call $tensor_drop (local.get $t)))
    (func (export "run") (param $model i32) (param $model_len i32) (param $ins i32) (param $n_in i32)
        (param $outs i32) (param $n_out i32) (param $target i32) (result i32)
      (local $i i32) (local $n i32) (local $rec i32) (local $dst i32)
      (local $named i32) (local $list i32) (local $res i32)
      (i32.store (i32.const BUILDERS) (local.get $model))
      (i32.store offset=4 (i32.const BUILDERS) (local.get $model_len))
      (call $graph_load (i32.const BUILDERS) (i32.const 1) (i32.const ONNX) (local.get $target) (i32.const RET))
      (if (i32.load8_u (i32.const RET)) (then (return (call $fail (i32.const 1) (i32.load offset=4 (i32.const RET))))))
      (global.set $g (i32.load offset=4 (i32.const RET)))
      (call $graph_init (global.get $g) (i32.const RET))
      (if (i32.load8_u (i32.const RET)) (then (return (call $fail (i32.const 2) (i32.load offset=4 (i32.const RET))))))
      (global.set $ctx (i32.load offset=4 (i32.const RET)))INFER
      (call $release)
      (i32.store (i32.const RESULT) (i32.const 0))
      (i32.store offset=4 (i32.const RESULT) (i32.const 0))
      (i32.store offset=8 (i32.const RESULT) (i32.const 0))
      (i32.store offset=12 (i32.const RESULT) (i32.const 0))
      (i32.store offset=16 (i32.const RESULT) (local.get $res))
      (i32.store offset=20 (i32.const RESULT) (local.get $n))
      (i32.const RESULT))
    (func (export "reset") (param i32) (call $reset_heap)))"""

_TENSOR_TUPLE = "(tuple string (list u32) u8 (list u8))"


def component_text(version: str) -> str:
    """The operator component for ``version``: ``run(model, inputs, output names, target)``."""
    main = (
        _MAIN.replace("INFER_IMPORTS", wat.INFER_IMPORTS[version])
        .replace("INFER", _INFER[version])
        .replace("(i32.const RET)", f"(i32.const {RET})")
        .replace("(i32.const BUILDERS)", f"(i32.const {BUILDERS})")
        .replace("(i32.const RESULT)", f"(i32.const {RESULT})")
        .replace("(i32.const ONNX)", f"(i32.const {wat.ENCODINGS.index('onnx')})")
    )
    libc = wat.LIBC.replace("PAGES", "1").replace("DATA", "").replace("HEAP", str(COMPONENT_HEAP))
    infer_exports = (
        '(export "ctx_compute" (func $ctx_compute))'
        if version == "0.2.0-rc-2024-10-28"
        else '(export "ctx_set_input" (func $ctx_set_input)) (export "ctx_compute" (func $ctx_compute))'
        ' (export "ctx_get_output" (func $ctx_get_output))'
    )
    nn_exports = " ".join(f'(export "{name}" (func ${name}))' for name in wat.NN_FUNCS)
    return f""";; wasinn-conformance operator component for wasi:nn@{version}: one instance serves many cases
(component $c{wat.imports(version)}{libc}
  (core instance $libc (instantiate $libc))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "realloc" (core func $realloc)){wat.LOWERED}{wat.LOWERED_INFERENCE[version]}{main}
  (core instance $main (instantiate $main
    (with "libc" (instance $libc))
    (with "nn" (instance {nn_exports} {infer_exports}))))
  (alias core export $main "reset" (core func $reset))
  (func $run (param "model" (list u8)) (param "inputs" (list {_TENSOR_TUPLE})) (param "outputs" (list string))
    (param "target" u32) (result (tuple u32 u32 string (list {_TENSOR_TUPLE})))
    (canon lift (core func $main "run") (memory $mem) (realloc $realloc) (post-return $reset)))
  (export "run" (func $run)))
"""
