"""Linking the ``wasi_ephemeral_nn`` host functions into wasmtime, by one of two paths.

``public``: wasmtime-py's ``Func`` with ``access_caller``; every call boxes its
arguments in ``Val`` objects (about 10 µs per call). ``fast``: wasmtime's
unchecked C callbacks through wasmtime-py's ffi layer, reading the raw argument
slots directly (about 0.5 µs per call). The fast path uses wasmtime-py's
private ``_ffi`` module, so it is enabled only for the wasmtime-py versions it
was written against (:data:`FAST_PATH_VERSIONS`); elsewhere ``auto`` falls back
to the public path. ``WASINN_ABI_PATH=public|fast|auto`` overrides the choice;
the test suite runs on both paths.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from collections.abc import Callable
from typing import Any, Literal

import wasmtime

from .._session import Session
from ._memory import GuestMemory
from ._witx import _SIGNATURES, MODULE, WitxBinding

__all__ = ["FAST_PATH_VERSIONS", "add_to_linker", "fast_path_available"]

#: wasmtime-py major versions whose private ffi layer the fast path was written against.
FAST_PATH_VERSIONS = ("50.",)
_MASK = 0xFFFF_FFFF
AbiPath = Literal["auto", "fast", "public"]


def fast_path_available() -> bool:
    """Whether this wasmtime-py has the unchecked-callback API the fast path needs."""
    version = getattr(wasmtime, "__version__", "") or _distribution_version()
    try:
        from wasmtime import _ffi as ffi
    except ImportError:  # pragma: no cover - a wasmtime-py without the module
        return False
    needed = ("wasmtime_func_new_unchecked", "wasmtime_func_unchecked_callback_t", "wasmtime_caller_context")
    return version.startswith(FAST_PATH_VERSIONS) and all(hasattr(ffi, n) for n in needed)


def _distribution_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("wasmtime")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return ""


class _ContextRef:
    """A store-like holding the raw context of the current call (what GuestMemory.view needs)."""

    __slots__ = ("ptr",)

    def __init__(self) -> None:
        self.ptr: Any = None

    def _context(self) -> Any:
        return self.ptr


def _public_func(store: wasmtime.Store, host: Callable[..., int], arity: int) -> wasmtime.Func:
    def call(caller: wasmtime.Caller, *args: int) -> int:
        return host(caller, *[a & _MASK for a in args])

    ty = wasmtime.FuncType([wasmtime.ValType.i32()] * arity, [wasmtime.ValType.i32()])
    return wasmtime.Func(store, ty, call, access_caller=True)


def _fast_func(
    store: wasmtime.Store, host: Callable[..., int], arity: int, memory: GuestMemory, keep: list[Any]
) -> wasmtime.Func:
    from wasmtime import _ffi as ffi

    ref = _ContextRef()
    caller_context = ffi.wasmtime_caller_context

    def store_like(caller: Any) -> Any:
        if memory.bound:
            ref.ptr = caller_context(caller)
            return ref
        return wasmtime.Caller(caller)  # the memory is looked up through the caller

    # One callback per arity, reading the raw argument slots directly: this is the hot path.
    if arity == 1:  # handle-only calls (compute, unload, ...) never touch memory

        def raw(env: Any, caller: Any, vals: Any, nvals: int) -> int:
            try:
                vals[0].i32 = host(None, vals[0].i32 & _MASK)
                return 0
            except BaseException as exc:
                return _trap(exc)

    elif arity == 3:

        def raw(env: Any, caller: Any, vals: Any, nvals: int) -> int:
            try:
                vals[0].i32 = host(store_like(caller), vals[0].i32 & _MASK, vals[1].i32 & _MASK, vals[2].i32 & _MASK)
                return 0
            except BaseException as exc:
                return _trap(exc)

    else:

        def raw(env: Any, caller: Any, vals: Any, nvals: int) -> int:
            try:
                vals[0].i32 = host(store_like(caller), *[vals[i].i32 & _MASK for i in range(arity)])
                return 0
            except BaseException as exc:
                return _trap(exc)

    callback = ffi.wasmtime_func_unchecked_callback_t(raw)
    keep.append(callback)  # C holds only a pointer: keep the Python callback alive with the store
    ty = wasmtime.FuncType([wasmtime.ValType.i32()] * arity, [wasmtime.ValType.i32()])
    keep.append(ty)
    func = ffi.wasmtime_func_t()
    no_finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(0)
    ffi.wasmtime_func_new_unchecked(store._context(), ty.ptr(), callback, None, no_finalizer, ctypes.byref(func))
    return wasmtime.Func._from_raw(func)


def _trap(exc: BaseException) -> int:
    """Host functions never raise; this is Ctrl-C and the like: a trap, not a silent wrong result."""
    from wasmtime import _ffi as ffi

    message = f"wasi-nn host call interrupted: {type(exc).__name__}".encode()
    trap = ffi.wasmtime_trap_new(message, len(message))
    return ctypes.cast(trap, ctypes.c_void_p).value or 0


def add_to_linker(
    linker: wasmtime.Linker,
    store: wasmtime.Store,
    session: Session,
    memory: wasmtime.Memory | None = None,
    *,
    binding_class: type[WitxBinding] = WitxBinding,
    path: AbiPath | None = None,
) -> WitxBinding:
    """Define every ``wasi_ephemeral_nn`` function in ``linker`` for ``store``.

    The functions are bound to ``store`` (use this linker with this store).
    ``session`` is released when the store is garbage-collected; call
    ``session.close()`` to release it earlier. ``binding_class`` substitutes a
    subclass of :class:`WitxBinding` (the conformance suite uses it to build
    deliberately broken hosts). ``path`` picks the calling path (default:
    ``WASINN_ABI_PATH``, else ``auto``); the chosen one is in ``binding.path``.
    """
    chosen = path or os.environ.get("WASINN_ABI_PATH", "auto")
    if chosen not in ("auto", "fast", "public"):
        raise ValueError(f"WASINN_ABI_PATH={chosen!r}: allowed: auto, fast, public")
    fast = chosen == "fast" or (chosen == "auto" and fast_path_available())
    if fast and not fast_path_available():
        raise RuntimeError(f"the fast ABI path needs wasmtime-py {', '.join(FAST_PATH_VERSIONS)}x")
    binding = binding_class(session, GuestMemory(memory))
    binding.path = "fast" if fast else "public"
    keep: list[Any] = []
    for name, params in _SIGNATURES.items():
        host = binding.host_function(name)
        if fast:
            func = _fast_func(store, host, len(params), binding.memory, keep)
        else:
            func = _public_func(store, host, len(params))
        linker.define(store, MODULE, name, func)
    weakref.finalize(store, _release, session, keep)
    return binding


def _release(session: Session, keep: list[Any]) -> None:
    session.close()
    keep.clear()
