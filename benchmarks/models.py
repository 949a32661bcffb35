"""The benchmark workloads, generated deterministically into ``benchmarks/.models`` (not committed).

    tiny      Linear(16→8) → ReLU → Linear(8→4), f32 [1, 16]: host overhead dominates
    mnet      a MobileNet-V1-shaped CNN (13 depthwise-separable blocks, 4.2 M parameters), f32 [1, 3, 224, 224]
    big       y = x · 1 on f32 [16, 1024, 1024] (64 MiB in, 64 MiB out): copies dominate
    mid       y = x · 1 on f32 [1, 256, 1024] (1 MiB each way): for measuring copies in the tests

Each in three formats (ONNX, TorchScript, OpenVINO IR with f32 weights) plus a raw input file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent / ".models"
SHAPES = {"tiny": (1, 16), "mnet": (1, 3, 224, 224), "big": (16, 1024, 1024), "mid": (1, 256, 1024)}
FILES = {"onnx": ["model.onnx"], "pytorch": ["model.pt"], "openvino": ["model.xml", "model.bin"]}


def _module(workload: str):  # -> torch.nn.Module
    import torch
    from torch import nn

    torch.manual_seed(0)
    if workload == "tiny":
        return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    if workload in ("big", "mid"):

        class Scale(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x * 1.0

        return Scale().eval()

    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )

    widths = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2)]
    widths += [(512, 512, 1)] * 5 + [(512, 1024, 2), (1024, 1024, 1)]
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        *[block(a, b, s) for a, b, s in widths],
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(1024, 1000),
    )
    for m in model.modules():  # non-trivial batch-norm statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def folder(workload: str) -> Path:
    """The workload's folder, generated on first use."""
    out = ROOT / workload
    if (out / "done").exists():
        return out
    import openvino as ov
    import torch

    out.mkdir(parents=True, exist_ok=True)
    module = _module(workload)
    example = torch.zeros(SHAPES[workload])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(module, example), out / "model.pt")
        torch.onnx.export(
            module,
            (example,),
            out / "model.onnx",
            input_names=["x"],
            output_names=["y"],
            external_data=False,
            dynamo=False,
        )
    ov.save_model(ov.convert_model(out / "model.onnx"), out / "model.xml", compress_to_fp16=False)
    rng = np.random.default_rng(0)
    rng.standard_normal(SHAPES[workload]).astype(np.float32).tofile(out / "input.bin")
    (out / "done").write_text("ok\n")
    return out
