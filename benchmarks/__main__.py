"""``python -m benchmarks``: wasinn against native libraries and the wasmtime CLI; writes docs/performance.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .report import write
from .runner import BACKENDS, ROOT, WORKLOADS, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few iterations, one round: checks that it all works")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument(
        "--precision",
        default="default",
        choices=("default", "f32", "bf16", "f16"),
        help="OpenVINO inference precision for native and wasinn (wasmtime has no setting)",
    )
    parser.add_argument("--no-wasmtime", action="store_true", help="skip the wasmtime CLI")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args()
    results = run(
        1 if args.quick else args.rounds,
        args.quick,
        tuple(args.backends),
        tuple(args.workloads),
        args.precision,
        not args.no_wasmtime,
        args.quiet,
    )
    write(results, args.out)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
