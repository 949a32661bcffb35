"""The ``wasinn`` command line: ``run``, ``plugins``, ``conformance`` and ``new-plugin``.

Flags follow wasmtime and WasmEdge so that what users read in their docs
works here: ``--dir HOST::GUEST`` and ``--dir GUEST:HOST``, ``--env``,
``--nn-preload NAME:ENCODING:TARGET:PATH[:PATH...]``, ``--nn-graph ENCODING::DIR``,
``-S nn``, ``-S nn-graph=ENCODING::DIR``. Host messages go to stderr; stdout
belongs to the guest.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from .. import __version__
from .._config import FALLBACKS, Config
from .._errors import ConfigError, PluginError, WasiNNError
from .._host import Host
from .._plugins._manager import PluginManager
from .._run import GuestError, RunSpec, run_command
from ._newplugin import PluginProject, write_project
from ._parse import (
    UsageError,
    parse_dir,
    parse_env,
    parse_guest_load,
    parse_isolation,
    parse_limits,
    parse_nn_graph,
    parse_nn_preload,
    parse_prefer,
    parse_wasi_option,
)
from ._plugins import list_plugins

__all__ = ["main"]

log = logging.getLogger("wasinn.cli")

EXIT_USAGE = 2
EXIT_FAILURE = 1


def _setup_logging(verbose: int, level: str | None) -> None:
    if level is not None:
        lvl = getattr(logging, level.upper())
    else:
        lvl = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("wasinn: %(levelname)s: %(message)s"))
    root = logging.getLogger("wasinn")
    root.handlers[:] = [handler]
    root.setLevel(lvl)
    root.propagate = False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wasinn", description="A wasi-nn host on wasmtime, with pluggable backends.")
    parser.add_argument("--version", action="version", version=f"wasinn {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    for p, default in ((parser, None), (common, argparse.SUPPRESS)):  # accepted before or after COMMAND
        p.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0 if default is None else default,
            help="more host logging (-v info, -vv debug)",
        )
        p.add_argument(
            "--log-level", choices=["debug", "info", "warning", "error"], default=default, help="host log level"
        )
        p.add_argument("--config", metavar="FILE", default=default, help="embedder config (wasinn.toml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        parents=[common],
        help="run a WASI command module with wasi-nn",
        description="Run a WASI preview1 command module with wasi-nn.",
    )
    run.add_argument(
        "--dir",
        action="append",
        default=[],
        metavar="DIR",
        help="preopen a directory: HOST[::GUEST] (wasmtime) or GUEST:HOST[:readonly] (WasmEdge)",
    )
    run.add_argument(
        "--mapdir", action="append", default=[], metavar="GUEST::HOST", help="legacy wasmtime form of --dir"
    )
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="set a guest environment variable (no value: inherit it from the host)",
    )
    run.add_argument(
        "--nn-preload",
        action="append",
        default=[],
        metavar="NAME:ENCODING:TARGET:PATH[:PATH...]",
        help="preload a named model (WasmEdge syntax; TARGET cpu, gpu, tpu or auto)",
    )
    run.add_argument(
        "--nn-graph",
        action="append",
        default=[],
        metavar="ENCODING::DIR",
        help="preload the model in DIR, named after DIR (wasmtime syntax)",
    )
    run.add_argument(
        "-S",
        "--wasi",
        action="append",
        default=[],
        metavar="OPT[=VAL]",
        help="wasmtime WASI options: nn, nn-graph=ENCODING::DIR, inherit-env",
    )
    run.add_argument(
        "--nn-prefer",
        action="append",
        default=[],
        metavar="ENCODING[:TARGET]=BACKEND[,BACKEND]",
        help="backend preference order for an encoding",
    )
    run.add_argument("--fallback", choices=FALLBACKS, help="GPU/TPU fallback policy (default: strict)")
    run.add_argument("--argv0", help="argv[0] for the guest (default: the module's file name)")
    run.add_argument(
        "--stats",
        action="store_true",
        help="print computes, tensor bytes in and out, and bytes the host copied, on exit (stderr)",
    )
    limits = run.add_argument_group("limits (override [limits] of the config)")
    for flag, metavar, text in [
        ("--max-model-bytes", "SIZE", "largest model a guest may load() (too_large)"),
        ("--max-tensor-bytes", "SIZE", "largest input or output tensor (too_large)"),
        ("--max-graphs", "N", "live graphs per instance (busy)"),
        ("--max-contexts", "N", "live execution contexts per instance (busy)"),
        ("--max-host-memory", "SIZE", "host memory the guest may make the host hold (too_large)"),
        ("--load-timeout", "DURATION", "how long a worker may take to load a model (runtime_error; killed)"),
        ("--compute-timeout", "DURATION", "how long a worker may take for one compute (runtime_error; killed)"),
        ("--worker-memory", "SIZE", "address space a worker process may add to its start-up size"),
        ("--timeout", "DURATION", "wall-clock time the guest may run, e.g. 30s (a trap after)"),
        ("--fuel", "N", "wasm instructions the guest may execute, as wasmtime fuel (a trap after)"),
        ("--max-memory", "SIZE", "the most linear memory the guest may grow to"),
    ]:
        limits.add_argument(flag, metavar=metavar, help=text)
    limits.add_argument(
        "-W",
        "--wasm",
        action="append",
        default=[],
        metavar="OPT=VAL",
        help="wasmtime's -W options: timeout=DURATION, max-memory-size=SIZE, fuel=N",
    )
    limits.add_argument(
        "--isolation",
        metavar="WHICH",
        help="models run in confined worker processes: guest (default: models a guest loads), all, none",
    )
    limits.add_argument(
        "--guest-load",
        metavar="ENCODINGS",
        help="encodings a guest may load() from its own bytes: all (default), none, or a list",
    )
    run.add_argument("module", metavar="MODULE", help="the .wasm module")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for the guest")

    plugins = sub.add_parser(
        "plugins",
        parents=[common],
        help="list installed backend plugins",
        description="List installed plugins, their backends, claims and availability.",
    )
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    conformance = sub.add_parser(
        "conformance",
        add_help=False,
        help="run the wasi-nn conformance suite",
        description="Run the conformance suite (needs wasinn-conformance).",
    )
    conformance.add_argument("args", nargs=argparse.REMAINDER)

    new = sub.add_parser(
        "new-plugin",
        parents=[common],
        help="write a new backend plugin project",
        description="Write wasinn-NAME/: an installable backend plugin project (pyproject with its entry point, "
        "backend module, tests, README, conformance configuration) that passes its tests and the conformance "
        "suite as written, on a stand-in engine (onnx.reference) to replace with your library.",
    )
    new.add_argument("name", metavar="NAME", help="the backend's name (the distribution is wasinn-NAME)")
    new.add_argument(
        "--encoding",
        default="onnx",
        metavar="ENCODING",
        help="the graph encoding the backend is for (default onnx; others start with the ONNX stand-in too)",
    )
    new.add_argument("--output", default=".", metavar="DIR", help="where to create wasinn-NAME/ (default: here)")
    new.add_argument("--force", action="store_true", help="overwrite the project's files if they exist")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wasinn`` command."""
    args, extra = _parser().parse_known_args(argv)
    if args.command == "conformance":
        return _cmd_conformance([*extra, *args.args])
    if extra:
        _parser().error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.verbose, args.log_level)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "new-plugin":
            return _cmd_new_plugin(args)
        return _cmd_plugins(args)
    except UsageError as exc:
        print(f"wasinn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PluginError as exc:
        if exc.__cause__ is not None:  # strict mode: where the plugin broke
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"wasinn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"wasinn: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (WasiNNError, GuestError) as exc:
        print(f"wasinn: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # `wasinn plugins | head`
        sys.stderr.close()
        return EXIT_FAILURE


def _cmd_conformance(argv: list[str]) -> int:
    try:
        from wasinn_conformance.cli import main as conformance_main
    except ImportError:
        print(
            "wasinn: error: the conformance suite (wasinn-conformance) is not installed; it is not on a package "
            "index: from a wasinn checkout, pip install -e conformance; or from wheels built there with `make "
            "dist`, pip install --find-links dist wasinn-conformance",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return int(conformance_main(argv))


def _load_config(args: argparse.Namespace) -> Config:
    return Config.from_file(args.config) if args.config else Config(source="<command line>")


def _cmd_run(args: argparse.Namespace) -> int:
    config = _load_config(args)
    dirs = [parse_dir(d) for d in args.dir] + [parse_dir(d, legacy_mapdir=True) for d in args.mapdir]
    env = [parse_env(e, os.environ) for e in args.env]
    models = [parse_nn_preload(p) for p in args.nn_preload] + [parse_nn_graph(g) for g in args.nn_graph]
    for opt in args.wasi:
        for key, value in parse_wasi_option(opt):
            if key == "nn-graph":
                models.append(parse_nn_graph(value, flag="-S nn-graph"))
            elif key == "inherit-env" and value in ("", "y", "yes", "true"):
                env = [(k, v) for k, v in os.environ.items()] + env
    config = replace(config, limits=parse_limits(args, config.limits))
    if args.guest_load is not None:
        config = replace(config, guest_load=parse_guest_load(args.guest_load))
    if args.isolation is not None:
        config = replace(config, isolation=parse_isolation(args.isolation, config.isolation))
    prefs = dict(config.preferences)
    for p in args.nn_prefer:
        key, names = parse_prefer(p)
        prefs[key] = names
    config = replace(config.with_models(*models), preferences=prefs, fallback=args.fallback or config.fallback)
    module = Path(args.module)
    if not module.is_file():
        raise UsageError(f"MODULE: no such file: {module}")
    host = Host(config)
    try:
        host.preload()
        return run_command(host, RunSpec(module, tuple(args.args), tuple(dirs), tuple(env), args.argv0))
    finally:
        if args.stats:
            print(f"wasinn: stats: {host.stats.describe()}", file=sys.stderr)
        host.close()


def _cmd_plugins(args: argparse.Namespace) -> int:
    return list_plugins(PluginManager(), _load_config(args), as_json=args.json, version=__version__)


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    project = PluginProject.parse(args.name, args.encoding)
    folder = write_project(project, Path(args.output), force=args.force)
    print(f"wrote {folder}/ ({project.dist}: backend {project.name!r} for {project.encoding.value} models)")
    print("next, with wasinn-core and wasinn-conformance installed (from a wasinn checkout or its `make dist` wheels):")
    print(f"  cd {folder} && pip install -e '.[test]'")
    print("  wasinn plugins && pytest")
    print(f"  wasinn conformance --backend {project.name} --expectations conformance.toml --json report.json")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
