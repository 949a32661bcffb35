"""What the LLM tests share: the tiny GGUF model, llama-cpp-python run directly (the reference), guest runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wasinn_core import Config, Host
from wasinn_core._cli._parse import parse_nn_preload
from wasinn_core.testing import GuestRun, run_guest

from .conftest import GUESTS, ROOT

LLAMA_GUEST = GUESTS / "llama.wasm"
MODELS = ROOT / ".cache" / "llm"

#: WasmEdge's sampling defaults, as llama-cpp-python's generate() takes them.
DEFAULTS: dict[str, Any] = {"temp": 0.8, "top-k": 40, "top-p": 0.95, "min-p": 0.05, "typ-p": 1.0, "repeat-penalty": 1.0}


def tiny_model() -> Path:
    """The trained tiny GGUF (built once, about 20 s of CPU, then cached in .cache/llm)."""
    from wasinn_conformance.gguf_models import build

    return build(MODELS)


@dataclass
class Native:
    """llama-cpp-python's answer to a prompt under WasmEdge's rules: the tokens' pieces (special tokens
    rendered) up to and including the end-of-generation token."""

    text: bytes
    pieces: list[bytes]
    input_tokens: int


def native(model: Path, prompt: str, metadata: dict[str, Any] | None = None) -> Native:
    """Generate with llama-cpp-python's own ``Llama.generate`` (its sampler chain, seed and grammar)."""
    from llama_cpp import Llama, LlamaGrammar
    from llama_cpp import llama_cpp as lib
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    meta = {**DEFAULTS, **(metadata or {})}
    seed = int(meta.get("seed", lib.LLAMA_DEFAULT_SEED))
    llm = Llama(str(model), n_ctx=int(meta.get("ctx-size", 0)), seed=seed, flash_attn=True, verbose=False)
    try:
        grammar = None
        if meta.get("grammar"):
            grammar = LlamaGrammar.from_string(meta["grammar"], verbose=False)
        elif meta.get("json-schema"):
            grammar = LlamaGrammar.from_string(json_schema_to_gbnf(meta["json-schema"]), verbose=False)
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        pieces: list[bytes] = []
        limit = int(meta.get("n-predict", -1))
        for token in llm.generate(
            tokens,
            top_k=meta["top-k"],
            top_p=meta["top-p"],
            min_p=meta["min-p"],
            typical_p=meta["typ-p"],
            temp=max(0.0, float(meta["temp"])),
            repeat_penalty=meta["repeat-penalty"],
            grammar=grammar,
        ):
            pieces.append(llm.detokenize([token], special=True))
            if lib.llama_vocab_is_eog(llm._model.vocab, token) or len(pieces) == limit:
                break
        return Native(b"".join(pieces), pieces, len(tokens))
    finally:
        llm.close()


def native_embedding(model: Path, text: str) -> list[float]:
    """The L2-normalised embedding of the last token (the tiny model has no pooling), from llama-cpp-python."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(str(model), embedding=True, flash_attn=True, verbose=False)  # WasmEdge: auto = on
    try:
        rows = llm.embed(text, normalize=False)
        last = np.asarray(rows[-1] if isinstance(rows[0], list) else rows, dtype=np.float64)
        return list(last / np.linalg.norm(last))
    finally:
        llm.close()


def preload_host(model: Path | str, target: str = "AUTO", name: str = "default", **config: Any) -> Host:
    """A host with ``--nn-preload NAME:GGML:TARGET:MODEL``, parsed as ``wasinn run`` parses it."""
    base = Config.from_dict(config, source="<test>") if config else Config(source="<test>")
    return Host(base.with_models(parse_nn_preload(f"{name}:GGML:{target}:{model}")))


def run_llama(host: Host, *args: str, dirs: tuple[tuple[str, str, bool], ...] = ()) -> GuestRun:
    """The llama guest on ``host`` (stdout, stderr, exit code)."""
    return run_guest(host, LLAMA_GUEST, list(args), dirs)


def usage(line: str) -> dict[str, Any]:
    data = json.loads(line)
    assert list(data) == ["input_tokens", "output_tokens", "llama_build_number", "llama_commit"]
    return data  # type: ignore[no-any-return]
