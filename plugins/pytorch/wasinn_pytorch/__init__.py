"""wasinn-pytorch: the PyTorch backend plugin (backend ``pytorch``, encoding ``pytorch``).

torch is imported only when a PyTorch graph is loaded or probed, so installing this
plugin does not slow down hosts that never use it.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wasinn_core import (
    Availability,
    Backend,
    BackendSpec,
    Capabilities,
    ExecutionTarget,
    GraphEncoding,
    OptionSpec,
    TensorType,
    hookimpl,
)

if TYPE_CHECKING:
    from ._transfer import DeviceCopies

__all__ = ["OPTIONS", "backend_spec", "device_copies", "wasinn_backends"]
__version__ = "0.1.0"

OPTIONS = (
    OptionSpec("device_index", int, 0, "CUDA device for target gpu (cuda:N)"),
    OptionSpec(
        "gpu_device",
        str,
        "auto",
        "what target gpu means: auto (CUDA, else MPS), cuda, or mps",
        choices=("auto", "cuda", "mps"),
    ),
    OptionSpec(
        "num_threads",
        int,
        0,
        "torch.set_num_threads, once per process by the first load asking (0 keeps torch's default)",
        guest=False,
    ),
    OptionSpec(
        "screen_operators",
        bool,
        True,
        "refuse programs that call file, stdout, process or network operators (off only for trusted models)",
        guest=False,
    ),
    OptionSpec(
        "format",
        str,
        "auto",
        "archive format: auto (sniffed), torchscript or exported_program",
        choices=("auto", "torchscript", "exported_program"),
    ),
)


def _probe(target: ExecutionTarget, options: Mapping[str, Any]) -> Availability:
    from ._devices import probe

    return probe(target, options)


def _factory() -> Backend:
    from ._backend import TorchBackend

    return TorchBackend()


def device_copies() -> DeviceCopies:
    """Host↔device copies made by this process's PyTorch graphs so far (subtract two for a span).

    Imports torch. Copies within host memory (guest bytes into the input tensors, outputs into the
    guest) are counted by wasinn itself (``wasinn run --stats``), not here.
    """
    from ._transfer import device_copies as snapshot

    return snapshot()


def backend_spec() -> BackendSpec:
    """The ``pytorch`` backend record."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return BackendSpec(
        name="pytorch",
        factory=_factory,
        encodings={GraphEncoding.PYTORCH: 100},
        targets=frozenset(ExecutionTarget),
        probe=_probe,
        library="torch",
        library_version=version,
        options=OPTIONS,
        builders={GraphEncoding.PYTORCH: 1},
        capabilities=Capabilities(
            dtypes=frozenset(TensorType),
            # no "shape_checks"/"type_checks": TorchScript archives record no input shapes or types
            features=frozenset(
                {"named_io", "multi_output", "dynamic_batch", "pytorch:torchscript", "pytorch:exported_program"}
            ),
        ),
        description="PyTorch: TorchScript and torch.export archives; cpu, gpu → cuda:N or mps",
    )


@hookimpl
def wasinn_backends() -> list[BackendSpec]:
    return [backend_spec()]
