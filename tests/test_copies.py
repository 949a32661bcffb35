"""The copy claim, counted: one copy in and one copy out per inference, from the first inference on."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from wasinn_conformance.models import ModelStore

from .conftest import GUESTS
from .test_plugins import run_cli

STATS = re.compile(r"(\d+) computes, (\d+) bytes in, (\d+) bytes out, (\d+) bytes copied by the host in (\d+) copies")
FORMATS = {"onnx": ("onnx", "onnxruntime"), "ir": ("openvino", "openvino"), "torchscript": ("pytorch", "pytorch")}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_inference_copies_each_tensor_once(fmt, tmp_path):
    """A guest runs a static-shape model 3 times; the host copies exactly the bytes that crossed the ABI."""
    encoding, backend = FORMATS[fmt]
    models = ModelStore(tmp_path / "store").files(fmt, "affine", "f32")  # y = 2x + 3, f32 2x3 in and out
    folder = tmp_path / "m"
    folder.mkdir()
    for path in models:
        shutil.copy(path, folder / path.name)
    np.arange(6, dtype=np.float32).tofile(folder / "input.bin")
    config = tmp_path / "wasinn.toml"
    config.write_text(f'[preferences]\n{encoding} = ["{backend}"]\n')
    args = ["run", "--stats", "--config", str(config), "--dir", f"{folder}::/m", str(GUESTS / "classify.wasm")]
    for path in models:
        args += ["--model", f"/m/{path.name}"]
    args += ["--encoding", encoding, "--dims", "2x3", "--repeat", "3", "--top", "1", "/m/input.bin"]
    result = run_cli(*args, env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    computes, bytes_in, bytes_out, copied, copies = map(int, STATS.search(result.stderr).groups())
    assert computes == 3 and bytes_in == bytes_out == 3 * 24
    assert (copied, copies) == (bytes_in + bytes_out, 2 * computes)
