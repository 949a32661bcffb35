"""A KServe model server answering the way KServe's own custom-model examples do: typed data, not binary.

    python -m tests.kserve_typed --model DIGITS.onnx --http-port 8080 --grpc-port 8081

Its models return ``InferOutput(name, shape, datatype, data=[...])`` lists, so KServe itself encodes the
answers: JSON ``data`` over REST, the typed ``*_contents`` fields over gRPC (FP16, which has no typed
field, in ``raw_output_contents``, KServe's choice). None of the project's own encoding is involved,
unlike ``wasinn_remote.loopback``, which answers in binary. Models: ``digits`` (the ONNX file, run with
onnxruntime) and ``echo-<DATATYPE>`` (y = x + 1 in that datatype, any shape) for FP16, FP32, FP64,
INT32, INT64 and UINT8.

It imports kserve, whose protobuf names clash with tritonclient's gRPC client: run it in its own process.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np

DATATYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64}
DATATYPES["UINT8"] = np.uint8


def serve(model_path: Path, http_port: int, grpc_port: int) -> None:
    import onnxruntime as ort
    from kserve import InferRequest, InferResponse, Model, ModelServer
    from kserve.protocol.infer_type import InferOutput

    def typed(name: str, datatype: str, value: np.ndarray) -> InferOutput:
        return InferOutput(name, list(value.shape), datatype, data=value.flatten().tolist())

    class Digits(Model):  # type: ignore[misc]
        def load(self) -> bool:
            self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
            self.ready = True
            return True

        def get_input_types(self) -> list[dict[str, Any]]:
            return [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]

        def get_output_types(self) -> list[dict[str, Any]]:
            return [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]

        async def predict(self, payload: InferRequest, headers: Any = None, **_: Any) -> InferResponse:
            (probabilities,) = self.session.run(None, {"pixels": payload.inputs[0].as_numpy()})
            return InferResponse(
                payload.id or str(uuid.uuid4()), self.name, [typed("probabilities", "FP32", probabilities)]
            )

    class Echo(Model):  # type: ignore[misc]
        def __init__(self, datatype: str) -> None:
            super().__init__(f"echo-{datatype}")
            self.datatype = datatype

        def load(self) -> bool:
            self.ready = True
            return True

        def get_input_types(self) -> list[dict[str, Any]]:
            return [{"name": "x", "datatype": self.datatype, "shape": [-1, -1]}]

        def get_output_types(self) -> list[dict[str, Any]]:
            return [{"name": "y", "datatype": self.datatype, "shape": [-1, -1]}]

        async def predict(self, payload: InferRequest, headers: Any = None, **_: Any) -> InferResponse:
            x = payload.inputs[0].as_numpy()
            y = (x + 1).astype(DATATYPES[self.datatype])
            return InferResponse(payload.id or str(uuid.uuid4()), self.name, [typed("y", self.datatype, y)])

    models: list[Any] = [Digits("digits"), *(Echo(d) for d in DATATYPES)]
    for model in models:
        model.load()
    ModelServer(http_port=http_port, grpc_port=grpc_port, enable_docs_url=False, workers=1).start(models)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the digits ONNX model")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # kserve parses the command line when imported
    serve(args.model, args.http_port, args.grpc_port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
