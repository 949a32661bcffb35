"""Kernel confinement of a worker process: what this kernel can enforce, and enforcing it.

On Linux a worker confines itself before it imports a backend library or reads a model byte:

- Landlock (the ``landlockpy`` binding): read-only access to what the interpreter and the libraries
  need (the standard library, site-packages, the worker's own packages, system libraries, CPU facts
  under ``/proc`` and ``/sys``, the NVIDIA driver's facts), read-write access to its own scratch
  folder and to GPU device nodes, writes to its own threads' names (the CUDA driver names its
  threads), and nothing else; no file can be executed; no TCP bind or connect (ABI 4); no signal to,
  and no abstract-socket connection with, a process outside the worker (ABI 6); no ptrace of one.
- seccomp (the ``pyseccomp`` binding over libseccomp): no socket can be created (so no UDP, raw,
  netlink or named-unix socket either), no ``execve``, no ptrace or cross-process memory access, no
  io_uring (it bypasses seccomp), no namespaces, mounts, BPF, kernel keyrings or modules, no file
  handles (``open_by_handle_at`` bypasses paths).
- ``PR_SET_NO_NEW_PRIVS``, no core dumps, death with the host (``PR_SET_PDEATHSIG``), the first
  candidate of the OOM killer, and an address-space cap from the limits.

Both hold for root. Where the kernel lacks Landlock (macOS, Windows, Linux before 5.13 or with the
LSM disabled) :func:`probe` says so and the worker runs unconfined; the isolation policy then
refuses guest models of the encodings it lists (``docs/reliability.md``).
"""

from __future__ import annotations

import ctypes
import errno
import glob
import importlib.util
import os
import resource
import signal
import site
import sys
import sysconfig
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

__all__ = ["Confinement", "cap_address_space", "confine", "probe", "read_paths"]

#: Test and debugging override: pretend the kernel offers this Landlock ABI (``0``: none).
LANDLOCK_ABI_ENV = "WASINN_LANDLOCK_ABI"

_SYSTEM_READ = (
    "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/etc/ld.so.cache", "/etc/localtime",
    "/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/driver",
    "/sys/devices/system/cpu", "/sys/devices/system/node", "/sys/fs/cgroup", "/sys/bus/pci/devices",
    "/sys/devices/pci0000:00", "/dev/urandom", "/dev/random", "/dev/zero",
)  # fmt: skip
#: What the NVIDIA driver reads besides ``/proc/driver``: its module parameters (GPU PCI devices are
#: added where they are, see :func:`_gpu_pci_devices`).
_NVIDIA_READ = ("/sys/module/nvidia", "/sys/module/nvidia_uvm")
#: Device nodes a library opens read-write to use an accelerator (CUDA, Intel GPU, NPU); with
#: ``/dev/nvidiaN`` found at confinement time. ``nvidia-caps`` holds MIG capability nodes.
_DEVICES = (
    "/dev/null", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset",
    "/dev/nvidia-caps", "/dev/dri", "/dev/accel",
)  # fmt: skip
_NVIDIA_VENDOR = "0x10de"

_DENIED_SYSCALLS = (
    "socket", "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open", "userfaultfd",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsmount", "fspick", "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "iopl",
    "ioperm", "name_to_handle_at", "open_by_handle_at", "fanotify_init", "lookup_dcookie",
)  # fmt: skip


@final
@dataclass(frozen=True, slots=True)
class Confinement:
    """What the kernel here can enforce on a worker.

    :param landlock_abi: the Landlock ABI version (0: none).
    :param seccomp: whether seccomp filters can be loaded (libseccomp found).
    :param reason: why confinement is unavailable, when it is.
    """

    landlock_abi: int
    seccomp: bool
    reason: str = ""

    @property
    def available(self) -> bool:
        """Files and the network can both be closed: Landlock, plus TCP rules (ABI 4) or seccomp."""
        return self.landlock_abi >= 1 and (self.landlock_abi >= 4 or self.seccomp)

    def describe(self) -> str:
        """One line for ``wasinn plugins`` and the logs."""
        if not self.available:
            return f"unavailable: {self.reason}"
        parts = [f"Landlock ABI {self.landlock_abi} (files" + (", TCP" if self.landlock_abi >= 4 else "")]
        parts[0] += ", signals and abstract sockets)" if self.landlock_abi >= 6 else ")"
        if self.seccomp:
            parts.append("seccomp (sockets, exec, ptrace, io_uring)")
        return " + ".join(parts)


def probe(environ: dict[str, str] | None = None) -> Confinement:
    """What this kernel can enforce (``WASINN_LANDLOCK_ABI`` overrides the Landlock ABI, for tests)."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return Confinement(0, False, f"{sys.platform} has no Landlock")
    seccomp = _seccomp_available()
    forced = env.get(LANDLOCK_ABI_ENV)
    if forced is not None:
        abi = int(forced) if forced.strip().isdigit() else 0
        reason = f"Landlock ABI forced to {abi} by {LANDLOCK_ABI_ENV}"
    else:
        try:
            import landlockpy

            abi = landlockpy.abi_version()
        except (ImportError, OSError) as exc:
            return Confinement(0, seccomp, f"the landlockpy binding is not usable: {exc}")
        reason = "this kernel has no Landlock (Linux 5.13 or newer with the Landlock LSM enabled is needed)"
    if abi >= 1 and (abi >= 4 or seccomp):
        return Confinement(abi, seccomp)
    if abi >= 1:
        reason = f"Landlock ABI {abi} cannot close TCP (ABI 4 is needed) and libseccomp is missing"
    return Confinement(abi, seccomp, reason)


def _seccomp_available() -> bool:
    try:
        import pyseccomp  # noqa: F401 - loads libseccomp.so.2
    except Exception:  # ImportError; RuntimeError("Unable to find libseccomp") where the library is missing
        return False
    return True


def _package_dirs(modules: Iterable[str]) -> list[str]:
    """The folders of the top-level packages of ``modules`` (found without importing them)."""
    dirs = []
    for module in modules:
        spec = importlib.util.find_spec(module.split(".")[0])
        if spec is None:
            continue
        dirs.extend(spec.submodule_search_locations or [])
        if spec.origin and not spec.submodule_search_locations:
            dirs.append(spec.origin)
    return dirs


def _code_in(folder: str) -> list[str]:
    """The Python packages and modules directly in ``folder`` (not its other files)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    out = []
    for name in names:
        path = os.path.join(folder, name)
        if name.endswith((".py", ".so")) or os.path.isfile(os.path.join(path, "__init__.py")):
            out.append(path)
    return out


def read_paths(modules: Sequence[str]) -> list[str]:
    """What a worker may read: the interpreter's and the libraries' files, CPU facts, nothing of the host's.

    Site-packages folders are readable whole; of other ``sys.path`` entries (a checkout holding editable
    installs, the current folder) only the Python packages and modules, not the files beside them.
    """
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    whole = [sysconfig.get_paths()[n] for n in names]
    whole += [*site.getsitepackages(), site.getusersitepackages()]
    whole += [os.path.join(sys.base_prefix, "lib"), os.path.join(sys.base_exec_prefix, "lib")]
    whole_real = {os.path.realpath(p) for p in whole if p}
    candidates = [*whole, *_package_dirs(["wasinn_core", *modules])]
    for entry in sys.path:
        real = os.path.realpath(entry or os.curdir)
        if os.path.isdir(real) and not any(real == w or real.startswith(w + os.sep) for w in whole_real):
            candidates += _code_in(real)
    candidates += list(_SYSTEM_READ)
    candidates += _loader_dirs()
    gpus = _gpu_pci_devices()
    if gpus:  # the NVIDIA driver is here: what it reads at initialisation
        candidates += [*_NVIDIA_READ, *gpus]
    seen: dict[str, None] = {}
    for path in candidates:
        if path and os.path.exists(path):
            seen.setdefault(os.path.realpath(path), None)
    return list(seen)


def _loader_dirs(conf: str = "/etc/ld.so.conf", environ: Mapping[str, str] | None = None) -> list[str]:
    """Folders the dynamic loader searches besides the system ones: ``LD_LIBRARY_PATH`` (which workers
    keep) and ``/etc/ld.so.conf``'s (where a GPU driver's ``libcuda.so.1`` is often installed, e.g.
    ``/usr/local/nvidia/lib64``)."""
    env = os.environ if environ is None else environ
    dirs = [d for d in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if os.path.isabs(d)]
    pending, seen = [conf], set()
    while pending:
        conf = pending.pop()
        if conf in seen:
            continue
        seen.add(conf)
        try:
            with open(conf) as f:
                lines = [line.split("#", 1)[0].strip() for line in f]
        except OSError:
            continue
        for line in lines:
            if line.startswith("include"):
                pattern = line.split(None, 1)[1] if " " in line else ""
                pattern = pattern if os.path.isabs(pattern) else os.path.join(os.path.dirname(conf), pattern)
                pending += sorted(glob.glob(pattern))
            elif os.path.isabs(line):
                dirs.append(line)
    return [d for d in dirs if os.path.isdir(d)]


def _gpu_pci_devices() -> list[str]:
    """The sysfs folders of NVIDIA PCI devices, resolved (they sit under whichever PCI root holds them)."""
    found = []
    for entry in glob.glob("/sys/bus/pci/devices/*"):
        try:
            with open(os.path.join(entry, "vendor")) as f:
                if f.read().strip() != _NVIDIA_VENDOR:
                    continue
        except OSError:
            continue
        found.append(os.path.realpath(entry))
    return found


def _set_no_new_privs_and_pdeathsig() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig, pr_set_no_new_privs = 1, 38
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:  # die with the host
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


def _landlock(read: Sequence[str], write: Sequence[str], devices: Sequence[str], own: str) -> int:
    """Restrict this process (and its future threads and children) to ``read``, ``write``, ``devices``
    and, in ``own`` (its resolved ``/proc`` entry), reading and renaming its own threads."""
    import landlockpy as ll

    abi = ll.abi_version()
    fs = ll.fs_for_abi(abi)
    # no EXECUTE anywhere: shared libraries are mapped with READ_FILE; only execve needs EXECUTE
    read_dir, read_file = ll.AccessFS.READ_FILE | ll.AccessFS.READ_DIR, ll.AccessFS.READ_FILE
    write_all = fs & ~ll.AccessFS.EXECUTE
    device = (ll.AccessFS.READ_FILE | ll.AccessFS.WRITE_FILE) | (fs & ll.AccessFS.IOCTL_DEV if abi >= 5 else 0)
    scopes = ll.Scope.ABSTRACT_UNIX_SOCKET | ll.Scope.SIGNAL
    with ll.Ruleset(scoped=scopes) as ruleset:  # every right this ABI handles, TCP bind/connect included
        for path in read:
            ruleset.allow_path(path, read_dir if os.path.isdir(path) else read_file)
        for path in write:
            ruleset.allow_path(path, write_all)
        for path in devices:
            if os.path.exists(path):
                ruleset.allow_path(path, device | (ll.AccessFS.READ_DIR if os.path.isdir(path) else 0))
        # this process's own thread names (comm): cuInit fails with error 304 where it cannot write them
        rename = ll.AccessFS.WRITE_FILE | (fs & ll.AccessFS.TRUNCATE if abi >= 3 else 0)  # fopen("w") truncates
        for path in (os.path.join(own, "task"), os.path.join(own, "comm")):
            ruleset.allow_path(path, rename)
        ruleset.restrict()
    return abi


def _seccomp() -> None:
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ALLOW)
    flt.set_attr(sc.Attr.CTL_TSYNC, 1)  # every thread, should a library have started one
    for name in _DENIED_SYSCALLS:
        try:
            flt.add_rule(sc.ERRNO(errno.EPERM), name)
        except (OSError, ValueError, RuntimeError):  # not a syscall on this architecture
            continue
    flt.load()


def confine(
    read: Sequence[str], write: Sequence[str], *, landlock: bool = True, seccomp: bool = True
) -> dict[str, Any]:
    """Confine this process (irreversibly); returns what was enforced. Raises ``OSError`` on failure.

    ``landlock=False`` or ``seccomp=False`` leave that layer out (for diagnostics: which layer refuses
    what a library needs).
    """
    _set_no_new_privs_and_pdeathsig()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        with open("/proc/self/oom_score_adj", "w") as f:  # the OOM killer takes a worker, not the host
            f.write("1000")
    except OSError:
        pass
    devices = [*_DEVICES, *(os.path.join("/dev", d) for d in _nvidia_nodes())]
    # before Landlock: finding libseccomp may read files and run ldconfig
    use_seccomp = seccomp and _seccomp_available()
    own = os.path.realpath("/proc/self")  # this process's own /proc entry, resolved here, not in the host
    abi = _landlock([*read, own], write, devices, own) if landlock else 0
    if use_seccomp:
        _seccomp()
    return {"landlock_abi": abi, "seccomp": use_seccomp}


def _nvidia_nodes() -> list[str]:
    try:
        return [n for n in os.listdir("/dev") if n.startswith("nvidia") and n[6:].isdigit()]
    except OSError:
        return []


def cap_address_space(extra_bytes: int) -> int:
    """Let this process map at most ``extra_bytes`` more than it has now; returns the cap."""
    with open("/proc/self/statm") as f:
        now = int(f.read().split()[0]) * resource.getpagesize()
    cap = now + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return cap
