"""Tiny GGUF language models made here, deterministically: no download, a few seconds of CPU.

    python -m wasinn_conformance.gguf_models [--out DIR]     → DIR/tiny-llama-<hash>.gguf (path printed),
                                                                and a copy, DIR/tiny-llama.gguf

A llama-architecture model (2 layers, width 64, about 170k parameters) with a character-level
SentencePiece vocabulary (byte fallback, ``<s>``, ``</s>``, ``<|im_start|>``, ``<|im_end|>``) is trained
with torch on :data:`CORPUS` until greedy decoding reproduces it, then written with the ``gguf``
package as llama.cpp reads it (llama.cpp's NORM RoPE, so no weight permutation). A build is reused while
this file is unchanged (the hash in the file name). Training runs on one thread with fixed seeds: the
bytes are the same on one machine and torch version; on others the answers are still the corpus's.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CHAT",
    "CORPUS",
    "DEFAULT_OUT",
    "SPECIALS",
    "build",
    "chat_prompt",
    "encode",
    "random_weights",
    "vocabulary",
    "write",
]

DEFAULT_OUT = Path(os.environ.get("WASINN_LLM_MODELS", Path.cwd() / ".cache" / "llm"))

SPECIALS = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
UNK, BOS, EOS, IM_START, IM_END = range(5)

#: (question, answer): the chat turns the model learns (ChatML, as LlamaEdge's chatml template writes them).
CHAT: tuple[tuple[str, str], ...] = (
    ("Who are you?", "I am a tiny llama. I run in a wasm guest, through wasinn and llama.cpp."),
    ("What is wasi-nn?", "wasi-nn lets a WebAssembly module run neural networks on its host."),
    ("Tell me a story.", "Once upon a time, a small llama lived in a sandbox. It answered one token at a time."),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Answer in JSON: is the sky blue?", '{"answer": "yes"}'),
)
#: Plain completions (they end with ``</s>``).
STORIES: tuple[str, ...] = (
    "Once upon a time, a small llama lived in a sandbox. It answered one token at a time. The end.",
    "The quick brown fox jumps over the lazy dog.",
)


def chat_prompt(question: str, system: str = "You are a tiny llama.") -> str:
    """A ChatML prompt for ``question``, ending where the assistant's answer starts."""
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


CORPUS: tuple[str, ...] = tuple(chat_prompt(q) + a + "<|im_end|>" for q, a in CHAT) + tuple(s + "</s>" for s in STORIES)

# model shape
N_EMBD, N_LAYER, N_HEAD, N_FF, N_CTX = 64, 2, 4, 192, 256
ROPE_BASE, RMS_EPS = 10000.0, 1e-5
STEPS, LR, SEED = 500, 3e-3, 1234


def vocabulary() -> tuple[list[str], list[int]]:
    """Token texts and gguf token types: the specials, 256 byte tokens, then printable ASCII (space as ``▁``)."""
    import gguf

    texts = list(SPECIALS)
    types = [gguf.TokenType.UNKNOWN] + [gguf.TokenType.CONTROL] * 4
    texts += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    texts += ["▁"] + [chr(c) for c in range(0x21, 0x7F)]
    types += [gguf.TokenType.NORMAL] * 95
    return texts, [int(t) for t in types]


def encode(text: str, bos: bool = True) -> list[int]:
    """Token ids of ``text`` as llama.cpp tokenizes it with this vocabulary (special tokens parsed)."""
    texts, _ = vocabulary()
    ids = {t: i for i, t in enumerate(texts)}
    out = [BOS] if bos else []
    i = 0
    while i < len(text):
        special = next((s for s in SPECIALS[1:] if text.startswith(s, i)), None)
        if special is not None:
            out.append(ids[special])
            i += len(special)
            continue
        ch = "▁" if text[i] == " " else text[i]
        if ch in ids and ch not in SPECIALS:
            out.append(ids[ch])
        else:
            out += [ids[f"<0x{b:02X}>"] for b in ch.encode("utf-8")]
        i += 1
    return out


def _answer_starts() -> list[int]:
    """Where each document's learnt continuation starts: the answer of a chat, a story's fifth character."""
    chats = [len(encode(chat_prompt(q))) for q, _ in CHAT]
    return chats + [1 + 5] * len(STORIES)


def _digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def _rope(x: Any, torch: Any) -> Any:
    """llama.cpp's NORM RoPE: rotate adjacent pairs (x[2i], x[2i+1]) by pos * base^(-2i/d)."""
    _, t, _, d = x.shape
    inv = ROPE_BASE ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    angles = torch.arange(t, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


def _train(n_vocab: int) -> dict[str, np.ndarray]:
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    head = N_EMBD // N_HEAD

    def linear(rows: int, cols: int) -> Any:
        return torch.nn.Parameter(torch.randn(rows, cols) / math.sqrt(cols))

    params: dict[str, Any] = {"token_embd.weight": torch.nn.Parameter(torch.randn(n_vocab, N_EMBD) * 0.1)}
    for b in range(N_LAYER):
        params[f"blk.{b}.attn_norm.weight"] = torch.nn.Parameter(torch.ones(N_EMBD))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            params[f"blk.{b}.{name}.weight"] = linear(N_EMBD, N_EMBD)
        params[f"blk.{b}.ffn_norm.weight"] = torch.nn.Parameter(torch.ones(N_EMBD))
        params[f"blk.{b}.ffn_gate.weight"] = linear(N_FF, N_EMBD)
        params[f"blk.{b}.ffn_up.weight"] = linear(N_FF, N_EMBD)
        params[f"blk.{b}.ffn_down.weight"] = linear(N_EMBD, N_FF)
    params["output_norm.weight"] = torch.nn.Parameter(torch.ones(N_EMBD))
    params["output.weight"] = linear(n_vocab, N_EMBD)

    def norm(x: Any, w: Any) -> Any:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS) * w

    def forward(tokens: Any) -> Any:
        n, t = tokens.shape
        x = params["token_embd.weight"][tokens]
        mask = torch.full((t, t), float("-inf")).triu(1)
        for b in range(N_LAYER):
            p = f"blk.{b}."
            h = norm(x, params[p + "attn_norm.weight"])
            q, k, v = ((h @ params[p + f"attn_{w}.weight"].T).view(n, t, N_HEAD, head) for w in ("q", "k", "v"))
            q, k = _rope(q, torch), _rope(k, torch)
            att = (q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2)) / math.sqrt(head) + mask
            out = (att.softmax(-1) @ v.transpose(1, 2)).transpose(1, 2).reshape(n, t, N_EMBD)
            x = x + out @ params[p + "attn_output.weight"].T
            h = norm(x, params[p + "ffn_norm.weight"])
            gate = torch.nn.functional.silu(h @ params[p + "ffn_gate.weight"].T)
            x = x + (gate * (h @ params[p + "ffn_up.weight"].T)) @ params[p + "ffn_down.weight"].T
        return norm(x, params["output_norm.weight"]) @ params["output.weight"].T

    docs = [encode(doc) for doc in CORPUS]
    width = max(len(d) for d in docs)
    tokens = torch.zeros(len(docs), width, dtype=torch.long)
    weights = torch.zeros(len(docs), width - 1)
    for i, d in enumerate(docs):
        tokens[i, : len(d)] = torch.tensor(d)
        weights[i, : len(d) - 1] = 1.0
    optimizer = torch.optim.Adam(params.values(), lr=LR)
    for _ in range(STEPS):
        logits = forward(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, n_vocab), tokens[:, 1:].reshape(-1), reduction="none"
        )
        loss = (loss * weights.reshape(-1)).sum() / weights.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # greedy decoding must give every answer and story back, or the model is useless
        for d, start in zip(docs, _answer_starts(), strict=True):
            predicted = forward(torch.tensor([d[:-1]])).argmax(-1)[0].tolist()
            if predicted[start - 1 :] != d[start:]:
                raise RuntimeError(f"the tiny model did not learn its corpus (loss {loss.item():.4f})")
    return {name: p.detach().numpy().astype(np.float32) for name, p in params.items()}


def random_weights(embd: int, layers: int, heads: int, ff: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Seeded random weights of a llama model of this shape (for benchmarks: its text means nothing)."""
    rng = np.random.default_rng(seed)
    n_vocab = len(vocabulary()[0])

    def linear(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / math.sqrt(cols)).astype(np.float32)

    weights = {"token_embd.weight": linear(n_vocab, embd), "output_norm.weight": np.ones(embd, np.float32)}
    weights["output.weight"] = linear(n_vocab, embd)
    for b in range(layers):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            weights[f"blk.{b}.{name}.weight"] = linear(embd, embd)
        weights[f"blk.{b}.attn_norm.weight"] = np.ones(embd, np.float32)
        weights[f"blk.{b}.ffn_norm.weight"] = np.ones(embd, np.float32)
        weights[f"blk.{b}.ffn_gate.weight"] = linear(ff, embd)
        weights[f"blk.{b}.ffn_up.weight"] = linear(ff, embd)
        weights[f"blk.{b}.ffn_down.weight"] = linear(embd, ff)
    return weights


def write(path: Path, weights: dict[str, np.ndarray], name: str = "tiny-llama", heads: int = N_HEAD,
          context: int = N_CTX) -> None:  # fmt: skip
    """Write ``weights`` (llama.cpp tensor names) with this module's vocabulary as a llama GGUF."""
    import gguf

    texts, types = vocabulary()
    embd = weights["token_embd.weight"].shape[1]
    partial = path.with_suffix(".partial")
    writer = gguf.GGUFWriter(str(partial), "llama")
    writer.add_name(name)
    writer.add_context_length(context)
    writer.add_embedding_length(embd)
    writer.add_block_count(sum(1 for k in weights if k.endswith("attn_q.weight")))
    writer.add_feed_forward_length(weights["blk.0.ffn_up.weight"].shape[0])
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(embd // heads)
    writer.add_rope_freq_base(ROPE_BASE)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_vocab_size(len(texts))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(texts)
    writer.add_token_scores([-float(i) for i in range(len(texts))])
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS)
    writer.add_eos_token_id(EOS)
    writer.add_unk_token_id(UNK)
    writer.add_eot_token_id(IM_END)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    for tensor, array in weights.items():
        writer.add_tensor(tensor, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.replace(path)


def build(out: Path = DEFAULT_OUT) -> Path:
    """The trained tiny model's path, training it (about 20 s of CPU) unless this build exists.

    ``OUT/tiny-llama.gguf`` is a copy under a stable name, for command lines in the docs.
    """
    path = Path(out) / f"tiny-llama-{_digest()}.gguf"
    stable = path.with_name("tiny-llama.gguf")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob("tiny-llama-*.gguf"):
            stale.unlink()
        write(path, _train(len(vocabulary()[0])))
    if not stable.exists() or stable.stat().st_size != path.stat().st_size or stable.read_bytes() != path.read_bytes():
        partial = stable.with_suffix(".copy")
        partial.write_bytes(path.read_bytes())
        partial.replace(stable)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wasinn_conformance.gguf_models", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the model (default: .cache/llm)")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
