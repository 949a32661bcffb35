"""The docs cannot drift: their Python examples run, their TOML parses, their links resolve."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest

from wasinn_core import Config

from .conftest import ROOT

DOCS = ROOT / "docs"


def blocks(path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(blocks(DOCS / "embedding.md", "python"))))
def test_embedding_examples_run(index):
    code = blocks(DOCS / "embedding.md", "python")[index]
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "CPUExecutionProvider" in result.stdout


def test_configuration_example_parses():
    (example,) = blocks(DOCS / "configuration.md", "toml")
    config = Config.from_dict(tomllib.loads(example), source="docs")
    assert [m.name for m in config.models] == ["digits", "mobilenet"]


def test_every_config_key_is_documented():
    text = (DOCS / "configuration.md").read_text()
    from wasinn_core._config import _MODEL_KEYS, _TOP_KEYS

    for key in _TOP_KEYS:
        assert f"`{key}" in text or f"{key}." in text, key
    for key in _MODEL_KEYS:
        if key != "path":
            assert f"models[].{key}" in text, key


@pytest.mark.parametrize("plugin", ["onnx", "pytorch", "openvino"])
def test_every_backend_option_is_documented(plugin):
    import importlib

    module = importlib.import_module(f"wasinn_{plugin}")
    text = (DOCS / "backends" / f"{plugin}.md").read_text()
    for option in module.OPTIONS:
        assert f"`{option.name}`" in text, option.name


@pytest.mark.parametrize("page", sorted(p.relative_to(ROOT) for p in [ROOT / "README.md", *DOCS.rglob("*.md")]))
def test_relative_links_resolve(page):
    path = ROOT / page
    prose = re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", path.read_text(), flags=re.S))
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", prose):
        assert (path.parent / target).exists(), f"{page}: broken link {target}"


def test_tutorial_excerpts_are_verbatim_copies_of_the_template():
    blocks = re.findall(r"```\w*\n# file: (\S+)\n(.*?)```", (DOCS / "plugin-tutorial.md").read_text(), re.S)
    assert len(blocks) >= 6
    for path, body in blocks:
        assert body.strip() in (ROOT / path).read_text(), f"plugin-tutorial.md drifted from {path}"
