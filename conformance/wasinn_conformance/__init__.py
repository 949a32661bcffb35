"""wasinn-conformance: a conformance suite for wasi-nn backends and runtimes.

Run it with pytest (``pytest --pyargs wasinn_conformance --wasinn-backend NAME``) or with
``wasinn conformance --backend NAME``; see :mod:`wasinn_conformance.cli`. From a backend's own tests, in
process: :func:`run_conformance` (see :mod:`wasinn_conformance.runner`).
"""

from .cases import ABI_CASES, FAMILIES, Case
from .report import SUITE_VERSION
from .runner import ConformanceRun, run_conformance

__all__ = ["ABI_CASES", "FAMILIES", "SUITE_VERSION", "Case", "ConformanceRun", "__version__", "run_conformance"]
__version__ = SUITE_VERSION
