"""Graphs that are models on an Open Inference Protocol server.

A named model maps to a server model (``model``, ``version``) by config, so ``load_by_name`` needs no
bytes. A guest's own ``load`` bytes are refused unless ``repository`` names a model repository folder
the server loads from: the plugin writes the model there (``NAME/1/model.onnx``) and asks the server to
load it, then to unload it when the graph is released. Inputs are checked against the server's
metadata (names, datatypes, shapes) before anything is sent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wasinn_core import (
    Backend,
    ExecutionContext,
    ExecutionTarget,
    Graph,
    GraphEncoding,
    InvalidArgument,
    OnnxPort,
    Tensor,
    TensorKey,
    UnsupportedOperation,
    match_ports,
    onnx_signature,
    record_copy,
)

from ._client import V2_TYPES, WASI_TYPES, Endpoint, ModelMeta, Server, TensorMeta

__all__ = ["RemoteBackend", "headers_from", "server_for"]

log = logging.getLogger("wasinn.remote")


def target_url(target: ExecutionTarget, options: Mapping[str, Any]) -> str:
    """The server URL serving ``target`` ("" when none is configured).

    cpu is ``url``; gpu and tpu are ``{target}_url``, or ``url`` when a ``{target}_model`` variant is
    deployed there. A target without either is unavailable: never silently the cpu deployment.
    """
    if target is ExecutionTarget.CPU:
        return str(options["url"])
    own = str(options.get(f"{target.value}_url") or "")
    return own or (str(options["url"]) if options.get(f"{target.value}_model") else "")


def target_model(target: ExecutionTarget, options: Mapping[str, Any]) -> str:
    """The server model for ``target``: ``{target}_model`` (a variant deployed there), else ``model``."""
    return str(options.get(f"{target.value}_model") or options["model"])


def no_deployment(target: ExecutionTarget) -> str:
    if target is ExecutionTarget.CPU:
        return "no server configured: set [backends.remote] url"
    t = target.value
    return f"no {t} deployment configured: set [backends.remote] {t}_url, or {t}_model for a variant on the url server"


def headers_from(options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Request headers from ``headers_env`` (``Header=ENVVAR,...``) and ``headers_file`` (``Header: value`` lines)."""
    environ = os.environ if environ is None else environ
    headers: dict[str, str] = {}
    for item in str(options.get("headers_env") or "").split(","):
        if not item.strip():
            continue
        header, sep, variable = item.partition("=")
        if not sep or not header.strip() or not variable.strip():
            raise InvalidArgument(f"remote: headers_env entry {item.strip()!r}: expected Header=ENVVAR")
        value = environ.get(variable.strip())
        if value is None:
            raise InvalidArgument(f"remote: headers_env: environment variable {variable.strip()} is not set")
        headers[header.strip()] = value
    path = str(options.get("headers_file") or "")
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise InvalidArgument(f"remote: headers_file {path}: {exc.strerror or exc}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            header, sep, value = line.partition(":")
            if not sep or not header.strip():
                raise InvalidArgument(f"remote: headers_file {path}, line {number}: expected 'Header: value'")
            headers[header.strip()] = value.strip()
    return headers


def server_for(target: ExecutionTarget, options: Mapping[str, Any]) -> Server:
    """A new client for the server serving ``target`` under ``options``."""
    url = target_url(target, options)
    if not url:
        raise UnsupportedOperation(f"remote: {no_deployment(target)}")
    try:
        endpoint = Endpoint.parse(url, str(options["protocol"]))
    except ValueError as exc:
        raise InvalidArgument(f"remote: {exc}") from None
    return Server(
        endpoint,
        timeout_s=float(options["timeout_s"]),
        connect_timeout_s=float(options["connect_timeout_s"]),
        retries=int(options["retries"]),
        backoff_s=float(options["backoff_s"]),
        concurrency=int(options["concurrency"]),
        headers=headers_from(options),
        ca_file=str(options["ca_file"]),
    )


class RemoteBackend(Backend):
    """One client per server configuration, shared by every graph."""

    def __init__(self) -> None:
        self._servers: dict[tuple[Any, ...], Server] = {}
        self._lock = threading.Lock()

    def server(self, target: ExecutionTarget, options: Mapping[str, Any]) -> Server:
        key = (
            target_url(target, options),
            *(options[k] for k in ("protocol", "timeout_s", "connect_timeout_s", "retries", "backoff_s")),
            *(options[k] for k in ("concurrency", "headers_env", "headers_file", "ca_file")),
        )
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                server = self._servers[key] = server_for(target, options)
            return server

    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        target: ExecutionTarget,
        options: Mapping[str, Any],
    ) -> Graph:
        if encoding is GraphEncoding.GGML or options["protocol"] == "openai":
            return self._load_openai(builders, encoding, target, options)
        server = self.server(target, options)
        if builders:
            model, version = self._upload(server, builders, encoding, options), ""
        else:
            model, version = target_model(target, options), str(options["version"])
            if not model:
                raise InvalidArgument(
                    "remote: which server model? set options.model in the named model's config "
                    "(and gpu_model / tpu_model for variants deployed for those targets)"
                )
        control = self.repository_server(server, options) if builders else None
        try:
            meta = server.metadata(model, version)
        except Exception:
            if control is not None:
                self.remove(control, model, str(options["repository"]))
            raise
        device = f"{server.endpoint.url} {model}" + (f" v{version}" if version else "")
        repository = str(options["repository"]) if builders else ""
        graph = RemoteGraph(self, server, model, version, meta, device, repository, control)
        if builders:  # an uploaded ONNX model: wasi-nn numbers its ports as its graph does
            try:
                signature = onnx_signature(builders[0])
                graph.inputs = _ports(signature.inputs, meta.inputs)
                graph.outputs = _ports(signature.outputs, meta.outputs)
            except Exception:
                graph.close()
                raise
        return graph

    @staticmethod
    def _load_openai(
        builders: Sequence[memoryview], encoding: GraphEncoding, target: ExecutionTarget, options: Mapping[str, Any]
    ) -> Graph:
        """A ggml model on an OpenAI-compatible server (``protocol = "openai"``), with WasmEdge's GGML semantics."""
        from ._openai import OpenAIClient, load_ggml

        if encoding is not GraphEncoding.GGML:
            raise UnsupportedOperation(f"remote: the OpenAI protocol serves ggml models, not {encoding.value}")
        if builders and bytes(builders[0][:4]) == b"GGUF":
            raise UnsupportedOperation(
                "remote: a guest's own GGUF model cannot be sent to an OpenAI-compatible server; "
                "ask for a named model (load_by_name)"
            )
        if options["protocol"] != "openai":
            raise UnsupportedOperation(
                'remote: ggml models are served over the OpenAI protocol: set protocol = "openai"'
            )
        url = target_url(target, options)
        if not url:
            raise UnsupportedOperation(f"remote: {no_deployment(target)}")
        model = target_model(target, options)
        if not model:
            raise InvalidArgument("remote: which server model? set options.model in the named model's config")
        client = OpenAIClient(url, float(options["timeout_s"]), headers_from(options))
        return load_ggml(client, model, builders, f"{url} {model} (openai)")

    def _upload(
        self, server: Server, builders: Sequence[memoryview], encoding: GraphEncoding, options: Mapping[str, Any]
    ) -> str:
        """Write the model into the repository under a name of its own, and have the server load it.

        Every upload gets its own server model (content hash plus a random suffix), so graphs of other
        hosts that share the server and the repository never unload each other's models.
        """
        repository = str(options["repository"])
        if not repository:
            raise UnsupportedOperation(
                "remote: a guest's own model bytes need [backends.remote] repository (a model repository folder "
                "the server loads from); ask the host for a named model with load_by_name instead"
            )
        if encoding is not GraphEncoding.ONNX or len(builders) != 1:
            raise UnsupportedOperation(f"remote: uploads one ONNX model file; got {len(builders)} {encoding.value}")
        data = bytes(builders[0])
        name = f"wasinn-{hashlib.sha256(data).hexdigest()[:12]}-{uuid.uuid4().hex[:8]}"
        control = self.repository_server(server, options)
        try:
            folder = Path(repository) / name / "1"
            folder.mkdir(parents=True)
            partial = folder / "model.onnx.partial"
            partial.write_bytes(data)
            partial.replace(folder / "model.onnx")
            control.load_model(name)
        except BaseException:
            self.remove(control, name, repository)
            raise
        log.info("uploaded a %d-byte ONNX model to %s as %s", len(data), server.endpoint.url, name)
        return name

    def repository_server(self, server: Server, options: Mapping[str, Any]) -> Server:
        """Where repository load and unload go: ``repository_url``, else the inference server."""
        url = str(options["repository_url"])
        if not url or url == server.endpoint.url:
            return server
        return self.server(ExecutionTarget.CPU, {**options, "url": url})

    @staticmethod
    def remove(control: Server, name: str, repository: str) -> None:
        """Unload an uploaded model and delete its files."""
        try:
            control.unload_model(name)
        except Exception as exc:  # the server may be gone; the files are ours to remove either way
            log.warning("remote: unloading %s from %s: %s", name, control.endpoint.url, exc)
        shutil.rmtree(Path(repository) / name, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.close()


@dataclass(frozen=True, slots=True)
class _Port:
    """A wasi-nn input or output: the server's tensor (``None``: the server dropped it) and its ONNX declaration."""

    name: str
    served: TensorMeta | None
    declared: OnnxPort | None = None


def _ports(declared: Sequence[OnnxPort], served: Sequence[TensorMeta]) -> list[_Port]:
    try:
        indexes = match_ports(declared, [{m.name} for m in served])
    except ValueError as exc:
        raise InvalidArgument(f"remote: the server's model does not follow the ONNX graph: {exc}") from None
    return [_Port(d.name, served[k] if k is not None else None, d) for d, k in zip(declared, indexes, strict=True)]


class RemoteGraph(Graph):
    def __init__(
        self,
        backend: RemoteBackend,
        server: Server,
        model: str,
        version: str,
        meta: ModelMeta,
        device: str,
        repository: str,
        control: Server | None,
    ) -> None:
        self.backend, self.server, self.model, self.version, self.meta = backend, server, model, version, meta
        self.device = device
        self._repository = repository  # set when the graph's model was uploaded
        self._control = control
        self.inputs = [_Port(m.name, m) for m in meta.inputs]
        self.outputs = [_Port(m.name, m) for m in meta.outputs]

    def init_execution_context(self) -> ExecutionContext:
        return RemoteContext(self)

    def close(self) -> None:
        if self._control is not None:
            self.backend.remove(self._control, self.model, self._repository)


class RemoteContext(ExecutionContext):
    def __init__(self, graph: RemoteGraph) -> None:
        self._graph = graph
        self._inputs: dict[int, np.ndarray | None] = {}  # None: an input the server dropped, checked only
        self._outputs: dict[str, np.ndarray] | None = None

    @staticmethod
    def _index(key: TensorKey, io: Sequence[_Port], what: str) -> int:
        if isinstance(key, str):
            for i, item in enumerate(io):
                if item.name == key:
                    return i
            names = ", ".join(item.name for item in io)
            raise InvalidArgument(f"the model has no {what} named {key!r} (has: {names})")
        if not 0 <= key < len(io):
            raise InvalidArgument(f"{what} index {key} is out of range: the model has {len(io)} {what}s")
        return key

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        index = self._index(key, self._graph.inputs, "input")
        port = self._graph.inputs[index]
        meta = port.served
        if meta is None:
            if port.declared is not None:
                port.declared.check(tensor)
            self._inputs[index] = None
            self._outputs = None
            return
        datatype = V2_TYPES[tensor.type]
        if datatype != meta.datatype:
            want = WASI_TYPES.get(meta.datatype)
            raise InvalidArgument(
                f"input {meta.name!r} expects {want.value if want else meta.datatype} ({meta.datatype}), "
                f"got {tensor.type.value}"
            )
        dims = tuple(tensor.dimensions)
        if meta.shape and (
            len(dims) != len(meta.shape) or any(s >= 0 and s != d for s, d in zip(meta.shape, dims, strict=True))
        ):
            shape = "x".join("?" if s < 0 else str(s) for s in meta.shape)
            raise InvalidArgument(f"input {meta.name!r} expects shape {shape}, got {'x'.join(map(str, dims))}")
        self._inputs[index] = np.array(tensor.data, copy=True)  # the view is borrowed: the one copy in
        record_copy(tensor.data.nbytes)
        self._outputs = None

    def compute(self) -> None:
        graph = self._graph
        missing = [p.name for i, p in enumerate(graph.inputs) if i not in self._inputs]
        if missing:
            raise InvalidArgument(f"inputs not set: {', '.join(missing)}")
        inputs = [
            (port.served, array)
            for i, port in enumerate(graph.inputs)
            if port.served is not None and (array := self._inputs[i]) is not None
        ]
        names = [p.served.name for p in graph.outputs if p.served is not None]
        self._outputs = graph.server.infer(graph.model, graph.version, inputs, names)

    def get_output(self, key: TensorKey) -> Tensor:
        if self._outputs is None:
            raise InvalidArgument("no outputs: compute has not run on this context since its inputs changed")
        port = self._graph.outputs[self._index(key, self._graph.outputs, "output")]
        if port.served is None:
            raise InvalidArgument(f"remote: the server's model has no output {port.name!r} of the ONNX graph")
        return Tensor.from_array(self._outputs[port.served.name])

    def output_names(self) -> Sequence[str]:
        return [p.name for p in self._graph.outputs]

    def close(self) -> None:
        self._inputs.clear()
        self._outputs = None
