;; A module that exports no memory: wasi_ephemeral_nn cannot reach its data, so load_by_name must
;; answer missing_memory (3). WASI itself needs the memory export too, so the verdict is the exit:
;; `_start` returns (exit 0) on errno 3 and traps (`unreachable`) on anything else.
(module
  (import "wasi_ephemeral_nn" "load_by_name" (func $load_by_name (param i32 i32 i32) (result i32)))
  (memory 1)
  (data (i32.const 16) "conformance")
  (func (export "_start")
    (if (i32.ne (call $load_by_name (i32.const 16) (i32.const 11) (i32.const 64)) (i32.const 3))
      (then unreachable))))
