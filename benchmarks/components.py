"""Tensor data through the component model: ``list<u8>`` from guest to host and back, per size.

python -m benchmarks.components [--quick]   → prints JSON rows {bytes, path, to_host_ms, to_guest_ms}

Two components built with the conformance suite's generator: one makes a tensor of N bytes (the data
crosses guest → host in ``[constructor]tensor``) and drops it; the other also reads it back with
``tensor.data()`` (host → guest). Their median times, and the difference, are the two directions.
Two hosts of the same functions: wasinn's (``WitBinding``: numpy over wasmtime's C value arrays) and
wasmtime-py's own per-element conversion (``LinkerInstance.add_func``), the latter only up to 256 KiB
(it takes about a second per MiB).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import numpy as np
import wasmtime
from wasmtime import component

from wasinn_conformance.components import VERSIONS, ComponentCase, component_wat, reference_model
from wasinn_core import Config, Host

SIZES = (64 * 1024, 256 * 1024, 602112, 2 * 1024 * 1024)
QUICK_SIZES = (64 * 1024,)
WASMTIME_PY_MAX = 256 * 1024
_MAKE = ComponentCase("make", "", "(call $tensor_drop (call $input)) (i32.const 0)")
_ROUND_TRIP = ComponentCase(
    "round_trip",
    "",
    "(local.set $out (call $input)) (call $tensor_data (local.get $out) (i32.const RET2))"
    "(call $tensor_drop (local.get $out)) (call $reset_heap) (i32.const 0)",
)


def _wat(case: ComponentCase, nbytes: int) -> str:
    data = np.random.default_rng(0).standard_normal((1, nbytes // 4)).astype(np.float32)
    model = reference_model("m", "onnx", "onnx", [b"unused"])
    model = type(model)(model.name, model.encoding, model.files, "x", "y", data, data)
    return component_wat(VERSIONS[0], case, model)


def _python_host(linker: component.Linker) -> None:
    """The tensor interface on wasmtime-py's own value conversions, for comparison."""
    tensors: dict[int, bytes] = {}
    tid = 7

    def new(store: Any, dims: list[int], ty: str, data: bytes) -> Any:
        tensors[len(tensors) + 1] = data
        return component.ResourceHost.own(len(tensors), tid)

    with linker.root() as root, root.add_instance(f"wasi:nn/tensor@{VERSIONS[0]}") as tensor:
        tensor.add_resource("tensor", component.ResourceType.host(tid), lambda store, rep: tensors.pop(rep))
        tensor.add_func("[constructor]tensor", new)
        tensor.add_func("[method]tensor.data", lambda store, t: tensors[t.to_host(store).rep])


def _median_call(engine: wasmtime.Engine, wat: str, path: str, repeat: int) -> float:
    guest = component.Component(engine, wat)
    host = Host(Config())
    times = []
    for _ in range(repeat):
        store = wasmtime.Store(engine)
        linker = component.Linker(engine)
        if path == "wasinn":
            binding = host.add_to_component_linker(linker, store)
        else:
            _python_host(linker)
            linker.define_unknown_imports_as_traps(guest)  # only the tensor interface is called
        instance = linker.instantiate(store, guest)
        run = instance.get_func(store, "case")
        start = time.perf_counter()
        step = run(store)
        times.append(time.perf_counter() - start)
        run.post_return(store)
        if step != 0:
            raise RuntimeError(f"the component failed at step {step} ({path})")
        if path == "wasinn":
            binding.session.close()
    host.close()
    return statistics.median(times)


def measure(nbytes: int, path: str, repeat: int = 5) -> dict[str, Any]:
    """Median ms of one ``list<u8>`` of ``nbytes`` guest → host (constructor) and host → guest (``data()``)."""
    engine = wasmtime.Engine()
    make = _median_call(engine, _wat(_MAKE, nbytes), path, repeat)
    both = _median_call(engine, _wat(_ROUND_TRIP, nbytes), path, repeat)
    return {"bytes": nbytes, "path": path, "to_host_ms": make * 1e3, "to_guest_ms": max(both - make, 0.0) * 1e3}


def main() -> int:
    sizes = QUICK_SIZES if "--quick" in sys.argv else SIZES
    rows = [measure(n, "wasinn") for n in sizes]
    rows += [measure(n, "wasmtime-py") for n in sizes if n <= WASMTIME_PY_MAX]
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
