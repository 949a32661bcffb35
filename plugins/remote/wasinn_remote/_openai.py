"""GGML graphs served by an OpenAI-compatible server (vLLM, KServe's OpenAI runtime, llama.cpp's server).

A named ``ggml`` model with ``protocol = "openai"`` keeps WasmEdge's GGML call semantics for the guest
while the tokens come from ``POST /v1/completions``: the prompt on input 0, metadata JSON on input 1
(its sampling keys become request fields), the text on output 0, the usage JSON on output 1;
``compute`` is one request, ``compute_single`` reads one streamed chunk (server-sent events) per call.
The server's ``finish_reason`` maps to WasmEdge's errnos: ``stop`` is the end of the answer (100 in
streaming), ``length`` without an ``n-predict`` limit a full context (101); a prompt the server finds
too long is 102, a model the server does not have 103.

Differences a guest can see: the text never holds the end-of-sequence token's piece (``</s>``), a
``reverse-prompt`` is cut from the text (OpenAI's ``stop``), ``ignore-eos`` works only where the server
honours ``ignore_eos`` (vLLM, llama.cpp's server), ``input_tokens`` of a stream is 0 unless the server
sends usage in it, and the usage JSON reports ``llama_build_number`` 0 and the server's model in
``llama_commit``.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from wasinn_core import (
    GGML_ERRNO,
    BackendErrno,
    BackendError,
    ExecutionContext,
    Graph,
    InvalidArgument,
    InvalidEncoding,
    Tensor,
    TensorKey,
    TensorType,
    UnsupportedOperation,
)

__all__ = ["OpenAIClient", "OpenAIGraph", "load_ggml"]

log = logging.getLogger("wasinn.remote")

# WasmEdge metadata key -> (request field, JSON type); the rest of the metadata is ignored
_FIELDS: dict[str, tuple[str, type]] = {
    "temp": ("temperature", float),
    "top-p": ("top_p", float),
    "top-k": ("top_k", int),
    "min-p": ("min_p", float),
    "repeat-penalty": ("repeat_penalty", float),
    "presence-penalty": ("presence_penalty", float),
    "frequency-penalty": ("frequency_penalty", float),
    "seed": ("seed", int),
    "grammar": ("grammar", str),
}
_LOCAL: dict[str, type] = {"n-predict": int, "reverse-prompt": str, "ignore-eos": bool, "embedding": bool}
_HOST_PATHS = ("mmproj", "image", "model-vocoder", "tts-output-file", "tts-speaker-file")
#: WasmEdge's sampling defaults, sent explicitly (servers' own defaults differ)
DEFAULTS: dict[str, Any] = {
    "temperature": 0.8,
    "top_p": 0.95,
    "top_k": 40,
    "min_p": 0.05,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}
_RANDOM_SEED = 0xFFFF_FFFF


def _errno(name: str, message: str) -> BackendErrno:
    code = GGML_ERRNO[name]
    return BackendErrno(code, f"{name.replace('_', ' ')} ({code}): {message}", quiet=name == "end_of_sequence")


class OpenAIClient:
    """``/v1/models`` and ``/v1/completions`` of one server (the standard library's HTTP, no session state)."""

    def __init__(self, url: str, timeout_s: float, headers: Mapping[str, str]) -> None:
        self.url = url.rstrip("/")
        self.base = self.url if self.url.endswith("/v1") else self.url + "/v1"
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json", **headers}

    def _request(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=self.headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")[:500]
            if exc.code == 404 and path == "/completions":
                raise _errno("model_not_found", f"{self.url}: {detail}") from None
            if "context" in detail.lower() and ("exceed" in detail.lower() or "too long" in detail.lower()):
                raise _errno("prompt_too_long", f"{self.url}: {detail}") from None
            raise BackendError(f"remote: {self.url} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise BackendError(f"remote: cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from None

    def models(self) -> list[str]:
        with self._request("/models") as answer:
            return [str(m.get("id")) for m in json.load(answer).get("data", [])]

    def complete(self, body: Mapping[str, Any]) -> dict[str, Any]:
        with self._request("/completions", {**body, "stream": False}) as answer:
            return json.load(answer)  # type: ignore[no-any-return]

    def stream(self, body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """The chunks of a streamed completion, read one at a time as the guest asks for them."""
        answer = self._request("/completions", {**body, "stream": True})
        chunks = 0
        try:
            for raw in answer:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunks += 1
                yield json.loads(data)
        finally:
            answer.close()
        if chunks == 0:
            # some servers (llama-cpp-python) fail a stream after its 200 header, sending nothing: the same
            # request without streaming, one token long, gets the error with its cause (a prompt too long)
            self.complete({**body, "max_tokens": 1})
            raise BackendError(f"remote: {self.url} ended a stream without sending anything")


def load_ggml(client: OpenAIClient, model: str, builders: Sequence[memoryview], device: str) -> OpenAIGraph:
    """A graph for server model ``model``; ``builders`` may hold WasmEdge metadata JSON (never model bytes)."""
    meta = _parse(builders[-1], {}) if builders and len(builders[-1]) else {}
    available = client.models()
    if model not in available:
        raise _errno("model_not_found", f"{client.url} serves {', '.join(available) or 'no model'}, not {model!r}")
    return OpenAIGraph(client, model, meta, device)


def _parse(raw: bytes | memoryview, base: Mapping[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEncoding(f"metadata is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"metadata must be a JSON object, got {type(data).__name__}")
    for key in _HOST_PATHS:
        if data.get(key) not in (None, ""):
            raise InvalidArgument(f"metadata key {key!r} names a host file: a guest never makes the host open a path")
    out = dict(base)
    for key, value in data.items():
        kind = _FIELDS[key][1] if key in _FIELDS else _LOCAL.get(key)
        if kind is None:
            continue
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        ok = ok or (kind is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise InvalidArgument(f"metadata key {key!r}: expected {kind.__name__}, got {json.dumps(value)}")
        out[key] = value
    if out.get("embedding"):
        raise UnsupportedOperation("remote: embedding mode is not forwarded to OpenAI-compatible servers")
    return out


class OpenAIGraph(Graph):
    byte_inputs = True

    def __init__(self, client: OpenAIClient, model: str, meta: dict[str, Any], device: str) -> None:
        self.client, self.model, self.meta, self.device = client, model, meta, device

    def init_execution_context(self) -> ExecutionContext:
        return OpenAIContext(self)


class OpenAIContext(ExecutionContext):
    def __init__(self, graph: OpenAIGraph) -> None:
        self.graph = graph
        self.meta = dict(graph.meta)
        self.prompt: str | None = None
        self.text = bytearray()
        self.last = b""
        self.input_tokens = 0
        self.output_tokens = 0
        self._stream: Iterator[dict[str, Any]] | None = None
        self._finish: str | None = None

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        data = tensor.data.reshape(-1).view(np.uint8).tobytes()
        if key in (1, "metadata", "1"):
            self.meta = _parse(data, self.meta)
            return
        self.prompt = data.decode("utf-8", errors="replace")
        self._end_stream()
        self.text.clear()
        self.last = b""
        self.input_tokens = self.output_tokens = 0

    def _body(self, streaming: bool) -> dict[str, Any]:
        if self.prompt is None:
            raise InvalidArgument("compute without a prompt: set input 0 first")
        body: dict[str, Any] = {"model": self.graph.model, "prompt": self.prompt, **DEFAULTS}
        for key, (name, _) in _FIELDS.items():
            if key in self.meta:
                body[name] = self.meta[key]
        body["temperature"] = max(0.0, float(body["temperature"]))
        if body.get("seed") == _RANDOM_SEED:
            del body["seed"]
        limit = int(self.meta.get("n-predict", -1))
        body["max_tokens"] = None if streaming or limit < 0 else limit
        if self.meta.get("reverse-prompt") and not streaming:
            body["stop"] = [self.meta["reverse-prompt"]]
        if self.meta.get("ignore-eos"):
            body["ignore_eos"] = True  # vLLM's and llama.cpp's server's extension; others ignore it
        if streaming:
            body["stream_options"] = {"include_usage": True}  # the prompt's token count, where servers send it
        return body

    def compute(self) -> None:
        self._end_stream()
        body = self._body(streaming=False)
        self.text.clear()
        self.last = b""
        if body["max_tokens"] == 0:
            self.output_tokens = 0
            return
        answer = self.graph.client.complete(body)
        choice = (answer.get("choices") or [{}])[0]
        self.text += str(choice.get("text", "")).encode("utf-8")
        usage = answer.get("usage") or {}
        self.input_tokens = int(usage.get("prompt_tokens", 0))
        self.output_tokens = int(usage.get("completion_tokens", 0))
        if choice.get("finish_reason") == "length" and body["max_tokens"] is None:
            raise _errno("context_full", f"{self.graph.client.url} stopped at its context length")

    def compute_single(self) -> None:
        if self._stream is None:
            body = self._body(streaming=True)
            self.text.clear()
            self.last = b""
            self.output_tokens = 0
            self._stream = self.graph.client.stream(body)
            self._finish = None
        try:
            while self._finish is None:
                chunk = next(self._stream, None)
                if chunk is None:
                    self._finish = "stop"
                    break
                choice = (chunk.get("choices") or [{}])[0]
                self._finish = choice.get("finish_reason") or None
                usage = chunk.get("usage") or {}
                self.input_tokens = int(usage.get("prompt_tokens", self.input_tokens))
                piece = str(choice.get("text") or "").encode("utf-8")
                if piece or self._finish is None:
                    self.last = piece
                    self.text += piece
                    self.output_tokens += 1
                    return
            finish, self._finish = self._finish, None
            self._end_stream()
            self.last = b""
            if finish == "length":
                raise _errno("context_full", f"{self.graph.client.url} stopped at its context length")
            raise _errno("end_of_sequence", "the model ended its answer")
        except BackendErrno:
            raise
        except BaseException:
            self._end_stream()
            raise

    def _end_stream(self) -> None:
        if self._stream is not None:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
            self._stream = None

    def fini_single(self) -> None:
        self._end_stream()
        self.text.clear()
        self.last = b""
        self.output_tokens = 0

    def _usage(self) -> bytes:
        usage = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "llama_build_number": 0,
            "llama_commit": f"openai {self.graph.model}",
        }
        return json.dumps(usage).encode("utf-8")

    def get_output(self, key: TensorKey) -> Tensor:
        return _u8(self._usage() if key in (1, "metadata", "usage", "1") else bytes(self.text))

    def get_output_single(self, key: TensorKey) -> Tensor:
        return _u8(self._usage() if key in (1, "metadata", "usage", "1") else self.last)

    def output_names(self) -> Sequence[str]:
        return ["output", "metadata"]

    def close(self) -> None:
        self._end_stream()


def _u8(data: bytes) -> Tensor:
    return Tensor((len(data),), TensorType.U8, np.frombuffer(data, dtype=np.uint8))
