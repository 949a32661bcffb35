"""What pluggy lets pass silently: hook functions without ``@hookimpl``, and hooks that do not exist.

pluggy registers a plugin whatever it contains: a ``wasinn_backends`` function
that lacks the marker is never called, and a marked ``wasinn_backend`` (a typo)
becomes a hook nobody calls. Both leave a plugin "active" with no backends.
These checks turn them into a failure that says the fix.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable

__all__ = ["hook_problems", "implemented_hooks"]

#: The prefix every wasinn hook has; an unmarked function with it is taken for a hook that lost its marker.
PREFIX = "wasinn_"


def _routine(plugin: object, name: str) -> bool:
    try:
        value = inspect.getattr_static(plugin, name)
    except AttributeError:
        return False
    if isinstance(value, staticmethod | classmethod):
        return True
    return inspect.isroutine(value)


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def implemented_hooks(plugin: object, opts_of: Callable[[object, str], object | None]) -> list[str]:
    """The hook names ``plugin`` implements (marked with ``@hookimpl``), sorted."""
    found = set()
    for name in dir(plugin):
        opts = opts_of(plugin, name)
        if isinstance(opts, dict):
            found.add(opts.get("specname") or name)
    return sorted(found)


def hook_problems(plugin: object, known: Iterable[str], opts_of: Callable[[object, str], object | None]) -> list[str]:
    """Why ``plugin`` would silently do nothing, each with the fix; empty when it is fine.

    :param known: the hook names wasinn specifies.
    :param opts_of: pluggy's ``parse_hookimpl_opts``: the ``@hookimpl`` options of an attribute, or ``None``.
    """
    hooks = sorted(known)
    listing = ", ".join(hooks)
    problems = []
    marked = 0
    for name in dir(plugin):
        opts = opts_of(plugin, name)
        if isinstance(opts, dict):
            marked += 1
            hook = opts.get("specname") or name
            if hook not in hooks:
                problems.append(
                    f"{name} is marked @hookimpl but wasinn has no hook {hook!r}{_did_you_mean(hook, hooks)}; "
                    f"wasinn's hooks: {listing}"
                )
        elif name.startswith(PREFIX) and _routine(plugin, name):
            if name in hooks:
                problems.append(
                    f"{name}() is not marked @hookimpl, so wasinn never calls it: decorate it with @hookimpl "
                    "(from wasinn_core import hookimpl)"
                )
            else:
                problems.append(
                    f"{name}() looks like a hook, but wasinn has no hook {name!r}{_did_you_mean(name, hooks)} "
                    f"and it is not marked @hookimpl; wasinn's hooks: {listing}"
                )
    if not marked and not problems:
        problems.append(
            f"implements no wasinn hook: mark its hook functions with @hookimpl (from wasinn_core import hookimpl); "
            f"wasinn's hooks: {listing}"
        )
    return problems
