"""The copy claim, measured: one copy in and one copy out per inference, on every backend, remote included.

``benchmarks.copies`` measures through a real guest's memory with buffer identity and allocation tracing
(see its docstring); nothing here trusts the copy sites' own counts (``record_copy``). Planted silent
copies, one the tracing must see and one only identity can see, show that the measurement fails when the
claim does.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from benchmarks.copies import measure
from wasinn_core import Session, Tensor

BACKENDS = ["onnx", "pytorch", "openvino", "remote"]


def _needs(backend: str) -> None:
    if backend == "remote" and importlib.util.find_spec("kserve") is None:
        pytest.skip("the remote backend's loopback server needs wasinn-remote[loopback] (kserve)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_inference_copies_each_tensor_once(backend):
    """A 1 MiB input and output: the ABI hands a view, the copies are one in and one out, nothing more."""
    _needs(backend)
    result = measure(backend, "mid", iterations=3)
    checks = {k: v for k, v in result.items() if k.startswith(("abi_", "input_copied", "output_"))}
    assert all(checks.values()), result
    assert result["copies_per_byte"] <= 1.02, result  # the remote copy in allocates: it is in the tracing


def test_a_silent_numpy_copy_is_measured(monkeypatch):
    """A copy no site reports (in the session, as `ascontiguousarray` in the ABI once was): tracing sees it."""
    real = Session.get_output

    def copying(self: Session, ctx: int, key: object) -> Tensor:
        tensor = real(self, ctx, key)
        return Tensor(tensor.dimensions, tensor.type, np.array(tensor.data, copy=True))

    monkeypatch.setattr(Session, "get_output", copying)
    result = measure("onnx", "mid", iterations=3)
    assert not result["output_is_the_librarys_buffer"] and result["copies_per_byte"] >= 1.4, result


def test_a_copy_the_tracing_cannot_see_is_caught_by_identity(monkeypatch):
    """torch allocates outside tracemalloc's view: a cloned output is caught because it is not torch's buffer."""
    from wasinn_pytorch._backend import TorchContext

    real = TorchContext.get_output

    def cloning(self: TorchContext, key: object) -> Tensor:
        tensor = real(self, key)
        return Tensor(tensor.dimensions, tensor.type, self._outputs[0].clone().numpy())

    monkeypatch.setattr(TorchContext, "get_output", cloning)
    result = measure("pytorch", "mid", iterations=3)
    assert not result["output_is_the_librarys_buffer"] and result["copies_per_byte"] >= 1.4, result
