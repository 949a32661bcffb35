"""The pluggy hook specifications of wasinn (project name ``wasinn``).

A plugin is a module (or object) with functions marked :data:`hookimpl`,
registered under the entry-point group ``wasinn``::

    # pyproject.toml
    [project.entry-points.wasinn]
    mybackend = "wasinn_mybackend"

    # wasinn_mybackend/__init__.py
    from wasinn_core import hookimpl

    @hookimpl
    def wasinn_backends():
        return [BackendSpec(name="mybackend", ...)]

Core code never calls ``pm.hook.*`` itself: it goes through the typed
:class:`~wasinn_core.PluginManager` facade.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .._backend import BackendSpec
    from .._types import GraphEncoding

__all__ = ["hookimpl", "hookspec"]

PROJECT = "wasinn"

#: Marks a hook specification (used by wasinn itself).
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a plugin's hook implementation.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def wasinn_backends() -> Iterable[BackendSpec]:
    """Return the backends this plugin provides.

    Called once per plugin manager, for each plugin on its own, so one broken
    plugin cannot hide the others. Each record must be a
    :class:`~wasinn_core.BackendSpec` with a unique ``name``.

    .. versionadded:: 1.0
    """
    raise NotImplementedError  # pragma: no cover - specification only


@hookspec(firstresult=True)
def wasinn_detect_encoding(builders: Sequence[memoryview]) -> GraphEncoding | None:
    """Guess the encoding of a graph loaded with ``autodetect``.

    Return the :class:`~wasinn_core.GraphEncoding` of ``builders``, or ``None``
    if this plugin does not recognise them. Stops at the first non-``None``
    result; wasinn's built-in sniffers (ONNX, TorchScript and ExportedProgram
    archives, OpenVINO IR, TFLite, GGUF) run last.

    .. versionadded:: 1.0
    """
    raise NotImplementedError  # pragma: no cover - specification only
