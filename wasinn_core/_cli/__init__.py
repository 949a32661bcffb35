"""The ``wasinn`` command line: argument parsing, ``wasinn plugins`` and ``wasinn new-plugin``."""

from ._main import main

__all__ = ["main"]
