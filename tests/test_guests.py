"""The committed guest builds match their sources, and the C header matches the ABI tables."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from wasinn_core import GGML_ERRNO
from wasinn_core._abi._witx import WITX_ENCODINGS, WITX_ERRNO, WITX_TARGETS, WITX_TENSOR_TYPES

from .conftest import ROOT


@pytest.mark.slow
def test_committed_wasm_matches_a_fresh_build():
    """Rebuilds every C guest with zig (about 30 s the first time) and compares bytes."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "guests" / "build.py"), "--check"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "match their sources" in result.stdout


@pytest.mark.parametrize(
    "src,out",
    [("guests/src", "guests/wasm"), ("conformance/wasinn_conformance/guests", "conformance/wasinn_conformance/guests")],
)
def test_every_source_has_a_committed_build(src, out):
    sources = {p.stem for p in (ROOT / src).glob("*.c")}
    builds = {p.stem for p in (ROOT / out).glob("*.wasm")}
    assert sources and sources == builds


def test_header_enums_match_the_host_tables():
    header = (ROOT / "guests" / "include" / "wasi_nn.h").read_text()

    def values(prefix: str) -> dict[str, int]:
        return {m[0].lower(): int(m[1]) for m in re.findall(rf"{prefix}_(\w+) = (\d+)", header)}

    assert values("NN_TENSOR") == {t.value: c for c, t in WITX_TENSOR_TYPES.items()}
    assert values("NN_ENCODING") == {e.value: c for c, e in WITX_ENCODINGS.items()}
    assert values("NN_TARGET") == {t.value: c for c, t in WITX_TARGETS.items()}
    assert {k: v for k, v in values("NN_ERRNO").items() if k != "success"} == {
        c.value: n for c, n in WITX_ERRNO.items()
    }
    assert values("NN_GGML") == dict(GGML_ERRNO)
