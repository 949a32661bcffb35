"""Diagnostics: what a confined worker can do with CUDA, per confinement layer.

``python -m benchmarks.gpu._probe MODE`` (MODE: ``none``, ``landlock``, ``seccomp`` or ``both``) does
what a worker does, with the worker's environment: torch imported first (as the zygote has it), then
the confinement of that MODE, then

- a thread names itself through ``/proc/self/task/<tid>/comm`` (the CUDA driver does this at ``cuInit``;
  error 304 where it is refused);
- the driver API straight through ``ctypes``: ``cuInit``, the device count, a context and a 1 MiB allocation;
- torch: ``torch.cuda.is_available()`` (with the reason it warns) and a tensor on ``cuda:0``;
- a list of files the NVIDIA driver is known to touch: present, readable (or openable read-write, for
  device nodes), or refused with which errno. The unconfined run lists the files libcuda maps.

It prints one JSON object. Comparing the modes tells which layer refuses what CUDA needs, in one run.
Every import happens before the confinement: afterwards only what a worker may read is readable.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import sys
import threading
import warnings
from typing import Any

MODES = ("none", "landlock", "seccomp", "both")

_FILES = (
    "/proc/driver/nvidia/params", "/proc/driver/nvidia/version", "/proc/driver/nvidia/capabilities",
    "/proc/devices", "/proc/modules", "/proc/sys/vm/mmap_min_addr", "/proc/sys/vm/overcommit_memory",
    "/proc/sys/kernel/numa_balancing", "/proc/self/maps", "/proc/self/status", "/proc/self/cgroup",
    "/proc/self/mountinfo", "/sys/module/nvidia/version", "/sys/module/nvidia/parameters",
    "/sys/module/nvidia_uvm/parameters", "/sys/devices/system/node/online", "/sys/devices/system/cpu/online",
    "/dev/shm", "/tmp", "/run/nvidia-persistenced/socket", "/tmp/nvidia-mps", "/usr/share/nvidia",
    "/etc/nvidia", "/usr/local/nvidia/lib64", "/usr/local/cuda",
)  # fmt: skip
_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset")


def candidate_paths() -> list[str]:
    """The files to try: the fixed list, GPU device nodes, and each NVIDIA PCI device's sysfs facts."""
    paths = [*_FILES, *_DEVICE_NODES, *sorted(glob.glob("/dev/nvidia[0-9]*")), *glob.glob("/dev/nvidia-caps/*")]
    paths += sorted(glob.glob("/proc/driver/nvidia/gpus/*/information"))
    for device in glob.glob("/sys/bus/pci/devices/*"):
        try:
            with open(os.path.join(device, "vendor")) as f:
                nvidia = f.read().strip() == "0x10de"
        except OSError:
            continue
        if nvidia:
            paths += [os.path.join(device, leaf) for leaf in ("numa_node", "local_cpulist", "resource", "config")]
    return paths


def try_path(path: str) -> str:
    """``ok``, ``absent`` or the errno name of the refusal: list a folder, read a file, open a node read-write."""
    if not os.path.lexists(path):
        return "absent"
    try:
        if os.path.isdir(path):
            os.listdir(path)
        elif path.startswith("/dev/nvidia"):
            os.close(os.open(path, os.O_RDWR))
        else:
            with open(path, "rb") as f:
                f.read(1)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "ok"


def _rename(path: str, truncate: bool) -> str:
    """Write a thread name as glibc's pthread_setname_np does (``O_RDWR``), or as ``fopen("w")`` does."""
    try:
        fd = os.open(path, (os.O_WRONLY | os.O_TRUNC) if truncate else os.O_RDWR)
        try:
            os.write(fd, b"wasinn-probe")
        finally:
            os.close(fd)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "ok"


def thread_names() -> dict[str, str]:
    """Threads renamed through procfs, every way the CUDA driver or glibc may do it."""
    result: dict[str, str] = {}

    def own() -> None:
        tid = threading.get_native_id()
        result["own"] = _rename(f"/proc/self/task/{tid}/comm", truncate=False)
        result["thread-self"] = _rename("/proc/thread-self/comm", truncate=True)

    thread = threading.Thread(target=own)
    thread.start()
    thread.join()
    ready, stop = threading.Event(), threading.Event()
    other = threading.Thread(target=lambda: (ready.set(), stop.wait(5)))
    other.start()
    ready.wait()
    result["another"] = _rename(f"/proc/self/task/{other.native_id}/comm", truncate=False)
    stop.set()
    other.join()
    result["process"] = _rename("/proc/self/comm", truncate=True)
    return result


def driver() -> dict[str, Any]:
    """The CUDA driver API through ctypes: each step's result code and name."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return {"loaded": False, "error": str(exc)}
    out: dict[str, Any] = {"loaded": True}

    def name(code: int) -> str:
        text = ctypes.c_char_p()
        lib.cuGetErrorName(code, ctypes.byref(text))
        return (text.value or b"?").decode()

    def step(key: str, code: int) -> bool:
        out[key] = code if code == 0 else f"{code} {name(code)}"
        return code == 0

    version = ctypes.c_int()
    lib.cuDriverGetVersion(ctypes.byref(version))
    out["driver_version"] = version.value
    if not step("cuInit", lib.cuInit(0)):
        return out
    count, device, context, pointer = ctypes.c_int(), ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
    if not step("cuDeviceGetCount", lib.cuDeviceGetCount(ctypes.byref(count))) or count.value < 1:
        out["devices"] = count.value
        return out
    out["devices"] = count.value
    step("cuDeviceGet", lib.cuDeviceGet(ctypes.byref(device), 0))
    if step("cuDevicePrimaryCtxRetain", lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), device)):
        step("cuCtxSetCurrent", lib.cuCtxSetCurrent(context))
        if step("cuMemAlloc", lib.cuMemAlloc_v2(ctypes.byref(pointer), 1 << 20)):
            step("cuMemFree", lib.cuMemFree_v2(pointer))
        lib.cuDevicePrimaryCtxRelease_v2(device)
    return out


def torch_cuda(torch: Any) -> dict[str, Any]:
    if not torch.version.cuda:
        return {"built_with_cuda": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    out: dict[str, Any] = {"available": available, "warnings": [str(w.message)[:400] for w in caught]}
    if available:
        try:
            out["sum"] = float((torch.ones(4, device="cuda:0") * 2).sum().item())
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
    return out


def mapped_driver_files() -> list[str]:
    """The NVIDIA and CUDA files this process maps (where libcuda and its helpers really are)."""
    try:
        with open("/proc/self/maps") as f:
            files = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
    except OSError:
        return []
    return sorted(p for p in files if "nvidia" in p or "libcuda" in p)


def main(mode: str) -> int:
    import torch  # before confinement, as the zygote imports it

    from wasinn_core._isolation._confine import confine, read_paths

    paths = candidate_paths()
    result: dict[str, Any] = {"mode": mode, "pid": os.getpid()}
    if mode != "none":
        read = read_paths(["wasinn_pytorch"])
        scratch = os.getcwd()  # the folder the runner made for this probe
        try:
            result["confinement"] = confine(
                read, [scratch], landlock=mode in ("landlock", "both"), seccomp=mode in ("seccomp", "both")
            )
        except Exception as exc:
            result["confinement_error"] = f"{type(exc).__name__}: {exc}"
            print(json.dumps(result))
            return 0
    result["thread_names"] = thread_names()
    result["driver"] = driver()
    result["torch"] = torch_cuda(torch)
    result["paths"] = {path: try_path(path) for path in paths}
    result["mapped"] = mapped_driver_files() if mode == "none" else []
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
