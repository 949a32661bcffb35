;; The exact wasi_ephemeral_nn call sequence and memory layout of a guest built with the Rust
;; `wasi-nn` 0.6 crate (bytecodealliance/wasi-nn, rust/src/graph.rs and tensor.rs), written by hand
;; because a Rust wasm32-wasi toolchain is not available in this build environment:
;;   GraphBuilder::new(Onnx, CPU).build_from_bytes([model])  -> load(&[&[u8]] as (ptr,len)*n, n, 1, 0, &mut i32)
;;   graph.init_execution_context()                          -> init_execution_context(graph, &mut i32)
;;   ctx.set_input(0, TensorType::F32, &[1, 64], &pixels)     -> set_input(ctx, 0, &Tensor)
;;       Tensor is #[repr(C)] { dimensions: &[usize], tensor_type: TensorType, data: &[u8] }:
;;       dims (ptr, len-in-elements) @0, a #[repr(C)] enum (4 bytes) @8, data (ptr, len-in-bytes) @12
;;   ctx.compute()                                           -> compute(ctx)
;;   ctx.get_output(0, &mut [f32; 10])                       -> get_output(ctx, 0, ptr, len*4, &mut usize)
;;   GraphBuilder::build_from_cache(name)                    -> load_by_name(CString ptr, name.len(), &mut i32)
;; The host writes the model and input at the addresses given to the exports, as a guest's own
;; memory would hold them after std::fs::read.
(module
  (import "wasi_ephemeral_nn" "load" (func $load (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "load_by_name" (func $load_by_name (param i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "init_execution_context" (func $init (param i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "set_input" (func $set_input (param i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "compute" (func $compute (param i32) (result i32)))
  (import "wasi_ephemeral_nn" "get_output" (func $get_output (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  ;; scratch: 0x100 builder array, 0x110 graph, 0x114 ctx, 0x118 out_size, 0x120 dims, 0x130 Tensor
  ;; 0x200 name "digits\0"
  (data (i32.const 0x200) "digits\00")

  ;; Runs the sequence on a graph handle; returns 0 or the first failing errno.
  (func $run (param $graph i32) (param $input i32) (param $input_len i32) (param $out i32) (param $out_len i32)
        (result i32)
    (local $err i32)
    (local.set $err (call $init (local.get $graph) (i32.const 0x114)))
    (if (local.get $err) (then (return (local.get $err))))
    (i32.store (i32.const 0x120) (i32.const 1))
    (i32.store (i32.const 0x124) (i32.const 64))
    (i32.store (i32.const 0x130) (i32.const 0x120))      ;; dimensions.ptr
    (i32.store (i32.const 0x134) (i32.const 2))          ;; dimensions.len
    (i32.store (i32.const 0x138) (i32.const 1))          ;; tensor_type: F32 as a 4-byte repr(C) enum
    (i32.store (i32.const 0x13c) (local.get $input))     ;; data.ptr
    (i32.store (i32.const 0x140) (local.get $input_len)) ;; data.len
    (local.set $err (call $set_input (i32.load (i32.const 0x114)) (i32.const 0) (i32.const 0x130)))
    (if (local.get $err) (then (return (local.get $err))))
    (local.set $err (call $compute (i32.load (i32.const 0x114))))
    (if (local.get $err) (then (return (local.get $err))))
    (call $get_output (i32.load (i32.const 0x114)) (i32.const 0) (local.get $out) (local.get $out_len)
                      (i32.const 0x118)))

  (func (export "classify_bytes") (param $model i32) (param $model_len i32) (param $input i32) (param $input_len i32)
        (param $out i32) (param $out_len i32) (result i32)
    (local $err i32)
    (i32.store (i32.const 0x100) (local.get $model))
    (i32.store (i32.const 0x104) (local.get $model_len))
    (local.set $err (call $load (i32.const 0x100) (i32.const 1) (i32.const 1) (i32.const 0) (i32.const 0x110)))
    (if (local.get $err) (then (return (local.get $err))))
    (call $run (i32.load (i32.const 0x110)) (local.get $input) (local.get $input_len) (local.get $out)
               (local.get $out_len)))

  (func (export "classify_named") (param $input i32) (param $input_len i32) (param $out i32) (param $out_len i32)
        (result i32)
    (local $err i32)
    (local.set $err (call $load_by_name (i32.const 0x200) (i32.const 6) (i32.const 0x110)))
    (if (local.get $err) (then (return (local.get $err))))
    (call $run (i32.load (i32.const 0x110)) (local.get $input) (local.get $input_len) (local.get $out)
               (local.get $out_len)))

  (func (export "out_size") (result i32) (i32.load (i32.const 0x118)))
)
