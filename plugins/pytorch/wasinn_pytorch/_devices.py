"""Device selection for the PyTorch backend: which torch device a wasi-nn target maps to, and why not.

The facts about the machine are gathered in one :class:`DeviceFacts` value so the
selection logic can be exercised for machines that are not this one (a CUDA box,
an Apple laptop) without any GPU.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wasinn_core import Availability, ExecutionTarget


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What torch reports about accelerators on this machine."""

    torch_version: str
    cuda_version: str | None  # torch.version.cuda (or HIP) of the build; None: built without
    cuda_devices: int  # torch.cuda.device_count() when available, else 0
    cuda_error: str  # why CUDA is unavailable although built (driver, visibility)
    mps_built: bool
    mps_available: bool

    @classmethod
    def current(cls) -> DeviceFacts:
        import torch

        built = torch.version.cuda or getattr(torch.version, "hip", None)
        count, error = _cuda_devices() if built else (0, "")
        return cls(
            torch_version=torch.__version__,
            cuda_version=built,
            cuda_devices=count,
            cuda_error=error,
            mps_built=torch.backends.mps.is_built(),
            mps_available=torch.backends.mps.is_available(),
        )

    def cuda_reason(self) -> str:
        if self.cuda_version is None:
            return f"CUDA not available: torch {self.torch_version} was built without CUDA"
        return f"CUDA not available: torch {self.torch_version} (CUDA {self.cuda_version}): {self.cuda_error}"

    def mps_reason(self) -> str:
        if not self.mps_built:
            return f"MPS not available: torch {self.torch_version} was built without MPS (Apple silicon only)"
        return "MPS not available: no Metal device (needs macOS 12.3 or later on Apple silicon)"


_NO_DEVICE = "no CUDA device is visible (driver missing, or CUDA_VISIBLE_DEVICES hides them)"


@functools.cache
def _cuda_devices() -> tuple[int, str]:
    """CUDA devices visible to this process, or why none is: torch's first probe says why, as a warning.

    The driver is asked once per process (torch caches the answer too), so the reason is kept: in a
    confined worker it is what tells a missing device from a refused file or device node.
    """
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if available:
        return torch.cuda.device_count(), ""
    said = [str(w.message).strip() for w in caught if "CUDA" in str(w.message)]
    if not said:
        return 0, _NO_DEVICE
    detail = " ".join(said[0].split())  # torch's own text, e.g. "... Error 304: OS call failed ..."
    return 0, f"CUDA initialisation failed: {detail[:400]}"


def device_for(target: ExecutionTarget, options: Mapping[str, Any], facts: DeviceFacts) -> Availability:
    """The torch device string for ``target`` under ``options``, or why there is none."""
    if target is ExecutionTarget.CPU:
        return Availability.yes("cpu")
    if target is ExecutionTarget.TPU:
        return Availability.no("PyTorch has no TPU target in wasinn (torch_xla devices are not supported)")
    kind, index = options["gpu_device"], options["device_index"]
    if kind in ("auto", "cuda"):
        if facts.cuda_devices:
            if index >= facts.cuda_devices:
                return Availability.no(f"cuda:{index} requested but only {facts.cuda_devices} CUDA device(s) exist")
            return Availability.yes(f"cuda:{index}")
        if kind == "cuda":
            return Availability.no(facts.cuda_reason())
    if facts.mps_available:
        return Availability.yes("mps")
    if kind == "mps":
        return Availability.no(facts.mps_reason())
    return Availability.no(f"{facts.cuda_reason()}; {facts.mps_reason()}")


def probe(target: ExecutionTarget, options: Mapping[str, Any]) -> Availability:
    """The backend's availability probe, on this machine."""
    return device_for(target, options, DeviceFacts.current())
