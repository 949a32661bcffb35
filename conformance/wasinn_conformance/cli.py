"""``wasinn conformance``: the suite from the command line (a thin layer over pytest).

wasinn conformance --backend onnxruntime [--target gpu] [--json report.json]
wasinn conformance --backend openvino --layer operators --operators complete   # every ONNX node test
wasinn conformance --runtime wasmtime            # grade wasmtime's CLI with the ABI layer
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["main", "pytest_arguments"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wasinn conformance", description="Run the wasi-nn conformance suite on backends or a runtime."
    )
    parser.add_argument(
        "--backend",
        action="append",
        metavar="NAME",
        help="backend to test (repeatable; default: every installed backend)",
    )
    parser.add_argument("--target", choices=("cpu", "gpu", "tpu"), default="cpu", help="execution target")
    parser.add_argument(
        "--layer", choices=("abi", "component", "backend", "operators", "llm", "all"), help="which layer to run"
    )
    parser.add_argument(
        "--operators",
        choices=("quick", "complete"),
        help="the operator layer's cases: quick (default: one per operator and per property) or complete",
    )
    parser.add_argument("--json", metavar="FILE", help="write the JSON report here")
    parser.add_argument("--config", metavar="FILE", help="embedder config (wasinn.toml) with the backends' options")
    parser.add_argument(
        "--expectations",
        action="append",
        default=[],
        metavar="FILE",
        help="expectations file (TOML) with known skips and expected failures",
    )
    parser.add_argument(
        "--runtime", metavar="RUNTIME", help="run the ABI layer on 'wasmtime', 'wasinn-cli' or a command template"
    )
    parser.add_argument("--runtime-name", help="name of a templated runtime")
    parser.add_argument("--runtime-encoding", help="model encoding a templated runtime supports")
    parser.add_argument("--runtime-features", help="comma-separated features of a templated runtime")
    parser.add_argument("-k", metavar="EXPRESSION", help="only cases matching this pytest expression")
    parser.add_argument("-q", "--quiet", action="store_true", help="less output")
    return parser


def pytest_arguments(argv: Sequence[str] | None = None) -> list[str]:
    """The pytest command line equivalent to ``wasinn conformance ARGS``."""
    args = _parser().parse_args(argv)
    out = [
        "--pyargs",
        "wasinn_conformance",
        "-p",
        "no:cacheprovider",
        "--wasinn-target",
        args.target,
        "-rfEX",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]  # this module is imported before pytest starts
    for name in args.backend or []:
        out += ["--wasinn-backend", name]
    for path in args.expectations:
        out += ["--wasinn-expectations", path]
    for flag, value in [
        ("--wasinn-layer", args.layer),
        ("--wasinn-operators", args.operators),
        ("--wasinn-json", args.json),
        ("--wasinn-config", args.config),
        ("--wasinn-runtime", args.runtime),
        ("--wasinn-runtime-name", args.runtime_name),
        ("--wasinn-runtime-encoding", args.runtime_encoding),
        ("--wasinn-runtime-features", args.runtime_features),
        ("-k", args.k),
    ]:
        if value:
            out += [flag, value]
    if args.quiet:
        out.append("-q")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    import pytest

    return int(pytest.main(pytest_arguments(argv)))
