"""The same model run natively, by the backend's own library: the operator layer's first reference.

A runner takes the model's bytes and its inputs in the graph's order and returns the outputs in the
graph's order, or raises the library's own error. The suite knows the libraries of the in-tree backends
(``BackendSpec.library``): onnxruntime, openvino, onnx (its reference evaluator) and tritonclient (the
server the remote backend uses). Another backend's distribution adds its own with an entry point:

    [project.entry-points."wasinn_conformance.native"]
    mylib = "mypackage.conformance:native_runner"   # named after BackendSpec.library (or .name)

``native_runner(options)`` gets the backend's options (defaults merged with the run's ``--config``) and
returns a callable ``run(model: bytes, inputs: list[numpy.ndarray]) -> list[numpy.ndarray]``.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wasinn_core import TensorType, onnx_signature

__all__ = ["ENTRY_POINT_GROUP", "NativeRun", "native_runner"]

ENTRY_POINT_GROUP = "wasinn_conformance.native"

NativeRun = Callable[[bytes, Sequence[np.ndarray]], list[np.ndarray]]


def _last(make: Callable[..., Any]) -> Callable[..., Any]:
    """Keep what ``make`` made for the last model: a case's reruns run on the same loaded model."""
    kept: dict[bytes, Any] = {}

    def cached(model: bytes, *args: Any) -> Any:
        if model not in kept:
            kept.clear()
            kept[model] = make(model, *args)
        return kept[model]

    return cached


def _onnxruntime(options: Mapping[str, Any]) -> NativeRun:
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }

    @_last
    def _session(model: bytes, so: Any) -> Any:
        return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])

    def run(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        so = ort.SessionOptions()
        so.log_severity_level = 4  # the error comes back as an exception; nothing on stderr
        if "graph_optimization_level" in options:
            so.graph_optimization_level = levels[options["graph_optimization_level"]]
        session = _session(model, so)
        names = [i.name for i in session.get_inputs()]
        return [np.asarray(v) for v in session.run(None, dict(zip(names, inputs, strict=True)))]

    return run


def _openvino(options: Mapping[str, Any]) -> NativeRun:
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {}
    if options.get("inference_precision", "default") != "default":
        config["INFERENCE_PRECISION_HINT"] = options["inference_precision"]
    config.update(options.get("config") or {})

    @_last
    def compile(model: bytes) -> Any:
        return core.compile_model(core.read_model(model=model), "CPU", config)

    def run(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        compiled = compile(model)
        names_in, names_out = _names(model)
        feeds = {}
        for port in compiled.inputs:  # OpenVINO keeps the inputs it needs, under their ONNX names
            known = [n for n in names_in if n in port.get_names()]
            value = inputs[names_in.index(known[0])] if known else _only(compiled, inputs, names_in, port)
            if value.dtype.name == "bfloat16":  # OpenVINO takes bf16 as a tensor of that type, its words as float16
                tensor = ov.Tensor(ov.Type.bf16, list(value.shape))
                np.copyto(tensor.data, value.view(np.float16).reshape(tensor.data.shape))
                value = tensor
            feeds[port] = value
        request = compiled.create_infer_request()  # a new one each run, as a new wasi-nn context has
        request.infer(feeds)
        out = []
        for name in names_out:
            found = [i for i, port in enumerate(compiled.outputs) if name in port.get_names()]
            if not found:
                raise RuntimeError(f"OpenVINO's compiled model has no output {name!r}")
            port = compiled.outputs[found[0]]
            value = np.array(request.get_output_tensor(found[0]).data, copy=True)  # the request's memory is reused
            if port.get_element_type().get_type_name() == "bf16":  # OpenVINO shows bf16 words as float16
                value = value.view(TensorType.BF16.numpy_dtype)
            out.append(value)
        return out

    return run


def _only(compiled: Any, inputs: Sequence[np.ndarray], names: list[str], port: Any) -> np.ndarray:
    """An input OpenVINO renamed (it feeds an output directly): the one graph input no port names."""
    named = {n for p in compiled.inputs for n in p.get_names()}
    left = [i for i, n in enumerate(names) if n not in named]
    if len(left) != 1:
        raise RuntimeError(f"cannot tell which graph input OpenVINO's input {port.get_any_name()!r} is")
    return inputs[left[0]]


def _reference(options: Mapping[str, Any]) -> NativeRun:
    from onnx import load_from_string
    from onnx.reference import ReferenceEvaluator

    @_last
    def _evaluator(model: bytes) -> Any:
        return ReferenceEvaluator(load_from_string(model))

    def run(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        names, _ = _names(model)
        evaluator = _evaluator(model)
        return [np.asarray(v) for v in evaluator.run(None, dict(zip(names, inputs, strict=True)))]

    return run


def _tritonclient(options: Mapping[str, Any]) -> NativeRun:
    """The model written into the server's repository, loaded, run and unloaded with tritonclient itself."""
    url = str(options.get("repository_url") or options.get("url") or "")
    repository = str(options.get("repository") or "")
    if not url or not repository:
        raise LookupError("the remote backend's url and repository options are needed to run a model natively")
    parsed = urllib.parse.urlsplit(url if "://" in url else f"{options.get('protocol', 'http')}://{url}")
    if parsed.scheme.startswith("grpc"):
        import tritonclient.grpc as client
    else:
        import tritonclient.http as client  # type: ignore[no-redef]
    server = client.InferenceServerClient(parsed.netloc, ssl=parsed.scheme.endswith("s"))
    from tritonclient.utils import np_to_triton_dtype

    def run(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        names_in, names_out = _names(model)
        name = f"native-{uuid.uuid4().hex[:12]}"
        folder = Path(repository) / name
        (folder / "1").mkdir(parents=True)
        try:
            (folder / "1" / "model.onnx").write_bytes(model)
            server.load_model(name)
            meta = server.get_model_metadata(name)
            served = {m["name"] if isinstance(m, dict) else m.name for m in _field(meta, "inputs")}
            feeds = []
            for n, value in zip(names_in, inputs, strict=True):
                if n in served:
                    feed = client.InferInput(n, list(value.shape), np_to_triton_dtype(value.dtype))
                    feed.set_data_from_numpy(value)
                    feeds.append(feed)
            result = server.infer(name, feeds, outputs=[client.InferRequestedOutput(n) for n in names_out])
            return [np.asarray(result.as_numpy(n)) for n in names_out]
        finally:
            try:
                server.unload_model(name)
            finally:
                shutil.rmtree(folder, ignore_errors=True)

    return run


def _names(model: bytes) -> tuple[list[str], list[str]]:
    """The graph's input (less initializers) and output names, in order."""
    signature = onnx_signature(model)
    return [p.name for p in signature.inputs], [p.name for p in signature.outputs]


def _field(meta: Any, key: str) -> list[Any]:
    return list(meta[key] if isinstance(meta, dict) else getattr(meta, key))


_BUILT_IN: dict[str, Callable[[Mapping[str, Any]], NativeRun]] = {
    "onnxruntime": _onnxruntime,
    "openvino": _openvino,
    "onnx": _reference,
    "tritonclient": _tritonclient,
}


def native_runner(name: str, library: str, options: Mapping[str, Any]) -> NativeRun | None:
    """The native runner of backend ``name`` driving ``library``: an entry point's, else a built-in one."""
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in (name, library):
            factory: Callable[[Mapping[str, Any]], NativeRun] = entry.load()
            return factory(options)
    make = _BUILT_IN.get(library)
    return make(options) if make is not None else None
