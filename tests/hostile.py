"""Hostile PyTorch archives, built here from legitimate ones: each would run a command or read a host file.

Every builder takes a ``marker`` path: the archive, loaded by an unrestricted reader, creates that file
(``tests/test_pytorch_safety.py`` checks both that it does and that wasinn never lets it).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable

from . import models

#: The kinds of hostile ``.pt2`` archives :func:`hostile_pt2` builds.
PT2_ATTACKS = ("sample_inputs", "weight", "constant", "opaque_object", "sym_expr", "guard", "aotinductor", "from_file")


class _Command:
    """Unpickles into a call of ``os.system`` (protocol 2 names the global: what a restricted reader sees)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, (self.command,))


def command_pickle(marker: str) -> bytes:
    return pickle.dumps(_Command(f"touch {marker}"), protocol=2)


def rewrite_zip(
    data: bytes, change: Callable[[str, bytes], bytes | None], add: dict[str, bytes] | None = None
) -> bytes:
    """The archive with each record passed through ``change`` (``None`` drops it), plus ``add``."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        prefix = src.namelist()[0].split("/")[0]
        for info in src.infolist():
            body = change(info.filename.split("/", 1)[1], src.read(info.filename))
            if body is not None:
                dst.writestr(info, body)
        for name, body in (add or {}).items():
            dst.writestr(f"{prefix}/{name}", body)
    return out.getvalue()


def legit_module():
    """The module of :func:`legit_pt2`: a seeded Linear(3, 3) plus a tensor constant."""
    torch = models._torch()

    class WithConstant(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3, 3)
            self.offset = torch.arange(3.0)  # neither parameter nor buffer: a tensor constant

        def forward(self, x):
            return self.linear(x) + self.offset

    torch.manual_seed(0)
    return WithConstant().eval()


def legit_pt2(dynamic: bool = False) -> bytes:
    """A real ``torch.export`` archive with a weight, a bias and a tensor constant; input [2, 3] f32."""
    torch = models._torch()
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    return models.exported_bytes(legit_module(), (torch.ones(2, 3),), dynamic_shapes=shapes)


def _json_edit(edit: Callable[[dict], None]) -> Callable[[str, bytes], bytes]:
    def change(name: str, body: bytes) -> bytes:
        if name.endswith(".json") and name.startswith("models/"):
            data = json.loads(body)
            edit(data)
            return json.dumps(data).encode()
        return body

    return change


def _config_edit(directory: str, edit: Callable[[dict], None]) -> Callable[[str, bytes], bytes]:
    def change(name: str, body: bytes) -> bytes:
        if name.startswith(f"data/{directory}/") and name.endswith("_config.json"):
            data = json.loads(body)
            edit(data)
            return json.dumps(data).encode()
        return body

    return change


def hostile_pt2(kind: str, marker: str) -> bytes:
    """A legitimate archive altered so that an unrestricted ``torch.export.load`` runs ``touch marker``.

    ``from_file`` is the exception: its graph reads a host file when run (the operator screen refuses it).
    """
    legit = legit_pt2(dynamic=kind == "sym_expr")
    evil = command_pickle(marker)
    command = f"__import__('os').system('touch {marker}')"
    if kind == "sample_inputs":
        return rewrite_zip(legit, lambda n, b: evil if n.startswith("data/sample_inputs/") else b)
    if kind in ("weight", "constant"):
        directory = "weights" if kind == "weight" else "constants"
        records: list[str] = []

        def pickled(config: dict) -> None:
            entry = next(iter(config["config"].values()))
            entry["use_pickle"] = True
            records.append(entry["path_name"])

        first = rewrite_zip(legit, _config_edit(directory, pickled))
        return rewrite_zip(first, lambda n, b: evil if n == f"data/{directory}/{records[0]}" else b)
    if kind == "opaque_object":

        def opaque(config: dict) -> None:
            entry = next(iter(config["config"].values()))
            entry["path_name"] = "opaque_obj_0"
            entry["use_pickle"] = True

        first = rewrite_zip(legit, _config_edit("constants", opaque))
        return rewrite_zip(first, lambda n, b: b, add={"data/constants/opaque_obj_0": evil})
    if kind == "sym_expr":
        payload = f"({command}) and Symbol('s0', positive=True, integer=True)"

        def sym(data: dict) -> None:
            text = json.dumps(data)
            start = text.index('"expr_str": "') + len('"expr_str": "')
            end = text.index('"', start)
            data.clear()
            data.update(json.loads(text[:start] + payload.replace("'", "\\u0027") + text[end:]))

        return rewrite_zip(legit, _json_edit(sym))
    if kind == "guard":
        return rewrite_zip(legit, _json_edit(lambda d: d.__setitem__("guards_code", [f"{command} == 0"])))
    if kind == "aotinductor":
        script = f"#!/bin/sh\ntouch {marker}\n".encode()
        return rewrite_zip(legit, lambda n, b: b, add={"data/aotinductor/model/model.wrapper.so": script})
    if kind == "from_file":

        def reads(data: dict) -> None:
            nodes = data["graph_module"]["graph"]["nodes"]
            nodes[0]["target"] = "torch.ops.aten.from_file.default"

        return rewrite_zip(legit, _json_edit(reads))
    raise ValueError(f"unknown attack {kind!r}; known: {', '.join(PT2_ATTACKS)}")


def without_sample_inputs(data: bytes) -> bytes:
    return rewrite_zip(data, lambda n, b: None if n.startswith("data/sample_inputs/") else b)


# -- models that read host files through their libraries --------------------------------------------------


def _torch_module():
    torch = models._torch()

    class ReadsFile(torch.nn.Module):
        """forward(x) -> the first 16 bytes of a host file, as floats (plus x, so that x is used)."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_file(self.path, size=16, dtype=torch.uint8).float() + x.sum() * 0

    return ReadsFile


def torchscript_reading(path: str) -> bytes:
    """A TorchScript archive whose forward returns the first 16 bytes of ``path`` (``aten::from_file``)."""
    import warnings

    torch = models._torch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(_torch_module()(path)), buf)
    return buf.getvalue()


def onnx_reading(path: str) -> bytes:
    """An ONNX model y = leak + x whose 16-byte initializer ``leak`` lives in the external file ``path``."""
    from onnx import TensorProto, helper

    leak = TensorProto(name="leak", data_type=TensorProto.FLOAT, dims=[4])
    leak.data_location = TensorProto.EXTERNAL
    for key, value in (("location", path), ("offset", "0"), ("length", "16")):
        entry = leak.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["leak", "x"], ["y"])],
        "reads_a_file",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        initializer=[leak],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()
