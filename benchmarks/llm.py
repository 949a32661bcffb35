"""``python -m benchmarks.llm``: generation through a wasm guest against llama-cpp-python directly.

    python -m benchmarks.llm [--quick] [--rounds 5] [--out docs/results/llm-benchmark.json]

On one GGUF model and prompt, greedy, every answer running until the context is full (``ignore-eos``):

- **native**: llama-cpp-python's ``Llama.generate`` in this process (model loaded beforehand);
- **compute**: the llama guest (``guests/wasm/llama.wasm``) under ``wasinn run`` calling ``compute`` once;
- **stream**: the same guest calling ``compute_single`` + ``get_output_single`` per token.

The guest times its own calls with the WASI monotonic clock (``--time``) after one untimed answer
(``--warmup``); the native side with ``time.perf_counter``, also after one, without llama-cpp-python's
prompt cache (every round evaluates the prompt, as ``compute`` does); the rounds interleave the three.
Reported: time per token (the whole answer over its tokens, prompt included, the best round: on a
shared machine the others measure its load; the medians are in the JSON too), the ratio to native,
streaming's overhead per token over ``compute``, and time to the first token. The model is random (seeded) and
larger than the chat model, so that a token costs llama.cpp about as much as a small real model's
does; ``--quick`` uses the tiny chat model instead.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .machine import describe

ROOT = Path(__file__).resolve().parents[1]
GUEST = ROOT / "guests" / "wasm" / "llama.wasm"
OUT = ROOT / "docs" / "results" / "llm-benchmark.json"
MODELS = ROOT / ".cache" / "llm"
# the benchmark model: 8 layers of width 512 (about 26M parameters), 1024-token context
SHAPE = {"embd": 512, "layers": 8, "heads": 8, "ff": 1536}
CTX = 256  # ctx-size of every run: the prompt plus the answer fill it
PROMPT = "Once upon a time, " * 3  # 55 tokens with the BOS


def bench_model(quick: bool) -> Path:
    from wasinn_conformance.gguf_models import build, random_weights, write

    if quick:
        return build(MODELS)
    path = MODELS / "bench-llama-{embd}x{layers}.gguf".format(**SHAPE)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        weights = random_weights(SHAPE["embd"], SHAPE["layers"], SHAPE["heads"], SHAPE["ff"])
        write(path, weights, name="bench-llama", heads=SHAPE["heads"], context=1024)
    return path


class Native:
    """llama-cpp-python directly, the model loaded once."""

    def __init__(self, model: Path) -> None:
        from llama_cpp import Llama
        from wasinn_llama._engine import default_threads

        threads = default_threads()  # wasinn-llama's: the same for the prompt (llama-cpp-python's default: all CPUs)
        self.llm = Llama(str(model), n_ctx=CTX, n_threads=threads, n_threads_batch=threads, flash_attn=True,
                         verbose=False)  # fmt: skip
        self.tokens = self.llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
        self.run: dict[str, Any] = {"tokens": 0, "total_s": [], "first_s": [], "text": ""}
        self.round(timed=False)  # the warm-up, as the guest's --warmup

    def round(self, timed: bool = True) -> None:
        llm = self.llm
        llm.reset()  # no prefix cache: every round evaluates the prompt, as compute does
        start, first, pieces = time.perf_counter(), 0.0, []
        for token in llm.generate(self.tokens, temp=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.0):
            if not pieces:
                first = time.perf_counter() - start
            pieces.append(llm.detokenize([token], special=True))
            if len(self.tokens) + len(pieces) > CTX:  # the token that finds no room ends it, as in WasmEdge
                break
        if timed:
            self.run["total_s"].append(time.perf_counter() - start)
            self.run["first_s"].append(first)
        self.run["tokens"] = len(pieces)
        self.run["text"] = b"".join(pieces).decode(errors="replace")

    def close(self) -> None:
        self.llm.close()


def guest(model: Path, stream: bool, run: dict[str, Any]) -> None:
    """One round of the llama guest under ``wasinn run``, timed by the guest, added to ``run``."""
    metadata = json.dumps({"temp": 0, "ignore-eos": True, "ctx-size": CTX})
    command = [sys.executable, "-m", "wasinn_core", "run", "--nn-preload", f"default:GGML:CPU:{model}", str(GUEST)]
    command += [
        "--time",
        "--warmup",
        "--usage",
        "--config",
        metadata,
        *(["--stream"] if stream else []),
        "default",
        PROMPT,
    ]
    result = subprocess.run(command, capture_output=True, timeout=600, cwd=ROOT)
    stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0:
        raise RuntimeError(f"the llama guest failed:\n{stderr[-2000:]}")
    text, counts = result.stdout.removesuffix(b"\n").rsplit(b"\n", 1)
    run["text"] = text.decode(errors="replace")
    run["tokens"] = json.loads(counts)["output_tokens"]  # the usage JSON (--usage)
    if stream:
        match = re.search(r"time: first (\d+) us, total (\d+) us", stderr)
        assert match, stderr
        run["first_s"].append(int(match.group(1)) / 1e6)
        run["total_s"].append(int(match.group(2)) / 1e6)
    else:
        match = re.search(r"time: compute (\d+) us", stderr)
        assert match, stderr
        run["total_s"].append(int(match.group(1)) / 1e6)


def summarise(native_run: dict[str, Any], compute: dict[str, Any], stream: dict[str, Any]) -> dict[str, Any]:
    def per_token_ms(run: dict[str, Any]) -> float:
        # the best round: on a shared machine the others measure its load (as timeit reports the minimum)
        return 1000 * min(run["total_s"]) / run["tokens"]

    n, c, s = per_token_ms(native_run), per_token_ms(compute), per_token_ms(stream)
    return {
        "tokens": native_run["tokens"],
        "native_ms_per_token": round(n, 4),
        "compute_ms_per_token": round(c, 4),
        "stream_ms_per_token": round(s, 4),
        "compute_vs_native": round(c / n, 3),
        "stream_vs_native": round(s / n, 3),
        "stream_overhead_us_per_token": round(1000 * (s - c), 1),
        "native_tokens_per_s": round(1000 / n, 1),
        "compute_tokens_per_s": round(1000 / c, 1),
        "native_first_token_ms": round(1000 * min(native_run["first_s"]), 2),
        "stream_first_token_ms": round(1000 * min(stream["first_s"]), 2),
        "native_median_ms_per_token": round(1000 * statistics.median(native_run["total_s"]) / native_run["tokens"], 4),
        "compute_median_ms_per_token": round(1000 * statistics.median(compute["total_s"]) / compute["tokens"], 4),
        "same_text": native_run["text"] == compute["text"] == stream["text"],
    }


def table(results: dict[str, Any]) -> str:
    """The Markdown table the docs show (tests compare the docs with it)."""
    r = results["summary"]
    native = f"{r['native_ms_per_token']:.3f} ms ({r['native_tokens_per_s']:.0f} tokens/s)"
    compute = f"{r['compute_ms_per_token']:.3f} ms ({r['compute_vs_native']:.3f}× native)"
    stream = f"{r['stream_ms_per_token']:.3f} ms ({r['stream_vs_native']:.3f}× native)"
    first = f"{r['native_first_token_ms']:.2f} ms / {r['stream_first_token_ms']:.2f} ms"
    rows = [
        ("time per token, llama-cpp-python directly", native),
        ("time per token, guest `compute`", compute),
        ("time per token, guest `compute_single` stream", stream),
        ("streaming overhead per token", f"{r['stream_overhead_us_per_token']:.1f} µs"),
        ("time to first token, native / guest stream", first),
        ("same text on all three", "yes" if r["same_text"] else "no"),
    ]
    lines = ["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


PAGE = ROOT / "docs" / "backends" / "llama.md"


def show(marker: str, text: str, page: Path = PAGE) -> None:
    """Put ``text`` between ``<!-- marker -->`` and ``<!-- /marker -->`` on ``page`` (the docs' figures)."""
    content = page.read_text()
    start, end = f"<!-- {marker} -->\n", f"<!-- /{marker} -->"
    head, _, rest = content.partition(start)
    _, _, tail = rest.partition(end)
    page.write_text(f"{head}{start}{text}\n{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llm", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tiny model, two rounds: checks that it all works")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    model = bench_model(args.quick)
    direct = Native(model)
    compute: dict[str, Any] = {"tokens": 0, "total_s": [], "first_s": [], "text": ""}
    stream: dict[str, Any] = {"tokens": 0, "total_s": [], "first_s": [], "text": ""}
    try:
        for _ in range(rounds):  # interleaved, so that the machine's load falls on all three alike
            direct.round()
            guest(model, False, compute)
            guest(model, True, stream)
    finally:
        direct.close()
    native_run = direct.run
    results = {
        "model": {"file": model.name, "bytes": model.stat().st_size, **({} if args.quick else SHAPE)},
        "ctx_size": CTX,
        "prompt": PROMPT,
        "rounds": rounds,
        "machine": describe(("llama-cpp-python",)),
        "runs": {"native": native_run, "compute": compute, "stream": stream},
        "summary": summarise(native_run, compute, stream),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.out == OUT:
        show("llm-benchmark", table(results))
    print(table(results))
    print(f"wrote {args.out}")
    return 0 if results["summary"]["same_text"] else 1


if __name__ == "__main__":
    sys.exit(main())
