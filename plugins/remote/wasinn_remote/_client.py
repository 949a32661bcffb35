"""One Open Inference Protocol (KServe v2) server, reached with tritonclient over REST or gRPC.

Every call has a deadline; idempotent calls (health, metadata, inference, repository load and unload)
are retried with exponential backoff when the server cannot be reached, drops the connection during the
call, or sheds load. Server errors become wasinn errors that keep the server's message: ``NotFound`` for
an unknown model, ``InvalidArgument`` for a request it rejects, ``Busy`` when it sheds load (HTTP
429/503, gRPC RESOURCE_EXHAUSTED, or UNAVAILABLE that is not a lost connection), ``BackendError``
otherwise. Headers (credentials) never appear in messages or logs.

Outputs are decoded from every form the protocol allows: binary (REST's binary-data extension, gRPC's
``raw_output_contents``), JSON ``data`` (REST) and the typed ``*_contents`` fields (gRPC).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from wasinn_core import BackendError, Busy, InvalidArgument, NotFound, TensorType, WasiNNError

__all__ = ["V2_TYPES", "Endpoint", "ModelMeta", "Server", "TensorMeta"]

log = logging.getLogger("wasinn.remote")

#: wasi-nn tensor types as Open Inference Protocol datatypes.
V2_TYPES: dict[TensorType, str] = {
    TensorType.F16: "FP16",
    TensorType.F32: "FP32",
    TensorType.F64: "FP64",
    TensorType.BF16: "BF16",
    TensorType.U8: "UINT8",
    TensorType.I32: "INT32",
    TensorType.I64: "INT64",
}
WASI_TYPES = {v: k for k, v in V2_TYPES.items()}

_NOT_FOUND = ("404", "StatusCode.NOT_FOUND")
_REJECTED = ("400", "StatusCode.INVALID_ARGUMENT")
_SHEDDING = ("429", "503", "StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED")
_DEADLINE = ("504", "StatusCode.DEADLINE_EXCEEDED")
#: gRPC UNAVAILABLE is also how a lost connection ends a call: these words in its message say which
_CONNECTION_LOST = ("socket closed", "connection reset", "broken pipe", "failed to connect", "connection refused")
_CONNECTION_LOST += ("recvmsg", "end of tcp stream", "goaway", "connection closed")
#: gRPC's typed contents field and numpy type for each datatype that has one (FP16 and BF16 have none)
_TYPED_CONTENTS = {
    "BOOL": ("bool_contents", np.bool_),
    "INT8": ("int_contents", np.int8),
    "INT16": ("int_contents", np.int16),
    "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint8),
    "UINT16": ("uint_contents", np.uint16),
    "UINT32": ("uint_contents", np.uint32),
    "UINT64": ("uint64_contents", np.uint64),
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
}
_RAW_TYPES: dict[str, Any] = {name: dtype for name, (_, dtype) in _TYPED_CONTENTS.items()} | {"FP16": np.float16}

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TensorMeta:
    """An input or output as the server's metadata describes it (``-1``: a dynamic dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelMeta:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a server is: ``http://host:port``, ``https://``, ``grpc://``, ``grpcs://``, or ``host:port``."""

    url: str
    protocol: str  # "http" or "grpc"
    address: str  # host:port, as tritonclient wants it
    ssl: bool

    @classmethod
    def parse(cls, url: str, protocol: str) -> Endpoint:
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = ("https" if protocol == "https" else protocol), url
        schemes = {"http": ("http", False), "https": ("http", True), "grpc": ("grpc", False), "grpcs": ("grpc", True)}
        if scheme not in schemes:
            raise ValueError(f"unknown scheme {scheme!r} in {url!r}; use http, https, grpc or grpcs")
        kind, ssl = schemes[scheme]
        address = rest.rstrip("/")
        if not address or "/" in address:
            raise ValueError(f"expected host:port in {url!r}")
        return cls(url, kind, address, ssl)


class Server:
    """A pooled client for one server. Thread-safe: each thread has its own tritonclient client."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        retries: int = 2,
        backoff_s: float = 0.05,
        concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
        ca_file: str = "",
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.concurrency = concurrency
        self._headers = dict(headers or {})
        self._ca_file = ca_file
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # no headers: they may hold credentials
        return f"Server({self.endpoint.url!r}, {self.endpoint.protocol})"

    # -- the client ---------------------------------------------------------------------------------------

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._new_client()
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _new_client(self) -> Any:
        e = self.endpoint
        if e.protocol == "grpc":
            import tritonclient.grpc as grpcclient

            root = open(self._ca_file, "rb").read() if self._ca_file else None  # noqa: SIM115
            return grpcclient.InferenceServerClient(url=e.address, ssl=e.ssl, root_certificates=root)
        import tritonclient.http as httpclient

        options = None
        if e.ssl and self._ca_file:
            import gevent.ssl

            options = {"ca_certs": self._ca_file, "cert_reqs": gevent.ssl.CERT_REQUIRED}
        return httpclient.InferenceServerClient(
            url=e.address,
            concurrency=self.concurrency,
            connection_timeout=self.connect_timeout_s,
            network_timeout=self.timeout_s,
            ssl=e.ssl,
            ssl_options=options,
        )

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headers": self._headers or None}
        if self.endpoint.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        return kwargs

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception as exc:  # closing is best effort
                log.debug("closing a client of %s: %s", self.endpoint.url, exc)

    # -- calls --------------------------------------------------------------------------------------------

    def ready(self) -> str:
        """``name version`` of a live and ready server; raises a wasinn error otherwise."""

        def call() -> str:
            client = self._client()
            if not client.is_server_ready(**self._kwargs()):
                raise Busy(f"{self.endpoint.url} is live but not ready")
            meta = client.get_server_metadata(**self._kwargs())
            name, version = _field(meta, "name"), _field(meta, "version")
            return f"{name} {version}".strip()

        return self._call("health", call)

    def metadata(self, model: str, version: str = "") -> ModelMeta:
        def call() -> ModelMeta:
            meta = self._client().get_model_metadata(model, version, **self._kwargs())
            return ModelMeta(
                _field(meta, "name"),
                tuple(str(v) for v in _field(meta, "versions") or ()),
                str(_field(meta, "platform") or ""),
                tuple(_tensor_meta(t) for t in _field(meta, "inputs") or ()),
                tuple(_tensor_meta(t) for t in _field(meta, "outputs") or ()),
            )

        return self._call(f"model {model!r}: metadata", call)

    def infer(
        self, model: str, version: str, inputs: Sequence[tuple[TensorMeta, np.ndarray]], outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Run the model; the outputs by name, as arrays."""
        if self.endpoint.protocol == "grpc":
            import tritonclient.grpc as client_module
        else:
            import tritonclient.http as client_module  # type: ignore[no-redef]

        def call() -> dict[str, np.ndarray]:
            requests = []
            for meta, array in inputs:
                item = client_module.InferInput(meta.name, list(array.shape), meta.datatype)
                item.set_data_from_numpy(array)
                requests.append(item)
            wanted = [client_module.InferRequestedOutput(name) for name in outputs]
            result = self._client().infer(model, requests, model_version=version, outputs=wanted, **self._kwargs())
            return {name: self.decode(result, name, f"model {model!r}: infer") for name in outputs}

        return self._call(f"model {model!r}: infer", call)

    def decode(self, result: Any, name: str, what: str) -> np.ndarray:
        """Output ``name`` of an inference answer, in whichever form the server sent it."""
        where = f"remote {self.endpoint.url}: {what}: output {name!r}"
        if self.endpoint.protocol == "grpc":
            return _decode_grpc(result.get_response(), name, where)
        return _decode_rest(result, name, where)

    def load_model(self, model: str) -> None:
        self._call(f"model {model!r}: repository load", lambda: self._client().load_model(model, **self._kwargs()))

    def unload_model(self, model: str) -> None:
        self._call(f"model {model!r}: repository unload", lambda: self._client().unload_model(model, **self._kwargs()))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run an idempotent call with retries; every failure ends as a wasinn error naming the server."""
        attempt = 0
        while True:
            try:
                return fn()
            except WasiNNError:
                raise
            except Exception as exc:
                error, retry = self._classify(what, exc)
            if not retry or attempt >= self.retries:
                raise error
            delay = self.backoff_s * (2**attempt) * (0.5 + random.random())  # jitter, not crypto
            log.info("%s: %s; retrying in %.2f s", self.endpoint.url, error.message, delay)
            time.sleep(delay)
            attempt += 1

    def _classify(self, what: str, exc: Exception) -> tuple[WasiNNError, bool]:
        from tritonclient.utils import InferenceServerException

        where = f"remote {self.endpoint.url}: {what}"
        if isinstance(exc, InferenceServerException):
            status, message = str(exc.status() or ""), exc.message() or str(exc)
            if status in _NOT_FOUND:
                return NotFound(f"{where}: {message}"), False
            if status in _REJECTED:
                return InvalidArgument(f"{where}: the server rejected the request: {message}"), False
            if status == "StatusCode.UNAVAILABLE" and any(w in message.lower() for w in _CONNECTION_LOST):
                return BackendError(f"{where}: the connection to the server was lost during the call: {message}"), True
            if status in _SHEDDING:
                return Busy(f"{where}: the server sheds load ({status}): {message}"), True
            if status in _DEADLINE or "timed out" in message.lower() or "deadline" in message.lower():
                return BackendError(f"{where}: no answer within {self.timeout_s:g} s (timeout_s)"), False
            if not status:  # tritonclient wraps connection failures without a status
                return BackendError(f"{where}: cannot reach the server: {message}"), True
            return BackendError(f"{where}: server error {status}: {message}"), False
        if _is_timeout(exc):
            return BackendError(f"{where}: no answer within {self.timeout_s:g} s (timeout_s)"), False
        if _connection_lost(exc):  # the server (or a proxy) closed the connection before it answered
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
            return BackendError(f"{where}: the connection to the server was lost during the call ({reason})"), True
        if isinstance(exc, OSError):
            return BackendError(f"{where}: cannot reach the server: {exc}"), True
        return BackendError(f"{where}: {type(exc).__name__}: {exc}"), False


def _connection_lost(exc: BaseException) -> bool:
    """A connection closed under a call: geventhttpclient's ``HTTPConnectionClosed``, a reset, a broken pipe."""
    import http.client

    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return True
    return isinstance(exc, http.client.HTTPException) and "closed" in f"{type(exc).__name__} {exc}".lower()


def _decode_grpc(response: Any, name: str, where: str) -> np.ndarray:
    """An output of a gRPC ``ModelInferResponse``: from ``raw_output_contents`` (every output or none has
    raw data, in the order of ``outputs``) or from its typed ``contents``."""
    found = next(((i, o) for i, o in enumerate(response.outputs) if o.name == name), None)
    if found is None:
        raise BackendError(f"{where}: not in the server's answer")
    index, output = found
    shape, datatype = tuple(int(d) for d in output.shape), output.datatype
    if response.raw_output_contents:
        if index >= len(response.raw_output_contents) or datatype not in _RAW_TYPES:
            raise BackendError(f"{where}: no raw data for it, or a datatype wasi-nn cannot express ({datatype})")
        array = np.frombuffer(
            response.raw_output_contents[index], dtype=np.dtype(_RAW_TYPES[datatype]).newbyteorder("<")
        )
    else:
        field, dtype = _TYPED_CONTENTS.get(datatype, (None, None))
        if field is None:
            raise BackendError(f"{where}: datatype {datatype} has no typed contents field and came without raw data")
        array = np.array(getattr(output.contents, field), dtype=dtype)  # Python numbers: one conversion, a copy
    return _shaped(array, shape, where)


def _decode_rest(result: Any, name: str, where: str) -> np.ndarray:
    """An output of a REST answer: binary (the binary-data extension) or JSON ``data``, as tritonclient reads."""
    output = result.get_output(name)
    if output is None:
        raise BackendError(f"{where}: not in the server's answer")
    shape = tuple(int(d) for d in output["shape"])
    if output["datatype"] not in _RAW_TYPES:
        raise BackendError(f"{where}: a datatype wasi-nn cannot express ({output['datatype']})")
    try:
        array = result.as_numpy(name)
    except (ValueError, TypeError) as exc:  # data that does not fill the shape, or is not numbers
        raise BackendError(f"{where}: the server's data does not match shape {list(shape)}: {exc}") from None
    return _shaped(np.asarray(array), shape, where)


def _shaped(array: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    if array.size != int(np.prod(shape)):
        raise BackendError(f"{where}: the server sent {array.size} values for shape {list(shape)}")
    return array.reshape(shape)


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    return type(exc).__name__ in ("Timeout", "timeout", "ConnectionTimeout")


def _field(obj: Any, name: str) -> Any:
    """A field of a metadata answer: a dict over REST, a protobuf message over gRPC."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _tensor_meta(item: Any) -> TensorMeta:
    return TensorMeta(
        str(_field(item, "name")), str(_field(item, "datatype")), tuple(int(d) for d in _field(item, "shape"))
    )
