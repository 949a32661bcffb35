"""A guest laid out exactly like one built with the Rust wasi-nn 0.6 crate runs unchanged."""

from __future__ import annotations

import numpy as np
import wasmtime

from wasinn_core import Host

from .conftest import ROOT

WAT = ROOT / "guests" / "wat" / "rust_wasi_nn_0_6.wat"


def instantiate(host: Host):
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    host.add_to_linker(linker, store)
    instance = linker.instantiate(store, wasmtime.Module(engine, WAT.read_text()))
    exports = instance.exports(store)
    memory = np.frombuffer(exports["memory"].get_buffer_ptr(store), np.uint8)
    return store, exports, memory


def test_rust_crate_layout_load_and_classify(host, digits_onnx, digit_image, reference_probs):
    store, exports, mem = instantiate(host)
    model_ptr, input_ptr, out_ptr = 0x1000, 0x1000 + len(digits_onnx) + 8 & ~7, 0x900
    mem[model_ptr : model_ptr + len(digits_onnx)] = np.frombuffer(digits_onnx, np.uint8)
    mem[input_ptr : input_ptr + 256] = digit_image.view(np.uint8).reshape(-1)
    err = exports["classify_bytes"](store, model_ptr, len(digits_onnx), input_ptr, 256, out_ptr, 40)
    assert err == 0
    assert exports["out_size"](store) == 40
    np.testing.assert_array_equal(mem[out_ptr : out_ptr + 40].view(np.float32).reshape(1, 10), reference_probs)


def test_rust_crate_layout_build_from_cache(host, digit_image, reference_probs):
    store, exports, mem = instantiate(host)
    mem[0x2000 : 0x2000 + 256] = digit_image.view(np.uint8).reshape(-1)
    assert exports["classify_named"](store, 0x2000, 256, 0x900, 40) == 0
    np.testing.assert_array_equal(mem[0x900 : 0x900 + 40].view(np.float32).reshape(1, 10), reference_probs)
    # a too-small Rust buffer gets too_large, and the required size in out_size
    assert exports["classify_named"](store, 0x2000, 256, 0x900, 16) == 7
    assert exports["out_size"](store) == 40
