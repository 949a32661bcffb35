"""Expectations files: known skips and expected failures, per backend or runtime.

version = 1

[[backend]]                       # or [[runtime]]
name = "wasmtime"
[[backend.case]]
id = "abi/load_unknown_encoding"  # a case id, or a glob: "backend/onnx/*/bf16/*"
expected = "fail"                 # or: action = "skip"
reason = "wasmtime maps unknown encodings to unsupported_operation (6)"
link = "https://github.com/bytecodealliance/wasmtime/..."
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, final

__all__ = ["Expectation", "Expectations"]


@final
@dataclass(frozen=True, slots=True)
class Expectation:
    owner: str
    pattern: str
    kind: Literal["skip", "fail"]
    reason: str
    link: str = ""

    def describe(self) -> str:
        return self.reason + (f" ({self.link})" if self.link else "")


class Expectations:
    """The expectations of one or more files."""

    def __init__(self, entries: list[Expectation] | None = None) -> None:
        self.entries = entries or []

    @classmethod
    def load(cls, path: str | Path) -> Expectations:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: cannot read expectations: {exc}") from exc
        if data.get("version") != 1:
            raise ValueError(f"{path}: version: expected 1, got {data.get('version')!r}")
        entries = []
        for section in ("backend", "runtime"):
            for i, owner in enumerate(data.get(section, [])):
                name = owner.get("name")
                if not isinstance(name, str):
                    raise ValueError(f"{path}: {section}[{i}].name: expected a string")
                for j, case in enumerate(owner.get("case", [])):
                    where = f"{path}: {section}[{i}].case[{j}]"
                    if "id" not in case or "reason" not in case:
                        raise ValueError(f"{where}: needs 'id' and 'reason'")
                    if case.get("action") == "skip":
                        kind: Literal["skip", "fail"] = "skip"
                    elif case.get("expected") == "fail":
                        kind = "fail"
                    else:
                        raise ValueError(f'{where}: give action = "skip" or expected = "fail"')
                    entries.append(Expectation(name, case["id"], kind, case["reason"], case.get("link", "")))
        return cls(entries)

    def merged(self, other: Expectations) -> Expectations:
        return Expectations(self.entries + other.entries)

    def find(self, owners: tuple[str, ...], case_id: str) -> Expectation | None:
        """The first expectation of one of ``owners`` matching ``case_id``."""
        for entry in self.entries:
            if entry.owner in owners and fnmatch.fnmatchcase(case_id, entry.pattern):
                return entry
        return None
