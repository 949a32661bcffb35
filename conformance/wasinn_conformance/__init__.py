"""wasinn-conformance: a conformance suite for wasi-nn backends and runtimes.

Run it with pytest (``pytest --pyargs wasinn_conformance --wasinn-backend NAME``) or with
``wasinn conformance --backend NAME``; see :mod:`wasinn_conformance.cli`.
"""

from .cases import ABI_CASES, FAMILIES, Case
from .report import SUITE_VERSION

__all__ = ["ABI_CASES", "FAMILIES", "SUITE_VERSION", "Case", "__version__"]
__version__ = SUITE_VERSION
