"""Component-model values in wasmtime's C API, converted for the few types wasi:nn uses.

wasmtime-py converts ``list<u8>`` one ``wasmtime_component_val_t`` at a time in Python (about 0.9 s
per MiB). Each value is a fixed-size tagged union, so a list of them is a regular array: these
helpers read and write the tag and payload columns of that array with numpy instead. The ``take_*``
functions own the value they read (a host function owns its arguments) and free it; the ``put_*``
functions fill a value whose ownership passes to wasmtime.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from wasmtime import WasmtimeError
from wasmtime import _ffi as ffi

__all__ = ["Trap"]

Val = Any  # a wasmtime_component_val_t (ctypes structure)

VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
PAYLOAD = ffi.wasmtime_component_val_t.of.offset
_U8 = ffi.WASMTIME_COMPONENT_U8.value
_U32 = ffi.WASMTIME_COMPONENT_U32.value
_BOOL = ffi.WASMTIME_COMPONENT_BOOL.value
_STRING = ffi.WASMTIME_COMPONENT_STRING.value
_LIST = ffi.WASMTIME_COMPONENT_LIST.value
_TUPLE = ffi.WASMTIME_COMPONENT_TUPLE.value
_ENUM = ffi.WASMTIME_COMPONENT_ENUM.value
_RESULT = ffi.WASMTIME_COMPONENT_RESULT.value
_RESOURCE = ffi.WASMTIME_COMPONENT_RESOURCE.value


class Trap(Exception):
    """Raised by a host function to trap the guest (for what no wasi:nn result can express)."""


def _check_kind(val: Val, kind: int, what: str) -> None:
    if val.kind != kind:
        raise Trap(f"wasinn: {what}: unexpected component value kind {val.kind}")


def _columns(data: Any, n: int) -> npt.NDArray[np.uint8]:
    """The ``n`` values at ``data`` as an ``n × VAL_SIZE`` byte array (a view: no copy)."""
    address = ctypes.cast(data, ctypes.c_void_p).value
    buffer = memoryview((ctypes.c_uint8 * (n * VAL_SIZE)).from_address(address or 0)).cast("B")
    return np.frombuffer(buffer, np.uint8).reshape(n, VAL_SIZE)


def _forget(val: Val) -> None:
    """Mark a value as moved out, so that freeing its container does not free it again."""
    val.kind = _BOOL
    val.of.boolean = False


def take_bytes(val: Val) -> npt.NDArray[np.uint8]:
    """A ``list<u8>`` as a new byte array."""
    _check_kind(val, _LIST, "list<u8>")
    n = val.of.list.size
    data = _columns(val.of.list.data, n)[:, PAYLOAD].copy() if n else np.empty(0, np.uint8)
    ffi.wasmtime_component_vallist_delete(ctypes.byref(val.of.list))
    return data


def take_u32s(val: Val) -> tuple[int, ...]:
    """A ``list<u32>``."""
    _check_kind(val, _LIST, "list<u32>")
    n = val.of.list.size
    values: tuple[int, ...] = ()
    if n:
        payload = _columns(val.of.list.data, n)[:, PAYLOAD : PAYLOAD + 4].copy()
        values = tuple(int(v) for v in payload.view("<u4").ravel())
    ffi.wasmtime_component_vallist_delete(ctypes.byref(val.of.list))
    return values


def take_string(val: Val) -> str:
    _check_kind(val, _STRING, "string")
    text = ffi.to_bytes(val.of.string).decode("utf-8", errors="replace")
    ffi.wasm_byte_vec_delete(ctypes.byref(val.of.string))
    return text


def take_enum(val: Val) -> str:
    _check_kind(val, _ENUM, "enum")
    name = ffi.to_str(val.of.enumeration)
    ffi.wasm_byte_vec_delete(ctypes.byref(val.of.enumeration))
    return name


def take_bytes_list(val: Val) -> list[npt.NDArray[np.uint8]]:
    """A ``list<list<u8>>`` (graph builders)."""
    _check_kind(val, _LIST, "list<list<u8>>")
    items = []
    try:
        for i in range(val.of.list.size):
            element = val.of.list.data[i]
            items.append(take_bytes(element))
            _forget(element)
    finally:
        ffi.wasmtime_component_vallist_delete(ctypes.byref(val.of.list))
    return items


def take_resource(context: Any, val: Val) -> int:
    """The host representation of an own or borrowed host resource (an own handle is consumed)."""
    _check_kind(val, _RESOURCE, "resource")
    resource = ffi.take_pointer(val.of, "resource")
    host = ctypes.POINTER(ffi.wasmtime_component_resource_host_t)()
    try:
        error = ffi.wasmtime_component_resource_any_to_host(context, resource, ctypes.byref(host))
        if error:
            raise Trap(f"wasinn: not a host resource: {WasmtimeError._from_ptr(error)}")
        try:
            return int(ffi.wasmtime_component_resource_host_rep(host))
        finally:
            ffi.wasmtime_component_resource_host_delete(host)
    finally:
        ffi.wasmtime_component_resource_any_delete(resource)


def take_named_resources(context: Any, val: Val) -> list[tuple[str, int]]:
    """A ``list<tuple<string, own<R>>>``; every handle is consumed, even when a later one fails."""
    _check_kind(val, _LIST, "list<tuple<string, resource>>")
    items = []
    try:
        for i in range(val.of.list.size):
            element = val.of.list.data[i]
            _check_kind(element, _TUPLE, "tuple<string, resource>")
            pair = element.of.tuple
            name = take_string(pair.data[0])
            _forget(pair.data[0])
            rep = take_resource(context, pair.data[1])
            _forget(pair.data[1])
            ffi.wasmtime_component_valtuple_delete(ctypes.byref(element.of.tuple))
            _forget(element)
            items.append((name, rep))
    finally:
        ffi.wasmtime_component_vallist_delete(ctypes.byref(val.of.list))
    return items


def put_bytes(val: Val, data: npt.NDArray[Any]) -> None:
    """Fill ``val`` with a ``list<u8>`` of ``data``'s bytes."""
    flat = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(raw, flat.size)
    if flat.size:
        columns = _columns(raw.data, flat.size)
        columns[:, 0] = _U8
        columns[:, PAYLOAD] = flat
    val.kind = _LIST
    val.of.list = raw


def put_u32s(val: Val, values: Sequence[int]) -> None:
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(raw, len(values))
    if values:
        columns = _columns(raw.data, len(values))
        columns[:, 0] = _U32
        columns[:, PAYLOAD : PAYLOAD + 4] = np.asarray(values, "<u4").view(np.uint8).reshape(-1, 4)
    val.kind = _LIST
    val.of.list = raw


def put_enum(val: Val, name: str) -> None:
    val.kind = _ENUM
    val.of.enumeration = ffi.str_to_capi(name)


def put_string(val: Val, text: str) -> None:
    val.kind = _STRING
    val.of.string = ffi.str_to_capi(text)


def put_own(context: Any, val: Val, rep: int, type_id: int) -> None:
    """Fill ``val`` with a new owned handle to the host resource ``rep`` of type ``type_id``."""
    host = ffi.wasmtime_component_resource_host_new(True, rep, type_id)
    resource = ctypes.POINTER(ffi.wasmtime_component_resource_any_t)()
    try:
        error = ffi.wasmtime_component_resource_host_to_any(context, host, ctypes.byref(resource))
        if error:
            raise Trap(f"wasinn: cannot create a resource: {WasmtimeError._from_ptr(error)}")
    finally:
        ffi.wasmtime_component_resource_host_delete(host)
    val.kind = _RESOURCE
    val.of.resource = resource


def put_result(val: Val, ok: bool, fill: Callable[[Val], None] | None = None) -> None:
    """Fill ``val`` with ``result`` ``ok`` or ``err``, its payload written by ``fill`` (none if ``None``)."""
    payload = None
    if fill is not None:
        raw = ffi.wasmtime_component_val_t()
        fill(raw)
        payload = ffi.wasmtime_component_val_new(ctypes.byref(raw))
    val.kind = _RESULT
    val.of.result.is_ok = ok
    val.of.result.val = payload


def put_named_resources(context: Any, val: Val, items: Sequence[tuple[str, int]], type_id: int) -> None:
    """Fill ``val`` with a ``list<tuple<string, own<R>>>``."""
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(raw, len(items))
    for i, (name, rep) in enumerate(items):
        pair = ffi.wasmtime_component_valtuple_t()
        ffi.wasmtime_component_valtuple_new_uninit(pair, 2)
        put_string(pair.data[0], name)
        put_own(context, pair.data[1], rep, type_id)
        element = raw.data[i]
        element.kind = _TUPLE
        element.of.tuple = pair
    val.kind = _LIST
    val.of.list = raw


def error_pointer(message: str) -> int:
    """A new ``wasmtime_error_t`` (as an address), which traps the guest when a host function returns it."""
    error = ffi.wasmtime_error_new(ctypes.create_string_buffer(message.encode("utf-8")))
    return ctypes.cast(error, ctypes.c_void_p).value or 0
