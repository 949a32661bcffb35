"""The operator screen: PyTorch programs that reach files, processes or the network are refused.

A TorchScript archive is a program, and an ExportedProgram graph names operators; both can call any
operator registered in the process. Before a program is run, every function of a TorchScript
compilation unit (methods of every module and class, free functions) and every node of an exported
graph (subgraphs included) is checked against an allowlist of operator namespaces and a list of
operators that touch the host. A TorchScript archive whose code defines ``__setstate__`` is refused
before it is loaded at all, since torch runs that method while loading.

What a screen cannot promise: it knows operators by name, so it cannot stop a bug inside an allowed
operator (a memory-safety flaw in a kernel, an allocation of any size, a loop that never ends).
Those are what running guest models in a confined worker process is for.
"""

from __future__ import annotations

import dataclasses
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from wasinn_core import InvalidArgument

__all__ = [
    "ALLOWED_NAMESPACES",
    "DENIED_OPERATORS",
    "ScreenRefused",
    "check_torchscript_archive",
    "screen_exported",
    "screen_torchscript",
    "walk_dataclasses",
]


class ScreenRefused(InvalidArgument):
    """A program that calls an operator reaching outside the model (``invalid_argument``)."""


#: Operator namespaces a model may use: tensor math and the interpreter's own primitives.
ALLOWED_NAMESPACES = frozenset(
    {"aten", "prim", "prims", "quantized", "_quantized", "mkldnn", "mkldnn_prepacked", "onednn", "mkl",
     "sparse", "rngprims", "higher_order", "quantization"}
)  # fmt: skip

#: Operators of allowed namespaces that reach the host, with what they do.
DENIED_OPERATORS = {
    "aten::from_file": "reads a host file",
    "aten::save": "writes a host file",
    "aten::_print": "writes to the host's stdout",
    "prim::Print": "writes to the host's stdout",
    "prim::rpc_async": "calls another process over RPC",
    "prim::rpc_sync": "calls another process over RPC",
    "prim::rpc_remote": "calls another process over RPC",
}

#: What the refused namespaces that exist in torch do, for the message.
_NAMESPACE_REASONS = {
    "c10d": "network collectives",
    "_c10d_functional": "network collectives",
    "_c10d_functional_autograd": "network collectives",
    "symm_mem": "memory shared with other processes",
    "debugprims": "reads tensors from files",
    "profiler": "the profiler",
    "static_runtime": "interpreter internals",
    "inductor": "compiler internals",
    "inductor_prims": "compiler internals",
}

#: TorchScript custom classes (``torch.classes.NS``) a model may create: packed weights of quantized
#: and mobile models. Others (``dist_c10d``, ``dist_rpc``) reach processes and the network.
ALLOWED_CLASS_NAMESPACES = frozenset({"quantized", "xnnpack", "onednn", "mkldnn"})

_SETSTATE = re.compile(rb"\b__setstate__\b")
_CUSTOM_CLASS = re.compile(r"__torch__\.torch\.classes\.(\w+)\.(\w+)")


def _verdict(op: str) -> str | None:
    """Why ``ns::name`` is refused, or ``None``."""
    namespace = op.partition("::")[0]
    if namespace not in ALLOWED_NAMESPACES:
        what = _NAMESPACE_REASONS.get(namespace, "not an operator namespace of tensor math")
        return f"namespace {namespace!r}: {what}"
    return DENIED_OPERATORS.get(op)


def _refuse(op: str, why: str, where: str) -> ScreenRefused:
    return ScreenRefused(
        f"the model calls {op} ({why}) in {where}; wasinn refuses PyTorch programs that reach files, "
        "processes or the network"
    )


def check_torchscript_archive(data: bytes | memoryview) -> None:
    """Refuse, before loading, an archive whose code torch would run while loading it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if len(names) != len(set(names)):
                raise ScreenRefused("the TorchScript archive has duplicate entries (readers would disagree on them)")
            for name in names:
                if "/code/" in name and name.endswith(".py") and _SETSTATE.search(archive.read(name)):
                    raise ScreenRefused(
                        f"the TorchScript archive defines __setstate__ ({name}), which torch runs while loading; "
                        "wasinn refuses archives that run code before they can be screened"
                    )
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InvalidArgument(f"not a readable TorchScript archive: {exc}") from None


def _nodes(blocks: Iterable[Any]) -> Iterator[Any]:
    stack = [iter(blocks)]
    while stack:
        for node in stack[-1]:
            yield node
            for block in node.blocks():
                stack.append(iter(block.nodes()))
            break
        else:
            stack.pop()


def screen_torchscript(compilation_unit: Any) -> None:
    """Check every function of a TorchScript compilation unit (modules, classes, free functions)."""
    for function in compilation_unit.get_functions():
        where = function.qualified_name
        for node in _nodes(function.graph.nodes()):
            op = node.kind()
            why = _verdict(op)
            if why is not None:
                raise _refuse(op, why, where)
            for output in node.outputs():
                match = _CUSTOM_CLASS.search(output.type().annotation_str)
                if match and match.group(1) not in ALLOWED_CLASS_NAMESPACES:
                    raise _refuse(f"torch.classes.{match.group(1)}.{match.group(2)}", "a custom class", where)


_EXPORTED_TARGET = re.compile(r"^torch\.ops\.(\w+)\.(\w+)(?:\.\w+)?$")
_SYM_TARGET = re.compile(r"^(?:torch\.(?:sym_\w+|_sym_\w+)|_operator\.\w+|math\.\w+)$")


def screen_exported(serialized: Any, schema: Any) -> None:
    """Check every node target of a serialized ExportedProgram (subgraphs included) before it is built."""
    for node in walk_dataclasses(serialized):
        if not isinstance(node, schema.Node):
            continue
        target = node.target
        match = _EXPORTED_TARGET.match(target)
        if match is not None:
            op = f"{match.group(1)}::{match.group(2)}"
            why = _verdict(op)
            if why is not None:
                raise _refuse(op, why, "the exported graph")
        elif not _SYM_TARGET.match(target):
            raise _refuse(target, "not an operator of tensor math", "the exported graph")


def walk_dataclasses(value: Any) -> Iterator[Any]:
    """Every dataclass instance in a deserialized schema tree (torch's export schema is dataclasses)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            yield item
            for f in dataclasses.fields(item):
                try:
                    stack.append(getattr(item, f.name))
                except AttributeError:  # a union's unset alternatives
                    continue
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
