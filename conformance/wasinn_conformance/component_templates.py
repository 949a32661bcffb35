"""The WAT text around a component case: wasi:nn imports per WIT version, the lowered functions, the helpers.

``components.component_wat`` fills the placeholders (``BODY``, ``INFER``, addresses and lengths written
as ``(i32.const NAME)``) and the data segments.
"""

from __future__ import annotations

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


def imports(version: str) -> str:
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


LOWERED = """
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

LOWERED_INFERENCE = {
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

INFER_IMPORTS = {
    "0.2.0-rc-2024-10-28": """
    (import "nn" "ctx_compute" (func $ctx_compute (param i32 i32 i32 i32)))""",
    "0.2.0-rc-2024-08-19": """
    (import "nn" "ctx_set_input" (func $ctx_set_input (param i32 i32 i32 i32 i32)))
    (import "nn" "ctx_compute" (func $ctx_compute (param i32 i32)))
    (import "nn" "ctx_get_output" (func $ctx_get_output (param i32 i32 i32 i32)))""",
}

INFER = {
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

MAIN = """
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

LIBC = """
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


NN_FUNCS = (
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
