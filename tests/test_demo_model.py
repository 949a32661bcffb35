"""The embedded demo model: the training script reproduces it, and every committed format agrees."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from .conftest import DIGITS, DIGITS_IMAGES, DIGITS_MODEL, read_pgm


def images() -> tuple[np.ndarray, np.ndarray]:
    rows = [line.split() for line in (DIGITS_IMAGES / "labels.txt").read_text().splitlines()]
    pixels = np.concatenate([read_pgm(DIGITS_IMAGES / name) for name, _ in rows])
    return pixels, np.array([int(label) for _, label in rows])


def test_committed_onnx_model_is_accurate_on_the_shipped_images():
    import onnxruntime as ort

    pixels, labels = images()
    assert len(labels) == 40 and set(labels) == set(range(10))
    probs = ort.InferenceSession(str(DIGITS_MODEL / "digits.onnx")).run(None, {"pixels": pixels})[0]
    assert probs.shape == (40, 10)  # dynamic batch
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert (probs.argmax(axis=1) == labels).mean() >= 0.9


def test_committed_formats_agree():
    torch = pytest.importorskip("torch", reason="torch is installed by `make test`, not by `make demo`")
    import onnxruntime as ort

    from wasinn_pytorch._pt2 import load_exported_program

    pixels, _ = images()
    reference = ort.InferenceSession(str(DIGITS_MODEL / "digits.onnx")).run(None, {"pixels": pixels})[0]
    scripted = torch.jit.load(str(DIGITS_MODEL / "digits.pt"))
    np.testing.assert_allclose(scripted(torch.from_numpy(pixels)).detach().numpy(), reference, atol=1e-6)
    exported = load_exported_program((DIGITS_MODEL / "digits.pt2").read_bytes()).module()  # never torch.export.load
    np.testing.assert_allclose(exported(torch.from_numpy(pixels)).detach().numpy(), reference, atol=1e-6)


@pytest.mark.slow
def test_training_script_reproduces_an_accurate_model(tmp_path):
    pytest.importorskip("torch", reason="torch is installed by `make test`, not by `make demo`")
    result = subprocess.run(
        [sys.executable, str(DIGITS / "train.py"), "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy: ")[1].split()[0])
    assert accuracy >= 0.9
    for name in ("digits.onnx", "digits.pt", "digits.pt2", "digits.xml", "digits.bin"):
        assert (tmp_path / "model" / name).stat().st_size > 1000
    # the held-out images are the committed ones
    for path in DIGITS_IMAGES.iterdir():
        assert (tmp_path / "images" / path.name).read_text() == path.read_text()
