"""The llama.cpp side, through llama-cpp-python's low-level bindings: models, contexts, tokens, samplers.

One model per graph; each execution context has its own llama context (KV cache) and sampler, so
contexts never see each other's state (WasmEdge shares one llama context per graph).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import llama_cpp
from llama_cpp import _internals as internals
from llama_cpp.llama_grammar import json_schema_to_gbnf

from wasinn_core import InvalidArgument

from ._metadata import Metadata

__all__ = [
    "build_info",
    "gpu_offload",
    "is_eog",
    "load_model",
    "make_sampler",
    "new_context",
    "piece",
    "route_logs",
    "tokenize",
]

log = logging.getLogger("wasinn.llama")

# ggml log levels (none, debug, info, warn, error, cont) -> Python logging: only errors are warnings
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO, 4: logging.WARNING, 5: logging.DEBUG}
_last_level = logging.DEBUG


@llama_cpp.llama_log_callback  # type: ignore[misc]
def _log_callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    global _last_level
    lvl = _last_level if level == 5 else _LEVELS.get(level, logging.DEBUG)
    _last_level = lvl
    if log.isEnabledFor(lvl):
        log.log(lvl, "llama.cpp: %s", text.decode("utf-8", errors="replace").rstrip())


@functools.cache
def route_logs() -> None:
    """Send llama.cpp's log to the ``wasinn.llama`` logger instead of stderr (the guest's)."""
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))


@functools.cache
def build_info() -> tuple[int, str]:
    """What the usage JSON reports as ``llama_build_number`` and ``llama_commit``.

    WasmEdge reports llama.cpp's build number and commit; llama-cpp-python does not export them, so
    the number is 0 and the commit names the binding and its version (a string, as WasmEdge's is).
    """
    return 0, f"llama-cpp-python {llama_cpp.__version__}"


def gpu_offload() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU."""
    return bool(llama_cpp.llama_supports_gpu_offload())


_SPLIT = {"none": 0, "layer": 1, "row": 2}
_FLASH = {"on": 1, "enabled": 1, "off": 0, "disabled": 0, "auto": -1}


def load_model(path: Path, meta: Metadata, gpu_layers: int) -> internals.LlamaModel:
    """Load the GGUF at ``path`` with ``gpu_layers`` layers offloaded (0 on the CPU)."""
    route_logs()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = gpu_layers
    params.main_gpu = meta.main_gpu
    params.split_mode = _SPLIT[meta.split_mode]
    params.check_tensors = meta.check_tensors
    if meta.tensor_split:
        values = [float(x) for x in meta.tensor_split.split(",")]
        if len(values) > llama_cpp.llama_max_devices():
            raise InvalidArgument(
                f"metadata key 'tensor-split': {len(values)} proportions for at most {llama_cpp.llama_max_devices()} "
                "devices"
            )
        split = (ctypes.c_float * llama_cpp.llama_max_devices())(*values)
        params.tensor_split = split
    try:
        return internals.LlamaModel(path_model=str(path), params=params, verbose=True)
    except ValueError as exc:
        raise InvalidArgument(f"llama.cpp cannot load the model: {exc}") from None


def new_context(model: internals.LlamaModel, meta: Metadata, threads: int, gpu: bool) -> internals.LlamaContext:
    """A llama context (KV cache) for ``model`` under ``meta``."""
    params = llama_cpp.llama_context_default_params()
    train = llama_cpp.llama_model_n_ctx_train(model.model)
    params.n_ctx = meta.ctx_size or train
    params.n_batch = meta.batch_size
    params.n_ubatch = min(meta.ubatch_size, meta.batch_size)
    params.n_threads = meta.threads or threads
    params.n_threads_batch = meta.threads_batch or meta.threads or threads
    params.rope_scaling_type = meta.rope_scaling_type
    params.pooling_type = meta.pooling_type
    params.attention_type = meta.attention_type
    params.flash_attn_type = _FLASH[meta.flash_attn]
    params.rope_freq_base = meta.rope_freq_base
    params.rope_freq_scale = meta.rope_freq_scale
    params.yarn_ext_factor = meta.yarn_ext_factor
    params.yarn_attn_factor = meta.yarn_attn_factor
    params.yarn_beta_fast = meta.yarn_beta_fast
    params.yarn_beta_slow = meta.yarn_beta_slow
    params.yarn_orig_ctx = meta.yarn_orig_ctx
    params.type_k = meta.cache_type_k
    params.type_v = meta.cache_type_v
    params.embeddings = meta.embedding
    params.offload_kqv = gpu and not meta.no_kv_offload
    params.no_perf = True
    try:
        return internals.LlamaContext(model=model, params=params, verbose=True)
    except ValueError as exc:
        raise InvalidArgument(f"llama.cpp cannot make a context with this metadata: {exc}") from None


def tokenize(model: internals.LlamaModel, text: bytes) -> list[int]:
    """Prompt tokens: BOS as the model says, special tokens (``<|im_start|>``) parsed, as WasmEdge does."""
    if not text:
        return list(model.tokenize(b"", add_bos=True, special=True))
    return list(model.tokenize(text, add_bos=True, special=True))


def piece(model: internals.LlamaModel, token: int) -> bytes:
    """A token's bytes, special tokens rendered (``</s>``, ``<|im_end|>``) as WasmEdge does."""
    size = 64
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(model.vocab, token, buf, size, 0, True)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def is_eog(model: internals.LlamaModel, token: int) -> bool:
    """End of generation: EOS, EOT, ``<|im_end|>``…"""
    return bool(llama_cpp.llama_vocab_is_eog(model.vocab, token))


def make_sampler(model: internals.LlamaModel, meta: Metadata) -> internals.LlamaSampler:
    """The sampler chain of WasmEdge's defaults, in llama-cpp-python's order.

    penalties → DRY → grammar → greedy when ``temp`` ≤ 0; else mirostat, or top-k → typical → top-p →
    min-p → XTC → temperature (dynamic when ``dynatemp-range`` > 0) → dist(seed).
    """
    grammar = meta.grammar
    if meta.json_schema and not grammar:
        try:
            grammar = json_schema_to_gbnf(meta.json_schema)
        except Exception as exc:  # the converter raises whatever the schema provokes
            raise InvalidArgument(f"metadata key 'json-schema': not a schema llama.cpp can convert: {exc}") from None
    sampler = internals.LlamaSampler()
    n_vocab = llama_cpp.llama_vocab_n_tokens(model.vocab)
    sampler.add_penalties(
        n_vocab, meta.last_n_penalty, meta.repeat_penalty, meta.frequency_penalty, meta.presence_penalty
    )
    if meta.dry_multiplier > 0:
        sampler.add_dry(
            model,
            meta.dry_multiplier,
            meta.dry_base,
            meta.dry_allowed_length,
            meta.last_n_penalty,
            ["\n", ":", '"', "*"],
        )
    if grammar:
        native = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar.encode("utf-8"), b"root")
        if not native:
            sampler.close()
            raise InvalidArgument("metadata key 'grammar': llama.cpp cannot parse this GBNF grammar (root rule 'root')")
        llama_cpp.llama_sampler_chain_add(sampler.sampler, native)
    min_keep = max(1, meta.min_keep)
    temp = max(0.0, meta.temp)
    if temp <= 0:
        sampler.add_greedy()
    elif meta.mirostat == 1:
        sampler.add_mirostat(n_vocab, meta.seed, 5.0, meta.mirostat_eta, 100)
    elif meta.mirostat == 2:
        sampler.add_mirostat_v2(meta.seed, 5.0, meta.mirostat_eta)
    else:
        sampler.add_top_k(meta.top_k)
        sampler.add_typical(meta.typ_p, min_keep)
        sampler.add_top_p(meta.top_p, min_keep)
        sampler.add_min_p(meta.min_p, min_keep)
        if meta.xtc_probability > 0:
            sampler.add_xtc(meta.xtc_probability, meta.xtc_threshold, min_keep, meta.seed)
        if meta.dynatemp_range > 0:
            sampler.add_temp_ext(temp, meta.dynatemp_range, meta.dynatemp_exponent)
        else:
            sampler.add_temp(temp)
        sampler.add_dist(meta.seed)
    return sampler


def decode(
    ctx: internals.LlamaContext, batch: internals.LlamaBatch, tokens: Sequence[int], n_past: int, chunk: int
) -> None:
    """Evaluate ``tokens`` from position ``n_past`` in chunks of ``chunk``; logits for the last one."""
    for start in range(0, len(tokens), chunk):
        part = tokens[start : start + chunk]
        batch.set_batch(part, n_past=n_past + start, logits_all=False)
        ctx.decode(batch)


def default_threads() -> int:
    """Half the CPUs, at least one (llama-cpp-python's default)."""
    return max(1, (os.cpu_count() or 2) // 2)


def system_info() -> str:
    return bytes(llama_cpp.llama_print_system_info()).decode("utf-8", errors="replace")


def version() -> str:
    return str(llama_cpp.__version__)
