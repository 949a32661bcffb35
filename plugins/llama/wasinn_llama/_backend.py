"""GGML graphs on llama.cpp with WasmEdge's semantics, call by call.

Builders: [0] the GGUF bytes, [1] (optional) metadata JSON, graph defaults; more are ignored. Input 1
is metadata, any other input the prompt (its bytes only: type and dimensions do not matter); output 0
the generated text, output 1 the usage JSON. ``compute`` generates a whole answer; ``compute_single``
one token (its errno 100 ends the answer); ``get_output_single`` the last token's bytes. The backend's
own errnos (100 end of sequence, 101 context full, 102 prompt too long) reach guests unchanged.

Where this differs from WasmEdge, on purpose: every execution context has its own llama context
(WasmEdge shares one per graph), so ``set_input(1)`` changes only its own context, never the graph
another instance may share; model-level keys (``n-gpu-layers``…) after the load are ignored (logged).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from llama_cpp import _internals as internals

from wasinn_core import (
    GGML_ERRNO,
    Backend,
    BackendErrno,
    ExecutionContext,
    ExecutionTarget,
    Graph,
    GraphEncoding,
    InvalidArgument,
    Tensor,
    TensorKey,
    TensorType,
    UnsupportedOperation,
)

from . import _engine as engine
from ._metadata import CONTEXT_KEYS, Metadata, parse

__all__ = ["LlamaBackend", "LlamaContext", "LlamaGraph"]

log = logging.getLogger("wasinn.llama")

GGUF_MAGIC = b"GGUF"
# the keys that shape the model itself: fixed once the graph is loaded
_MODEL_KEYS = frozenset({"n-gpu-layers", "main-gpu", "split-mode", "tensor-split", "check-tensors", "use-mmap"})
_TEXT_NAMES = ("output", "0")
_USAGE_NAMES = ("metadata", "usage", "1")


def _errno(name: str, message: str) -> BackendErrno:
    code = GGML_ERRNO[name]
    return BackendErrno(code, f"{name.replace('_', ' ')} ({code}): {message}", quiet=name == "end_of_sequence")


class LlamaBackend(Backend):
    """Loads GGUF models with llama.cpp."""

    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        target: ExecutionTarget,
        options: Mapping[str, Any],
    ) -> Graph:
        if encoding is not GraphEncoding.GGML:
            raise InvalidArgument(f"the llama backend loads ggml (GGUF) models, not {encoding.value}")
        if not builders:
            raise InvalidArgument("ggml: load needs the GGUF bytes as builder 0 (and optional metadata JSON as 1)")
        model = builders[0]
        if bytes(model[:8]).startswith(b"preload:"):
            raise InvalidArgument(
                "ggml: builder 0 starts with 'preload:' (WasmEdge's host-path form): a guest never names a host "
                "file; preload the model on the host (--nn-preload) and use load_by_name"
            )
        if bytes(model[:4]) != GGUF_MAGIC:
            raise InvalidArgument(f"ggml: builder 0 is not a GGUF model (it starts with {bytes(model[:4])!r})")
        meta, _ = parse(builders[1]) if len(builders) > 1 and len(builders[1]) else (Metadata(), frozenset())
        gpu = target is ExecutionTarget.GPU
        if not gpu and meta.n_gpu_layers > 0 and "n-gpu-layers" in meta.given:
            log.info(
                "target cpu: metadata n-gpu-layers=%d is ignored (load on gpu or auto to offload)", meta.n_gpu_layers
            )
        layers = (meta.n_gpu_layers if meta.n_gpu_layers >= 0 else 1_000_000) if gpu else 0
        if gpu and not engine.gpu_offload():
            raise UnsupportedOperation("this llama-cpp-python build has no GPU offload (it was built for the CPU)")
        threads = int(options.get("threads") or 0) or engine.default_threads()
        max_ctx = int(options.get("max_ctx_size") or 0)
        path = _private_copy(model)
        try:
            llama_model = engine.load_model(path, meta, layers)
        finally:
            path.unlink(missing_ok=True)  # llama.cpp keeps its own mapping: no file is left behind
            path.parent.rmdir()
        device = f"GPU ({layers} layers offloaded)" if gpu else "CPU"
        return LlamaGraph(llama_model, meta, threads, gpu, device, max_ctx)


def _private_copy(data: memoryview) -> Path:
    """The model bytes in a file only this process can read, for llama.cpp (which loads from paths)."""
    folder = Path(tempfile.mkdtemp(prefix="wasinn-gguf-"))
    path = folder / "model.gguf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


class LlamaGraph(Graph):
    """A llama.cpp model and its metadata defaults.

    Its contexts run concurrently (each has its own llama context; the session serializes calls on
    one context), where WasmEdge serializes every call on a graph.
    """

    byte_inputs = True

    def __init__(
        self, model: internals.LlamaModel, meta: Metadata, threads: int, gpu: bool, device: str, max_ctx: int
    ) -> None:
        self.model = model
        self.meta = meta
        self.threads = threads
        self.gpu = gpu
        self.device = device
        self.train_ctx = int(engine.llama_cpp.llama_model_n_ctx_train(model.model))
        self.max_ctx = max_ctx or self.train_ctx
        self.lock = threading.RLock()
        try:
            self._check_ctx(meta)
            if meta.grammar or meta.json_schema:
                engine.make_sampler(model, meta).close()  # a bad grammar fails the load, not the first compute
        except BaseException:
            model.close()
            raise

    def _check_ctx(self, meta: Metadata) -> None:
        if meta.ctx_size > self.max_ctx:
            raise InvalidArgument(
                f"metadata key 'ctx-size': {meta.ctx_size} is over this model's limit of {self.max_ctx} tokens"
            )

    def init_execution_context(self) -> ExecutionContext:
        return LlamaContext(self)

    def close(self) -> None:
        with self.lock:
            self.model.close()


class LlamaContext(ExecutionContext):
    """One conversation: a prompt, its own llama context and sampler, the tokens generated so far."""

    def __init__(self, graph: LlamaGraph) -> None:
        self.graph = graph
        self.meta = graph.meta
        self._ctx: internals.LlamaContext | None = None
        self._ctx_key: tuple[Any, ...] = ()
        self._batch: internals.LlamaBatch | None = None
        self._sampler: internals.LlamaSampler | None = None
        self._sampler_key: tuple[Any, ...] = ()
        self.prompt: list[int] | None = None
        self.tokens: list[int] = []  # sampled tokens, counted in output_tokens
        self.text = bytearray()
        self.last = b""
        self.n_past = 0
        self.streaming = False
        self.embedding: bytes | None = None
        self.closed = False

    # -- llama.cpp state -------------------------------------------------------------------------------

    def _context(self) -> internals.LlamaContext:
        """The llama context, made on first use and again when ``embedding`` or ``pooling-type`` change."""
        key = self.meta.context()
        if self._ctx is None or key != self._ctx_key:
            if self._ctx is not None:
                self._ctx.close()
                self._ctx = None
            # WasmEdge sizes the context at load: sizes and threads given later by set_input(1) do not apply
            g = self.graph.meta
            sized = replace(
                self.meta,
                ctx_size=g.ctx_size,
                batch_size=g.batch_size,
                ubatch_size=g.ubatch_size,
                threads=g.threads,
                threads_batch=g.threads_batch,
            )
            self._ctx = engine.new_context(self.graph.model, sized, self.graph.threads, self.graph.gpu)
            self._ctx_key = key
        return self._ctx

    def _chunk(self) -> int:
        ctx = self._context()
        return min(self.meta.batch_size, int(engine.llama_cpp.llama_n_batch(ctx.ctx)))

    def _batch_for(self, n: int) -> internals.LlamaBatch:
        if self._batch is None or self._batch._n_tokens < n:
            if self._batch is not None:
                self._batch.close()
            self._batch = internals.LlamaBatch(n_tokens=max(n, 512), embd=0, n_seq_max=1)
        return self._batch

    def _new_sampler(self) -> internals.LlamaSampler:
        key = self.meta.sampling()
        if self._sampler is None or key != self._sampler_key:
            if self._sampler is not None:
                self._sampler.close()
            self._sampler = None
            self._sampler = engine.make_sampler(self.graph.model, self.meta)
            self._sampler_key = key
        else:
            self._sampler.reset()
        return self._sampler

    # -- inputs ----------------------------------------------------------------------------------------

    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        data = tensor.data.reshape(-1).view(np.uint8).tobytes()  # only the bytes count, as in WasmEdge
        self._check_alive()
        if key in (1, "metadata", "1"):
            self._set_metadata(data)
            return
        self.prompt = engine.tokenize(self.graph.model, data)
        self.streaming = False  # a new prompt ends any streaming session
        self.tokens.clear()
        self.text.clear()
        self.last = b""
        self.embedding = None

    def _set_metadata(self, data: bytes) -> None:
        meta, given = parse(data, self.meta)
        model_keys = sorted(k for k in given & _MODEL_KEYS if getattr(meta, _field(k)) != getattr(self.meta, _field(k)))
        if model_keys:
            log.info("set_input(1): model-level keys %s are ignored after the load", ", ".join(model_keys))
            meta = replace(meta, **{_field(k): getattr(self.meta, _field(k)) for k in model_keys})
        self.graph._check_ctx(meta)
        if meta.sampling() != self.meta.sampling():
            engine.make_sampler(self.graph.model, meta).close()  # a bad grammar fails here, at set_input
        self.meta = meta
        unused = given - CONTEXT_KEYS
        if unused:
            log.debug("set_input(1): %s", ", ".join(sorted(unused)))

    def _check_alive(self) -> None:
        if self.closed:
            raise InvalidArgument("this execution context is finalized")

    # -- generation ------------------------------------------------------------------------------------

    def _start(self) -> None:
        """Clear the KV cache, reset the sampler and outputs, evaluate the prompt (WasmEdge's compute start)."""
        if self.prompt is None:
            raise InvalidArgument("compute without a prompt: set input 0 first")
        ctx = self._context()
        n_ctx = int(engine.llama_cpp.llama_n_ctx(ctx.ctx))
        if len(self.prompt) > n_ctx - 4:
            raise _errno(
                "prompt_too_long", f"the prompt is {len(self.prompt)} tokens; the context holds {n_ctx} (ctx-size)"
            )
        ctx.kv_cache_clear()
        self._new_sampler()
        self.tokens.clear()
        self.text.clear()
        self.last = b""
        self.embedding = None
        engine.decode(ctx, self._batch_for(self._chunk()), self.prompt, 0, self._chunk())
        self.n_past = len(self.prompt)

    def _step(self) -> tuple[bytes, bool]:
        """Sample one token, record it, evaluate it; returns its bytes and whether it ends the answer."""
        assert self._sampler is not None and self._ctx is not None
        token = self._sampler.sample(self._ctx, -1)
        text = engine.piece(self.graph.model, token)
        self.tokens.append(token)
        self.text += text
        self.last = text
        return text, engine.is_eog(self.graph.model, token) and not self.meta.ignore_eos

    def _evaluate_last(self) -> None:
        assert self._ctx is not None
        n_ctx = int(engine.llama_cpp.llama_n_ctx(self._ctx.ctx))
        if self.n_past >= n_ctx:
            raise _errno("context_full", f"the context is full at {n_ctx} tokens (ctx-size)")
        engine.decode(self._ctx, self._batch_for(1), [self.tokens[-1]], self.n_past, 1)
        self.n_past += 1

    def compute(self) -> None:
        self._check_alive()
        self.streaming = False
        if self.meta.embedding:
            self._embed()
            return
        self._start()
        stop = self.meta.reverse_prompt.encode("utf-8")
        n = 0
        while self.meta.n_predict < 0 or n < self.meta.n_predict:
            text, end = self._step()
            n += 1
            if self.meta.stream_stdout:
                _to_stdout(text)
            if stop and self.text.find(stop, max(0, len(self.text) - len(text) - len(stop) + 1)) >= 0:
                return
            if end:
                return
            self._evaluate_last()

    def compute_single(self) -> None:
        self._check_alive()
        if self.meta.embedding:
            raise InvalidArgument("compute_single generates text: this context is in embedding mode")
        if not self.streaming:
            self._start()
            self.streaming = True
        try:
            _, end = self._step()
            if end:
                raise _errno("end_of_sequence", "the model ended its answer")
            self._evaluate_last()
        except BaseException:
            self.streaming = False  # a non-zero step ends the session
            raise

    def fini_single(self) -> None:
        self.streaming = False
        self.tokens.clear()
        self.text.clear()
        self.last = b""
        if self._sampler is not None:
            self._sampler.reset()

    # -- embeddings ------------------------------------------------------------------------------------

    def _embed(self) -> None:
        if self.prompt is None:
            raise InvalidArgument("compute without a prompt: set input 0 first")
        ctx = self._context()
        n_ctx = int(engine.llama_cpp.llama_n_ctx(ctx.ctx))
        if len(self.prompt) > n_ctx - 4 or len(self.prompt) > self.meta.batch_size:
            limit = min(n_ctx - 4, self.meta.batch_size)
            raise _errno("prompt_too_long", f"the text is {len(self.prompt)} tokens; embeddings take at most {limit}")
        ctx.kv_cache_clear()
        self.tokens.clear()
        self.text.clear()
        batch = self._batch_for(len(self.prompt))
        batch.set_batch(self.prompt, n_past=0, logits_all=False)
        ctx.decode(batch)
        n_embd = int(engine.llama_cpp.llama_model_n_embd(self.graph.model.model))
        pooled = engine.llama_cpp.llama_get_embeddings_seq(ctx.ctx, 0)
        if not pooled:  # no pooling: the last token's embedding
            pooled = engine.llama_cpp.llama_get_embeddings_ith(ctx.ctx, -1)
        if not pooled:
            raise InvalidArgument("llama.cpp returned no embedding for this model")
        vector = np.ctypeslib.as_array(pooled, shape=(n_embd,)).astype(np.float64)
        norm = float(np.sqrt((vector * vector).sum()))
        vector = vector / norm if norm > 0 else vector
        values = ",".join("%.10g" % float(np.float32(v)) for v in vector)  # noqa: UP031 - C's %g, as {:.10}
        self.text += f'{{"n_embedding": {n_embd}, "embedding": [{values}]}}'.encode()
        self.n_past = len(self.prompt)

    # -- outputs ---------------------------------------------------------------------------------------

    def _usage(self) -> bytes:
        build, commit = engine.build_info()
        usage = {
            "input_tokens": len(self.prompt or ()),
            "output_tokens": len(self.tokens),
            "llama_build_number": build,
            "llama_commit": commit,
        }
        return json.dumps(usage).encode("utf-8")

    def get_output(self, key: TensorKey) -> Tensor:
        return _bytes(self._usage() if key in _USAGE_NAMES or key == 1 else bytes(self.text))

    def get_output_single(self, key: TensorKey) -> Tensor:
        return _bytes(self._usage() if key in _USAGE_NAMES or key == 1 else self.last)

    def output_names(self) -> Sequence[str]:
        return ["output", "metadata"]

    def close(self) -> None:
        self.closed = True
        for part in (self._sampler, self._batch, self._ctx):
            if part is not None:
                part.close()
        self._sampler = self._batch = self._ctx = None


def _field(key: str) -> str:
    from ._metadata import KEYS

    return KEYS[key][0]


def _bytes(data: bytes) -> Tensor:
    return Tensor((len(data),), TensorType.U8, np.frombuffer(data, dtype=np.uint8))


def _to_stdout(text: bytes) -> None:
    """``stream-stdout``: the piece on the host's stdout at once, after whatever the host printed before."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), text)
