"""wasi:nn (WIT) for components: both versions, real guests, ownership, limits, enum names, data paths."""

from __future__ import annotations

import re
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wasmtime
from wasmtime import component

from wasinn_conformance.components import COMPONENT_CASES, VERSIONS, component_case, component_wat, reference_model
from wasinn_core import Config, Host, Limits, run_command
from wasinn_core._abi._wit import WIT_ENCODINGS, WIT_ERROR_CODES, WIT_TARGETS, WIT_TENSOR_TYPES, WIT_VERSIONS
from wasinn_core._run import GuestError, RunSpec, is_component
from wasinn_core.testing import run_guest

from .conftest import DIGITS_IMAGES, DIGITS_MODEL, GUESTS, ROOT

sys.path.insert(0, str(ROOT / "guests" / "components"))
import build as component_build

PRELOADS = {
    "onnx": ("onnx", ["digits.onnx"]),
    "pytorch": ("pytorch", ["digits.pt2"]),
    "openvino": ("openvino", ["digits.xml", "digits.bin"]),
}


@pytest.fixture(scope="session")
def digits_components() -> dict[str, Path]:
    """The componentize-py digits guest for each WIT version (built once, cached under .cache/)."""
    built = component_build.build()
    return {world.removeprefix("digits-"): path for world, path in built.items()}


def _digits_host(backend: str) -> Host:
    encoding, files = PRELOADS[backend]
    model = {"name": "digits", "encoding": encoding, "paths": [str(DIGITS_MODEL / f) for f in files]}
    return Host(Config.from_dict({"models": [model]}, source="<test>"))


@pytest.fixture(scope="module")
def core_output() -> dict[str, str]:
    """What the C guest prints through the core-module ABI, per backend: the reference."""
    out = {}
    for backend in PRELOADS:
        host = _digits_host(backend)
        run = run_guest(host, GUESTS / "digits.wasm", ["/images"], ((str(DIGITS_IMAGES), "/images", True),))
        host.close()
        assert run.exit_code == 0, run.stderr
        out[backend] = run.stdout
    return out


@pytest.mark.parametrize("version", ["2024-10-28", "2024-08-19"])
@pytest.mark.parametrize("backend", list(PRELOADS))
def test_component_guest_classifies_like_the_core_module(digits_components, core_output, version, backend):
    host = _digits_host(backend)
    args = ["--output", "0"] if backend == "pytorch" else []  # TorchScript/ExportedProgram outputs are positional
    run = run_guest(host, digits_components[version], [*args, "/images"], ((str(DIGITS_IMAGES), "/images", True),))
    host.close()
    assert run.exit_code == 0, run.stderr
    assert run.stdout == core_output[backend]
    assert "accuracy: 38/40" in run.stdout


@pytest.mark.parametrize("version", ["2024-10-28", "2024-08-19"])
def test_component_guest_loads_model_bytes_through_load(digits_components, core_output, version):
    host = Host(Config())
    dirs = ((str(DIGITS_IMAGES), "/images", True), (str(DIGITS_MODEL), "/model", True))
    run = run_guest(host, digits_components[version], ["--model", "/model/digits.onnx", "/images"], dirs)
    host.close()
    assert run.exit_code == 0, run.stderr
    assert run.stdout.startswith("model: /model/digits.onnx loaded through load()")
    assert run.stdout.splitlines()[1:] == core_output["onnx"].splitlines()[1:]


def test_component_guest_error_is_a_resource_with_code_and_message(digits_components):
    host = Host(Config())
    run = run_guest(host, digits_components["2024-10-28"], ["/images"], ((str(DIGITS_IMAGES), "/images", True),))
    host.close()
    assert run.exit_code == 1  # wasi:cli/run returned err
    assert "wasi:nn error: not-found: no model named 'digits'" in run.stderr


def test_wasinn_run_detects_components(digits_components, tmp_path):
    assert is_component(digits_components["2024-10-28"])
    assert not is_component(GUESTS / "digits.wasm")
    wat = tmp_path / "c.wat"
    wat.write_text(";; a comment\n(component)\n")
    assert is_component(wat)
    with pytest.raises(Exception, match="exports no wasi:cli/run interface"):
        run_command(Host(Config()), RunSpec(wat))


# -- the WIT host in-process, with the conformance suite's generated components --------------------------


@pytest.fixture(scope="module")
def affine_onnx(tmp_path_factory) -> list[Path]:
    from wasinn_conformance.models import ModelStore

    return ModelStore(tmp_path_factory.mktemp("models")).files("onnx", "affine", "f32")


def _instance(host: Host, wat: str, store: wasmtime.Store | None = None):
    engine = store.engine if store is not None else wasmtime.Engine()
    store = store or wasmtime.Store(engine)
    linker = component.Linker(engine)
    binding = host.add_to_component_linker(linker, store)
    return store, binding, linker.instantiate(store, component.Component(engine, wat))


def _affine_host(files: list[Path], **limits: object) -> Host:
    model = {"name": "conformance", "encoding": "onnx", "paths": [str(p) for p in files]}
    return Host(Config.from_dict({"models": [model], "limits": limits}, source="<test>"))


@pytest.mark.parametrize("version", VERSIONS)
def test_resources_and_backend_objects_do_not_grow_over_1000_computes(affine_onnx, version):
    host = _affine_host(affine_onnx)
    model = reference_model("conformance", "onnx", "onnx", [p.read_bytes() for p in affine_onnx])
    wat = component_wat(version, component_case("repeated_inference"), model)
    store, binding, instance = _instance(host, wat)
    run = instance.get_func(store, "case")
    tracemalloc.start()
    sizes = []
    for _ in range(3):  # 3 × 1,000 computes in one instance
        assert run(store) == 0
        run.post_return(store)
        assert (len(binding.tensors), len(binding.errors)) == (0, 0)
        assert (binding.session.live_graphs, binding.session.live_contexts, binding.session.held_bytes) == (0, 0, 0)
        sizes.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    assert host.stats.computes == 3000
    assert sizes[2] - sizes[1] < 256 * 1024, sizes  # Python memory flat from the second 1,000 on
    binding.session.close()
    host.close()


@pytest.mark.parametrize("case", [c.name for c in COMPONENT_CASES])
def test_every_component_case_passes_in_process(affine_onnx, case):
    host = _affine_host(affine_onnx)
    model = reference_model("conformance", "onnx", "onnx", [p.read_bytes() for p in affine_onnx])
    for version in component_case(case).versions:
        store, binding, instance = _instance(host, component_wat(version, component_case(case), model))
        run = instance.get_func(store, "case")
        assert run(store) == 0, component_case(case).steps
        run.post_return(store)
        assert not binding.tensors and not binding.errors
        binding.session.close()
    host.close()


def test_tensor_data_crosses_both_ways_intact():
    """602 KB (a 1×3×224×224 f32 tensor) into a tensor resource and back: the guest compares every byte."""
    host = Host(Config())
    data = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    model = reference_model("conformance", "onnx", "onnx", [b"unused"])
    model = type(model)(model.name, model.encoding, model.files, "x", "y", data, data)
    for version in VERSIONS:
        store, binding, instance = _instance(host, component_wat(version, component_case("tensor_accessors"), model))
        run = instance.get_func(store, "case")
        assert run(store) == 0, component_case("tensor_accessors").steps
        run.post_return(store)
        assert not binding.tensors and binding.session.held_bytes == 0


def test_a_tensor_over_the_limit_traps_and_the_host_keeps_serving(affine_onnx):
    host = _affine_host(affine_onnx, max_tensor_bytes=16)  # the affine input is 24 bytes
    model = reference_model("conformance", "onnx", "onnx", [p.read_bytes() for p in affine_onnx])
    store, binding, instance = _instance(host, component_wat(VERSIONS[0], component_case("named_inference"), model))
    run = instance.get_func(store, "case")
    with pytest.raises(wasmtime.WasmtimeError, match=r"too_large: a tensor is 24 bytes, over the limit of 16"):
        run(store)
    binding.session.close()
    ok_host = _affine_host(affine_onnx)
    store, binding, instance = _instance(ok_host, component_wat(VERSIONS[0], component_case("named_inference"), model))
    assert instance.get_func(store, "case")(store) == 0


def test_enum_names_match_the_wit_files():
    for version in WIT_VERSIONS:
        text = (ROOT / "wasinn_core" / "wit" / f"wasi-nn@{version}.wit").read_text()

        def cases(enum: str, text: str = text) -> list[str]:
            body = re.search(rf"enum {enum} \{{(.*?)\}}", text, re.S)
            assert body, enum
            return [c.strip() for c in body.group(1).replace("\n", " ").split(",") if c.strip()]

        assert list(WIT_TENSOR_TYPES) == cases("tensor-type")  # FP16 … I64: U8 is 4, not witx's 3
        assert list(WIT_ENCODINGS)[:5] == cases("graph-encoding")[:5]
        assert set(WIT_ENCODINGS) == set(cases("graph-encoding"))  # ggml 5, autodetect 6 by name
        assert cases("graph-encoding").index("autodetect") == 6
        assert list(WIT_TARGETS) == cases("execution-target")
        assert set(WIT_ERROR_CODES.values()) <= set(cases("error-code"))


def test_limits_apply_to_components_like_modules(digits_components):
    """The guest memory limit of the config stops a component too (its Python runtime needs 12 MiB)."""
    host = Host(Config(limits=Limits(guest_memory_bytes=8 * 1024 * 1024)))
    with pytest.raises(GuestError, match=r"cannot instantiate .* exceeds memory limits"):
        run_guest(host, digits_components["2024-10-28"], ["/images"], ((str(DIGITS_IMAGES), "/images", True),))


def test_a_guest_hoarding_resources_traps_before_the_host_runs_out(affine_onnx, monkeypatch):
    from wasinn_conformance.components import ComponentCase
    from wasinn_core._abi import _wit

    monkeypatch.setattr(_wit, "MAX_LIVE", 5)
    hoard = ComponentCase(
        "hoard",
        "",
        "(block $done (loop $more (br_if $done (i32.ge_u (local.get $i) (i32.const 10)))"
        "  (drop (call $by_name (i32.const UNKNOWN) (i32.const UNKNOWN_LEN)))"  # never drops the error
        "  (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $more))) (i32.const 0)",
    )
    host = _affine_host(affine_onnx)
    model = reference_model("conformance", "onnx", "onnx", [p.read_bytes() for p in affine_onnx])
    store, binding, instance = _instance(host, component_wat(VERSIONS[0], hoard, model))
    with pytest.raises(wasmtime.WasmtimeError, match="5 live wasi:nn error resources: drop the ones"):
        instance.get_func(store, "case")(store)
    assert len(binding.errors) == 5
    binding.session.close()
    host.close()


def _hoarding_case(name: str, body: str, versions: tuple[str, ...] = VERSIONS) -> Any:
    from wasinn_conformance.components import ComponentCase

    loop = f"(block $done (loop $more (br_if $done (i32.ge_u (local.get $i) (i32.const 10))) {body}"
    loop += " (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $more))) (i32.const 0)"
    return ComponentCase(name, "", loop, versions=versions)


def test_a_trapping_tensor_constructor_leaves_no_bytes_charged(affine_onnx, monkeypatch):
    """The live-resource cap traps the 6th tensor: the bytes of the 5 live ones stay charged, no more."""
    from wasinn_core._abi import _wit

    monkeypatch.setattr(_wit, "MAX_LIVE", 5)
    host = _affine_host(affine_onnx)
    model = reference_model("conformance", "onnx", "onnx", [p.read_bytes() for p in affine_onnx])
    hoard = _hoarding_case("hoard_tensors", "(drop (call $input))")  # never drops the tensor
    store, binding, instance = _instance(host, component_wat(VERSIONS[0], hoard, model))
    with pytest.raises(wasmtime.WasmtimeError, match="5 live wasi:nn tensor resources: drop the ones"):
        instance.get_func(store, "case")(store)
    assert len(binding.tensors) == 5 and binding.session.held_bytes == 5 * 24
    binding.session.close()
    host.close()


@pytest.mark.parametrize("cap", ["live resources", "host memory"])
def test_outputs_count_against_the_live_resource_and_host_memory_caps(affine_onnx, monkeypatch, cap):
    """A guest calling get-output in a loop without dropping gets too-large, never unbounded host memory."""
    from wasinn_core._abi import _wit

    monkeypatch.setattr(_wit, "MAX_LIVE", 5 if cap == "live resources" else 1000)
    host = _affine_host(affine_onnx, **({"max_host_memory_bytes": 3 * 24} if cap == "host memory" else {}))
    model = reference_model("conformance", "onnx", "onnx", [p.read_bytes() for p in affine_onnx])
    version = "0.2.0-rc-2024-08-19"  # get-output by name, as often as the guest likes
    body = (
        "(call $ctx_get_output (local.get $ctx) (i32.const OUT_NAME) (i32.const OUT_NAME_LEN) (i32.const RET))"
        "(if (i32.load8_u (i32.const RET)) (then (return (i32.add (i32.const 100) (local.get $i)))))"
    )
    hoard = _hoarding_case("hoard_outputs", body, (version,))
    setup = (
        "(local.set $g (call $by_name (i32.const NAME) (i32.const NAME_LEN)))"
        "(local.set $ctx (call $init (local.get $g)))"
        "(local.set $out (call $infer (local.get $ctx) (call $input) (i32.const IN_NAME) (i32.const IN_NAME_LEN)))"
    )
    hoard = type(hoard)(hoard.name, "", setup + hoard.body, versions=(version,))
    store, binding, instance = _instance(host, component_wat(version, hoard, model))
    step = instance.get_func(store, "case")(store)
    live = 5 if cap == "live resources" else 2  # host memory: the context's 24-byte input and 2 outputs
    assert step == 100 + live - 1  # the first output, then live - 1 more, then too-large
    (error,) = binding.errors.values()
    assert error[0] == "too-large", error
    assert len(binding.tensors) == live and binding.session.held_bytes == (live + 1) * 24
    binding.session.close()
    host.close()
