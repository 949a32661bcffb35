"""PyTorch backend: TorchScript and ExportedProgram graphs, contexts with host inputs and device outputs.

Memory path: ``set_input`` copies the guest's bytes once into a reused host
tensor (pinned for CUDA); ``compute`` moves inputs to the device (one copy each,
on the context's stream for CUDA) and runs under ``torch.inference_mode()``;
``get_output`` brings an output back to host memory once (cached until the next
compute) for the host to write into the guest. See :mod:`._transfer`.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from wasinn_core import (
    Backend,
    BackendError,
    ExecutionContext,
    ExecutionTarget,
    Graph,
    GraphEncoding,
    InvalidArgument,
    Tensor,
    TensorKey,
    TensorType,
    TooLarge,
    UnsupportedOperation,
    record_copy,
)

from ._devices import DeviceFacts, device_for
from ._pt2 import load_exported_program
from ._screen import check_torchscript_archive, screen_torchscript
from ._transfer import transfer_for

log = logging.getLogger("wasinn.pytorch")

TORCHSCRIPT = "torchscript"
EXPORTED_PROGRAM = "exported_program"

TORCH_TYPES: dict[torch.dtype, TensorType] = {
    torch.float16: TensorType.F16,
    torch.float32: TensorType.F32,
    torch.float64: TensorType.F64,
    torch.bfloat16: TensorType.BF16,
    torch.uint8: TensorType.U8,
    torch.int32: TensorType.I32,
    torch.int64: TensorType.I64,
}
WASI_TYPES = {v: k for k, v in TORCH_TYPES.items()}


def sniff_format(data: memoryview) -> str | None:
    """``torchscript``, ``exported_program`` or ``None``, from the archive's entry names."""
    if bytes(data[:4]) != b"PK\x03\x04":
        return None
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return None
    parts = [n.split("/") for n in names]
    if any(p[-1] in ("archive_format", "serialized_exported_program.json") for p in parts):
        return EXPORTED_PROGRAM
    if any(p[-1] == "constants.pkl" or (len(p) > 2 and p[1] == "code") for p in parts):
        return TORCHSCRIPT
    return None


def _numpy_of(t: torch.Tensor) -> np.ndarray[Any, Any]:
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(TensorType.BF16.numpy_dtype)
    return t.numpy()


class TorchGraph(Graph):
    """A loaded module on its device, with what is known of its inputs."""

    def __init__(
        self,
        module: Any,
        device: torch.device,
        fmt: str,
        input_names: list[str],
        required: int,
        specs: list[tuple[torch.dtype, tuple[int | None, ...]]] | None,
    ) -> None:
        self.module = module
        self.torch_device = device
        self.device = str(device)
        self.format = fmt
        self.input_names = input_names
        self.required = required
        self.specs = specs

    def input_index(self, key: TensorKey) -> int:
        if isinstance(key, str):
            if key in self.input_names:
                return self.input_names.index(key)
            raise InvalidArgument(f"the model has no input named {key!r} (has: {', '.join(self.input_names)})")
        if not 0 <= key < len(self.input_names):
            raise InvalidArgument(
                f"input index {key} is out of range: forward takes {len(self.input_names)} "
                f"({', '.join(self.input_names)})"
            )
        return key

    def init_execution_context(self) -> ExecutionContext:
        return TorchContext(self)

    def close(self) -> None:
        self.module = None


class TorchContext(ExecutionContext):
    def __init__(self, graph: TorchGraph) -> None:
        self._graph = graph
        self._inputs: list[torch.Tensor | None] = [None] * len(graph.input_names)
        self._outputs: list[torch.Tensor] | None = None
        self._names: list[str] = []
        self._host: dict[int, torch.Tensor] = {}
        # per input index: (dims, type, numpy view of the host tensor) while the shape and type stay the same
        self._views: dict[int, tuple[tuple[int, ...], TensorType, np.ndarray[Any, Any]]] = {}
        self._transfer = transfer_for(graph.torch_device)

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        index = key if type(key) is int and 0 <= key < len(self._inputs) else self._graph.input_index(key)
        cached = self._views.get(index)
        if cached is not None and cached[0] == tensor.dimensions and cached[1] is tensor.type:
            view = cached[2]  # checked when it was made
        else:
            view = self._prepare(index, tensor)
        self._transfer.before_host_write()
        np.copyto(view, tensor.data.view(view.dtype) if tensor.type is TensorType.BF16 else tensor.data)
        record_copy(tensor.data.nbytes)

    def _prepare(self, key: int, tensor: Tensor) -> np.ndarray[Any, Any]:
        """Check an input against the model (when it records its inputs) and make its host tensor."""
        index = self._graph.input_index(key)
        name = self._graph.input_names[index]
        dtype = WASI_TYPES[tensor.type]
        if self._graph.specs is not None:
            want, shape = self._graph.specs[index]
            if dtype != want:
                expected = TORCH_TYPES[want].value if want in TORCH_TYPES else str(want)
                raise InvalidArgument(f"input {name!r} expects {expected}, got {tensor.type.value}")
            dims = tensor.dimensions
            if len(dims) != len(shape) or any(s is not None and s != d for s, d in zip(shape, dims, strict=True)):
                expected = "x".join("?" if s is None else str(s) for s in shape)
                raise InvalidArgument(f"input {name!r} expects shape {expected}, got {'x'.join(map(str, dims))}")
        host = self._transfer.host_tensor(tensor.dimensions, dtype)
        self._inputs[index] = host
        view = (host.view(torch.int16) if dtype == torch.bfloat16 else host).numpy()
        self._views[index] = (tensor.dimensions, tensor.type, view)
        return view

    def compute(self) -> None:
        graph = self._graph
        missing = [graph.input_names[i] for i in range(graph.required) if self._inputs[i] is None]
        if missing:
            raise InvalidArgument(f"inputs not set: {', '.join(missing)}")
        if graph.module is None:
            raise BackendError("the graph was released")
        given = []
        for t in self._inputs:
            if t is None:
                break
            given.append(t)
        self._outputs, self._names, self._host = None, [], {}
        try:
            args = self._transfer.to_device(given)
            with self._transfer.running(), torch.inference_mode():
                result = graph.module(*args)
        except torch.cuda.OutOfMemoryError as exc:
            raise TooLarge(f"{graph.device} ran out of memory: {exc}") from exc
        except (RuntimeError, TypeError, ValueError, IndexError, AssertionError, torch.jit.Error) as exc:
            message = _library_message(exc)
            if isinstance(exc, TypeError) or _INPUT_MISMATCH.search(message):
                raise InvalidArgument(f"the model rejected its inputs: {message}") from exc
            raise BackendError(f"the model failed: {message}") from exc
        outputs: list[torch.Tensor] = []
        names: list[str] = []
        _flatten(result, "", outputs, names)
        self._outputs, self._names = outputs, names

    def get_output(self, key: TensorKey) -> Tensor:
        if self._outputs is None:
            raise InvalidArgument("no outputs: compute has not run on this context")
        if isinstance(key, str):
            if key not in self._names:
                raise InvalidArgument(f"no output named {key!r} (outputs: {', '.join(self._names)})")
            index = self._names.index(key)
        elif 0 <= key < len(self._outputs):
            index = key
        else:
            raise InvalidArgument(f"output index {key} is out of range: the model returned {len(self._outputs)}")
        host = self._host.get(index)
        if host is None:
            host = self._transfer.to_host(self._outputs[index])  # the one device-to-host copy (none on CPU)
            self._host[index] = host
        ttype = TORCH_TYPES.get(host.dtype)
        if ttype is None:
            raise BackendError(f"output {self._names[index]!r} has dtype {host.dtype}, which wasi-nn cannot express")
        return Tensor(tuple(int(d) for d in host.shape), ttype, _numpy_of(host))

    def output_names(self) -> Sequence[str]:
        return list(self._names)

    def close(self) -> None:
        self._inputs = [None] * len(self._inputs)
        self._outputs, self._host = None, {}


#: torch's words for inputs a model cannot take (a wrong shape, rank or dtype); any other error from a
#: forward is the model's or the library's own failure (``runtime_error``), not the guest's input.
_INPUT_MISMATCH = re.compile(
    r"shapes? |must have the same dtype|must match the size|cannot be multiplied|sizes of tensors must match|"
    r"expected .*input|input type|invalid for input of size|scalar type|dimension out of range|channels",
    re.IGNORECASE,
)


def _library_message(exc: BaseException) -> str:
    """The useful line of a torch error: TorchScript puts the real cause last, after its traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1] if len(lines) > 1 and "TorchScript" in lines[0] else lines[0]


def _flatten(value: Any, prefix: str, out: list[torch.Tensor], names: list[str]) -> None:
    """Tensors of a forward result in order; dict keys become names, positions otherwise."""
    if isinstance(value, torch.Tensor):
        out.append(value)
        names.append(prefix or str(len(names)))
    elif isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, names)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _flatten(v, "", out, names)
    else:
        raise BackendError(f"forward returned a {type(value).__name__}, not tensors")


class TorchBackend(Backend):
    def __init__(self) -> None:
        self._threads = 0  # the intra-op thread count a load set for the process (0: torch's default)
        self._threads_lock = threading.Lock()

    def _use_threads(self, wanted: int) -> None:
        """``torch.set_num_threads`` is process-wide: the first load asking sets it, a different count is refused."""
        if wanted <= 0:
            return
        with self._threads_lock:
            if self._threads == 0:
                torch.set_num_threads(wanted)
                self._threads = wanted
                log.info("torch: %d intra-op threads for the whole process (num_threads)", wanted)
            elif wanted != self._threads:
                raise UnsupportedOperation(
                    f"num_threads = {wanted}: torch's thread count is process-wide and an earlier load set it to "
                    f"{self._threads}; give every PyTorch model the same num_threads (in [backends.pytorch])"
                )

    def warm_up(self) -> None:
        """Import the ExportedProgram reader (seconds of torch._export, sympy and fx) on a tiny program."""

        class _Tiny(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x + 1

        try:
            buffer = io.BytesIO()
            torch.export.save(torch.export.export(_Tiny(), (torch.ones(1),)), buffer)
            for _ in range(2):  # the second load still fills caches of its own
                load_exported_program(buffer.getvalue()).module()
        except Exception as exc:  # warming up is an optimisation: the first load pays instead
            log.debug("warm-up of the ExportedProgram reader failed: %s", exc)

    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        target: ExecutionTarget,
        options: Mapping[str, Any],
    ) -> Graph:
        chosen = device_for(target, options, DeviceFacts.current())
        if not chosen.available:
            raise UnsupportedOperation(chosen.reason)
        device = torch.device(chosen.device)
        self._use_threads(options["num_threads"])
        data = builders[0]
        fmt = sniff_format(data)
        if options["format"] != "auto":
            fmt = options["format"]
        if fmt is None:
            raise InvalidArgument(
                "not a TorchScript or torch.export archive (expected a zip written by "
                "torch.jit.save or torch.export.save)"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in 2.x
            screen = bool(options.get("screen_operators", True))
            if fmt == TORCHSCRIPT:
                graph = self._load_torchscript(data, device, screen)
            else:
                graph = self._load_exported(data, device, screen)
        if device.type == "cuda":  # the weights are on the device before a context's own stream reads them
            torch.cuda.synchronize(device)
        return graph

    @staticmethod
    def _load_torchscript(data: memoryview, device: torch.device, screen: bool = True) -> TorchGraph:
        # torch.jit.load, in two steps, so that the compiled code is screened before anything runs it
        if screen:
            check_torchscript_archive(data)
        unit = torch._C.CompilationUnit()
        cpp = torch._C.import_ir_module_from_buffer(unit, bytes(data), device, {}, False)
        if screen:
            screen_torchscript(unit)
        module = torch.jit._recursive.wrap_cpp_module(cpp)
        module.eval()
        args = module.forward.schema.arguments[1:]
        names = [a.name for a in args]
        required = sum(1 for a in args if a.default_value is None)
        return TorchGraph(module, device, TORCHSCRIPT, names, required, None)

    @staticmethod
    def _load_exported(data: memoryview, device: torch.device, screen: bool = True) -> TorchGraph:
        from torch.export.passes import move_to_device_pass

        program = load_exported_program(
            data, screen=screen
        )  # never torch.export.load: it unpickles and evals the archive
        if device.type != "cpu":
            program = move_to_device_pass(program, device)
        names = list(program.graph_signature.user_inputs)
        placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
        specs: list[tuple[torch.dtype, tuple[int | None, ...]]] | None = []
        for name in names:
            val = placeholders[name].meta.get("val") if name in placeholders else None
            if not isinstance(val, torch.Tensor):
                specs = None
                break
            specs.append((val.dtype, tuple(d if isinstance(d, int) else None for d in val.shape)))
        return TorchGraph(program.module(), device, EXPORTED_PROGRAM, names, len(names), specs)
