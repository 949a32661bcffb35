"""Moving tensors between host memory and a graph's device, one copy each way, counted.

- CPU: inputs live in plain host tensors the context reuses; nothing is moved.
- CUDA: inputs are staged in pinned (page-locked) host tensors, so that ``compute`` moves each one
  with a single asynchronous copy on the context's own stream (one of torch's pooled streams), and
  the model runs on that stream without waiting for the host. Outputs stay on the device until
  ``get_output``, which copies each one once into pinned memory and waits for the stream: the only
  point where the host waits for the GPU. An event recorded after the input copies keeps the next
  ``set_input`` from overwriting a pinned tensor the GPU is still reading.
- Other devices (MPS): a plain copy each way.

Copies between host and device are counted process-wide (:func:`device_copies`); copies within host
memory go to wasinn's own counter (``record_copy``), as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import final

import torch

from wasinn_core import record_copy

__all__ = ["DeviceCopies", "Transfer", "device_copies", "transfer_for"]


@final
@dataclass(frozen=True, slots=True)
class DeviceCopies:
    """Copies between host memory and devices made by this process's PyTorch graphs, so far."""

    to_device: int = 0
    to_device_bytes: int = 0
    to_host: int = 0
    to_host_bytes: int = 0

    def __sub__(self, other: DeviceCopies) -> DeviceCopies:
        return DeviceCopies(
            self.to_device - other.to_device,
            self.to_device_bytes - other.to_device_bytes,
            self.to_host - other.to_host,
            self.to_host_bytes - other.to_host_bytes,
        )


_counts = [0, 0, 0, 0]  # to_device, bytes, to_host, bytes (approximate under concurrent use, like record_copy)


def device_copies() -> DeviceCopies:
    """A snapshot of the host↔device copy counters (subtract two snapshots for a span)."""
    return DeviceCopies(*_counts)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _to_host_dtype(out: torch.Tensor) -> torch.Tensor:
    return out.to(torch.uint8) if out.dtype == torch.bool else out  # wasi-nn has no bool: 0/1 as u8


class Transfer:
    """The CPU case: host tensors are the model's inputs, and its outputs are already in host memory."""

    def host_tensor(self, dims: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """A host tensor for an input, which ``set_input`` fills."""
        return torch.empty(tuple(dims), dtype=dtype)

    def before_host_write(self) -> None:
        """Called before ``set_input`` writes into a host tensor."""

    def to_device(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The model's arguments for these host tensors."""
        return list(inputs)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The scope the model runs in."""
        yield

    def to_host(self, out: torch.Tensor) -> torch.Tensor:
        """An output in contiguous host memory (a copy only where it is not already)."""
        out = _to_host_dtype(out.detach())
        host = out.contiguous()
        if host.data_ptr() != out.data_ptr():
            record_copy(_nbytes(host))
        return host


class _PlainDevice(Transfer):
    """A device without pinned staging or streams in wasinn (MPS): one blocking copy each way."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def to_device(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        moved = [t.to(self.device) for t in inputs]
        _counts[0] += len(inputs)
        _counts[1] += sum(_nbytes(t) for t in inputs)
        return moved

    def to_host(self, out: torch.Tensor) -> torch.Tensor:
        host = _to_host_dtype(out.detach()).to("cpu").contiguous()
        _counts[2] += 1
        _counts[3] += _nbytes(host)
        return host


class _Cuda(Transfer):
    """Pinned staging, one asynchronous copy per input on the context's stream, one copy per output."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device=device)  # from torch's pool: no stream is created per context
        self.inputs_read = torch.cuda.Event()  # recorded after the input copies are queued

    def host_tensor(self, dims: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(tuple(dims), dtype=dtype, pin_memory=True)

    def before_host_write(self) -> None:
        self.inputs_read.synchronize()  # the last compute's copies have read the pinned tensors

    def to_device(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            moved = [t.to(self.device, non_blocking=True) for t in inputs]
            self.inputs_read.record(self.stream)
        _counts[0] += len(inputs)
        _counts[1] += sum(_nbytes(t) for t in inputs)
        return moved

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            yield

    def to_host(self, out: torch.Tensor) -> torch.Tensor:
        if out.device.type != "cuda":  # a model may return a host tensor
            return super().to_host(out)
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            out = _to_host_dtype(out.detach())
            host = torch.empty(tuple(out.shape), dtype=out.dtype, pin_memory=True)
            host.copy_(out, non_blocking=True)
        self.stream.synchronize()  # the model's work and this copy: the host's only wait
        _counts[2] += 1
        _counts[3] += _nbytes(host)
        return host


def transfer_for(device: torch.device) -> Transfer:
    """How a context on ``device`` moves its tensors."""
    if device.type == "cpu":
        return Transfer()
    if device.type == "cuda":
        return _Cuda(device)
    return _PlainDevice(device)
