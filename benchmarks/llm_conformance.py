"""``python -m benchmarks.llm_conformance``: the conformance suite's LLM layer on ``llama`` and on ``remote``.

    python -m benchmarks.llm_conformance [--out docs/results/llm-conformance.json]

``remote`` runs against llama-cpp-python's OpenAI-compatible server on loopback, serving the same tiny
model (``protocol = "openai"``). The JSON holds each backend's case outcomes; the docs' table is made
from it (:func:`table`), and a test checks that the docs show that table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "llm-conformance.json"


def _run(args: list[str], report: Path) -> dict[str, str]:
    command = [sys.executable, "-m", "wasinn_core", "conformance", "-q", "--layer", "llm", *args, "--json", str(report)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if not report.exists():
        raise RuntimeError(f"the conformance run wrote no report:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    return {case["id"]: case["outcome"] for case in json.loads(report.read_text())["cases"]}


def run() -> dict[str, Any]:
    from wasinn_remote.openai_loopback import openai_server

    from wasinn_conformance.gguf_models import build

    model = build(ROOT / ".cache" / "llm")
    outcomes: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="wasinn-llm-conformance-") as tmp:
        folder = Path(tmp)
        outcomes["llama"] = _run(["--backend", "llama"], folder / "llama.json")
        with openai_server(model, folder / "server.log") as url:
            config = folder / "wasinn.toml"
            config.write_text(
                '[[models]]\nname = "conformance-llm"\nencoding = "ggml"\nbackend = "remote"\n'
                f'options = {{ url = "{url}", protocol = "openai", model = "tiny" }}\n'
            )
            outcomes["remote (OpenAI protocol, llama-cpp-python's server)"] = _run(
                ["--backend", "remote", "--config", str(config)], folder / "remote.json"
            )
    import llama_cpp

    return {"llama_cpp_python": llama_cpp.__version__, "model": model.name, "outcomes": outcomes}


def table(results: dict[str, Any]) -> str:
    """The Markdown table the docs show."""
    lines = ["| backend | cases | passed | failed | skipped |", "|---|---|---|---|---|"]
    for backend, cases in results["outcomes"].items():
        counts = {k: sum(1 for v in cases.values() if v == k) for k in ("passed", "failed", "skipped")}
        lines.append(f"| {backend} | {len(cases)} | {counts['passed']} | {counts['failed']} | {counts['skipped']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llm_conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    results = run()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.out == OUT:
        from .llm import show

        show("llm-conformance", table(results))
    print(table(results))
    print(f"wrote {args.out}")
    failed = any(v == "failed" for cases in results["outcomes"].values() for v in cases.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
