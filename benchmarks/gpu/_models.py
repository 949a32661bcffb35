"""The GPU check's models, made with this machine's torch (no download, no torchvision).

    mnet       the benchmark's MobileNet-V1-shaped CNN (4.2 M parameters), TorchScript
    resnet50   a ResNet-50-shaped CNN (bottleneck stages 3-4-6-3, 25.6 M parameters), TorchScript
    small      a few layers (conv, batch norm, linear) as TorchScript and as an ExportedProgram (.pt2)
               saved by this torch: the check of the .pt2 reader on this torch release

``full`` size is 224×224 with the real widths; ``quick`` (for CPU runs in ``make test``) is 64×64 with
ResNet-50 at a quarter of its width. Inputs are raw f32 files for batch 1 and 8. The weights are random;
the heads rank five classes first for the batch-1 input, well apart (:func:`_separate_top5`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BATCHES", "TOP5", "Workload", "make_small", "make_workloads"]

BATCHES = (1, 8)


@dataclass(frozen=True)
class Workload:
    name: str
    model: Path
    inputs: dict[int, Path]  # batch → raw f32 input file
    shape: tuple[int, ...]  # of one sample
    parameters: int

    def dims(self, batch: int) -> str:
        return "x".join(str(d) for d in (batch, *self.shape))


def _resnet50(width: int, classes: int = 1000) -> Any:
    import torch
    from torch import nn

    def bn(c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c)

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, mid: int, stride: int) -> None:
            super().__init__()
            out = mid * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, mid, 1, bias=False), bn(mid), nn.ReLU(),
                nn.Conv2d(mid, mid, 3, stride, 1, bias=False), bn(mid), nn.ReLU(),
                nn.Conv2d(mid, out, 1, bias=False), bn(out),
            )  # fmt: skip
            self.skip: nn.Module = (
                nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), bn(out))
                if stride != 1 or cin != out
                else nn.Identity()
            )
            with torch.no_grad():  # a residual branch that starts small keeps 16 blocks' activations in range
                self.body[-1].weight.fill_(0.3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.body(x) + self.skip(x))

    layers: list[nn.Module] = [nn.Conv2d(3, width, 7, 2, 3, bias=False), bn(width), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = width
    for blocks, mid, stride in ((3, width, 1), (4, 2 * width, 2), (6, 4 * width, 2), (3, 8 * width, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, mid, stride if i == 0 else 1))
            cin = mid * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def _randomise_statistics(model: Any) -> Any:
    from torch import nn

    for m in model.modules():  # non-trivial batch-norm statistics, as a trained model has
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


#: The classes the models' heads rank first for the batch-1 input, in this order.
TOP5 = (7, 42, 123, 400, 999)


def _separate_top5(module: Any, x: Any) -> None:
    """Shift five classes' biases so that, for ``x``, they lead in :data:`TOP5`'s order, half a standard
    deviation of the logits apart: random weights put the top classes a few thousandths apart, which
    TF32 convolutions (torch's default on CUDA) may reorder; the scores themselves are compared too."""
    import torch

    head = [m for m in module.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        logits = module(x)[0]
        step, top = 0.5 * float(logits.std()), float(logits.max())
        for rank, cls in enumerate(TOP5):
            head.bias[cls] += top - float(logits[cls]) + (len(TOP5) - rank) * step


def _save_script(module: Any, example: Any, path: Path) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(module, example), str(path))


def make_workloads(folder: Path, size: str) -> list[Workload]:
    """``mnet`` and ``resnet50`` for ``size`` (``full`` or ``quick``) in ``folder``, made once."""
    import torch

    from ..models import _module as benchmark_module

    side = 224 if size == "full" else 64
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("mnet", "resnet50"):
        torch.manual_seed(0)
        module = benchmark_module("mnet") if name == "mnet" else _resnet50(64 if size == "full" else 16)
        module = _randomise_statistics(module)
        shape = (3, side, side)
        inputs = {}
        for batch in BATCHES:
            path = folder / f"{name}-{size}-b{batch}.bin"
            if not path.exists():
                rng = np.random.default_rng(batch)
                rng.standard_normal((batch, *shape)).astype(np.float32).tofile(path)
            inputs[batch] = path
        model = folder / f"{name}-{size}.pt"
        if not model.exists():
            _separate_top5(module, torch.from_numpy(np.fromfile(inputs[1], np.float32).reshape(1, *shape)))
            _save_script(module, torch.zeros((1, *shape)), model)
        out.append(Workload(name, model, inputs, shape, sum(p.numel() for p in module.parameters())))
    return out


def make_small(folder: Path) -> dict[str, Any]:
    """The small model as TorchScript and .pt2 (saved by this torch), its input and eager output."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    module = _randomise_statistics(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(32, 10),
        )
    )  # fmt: skip
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32))
    folder.mkdir(parents=True, exist_ok=True)
    script, program = folder / "small.pt", folder / "small.pt2"
    _save_script(module, x, script)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(module, (x,)), str(program))
    with torch.inference_mode():
        expected = module(x).numpy()
    return {"torchscript": script, "exported_program": program, "input": x.numpy(), "expected": expected}
