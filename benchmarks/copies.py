"""Host copies per byte moved, measured (buffer identity and allocation tracing), not counted by the copy sites.

python -m benchmarks.copies BACKEND WORKLOAD [ITERATIONS]   → prints one JSON object

The input lies in a real wasm guest's memory (a ``ForwardingGuest``) and every iteration is what the
classify guest does: ``set_input`` → ``compute`` → ``get_output`` into a guest buffer. Measured, from the
second iteration on (the first sets buffers up):

- buffer identity: the tensor the ABI hands the backend is a view of guest memory (no copy to decode it);
  after ``set_input`` the library's own input buffer (ONNX Runtime's bound input, torch's input tensor,
  OpenVINO's request tensor, the remote request's array) holds the input's bytes and does not share
  guest memory: a copy in. If it is the same buffer each time, that copy allocates nothing and is counted
  here; a new buffer each time is an allocation, which the tracing counts. The tensor ``get_output``
  returns shares memory with the library's own output buffer (nothing copied between), and its bytes
  land in guest memory: one copy out.
- allocation tracing: with ``tracemalloc`` (which sees every Python and numpy allocation), the peak above
  the start of each call, summed over the three calls; the same around one call of the native floor
  (``benchmarks.native``, or tritonclient's own ``infer`` for the remote backend). What wasinn allocates
  beyond the floor, in tensor sizes, is a copy no copy site reported.

copies per byte moved = (copy in, if into a kept buffer) + (copy out) + allocations beyond the floor,
over 2 × the tensor's bytes: 1.00 is one copy in and one copy out. ``wasinn run --stats`` shows what the
copy sites report; this is the check on it.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .models import FILES, SHAPES, folder

ENCODING_CODE = {"onnx": 1, "pytorch": 3, "openvino": 0, "remote": 1}
BACKEND_NAME = {"onnx": "onnxruntime", "pytorch": "pytorch", "openvino": "openvino", "remote": "remote"}


def _address(array: Any) -> int:
    if hasattr(array, "data_ptr"):  # a torch tensor or an ONNX Runtime OrtValue
        return int(array.data_ptr())
    return int(np.asarray(array).__array_interface__["data"][0])


def _bytes(array: Any) -> bytes:
    if hasattr(array, "detach"):
        array = array.detach().numpy()
    elif hasattr(array, "numpy"):
        array = array.numpy()
    return np.ascontiguousarray(array).tobytes()


def library_buffers(backend: str, context: Any) -> tuple[Any, Any]:
    """The library's own (input, output) buffers of a context of one of the in-tree backends."""
    if backend == "onnx":
        (feed,) = context._feeds.values()
        return feed, context._io.get_outputs()[0]  # the OrtValue ONNX Runtime wrote into
    if backend == "pytorch":
        return context._inputs[0], context._outputs[0]
    if backend == "openvino":
        return context._request.get_input_tensor(0).data, context._request.get_output_tensor(0).data
    (array,) = context._inputs.values()
    (output,) = context._outputs.values()
    return array, output


@contextmanager
def _host(backend: str, workload: str) -> Iterator[tuple[Any, Callable[[], Any]]]:
    """A wasinn host for the backend, and the native floor's one-inference callable."""
    from wasinn_core import Config, Host, PluginManager

    path = folder(workload)
    if backend != "remote":
        from .native import runner

        encoding = {"onnx": "onnx", "pytorch": "pytorch", "openvino": "openvino"}[backend]
        config = Config.from_dict(
            {
                "preferences": {encoding: [BACKEND_NAME[backend]]},
                "backends": {"openvino": {"inference_precision": "f32"}},
                # in the host process: the measurement looks at the library's own buffers
                "isolation": {"guest": "none"},
            }
        )
        run, around = runner(backend, workload, "f32")
        with around:
            yield Host(config, plugins=PluginManager(environ={})), run
        return
    from wasinn_remote.loopback import running

    with tempfile.TemporaryDirectory(prefix="wasinn-copies-") as tmp:
        repository = Path(tmp) / "models"
        (repository / "m").mkdir(parents=True)
        shutil.copy(path / "model.onnx", repository / "m" / "model.onnx")
        with running(repository, Path(tmp) / "server.log") as server:
            config = Config.from_dict(
                {
                    "models": [{"name": "m", "encoding": "onnx", "backend": "remote", "options": {"model": "m"}}],
                    "backends": {"remote": {"url": server.http, "timeout_s": 60.0}},
                }
            )
            import tritonclient.http as client_module

            client = client_module.InferenceServerClient(server.http.removeprefix("http://"))
            x = np.fromfile(path / "input.bin", np.float32).reshape(SHAPES[workload])

            def native() -> Any:  # tritonclient's own inference: what any client of the server does
                item = client_module.InferInput("x", list(x.shape), "FP32")
                item.set_data_from_numpy(x)
                return client.infer("m", [item], outputs=[client_module.InferRequestedOutput("y")]).as_numpy("y")

            yield Host(config, plugins=PluginManager(environ={})), native
            client.close()


def _peak(call: Callable[[], Any]) -> int:
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    call()
    return tracemalloc.get_traced_memory()[1] - start


def measure(backend: str, workload: str, iterations: int = 4) -> dict[str, Any]:
    """Copies per byte moved on ``backend`` for ``workload``, with what each figure rests on."""
    from wasinn_core.testing import ForwardingGuest

    path = folder(workload)
    x = np.fromfile(path / "input.bin", np.float32).reshape(SHAPES[workload])
    with _host(backend, workload) as (host, native):
        guest = ForwardingGuest(host, pages=3 * x.nbytes // 65536 + 64 + _model_pages(backend, path))
        out = guest.alloc(4)
        if backend == "remote":
            name, length = guest.string("m")
            assert guest.call("load_by_name", name, length, out) == 0, "load_by_name"
        else:
            builders, count = guest.builders([(path / f).read_bytes() for f in FILES[backend]])
            assert guest.call("load", builders, count, ENCODING_CODE[backend], 0, out) == 0, "load"
        assert guest.call("init_execution_context", guest.u32(out), out) == 0, "init_execution_context"
        ctx = guest.u32(out)
        tensor = guest.tensor(list(x.shape), 1, x)
        data_ptr = int.from_bytes(guest.read(tensor + 12, 4), "little")
        entry = guest.session._context(ctx)
        handed: list[Any] = []
        real_set_input = entry.context.set_input
        entry.context.set_input = lambda key, t: (handed.append(t.data), real_set_input(key, t))[1]
        nbytes = x.nbytes
        buffer, written = guest.alloc(nbytes * 2, align=64), guest.alloc(4)
        ours, floor, inputs = [], [], []
        tracemalloc.start()
        try:
            for i in range(iterations):
                peaks = [
                    _peak(lambda: _ok(guest.call("set_input", ctx, 0, tensor), "set_input")),
                    _peak(lambda: _ok(guest.call("compute", ctx), "compute")),
                    _peak(lambda: _ok(guest.call("get_output", ctx, 0, buffer, nbytes * 2, written), "get_output")),
                ]
                library_in, library_out = library_buffers(backend, entry.context)
                inputs.append(_address(library_in))
                returned = guest.session.get_output(ctx, 0).data
                if i == 0:  # identity, checked once the buffers exist
                    checks = _identity(
                        guest, handed[-1], data_ptr, x, library_in, library_out, returned, buffer, written
                    )
                    continue
                ours.append(sum(peaks))
                floor.append(_peak(native))
        finally:
            tracemalloc.stop()
    kept = len(set(inputs[1:])) == 1 and checks["input_copied"]
    extra = max(0.0, (np.median(ours) - np.median(floor)) / nbytes)
    # a copy the identity checks prove (the ABI copied before the backend, or what get_output returns is
    # not the library's buffer) counts even where the tracing cannot see it (torch's own allocator)
    proven = (not checks["abi_hands_a_view_of_guest_memory"]) + (not checks["output_is_the_librarys_buffer"])
    extra = max(extra, float(proven))
    copies = ((1.0 if kept else 0.0) + 1.0 + extra) / 2.0
    return {
        "backend": BACKEND_NAME[backend],
        "workload": workload,
        "tensor_bytes": nbytes,
        "copies_per_byte": round(copies, 2),
        "input_into_kept_buffer": kept,
        "host_allocation_per_byte_over_floor": round(extra / 2.0, 2),
        "host_allocation_bytes": int(np.median(ours)),
        "floor_allocation_bytes": int(np.median(floor)),
        **checks,
    }


def _model_pages(backend: str, path: Path) -> int:
    return 0 if backend == "remote" else sum((path / f).stat().st_size for f in FILES[backend]) // 65536 + 2


def _ok(errno: int, what: str) -> None:
    if errno != 0:
        raise RuntimeError(f"{what} returned errno {errno}")


def _identity(
    guest: Any,
    handed: Any,
    data_ptr: int,
    x: np.ndarray,
    library_in: Any,
    library_out: Any,
    returned: Any,
    buffer: int,
    written: int,
) -> dict[str, bool]:
    memory = guest.memory
    base = _address(memory)
    library_in_at = _address(library_in)
    in_guest = base <= library_in_at < base + memory.nbytes
    out_at = _address(library_out)
    return {
        "abi_hands_a_view_of_guest_memory": _address(handed) == base + data_ptr,
        "input_copied": not in_guest and _bytes(library_in) == x.tobytes(),
        "output_is_the_librarys_buffer": _address(returned) == out_at,
        "output_written_into_guest_memory": guest.read(buffer, guest.u32(written)) == _bytes(returned),
    }


def main() -> int:
    backend, workload = sys.argv[1], sys.argv[2]
    iterations = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    print(json.dumps(measure(backend, workload, iterations)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
