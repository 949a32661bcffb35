"""llama-cpp-python's OpenAI-compatible server on loopback, serving one GGUF model: for wasinn-remote's
``protocol = "openai"`` tests, conformance runs and benchmarks.

    with openai_server(model, log, alias="tiny") as url:     # http://127.0.0.1:PORT, ready
        ...

It runs ``python -m llama_cpp.server`` in its own process (``pip install 'llama-cpp-python[server]'``),
greedy-friendly: one slot, the model's training context, flash attention on as WasmEdge's ``auto`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .loopback import free_port

__all__ = ["openai_server"]


@contextmanager
def openai_server(
    model: Path, log: Path, *, alias: str = "tiny", n_ctx: int = 0, timeout_s: float = 120.0
) -> Iterator[str]:
    """The server's base URL while the block runs; the server is stopped after it."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--flash_attn", "true"]
    command += ["--verbose", "false"]
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while not _ready(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the OpenAI-compatible server did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=1) as answer:
            return bool(json.load(answer).get("data"))
    except OSError:
        return False
