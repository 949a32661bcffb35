"""Process isolation: backends in confined worker processes, behind the ordinary backend API.

The registry places each graph (:class:`Isolator`): in the host process, or in a worker process of
its own, forked from a per-backend zygote and confined by the kernel before it reads a model byte.
See ``docs/reliability.md`` for what is confined, how, and what remains trusted.
"""

from ._confine import Confinement, probe
from ._policy import Isolator, Placement, factory_path
from ._proxy import Deadlines, ProcessBackend, ProcessContext, ProcessGraph

__all__ = [
    "Confinement",
    "Deadlines",
    "Isolator",
    "Placement",
    "ProcessBackend",
    "ProcessContext",
    "ProcessGraph",
    "factory_path",
    "probe",
]
