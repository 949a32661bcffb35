"""Train the embedded demo model: a small classifier of 8×8 handwritten digits.

Uses the digits data set that ships inside scikit-learn (no download), trains a
two-layer MLP with torch (seeded, deterministic on one machine), and exports it
as ONNX, TorchScript, a torch.export ExportedProgram and OpenVINO IR. It also
writes a few held-out test images as PGM files with their labels.

    python examples/digits/train.py            # writes examples/digits/model/ and images/

Input: ``pixels``, f32 [N, 64] (pixel values 0..16 divided by 16).
Output: ``probabilities``, f32 [N, 10] (softmax).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
N_IMAGES = 40


class DigitsMLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(64, 64)
        self.out = torch.nn.Linear(64, 10)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.out(torch.relu(self.hidden(pixels))), dim=-1)


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test, _, raw_test = train_test_split(
        x, digits.target, digits.data.astype(np.uint8), test_size=0.25, random_state=0, stratify=digits.target
    )
    return x_train, x_test, y_train, y_test, raw_test


def train(x: np.ndarray, y: np.ndarray, epochs: int = 300) -> DigitsMLP:
    torch.manual_seed(0)
    model = DigitsMLP()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(epochs):
        opt.zero_grad()
        logits = model.out(torch.relu(model.hidden(xt)))
        loss = torch.nn.functional.cross_entropy(logits, yt)
        loss.backward()
        opt.step()
    return model.eval()


def export(model: DigitsMLP, out: Path) -> None:
    import openvino as ov

    out.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 64)  # batch 2: a batch of 1 would specialise the dynamic dimension
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        model,
        (example,),
        out / "digits.onnx",
        input_names=["pixels"],
        output_names=["probabilities"],
        dynamic_shapes={"pixels": {0: batch}},
        external_data=False,
        dynamo=True,
    )
    torch.jit.save(torch.jit.trace(model, example), out / "digits.pt")
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes={"pixels": {0: batch}}), out / "digits.pt2")
    ir = ov.convert_model(out / "digits.onnx")
    ov.save_model(ir, out / "digits.xml", compress_to_fp16=False)


def write_images(raw: np.ndarray, labels: np.ndarray, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(N_IMAGES):
        name = f"digit-{i:03d}.pgm"
        rows = "\n".join(" ".join(f"{v:2d}" for v in raw[i].reshape(8, 8)[r]) for r in range(8))
        (out / name).write_text(f"P2\n# held-out digit, label {labels[i]}\n8 8\n16\n{rows}\n")
        lines.append(f"{name} {labels[i]}")
    (out / "labels.txt").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for model/ and images/")
    args = parser.parse_args()
    x_train, x_test, y_train, y_test, raw_test = data()
    model = train(x_train, y_train)
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    print(f"test accuracy: {accuracy:.3f} on {len(y_test)} held-out digits")
    export(model, args.out / "model")
    write_images(raw_test, y_test, args.out / "images")
    print(f"wrote {args.out / 'model'} and {N_IMAGES} images in {args.out / 'images'}")


if __name__ == "__main__":
    main()
