"""wasinn: a wasi-nn host on wasmtime, with backends as pluggy plugins.

Embedding in a few lines::

    import wasmtime
    from wasinn_core import Host

    host = Host.from_config_file("wasinn.toml")      # plugins, registry, named models
    engine = wasmtime.Engine()
    store, linker = wasmtime.Store(engine), wasmtime.Linker(engine)
    linker.define_wasi()
    nn = host.add_to_linker(linker, store)            # wasi_ephemeral_nn for this store
    instance = linker.instantiate(store, wasmtime.Module.from_file(engine, "guest.wasm"))

Components get ``wasi:nn`` (WIT, both versions) the same way, from ``host.add_to_component_linker``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._abi._linking import add_to_linker, fast_path_available
from ._abi._wasmedge import GGML_ERRNO
from ._abi._wit import WIT_VERSIONS, WitBinding
from ._abi._witx import WitxBinding
from ._backend import (
    KNOWN_FEATURES,
    PLUGIN_API_VERSION,
    Availability,
    Backend,
    BackendSpec,
    Capabilities,
    ExecutionContext,
    Graph,
    OptionSpec,
    TensorKey,
)
from ._cli._parse import NN_GRAPH_FILES
from ._config import Config, IsolationConfig, Limits, ModelConfig, parse_seconds, parse_size
from ._errors import (
    BackendErrno,
    BackendError,
    Busy,
    ConfigError,
    ErrorCode,
    InvalidArgument,
    InvalidEncoding,
    MissingMemory,
    NotFound,
    PluginError,
    TooLarge,
    UnsupportedOperation,
    WasiNNError,
)
from ._formats._onnx_io import OnnxPort, OnnxSignature, match_ports, onnx_signature
from ._host import Host, read_model_files
from ._plugins._hookspecs import hookimpl, hookspec
from ._plugins._manager import ENTRY_POINT_GROUP, PluginInfo, PluginManager
from ._registry import GraphInfo, LoadedGraph, Registry
from ._run import EXIT_TRAP, GuestError, RunSpec, is_component, run_command
from ._session import Session
from ._stats import COPIES, HostStats, record_copy
from ._types import ExecutionTarget, GraphEncoding, Tensor, TensorType

__all__ = [
    "COPIES",
    "ENTRY_POINT_GROUP",
    "EXIT_TRAP",
    "GGML_ERRNO",
    "KNOWN_FEATURES",
    "NN_GRAPH_FILES",
    "PLUGIN_API_VERSION",
    "WIT_VERSIONS",
    "Availability",
    "Backend",
    "BackendErrno",
    "BackendError",
    "BackendSpec",
    "Busy",
    "Capabilities",
    "Config",
    "ConfigError",
    "ErrorCode",
    "ExecutionContext",
    "ExecutionTarget",
    "Graph",
    "GraphEncoding",
    "GraphInfo",
    "GuestError",
    "Host",
    "HostStats",
    "InvalidArgument",
    "InvalidEncoding",
    "IsolationConfig",
    "Limits",
    "LoadedGraph",
    "MissingMemory",
    "ModelConfig",
    "NotFound",
    "OnnxPort",
    "OnnxSignature",
    "OptionSpec",
    "PluginError",
    "PluginInfo",
    "PluginManager",
    "Registry",
    "RunSpec",
    "Session",
    "Tensor",
    "TensorKey",
    "TensorType",
    "TooLarge",
    "UnsupportedOperation",
    "WasiNNError",
    "WitBinding",
    "WitxBinding",
    "__version__",
    "add_to_linker",
    "fast_path_available",
    "hookimpl",
    "hookspec",
    "is_component",
    "match_ports",
    "onnx_signature",
    "parse_seconds",
    "parse_size",
    "read_model_files",
    "record_copy",
    "run_command",
]
