"""``python -m wasinn_core``: the ``wasinn`` command."""

import sys

from ._cli import main

sys.exit(main())
