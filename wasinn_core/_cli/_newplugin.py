"""``wasinn new-plugin NAME``: a complete backend plugin project that passes its tests and the conformance
suite as written, on a stand-in engine (onnx.reference) the author then replaces.

The files come from ``_template/`` (``FILE.tmpl``, so no tool takes them for source): ``@@key@@`` is
replaced by the project's names, and the lines between ``#@@if CONDITION`` and ``#@@end`` are kept only
when the condition holds. The repository's
``examples/plugin-template`` is ``wasinn new-plugin onnxref``, byte for byte (a test checks it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import final

from .._types import GraphEncoding
from ._parse import UsageError

__all__ = ["SUITE_ENCODINGS", "PluginProject", "render", "write_project"]

#: The encodings wasinn-conformance makes models for (``wasinn_conformance.cases.FORMATS``; a test checks).
SUITE_ENCODINGS = ("onnx", "openvino", "pytorch")
_NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")
_KEY = re.compile(r"@@(\w+)@@")


@final
@dataclass(frozen=True, slots=True)
class PluginProject:
    """The names of a new plugin project, from the backend name and its encoding."""

    name: str
    encoding: GraphEncoding = GraphEncoding.ONNX

    @classmethod
    def parse(cls, name: str, encoding: str = "onnx") -> PluginProject:
        """Validate a name (``wasinn-`` prefix allowed) and an encoding from the command line."""
        name = name.removeprefix("wasinn-").removeprefix("wasinn_")
        if not _NAME.match(name):
            raise UsageError(
                f"NAME {name!r}: a plugin name is lower-case letters, digits, '-' and '_', starting with a letter "
                "(the distribution becomes wasinn-NAME)"
            )
        try:
            enc = GraphEncoding(encoding.lower())
        except ValueError:
            enc = None
        if enc is None or enc is GraphEncoding.AUTODETECT:
            known = ", ".join(e.value for e in GraphEncoding if e is not GraphEncoding.AUTODETECT)
            raise UsageError(f"--encoding {encoding}: unknown graph encoding; use one of {known}") from None
        return cls(name, enc)

    @property
    def id(self) -> str:
        return self.name.replace("-", "_")

    @property
    def dist(self) -> str:
        return f"wasinn-{self.name}"

    @property
    def module(self) -> str:
        return f"wasinn_{self.id}"

    def values(self) -> dict[str, str]:
        return {
            "name": self.name,
            "id": self.id,
            "dist": self.dist,
            "module": self.module,
            "encoding": self.encoding.value,
            "ENCODING": self.encoding.name,
        }

    def conditions(self) -> dict[str, bool]:
        stand_in = self.encoding is not GraphEncoding.ONNX
        return {
            "onnx": not stand_in,
            "stand_in": stand_in,
            # the suite makes models of this encoding, so its cases exist and fail until load_native is written
            "stand_in_cases": stand_in and self.encoding.value in SUITE_ENCODINGS,
        }


def render(text: str, project: PluginProject) -> str:
    """Fill ``@@key@@`` and keep the ``#@@if``/``#@@end`` blocks whose condition holds."""
    values, conditions = project.values(), project.conditions()
    out: list[str] = []
    keep: list[bool] = []
    for line in text.splitlines(keepends=True):
        marker = line.strip()
        if marker.startswith("#@@if "):
            keep.append(conditions[marker.removeprefix("#@@if ").strip()])
        elif marker == "#@@end":
            keep.pop()
        elif all(keep):
            out.append(_KEY.sub(lambda m: values[m.group(1)], line))
    return "".join(out)


def _files(root: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            yield from _files(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name.removesuffix('.tmpl')}", entry


def write_project(project: PluginProject, parent: Path, *, force: bool = False) -> Path:
    """Write the project into ``parent/wasinn-NAME``; returns that folder. Refuses to overwrite a file."""
    folder = parent / project.dist
    values = project.values()
    files = {
        _KEY.sub(lambda m: values[m.group(1)], rel): render(entry.read_text(encoding="utf-8"), project)
        for rel, entry in _files(resources.files("wasinn_core") / "_template")
    }
    clash = [rel for rel in files if (folder / rel).exists()]
    if clash and not force:
        existing = ", ".join(sorted(clash))
        raise UsageError(f"{folder} already has {existing}: choose another NAME or --output, or use --force")
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder
