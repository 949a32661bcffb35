"""Shared fixtures: real wasmtime, real onnxruntime, the committed guests and the digits model."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from wasinn_core import Config, Host, PluginManager
from wasinn_core.testing import ForwardingGuest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
DIGITS_MODEL = DIGITS / "model"
DIGITS_IMAGES = DIGITS / "images"
GUESTS = ROOT / "guests" / "wasm"


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """onnxruntime and OpenVINO write caches under $HOME: keep them in a temp dir."""
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    yield home
    if old is not None:
        os.environ["HOME"] = old


def read_pgm(path: Path) -> np.ndarray:
    """An 8x8 P2 image as f32 [1, 64] scaled to 0..1 (what the digits model takes)."""
    tokens = [t for line in path.read_text().splitlines() if not line.startswith("#") for t in line.split()]
    assert tokens[0] == "P2"
    width, height, maxval = map(int, tokens[1:4])
    pixels = np.array(list(map(int, tokens[4 : 4 + width * height])), np.float32) / maxval
    return pixels.reshape(1, 64)


@pytest.fixture(scope="session")
def digits_onnx() -> bytes:
    return (DIGITS_MODEL / "digits.onnx").read_bytes()


@pytest.fixture(scope="session")
def digit_image() -> np.ndarray:
    return read_pgm(DIGITS_IMAGES / "digit-000.pgm")


@pytest.fixture(scope="session")
def reference_probs(digits_onnx: bytes, digit_image: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(digits_onnx).run(None, {"pixels": digit_image})[0]


def in_process(config: Config) -> Config:
    """``config`` with guest models in the host process: for tests that look inside a backend's objects."""
    return replace(config, isolation=replace(config.isolation, guest="none"))


def digits_config(**extra: object) -> Config:
    model = {"name": "digits", "encoding": "onnx", "path": str(DIGITS_MODEL / "digits.onnx")}
    model.update(extra)
    return Config.from_dict({"models": [model]}, source="<test>")


@pytest.fixture
def plugins() -> PluginManager:
    """The installed plugins, ignoring the WASINN_* environment of the developer."""
    return PluginManager(environ={})


@pytest.fixture
def host(plugins: PluginManager) -> Iterator[Host]:
    h = Host(digits_config(), plugins=plugins)
    yield h
    h.close()


@pytest.fixture
def guest(host: Host) -> ForwardingGuest:
    return ForwardingGuest(host)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path where tests create installed distributions."""
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("wasinn_testplug_")]:
        del sys.modules[name]
