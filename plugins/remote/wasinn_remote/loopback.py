"""A KServe model server serving ONNX models with onnxruntime: for trying wasinn-remote and for its tests.

    python -m wasinn_remote.loopback --repository DIR [--http-port 8080] [--grpc-port 8081] [--test-models]

Every ``DIR/NAME/model.onnx`` (or ``DIR/NAME/1/model.onnx``, Triton's layout) is served as model
``NAME`` over the Open Inference Protocol (REST and gRPC), and the repository extension loads and unloads
models the same way (what wasinn-remote's ``repository`` option uses). ``--test-models`` adds two
models for failure tests: ``slow`` (echoes its FP32 input after ``--delay`` seconds), ``shedding``
(always sheds load: HTTP 503, gRPC UNAVAILABLE) and ``guarded`` (echoes only with the header
``authorization: Bearer letmein``). Needs ``pip install 'wasinn-remote[loopback]'``.

It imports kserve, whose protobuf names clash with tritonclient's gRPC client: run it in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_V2 = {
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(uint8)": "UINT8",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(bool)": "BOOL",
}


def model_file(repository: Path, name: str) -> Path | None:
    for candidate in (repository / name / "model.onnx", repository / name / "1" / "model.onnx"):
        if candidate.is_file():
            return candidate
    return None


def serve(repository: Path, http_port: int, grpc_port: int, test_models: bool, delay: float) -> None:
    import onnxruntime as ort
    from kserve import InferRequest, InferResponse, Model, ModelRepository, ModelServer
    from kserve.errors import InvalidInput, ServerNotReady
    from kserve.protocol.infer_type import InferOutput

    def io(items: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": i.name,
                "datatype": _V2.get(i.type, i.type),
                "shape": [d if isinstance(d, int) else -1 for d in i.shape],
            }
            for i in items
        ]

    def output(name: str, datatype: str, value: np.ndarray) -> Any:
        """An output already in binary form (kserve 0.21 mishandles array data in gRPC and FP16 answers)."""
        item = InferOutput(name, list(value.shape), datatype)
        item.set_data_from_numpy(np.ascontiguousarray(value), binary_data=True)
        return item

    def respond(payload: InferRequest, name: str, outputs: list[Any]) -> InferResponse:
        """The outputs in the encoding the client asked for (binary, as tritonclient does by default)."""
        return InferResponse(
            payload.id or str(uuid.uuid4()),
            name,
            outputs,
            from_grpc=payload.from_grpc,
            requested_outputs=payload.request_outputs,
            use_binary_outputs=True,
        )

    class OnnxModel(Model):  # type: ignore[misc]
        def __init__(self, name: str, path: Path) -> None:
            super().__init__(name)
            self.path = path

        def load(self) -> bool:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            self.ready = True
            return True

        def get_input_types(self) -> list[dict[str, Any]]:
            return io(self.session.get_inputs())

        def get_output_types(self) -> list[dict[str, Any]]:
            return io(self.session.get_outputs())

        async def predict(self, payload: InferRequest, headers: Any = None, **_: Any) -> InferResponse:
            feeds = {item.name: item.as_numpy() for item in payload.inputs}
            results = self.session.run(None, feeds)
            outputs = [
                output(meta["name"], meta["datatype"], value)
                for meta, value in zip(self.get_output_types(), results, strict=True)
            ]
            return respond(payload, self.name, outputs)

    class SlowModel(Model):  # type: ignore[misc]
        """Echoes ``x`` (FP32, any shape) after a delay: for deadline tests."""

        def load(self) -> bool:
            self.ready = True
            return True

        def get_input_types(self) -> list[dict[str, Any]]:
            return [{"name": "x", "datatype": "FP32", "shape": [-1]}]

        def get_output_types(self) -> list[dict[str, Any]]:
            return [{"name": "y", "datatype": "FP32", "shape": [-1]}]

        async def predict(self, payload: InferRequest, headers: Any = None, **_: Any) -> InferResponse:
            await asyncio.sleep(delay)
            x = payload.inputs[0].as_numpy()
            return respond(payload, self.name, [output("y", "FP32", x)])

    class Shedding(ServerNotReady):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__("shedding load (a wasinn-remote test model)")
            self.reason = str(self)  # kserve's gRPC error mapping reads .reason

    class SheddingModel(SlowModel):
        """Always sheds load (HTTP 503, gRPC UNAVAILABLE): for busy tests."""

        async def predict(self, payload: InferRequest, headers: Any = None, **_: Any) -> InferResponse:
            raise Shedding()

    class Rejected(InvalidInput):  # type: ignore[misc]
        def __init__(self, why: str) -> None:
            super().__init__(why)
            self.reason = why

    class GuardedModel(SlowModel):
        """Echoes ``x`` only with the header ``authorization: Bearer letmein`` (HTTP 400 otherwise)."""

        async def predict(self, payload: InferRequest, headers: Any = None, **_: Any) -> InferResponse:
            if (headers or {}).get("authorization") != "Bearer letmein":
                raise Rejected("missing or wrong authorization header")
            x = payload.inputs[0].as_numpy()
            return respond(payload, self.name, [output("y", "FP32", x)])

    class OnnxRepository(ModelRepository):  # type: ignore[misc]
        def load(self, name: str) -> bool:
            path = model_file(repository, name)
            if path is None:
                raise FileNotFoundError(f"no {name}/model.onnx or {name}/1/model.onnx in {repository}")
            model = OnnxModel(name, path)
            model.load()
            self.update(model)
            return True

        load_model = load

    models: list[Any] = []
    registry = OnnxRepository(str(repository))
    for folder in sorted(p for p in repository.iterdir() if p.is_dir()):
        path = model_file(repository, folder.name)
        if path is not None:
            model = OnnxModel(folder.name, path)
            model.load()
            models.append(model)
    if test_models:
        for cls, name in ((SlowModel, "slow"), (SheddingModel, "shedding"), (GuardedModel, "guarded")):
            model = cls(name)
            model.load()
            models.append(model)
    server = ModelServer(
        http_port=http_port,
        grpc_port=grpc_port,
        registered_models=registry,
        enable_docs_url=False,
        enable_latency_logging=False,
        workers=1,
    )
    server.start(models)


@dataclass(frozen=True)
class Running:
    """A loopback server started by :func:`running`."""

    http: str  # http://127.0.0.1:PORT
    grpc: str  # grpc://127.0.0.1:PORT
    repository: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(
    repository: Path, log: Path, *, test_models: bool = False, delay: float = 5.0, timeout_s: float = 120.0
) -> Iterator[Running]:
    """This server in a process of its own on free ports, ready when the block starts, stopped after it.

    It does not import kserve in the calling process (whose tritonclient gRPC module it would break).
    """
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "wasinn_remote.loopback", "--repository", str(repository)]
    command += ["--http-port", str(http_port), "--grpc-port", str(grpc_port), "--delay", str(delay)]
    command += ["--test-models"] if test_models else []
    server = Running(f"http://127.0.0.1:{http_port}", f"grpc://127.0.0.1:{grpc_port}", repository)
    with spawned(command, server.http, log, timeout_s):
        yield server


@contextmanager
def spawned(
    command: list[str], http: str, log: Path, timeout_s: float = 120.0, cwd: Path | None = None
) -> Iterator[None]:
    """A server process running ``command``, ready (``http``'s ``/v2/health/ready``) when the block starts."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        try:
            deadline = time.monotonic() + timeout_s
            while not _ready(http):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server {command[2:4]} did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.3)
            yield
        finally:
            process.terminate()
            process.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as answer:
            return bool(json.load(answer).get("ready"))
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wasinn_remote.loopback", description=__doc__.split("\n")[0])
    parser.add_argument("--repository", type=Path, required=True, help="folder of NAME/model.onnx models")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=8081)
    parser.add_argument("--test-models", action="store_true", help="add the models 'slow', 'shedding', 'guarded'")
    parser.add_argument("--delay", type=float, default=5.0, help="seconds the 'slow' model takes")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # kserve parses the command line when imported
    serve(args.repository.resolve(), args.http_port, args.grpc_port, args.test_models, args.delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
