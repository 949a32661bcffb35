"""The docs cannot drift: every code block on the site runs, parses or is a verbatim copy of a source file.

- ``sh`` blocks run with bash from a copy of the repository root (symlinks, so files they write land in a
  temp dir, and ``/tmp/`` in them is rewritten to that dir). Lines starting with ``pip install`` or one of
  the ``make`` targets in ``NOT_RUN`` are not run, each for the reason given there; a block left with
  nothing but comments is skipped with those reasons, and one that had nothing to run in the first place
  fails. The README's ``make demo`` output is compared with a real run of the target's recipe.
- ``python`` blocks run in a subprocess, ``pycon`` blocks as doctests.
- A ``text`` block right after a ``sh`` or ``python`` block is its output: every line of it (but ``…``)
  must appear in what the block printed, whitespace aside.
- A block whose first line is ``# file: PATH``, ``/* file: PATH */`` or ``<!-- file: PATH -->`` must be a
  verbatim excerpt of PATH. On the plugin tutorial, ``wasinn-onnxref/REL`` is a whole file of
  ``examples/plugin-template/REL``, and the page runs as one script from an empty folder (its own test).
- ``toml`` and ``json`` blocks must parse; the config example must load as a ``Config``.
"""

from __future__ import annotations

import argparse
import ast
import doctest
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

import wasinn_core
from wasinn_core import Config

from .conftest import ROOT

DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])
#: Lines that are not run, each with the true reason (a ``make`` target missing here fails the test).
NOT_RUN = {
    "pip install": "installs packages: `make test` installed every one of them into its venv before the tests ran",
    "make demo": "its recipe is run, and its output compared with the README, by test_readme_demo_output_is_real",
    "make test": "it is the command running this test",
    "make fuzz": "a long run (minutes); the docs' figures are checked against its result file by tests/test_figures.py",
    "make soak": "a long run (minutes); the docs' figures are checked against its result file by tests/test_figures.py",
    "make figures": "reruns the conformance suite into docs/results/; tests/test_figures.py checks the result files",
    "make bench": "a long run (minutes); tests/test_figures.py checks docs/performance.md against its result file",
    "make docs": "it serves the site until interrupted; `make site` in `make test` builds it strictly",
    "make bench-llm": "a long run (a minute); tests check the llama page against its result file",
    "make llm-conformance": "starts an OpenAI-compatible server; tests check the llama page against its result file",
    "make dist": "builds every wheel; tests/test_plugin_dx.py builds them and installs them into a fresh venv",
    "make gpu-wheels": (
        "downloads about 10 MB of wheels from the package index for a GPU machine; they are used only there; "
        "tests/test_gpu_check.py checks that the page and the Makefile name the same step"
    ),
}
FILE_MARKER = re.compile(r"^(?:# file: (\S+)|/\* file: (\S+) \*/|<!-- file: (\S+) -->)\n")
TUTORIAL = DOCS / "plugin-tutorial.md"
TUTORIAL_PROJECT = "wasinn-onnxref/"  # the tutorial's folder: examples/plugin-template in the repository
TEMPLATE = "examples/plugin-template/"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    body: str
    output: str | None  # the text block right after it, if any

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def source(self) -> str | None:
        marker = FILE_MARKER.match(self.body)
        if marker is None:
            return None
        path = marker.group(1) or marker.group(2) or marker.group(3)
        return TEMPLATE + path.removeprefix(TUTORIAL_PROJECT) if path.startswith(TUTORIAL_PROJECT) else path

    @property
    def written(self) -> str | None:
        """The path a tutorial block's file is saved at, relative to the reader's folder."""
        marker = FILE_MARKER.match(self.body)
        path = marker and (marker.group(1) or marker.group(2) or marker.group(3))
        return path if path and path.startswith(TUTORIAL_PROJECT) else None

    @property
    def content(self) -> str:
        """The block without its file marker."""
        return FILE_MARKER.sub("", self.body, count=1)


def _blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        matches = list(re.finditer(r"^```(\w*)\n(.*?)^```\n", text, re.S | re.M))
        for i, m in enumerate(matches):
            after = matches[i + 1] if i + 1 < len(matches) else None
            adjacent = after and after.group(1) == "text" and not text[m.end() : after.start()].strip()
            line = text.count("\n", 0, m.start()) + 1
            found.append(Block(page, line, m.group(1), m.group(2), after.group(2) if adjacent and after else None))
    return found


BLOCKS = _blocks()


def blocks(lang: str, *, verbatim: bool = False) -> list[pytest.param]:  # type: ignore[valid-type]
    return [
        pytest.param(b, id=b.id)
        for b in BLOCKS
        if b.lang == lang and (b.source is not None) == verbatim and not (lang == "sh" and b.page == TUTORIAL)
    ]


def _normalise(text: str) -> str:
    return " ".join(text.split())


def assert_printed(expected: str | None, printed: str) -> None:
    if expected is None:
        return
    seen = _normalise(printed)
    for line in expected.splitlines():
        if line.strip() and line.strip() not in ("…", "..."):
            assert _normalise(line) in seen, f"the docs show {line!r}, the command did not print it:\n{printed}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The repository root as symlinks, so the blocks' relative paths work and what they write stays here."""
    work = tmp_path / "repo"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != ".git":
            (work / entry.name).symlink_to(entry)
    return work


def _env(tmp_path: Path) -> dict[str, str]:
    from wasinn_conformance.runtimes import wasmtime_runtime

    wasmtime = wasmtime_runtime()  # the wasmtime binary and OpenVINO's C library, for the runtime examples
    binary = Path(wasmtime.template.split()[0])
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        **wasmtime.env,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), str(binary.parent), os.environ["PATH"]]),
        "HOME": str(home),
        "ZIG_GLOBAL_CACHE_DIR": os.environ.get("ZIG_GLOBAL_CACHE_DIR", str(ROOT / ".zig-cache")),
        "PYTHONPATH": str(ROOT),
    }


def _not_run(line: str) -> str | None:
    """Why ``line`` is not run, or ``None`` to run it; an unknown ``make`` target fails."""
    stripped = line.lstrip()
    for start, reason in NOT_RUN.items():
        if stripped.startswith(start):
            return f"`{start}`: {reason}"
    assert not stripped.startswith("make "), f"no reason is known for not running {stripped!r}: add it to NOT_RUN"
    return None


def _runs_something(script: str) -> bool:
    commands = [line for line in script.replace("\\\n", " ").splitlines() if line.strip()]
    return any(not line.lstrip().startswith("#") for line in commands)


@pytest.mark.parametrize("block", blocks("sh"))
def test_shell_examples_run(block: Block, workdir: Path, tmp_path: Path) -> None:
    lines = block.body.splitlines()
    reasons = list(dict.fromkeys(r for r in map(_not_run, lines) if r))
    script = "\n".join(line for line in lines if _not_run(line) is None)
    if not _runs_something(script):
        assert reasons, f"{block.id}: nothing but comments: make it a `text` block or give it a command"
        pytest.skip("not run: " + "; ".join(reasons))
    script = script.replace("/tmp/", f"{tmp_path}/")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=workdir,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )
    printed = result.stdout + result.stderr
    assert result.returncode == 0, f"{block.id} failed:\n{printed[-4000:]}"
    assert_printed(block.output, printed)


def test_comment_only_blocks_do_not_count_as_run():
    assert not _runs_something("# make test runs this\n\n   # and this\n")
    assert _runs_something("# set up\nwasinn plugins  # list them\n")
    assert not _runs_something("\\\n#\n")


def test_readme_demo_output_is_real(tmp_path: Path) -> None:
    """The output the README shows for `make demo` is what the target's recipe prints (its install lines aside)."""
    readme = [b for b in BLOCKS if b.page.name == "README.md"]
    (shown,) = [b for b in readme if b.lang == "text" and "accuracy:" in b.body]
    recipe = subprocess.run(
        ["make", "-n", "--no-print-directory", "demo"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    (command,) = [line for line in recipe if "wasinn run" in line]
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_printed(shown.body, result.stdout)


@pytest.mark.parametrize("block", blocks("python"))
def test_python_examples_run(block: Block, workdir: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", block.body],
        cwd=workdir,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{block.id} failed:\n{result.stderr[-4000:]}"
    assert_printed(block.output, result.stdout + result.stderr)


@pytest.mark.parametrize("block", blocks("pycon"))
def test_interactive_examples_pass_as_doctests(block: Block) -> None:
    test = doctest.DocTestParser().get_doctest(block.body, {}, block.id, str(block.page), block.line)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.parametrize(
    "block", [p for lang in ("python", "toml", "c", "sh", "markdown") for p in blocks(lang, verbatim=True)]
)
def test_excerpts_are_verbatim_copies(block: Block) -> None:
    assert block.source is not None
    text = (ROOT / block.source).read_text()
    if block.written:  # the tutorial shows whole files
        assert block.content == text, f"{block.id} is not the whole of {block.source}"
    assert block.content.strip() in text, f"{block.id} drifted from {block.source}"


@pytest.mark.parametrize("block", blocks("toml") + blocks("toml", verbatim=True))
def test_toml_examples_parse(block: Block) -> None:
    tomllib.loads(block.body)


def test_configuration_example_loads_as_a_config():
    (example,) = [b for b in BLOCKS if b.page.name == "configuration.md" and b.lang == "toml"]
    config = Config.from_dict(tomllib.loads(example.body), source="docs")
    assert [m.name for m in config.models] == ["digits", "mobilenet"]


def _shape(value: object) -> object:
    """The keys of a JSON document, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k != "summary"}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [_shape(value[0])]
    return None


def test_report_example_has_the_shape_of_a_real_report(tmp_path: Path) -> None:
    (example,) = [b for b in BLOCKS if b.page.name == "conformance.md" and b.lang == "json"]
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "wasinn_core", "conformance", "--backend", "onnxruntime", "-q"]
    cmd += ["-k", "matmul and f32 and batch5", "--json", str(report)]
    subprocess.run(cmd, cwd=tmp_path, env=_env(tmp_path), check=True, capture_output=True, timeout=600)
    assert _shape(json.loads(example.body)) == _shape(json.loads(report.read_text()))


def test_every_sh_python_and_output_block_is_checked():
    """Nothing on the site is exempt: a block in another language is prose (a diagram, a layout, a log)."""
    checked = {"sh", "python", "pycon", "toml", "json", "c", "text", "mermaid", "markdown"}
    assert {b.lang for b in BLOCKS} <= checked, {b.id: b.lang for b in BLOCKS if b.lang not in checked}
    c_blocks = [b for b in BLOCKS if b.lang == "c"]
    assert all(b.source for b in c_blocks), [b.id for b in c_blocks if not b.source]
    markdown = [b for b in BLOCKS if b.lang == "markdown"]
    assert all(b.written for b in markdown), [b.id for b in markdown if not b.written]


def test_every_config_key_is_documented():
    text = (DOCS / "configuration.md").read_text()
    from wasinn_core._config import _MODEL_KEYS, _TOP_KEYS

    for key in _TOP_KEYS:
        assert f"`{key}" in text or f"{key}." in text, key
    for key in _MODEL_KEYS:
        if key != "path":
            assert f"models[].{key}" in text, key


@pytest.mark.parametrize("plugin", ["onnx", "pytorch", "openvino", "remote"])
def test_every_backend_option_is_documented(plugin):
    import importlib

    module = importlib.import_module(f"wasinn_{plugin}")
    text = (DOCS / "backends" / f"{plugin}.md").read_text()
    for option in module.OPTIONS:
        assert f"`{option.name}`" in text, option.name


def test_every_run_option_is_documented():
    from wasinn_core._cli._main import _parser

    subcommands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    text = (DOCS / "running.md").read_text()
    for action in subcommands.choices["run"]._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in text, flag


@pytest.mark.parametrize("name", [n for n in wasinn_core.__all__ if not n.startswith("__")])
def test_every_public_name_has_a_docstring_in_the_api_reference(name):
    obj = getattr(wasinn_core, name)
    if callable(obj) or isinstance(obj, type):
        assert (obj.__doc__ or "").strip(), f"wasinn_core.{name} has no docstring"
        if isinstance(obj, type):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member):
                    assert (member.__doc__ or "").strip(), f"wasinn_core.{name}.{attr} has no docstring"
    assert f"::: wasinn_core.{name}" in (DOCS / "api.md").read_text(), name


@pytest.mark.parametrize("page", [p.relative_to(ROOT) for p in PAGES])
def test_relative_links_resolve(page):
    path = ROOT / page
    prose = re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", path.read_text(), flags=re.S))
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", prose):
        assert (path.parent / target).exists(), f"{page}: broken link {target}"


USER_ERRORS = {"InvalidArgument", "InvalidEncoding", "MissingMemory", "Busy", "BackendError", "UnsupportedOperation"}
USER_ERRORS |= {"TooLarge", "NotFound", "UsageError", "GuestError", "PluginError", "ConfigError", "Trap"}
USER_ERRORS |= {"Pt2Refused", "ScreenRefused"}


def _literal_parts(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    if isinstance(node, ast.BinOp):
        return _literal_parts(node.left) + _literal_parts(node.right)
    return []


def _is_unavailable(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "no"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "Availability"
    )


def _raised_messages() -> list[tuple[str, str]]:
    """(where, the longest literal part of the message) for every user-facing error raised by core and plugins."""
    found = []
    for root in [ROOT / "wasinn_core", *ROOT.glob("plugins/*/wasinn_*")]:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if _is_unavailable(node):  # a probe's reason, shown when a target cannot be used
                    assert isinstance(node, ast.Call)
                    node = ast.Raise(exc=ast.Call(func=ast.Name("UnsupportedOperation"), args=node.args, keywords=[]))
                    node.lineno = node.exc.lineno = 0
                if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                    continue
                func = node.exc.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                user = name in USER_ERRORS or name == "error" or (name == "ValueError" and path.name == "_config.py")
                if user and node.exc.args:
                    message = node.exc.args[-1] if name in ("ConfigError", "error") else node.exc.args[0]
                    part = max(_literal_parts(message), key=len, default="").strip(" :;,()'")
                    if len(part) >= 12:  # shorter parts only join values ("{flag} {spec}: {exc}")
                        found.append((f"{path.relative_to(ROOT)}:{node.lineno}", part))
    return found


@pytest.mark.parametrize(("where", "message"), _raised_messages(), ids=lambda v: v if ".py:" in v else "")
def test_every_error_message_is_on_the_troubleshooting_page(where, message):
    assert message in (DOCS / "troubleshooting.md").read_text(), f"{where}: {message!r} is not in troubleshooting.md"


def test_the_tutorial_shows_every_file_of_the_template_whole_once():
    written = [b.written for b in BLOCKS if b.page == TUTORIAL and b.written]
    template = ROOT / TEMPLATE
    files = [str(p.relative_to(template)) for p in template.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sorted(written) == sorted(TUTORIAL_PROJECT + f for f in files)


def tutorial_script(marker: str) -> tuple[str, list[str | None]]:
    """The plugin tutorial as one bash script: its commands, and its files written where they are shown.

    Returns the script and, per command block, the text block that shows its output (or None)."""
    parts, outputs = ['TUTORIAL_FOLDER="$PWD"'], []  # the reader's folder, where the files are saved
    for block in [b for b in BLOCKS if b.page == TUTORIAL]:
        if block.lang == "sh":
            parts.append(f"echo {marker}{len(outputs)}\n{block.body}")
            outputs.append(block.output)
        elif block.written:
            end = "WASINN_TUTORIAL_EOF"
            assert end not in block.content
            path = f'"$TUTORIAL_FOLDER/{block.written}"'
            parts.append(f"mkdir -p \"$(dirname {path})\"\ncat > {path} <<'{end}'\n{block.content}{end}")
    return "\n".join(parts), outputs


@pytest.mark.slow
def test_the_tutorial_runs_as_written_from_an_empty_folder(tmp_path: Path) -> None:
    """The page, literally: a fresh venv, wasinn installed from this checkout, the plugin written from the
    page's own blocks and installed, `wasinn plugins`, the digits guest, its tests and its conformance run."""
    marker = "@@wasinn-tutorial-block-"
    script, outputs = tutorial_script(marker)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "WASINN")}
    env |= {
        "WASINN": str(ROOT),
        "HOME": str(tmp_path / "home"),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=empty,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"the tutorial failed:\n{result.stdout[-6000:]}"
    printed = result.stdout.split(marker)[1:]
    assert len(printed) == len(outputs)
    for expected, output in zip(outputs, printed, strict=True):
        assert_printed(expected, output)
    assert (empty / "wasinn-onnxref" / "report.json").exists()
    report = json.loads((empty / "wasinn-onnxref" / "report.json").read_text())
    assert report["backends"][0]["distribution"] == "wasinn-onnxref" and report["problems"] == []
    assert report["summary"]["passed"] >= 100 and "failed" not in report["summary"]


def test_the_known_plugins_list_is_generated_from_the_in_tree_ones():
    from . import known_plugins

    assert known_plugins.current() == known_plugins.section(), "run: python -m tests.known_plugins"
    assert len(known_plugins.in_tree()) >= 5
