"""``wasinn plugins``: every plugin with its hooks, and each backend's claims, capabilities and availability."""

from __future__ import annotations

import json
import sys
from typing import Any

from .._backend import BackendSpec
from .._config import Config
from .._isolation import Isolator
from .._plugins._manager import PluginInfo, PluginManager
from .._types import ExecutionTarget, TensorType

__all__ = ["INSTALL_HINT", "list_plugins"]

#: Where wasinn's own distributions come from: they are not on a package index.
INSTALL_HINT = (
    "from a wasinn checkout: pip install -e plugins/onnx (or plugins/pytorch, plugins/openvino); "
    "from wheels built there with `make dist`: pip install --find-links dist wasinn-onnx"
)


def _availability(spec: BackendSpec, options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for target in ExecutionTarget:
        if target not in spec.targets:
            out[target.value] = {"available": False, "device": "", "reason": "not claimed"}
            continue
        try:
            av = spec.probe(target, options)
            out[target.value] = {"available": av.available, "device": av.device, "reason": av.reason}
        except Exception as exc:  # a probe must not break the listing
            out[target.value] = {"available": False, "device": "", "reason": f"probe failed: {exc}"}
    return out


def _isolation(spec: BackendSpec, isolator: Isolator) -> dict[str, dict[str, str]]:
    """Where a guest's and a named model of ``spec`` run, and the setting that decides it."""
    out = {}
    for origin, guest in (("guest", True), ("named", False)):
        placement = isolator.placement(spec, None, guest)
        out[origin] = {"mode": placement.mode, "reason": placement.reason}
    return out


def backend_row(spec: BackendSpec, config: Config, isolator: Isolator | None = None) -> dict[str, Any]:
    """One backend as ``wasinn plugins --json`` shows it."""
    options = spec.defaults() | dict(config.backends.get(spec.name, {}))
    isolator = isolator or Isolator(config)
    return {
        "name": spec.name,
        "library": spec.library,
        "library_version": spec.library_version,
        "api_version": "{}.{}".format(*spec.api_version),
        "description": spec.description,
        "encodings": {e.value: p for e, p in spec.encodings.items()},
        "capabilities": {
            "dtypes": [t.value for t in TensorType if t in spec.capabilities.dtypes],
            "features": sorted(spec.capabilities.features),
        },
        "options": [
            {"name": o.name, "type": o.type.__name__, "default": o.default, "help": o.help, "guest": o.guest}
            for o in spec.options
        ],
        "targets": _availability(spec, options),
        "isolation": _isolation(spec, isolator),
    }


def plugin_row(info: PluginInfo, config: Config, isolator: Isolator | None = None) -> dict[str, Any]:
    """One plugin as ``wasinn plugins --json`` shows it."""
    return {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "module": info.module,
        "status": info.status,
        "error": info.error,
        "hooks": list(info.hooks),
        "backends": [backend_row(spec, config, isolator) for spec in info.backends],
    }


def backend_lines(b: dict[str, Any]) -> list[str]:
    """The lines under ``backend NAME`` (one fact per line, so another fact is one more line)."""
    lines = []
    if b["description"]:
        lines.append(f"description: {b['description']}")
    lines.append("encodings: " + ", ".join(f"{e} (preference {p})" for e, p in b["encodings"].items()))
    caps = b["capabilities"]
    lines.append(
        f"capabilities: dtypes {', '.join(caps['dtypes']) or 'none'}; features {', '.join(caps['features']) or 'none'}"
    )
    if b["options"]:
        options = (f"{o['name']} ({o['type']}, default {o['default']!r})" for o in b["options"])
        lines.append("options: " + ", ".join(options))
    for target, av in b["targets"].items():
        if av["reason"] != "not claimed":
            state = f"available on {av['device']}" if av["available"] else f"unavailable: {av['reason']}"
            lines.append(f"{target}: {state}")
    where = {"process": "a worker process", "none": "the host process"}
    for origin, placed in b["isolation"].items():
        lines.append(f"{origin} models: in {where[placed['mode']]} ({placed['reason']})")
    return lines


def plugin_lines(row: dict[str, Any]) -> list[str]:
    """A plugin's paragraph of ``wasinn plugins``."""
    dist = f"{row['distribution']} {row['version']}" if row["distribution"] else row["module"]
    lines = [f"{row['name']} ({dist}): {row['status']}" + (f": {row['error']}" if row["error"] else "")]
    if row["hooks"]:
        lines.append(f"  hooks: {', '.join(row['hooks'])}")
    for b in row["backends"]:
        lines.append(f"  backend {b['name']}: {b['library']} {b['library_version']} (plugin API {b['api_version']})")
        lines += [f"    {line}" for line in backend_lines(b)]
    return lines


def list_plugins(pm: PluginManager, config: Config, *, as_json: bool, version: str) -> int:
    """Print the listing; 1 when a plugin failed (it is skipped, but something is broken), else 0."""
    isolator = Isolator(config)
    rows = [plugin_row(info, config, isolator) for info in pm.plugins()]
    failed = [r["name"] for r in rows if r["status"] == "failed"]
    confinement = isolator.describe_confinement()
    if as_json:
        print(json.dumps({"wasinn": version, "confinement": confinement, "plugins": rows}, indent=2, default=repr))
    else:
        print(f"wasinn {version}")
        print(f"worker confinement: {confinement}")
        for row in rows:
            if row["status"] != "builtin":
                print("\n" + "\n".join(plugin_lines(row)))
        if not any(r["status"] != "builtin" for r in rows):
            print(f"\nno backend plugin installed; install one {INSTALL_HINT}")
    if failed:
        print(
            f"wasinn: error: {len(failed)} plugin(s) failed and are skipped: {', '.join(failed)} "
            "(the reason is above; WASINN_STRICT_PLUGINS=1 makes it fatal and shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0
