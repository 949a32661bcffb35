"""``python -m benchmarks``: wasinn against native libraries and the wasmtime CLI; writes docs/performance.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .report import write
from .runner import BACKENDS, ROOT, WORKLOADS, Results, run


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
    parser.add_argument("--json", type=Path, help="the result file (default: results/NAME.json beside --out)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--render", action="store_true", help="measure nothing: render the page from --json's file")
    args = parser.parse_args()
    result_file = args.json or args.out.parent / "results" / f"{args.out.stem}.json"
    if args.render:
        write(Results.from_dict(json.loads(result_file.read_text())), args.out)
        print(f"rendered {args.out} and {args.out.with_suffix('.png')} from {result_file}")
        return 0
    results = run(
        1 if args.quick else args.rounds,
        args.quick,
        tuple(args.backends),
        tuple(args.workloads),
        args.precision,
        not args.no_wasmtime,
        args.quiet,
    )
    results.command = " ".join(["python -m benchmarks", *sys.argv[1:]])
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(results.to_dict(), indent=1) + "\n")
    write(results, args.out)
    print(f"wrote {result_file}, {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
