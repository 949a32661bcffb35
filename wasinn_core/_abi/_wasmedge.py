"""WasmEdge's rules for GGML named models, where they differ from the host's generic ones.

WasmEdge's GGML guests (the LlamaEdge family) rely on them, so for a model of encoding ``ggml``:

- a ``--nn-preload`` file is not read at start-up, and a missing one is no start-up error: the guest's
  ``load_by_name`` gets ``model_not_found`` (errno 103);
- the ``load_by_name_with_config`` JSON is backend metadata, handed to the backend as one more builder
  after the model file (WasmEdge appends it the same way), never checked against ``guest_options``;
- within one instance, a name keeps the handle of its first successful load until it is unloaded,
  and the config of later loads is ignored;
- once a graph is unloaded, its execution contexts still answer ``get_output*`` and ``fini_single``
  but refuse ``set_input``, ``compute`` and ``compute_single`` (``invalid_argument``).

Everything else about GGML (metadata keys, prompts, tokens) belongs to the backend plugins.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .._config import ModelConfig
from .._errors import BackendErrno
from .._types import GraphEncoding

__all__ = ["GGML_ERRNO", "model_not_found", "unload_stops_contexts", "wasmedge_named"]

#: WasmEdge's own witx errnos for GGML (``wasinntypes.h``), which guests branch on.
GGML_ERRNO: Mapping[str, int] = MappingProxyType(
    {"end_of_sequence": 100, "context_full": 101, "prompt_too_long": 102, "model_not_found": 103}
)


def wasmedge_named(model: ModelConfig) -> bool:
    """Whether WasmEdge's named-model rules apply to ``model`` (its encoding is ``ggml``)."""
    return model.encoding is GraphEncoding.GGML


def model_not_found(name: str, missing: str) -> BackendErrno:
    """WasmEdge's ``ModelNotFound`` (103) for a named model whose file does not exist."""
    return BackendErrno(
        GGML_ERRNO["model_not_found"], f"model not found (103): model {name!r}: no such file: {missing}"
    )


def unload_stops_contexts(encoding: GraphEncoding) -> bool:
    """Whether unloading a graph of ``encoding`` stops its contexts' inputs and computes (WasmEdge's GGML rule)."""
    return encoding is GraphEncoding.GGML
