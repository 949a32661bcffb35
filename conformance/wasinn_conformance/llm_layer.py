"""LLM layer: WasmEdge's GGML call semantics on any backend claiming ``ggml`` (wasinn-llama, wasinn-remote…).

Every case loads the named model ``conformance-llm`` with WasmEdge's rules and drives a session the way
the LlamaEdge guests do: prompts as U8 ``[1]`` tensors, metadata JSON on input 1, the text on output 0 and
the usage JSON on output 1, ``compute`` versus ``compute_single``/``get_output_single``/``fini_single``,
and the errnos guests branch on (100–103). The model is the tiny GGUF the suite trains
(:mod:`wasinn_conformance.gguf_models`, needs torch), or, for a serving backend, the model
``conformance-llm`` of ``--config`` (a remote server must serve the same tiny model for the texts to
be the corpus's).

    llm/<case>
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, final

import numpy as np

from wasinn_core import (
    BackendErrno,
    Config,
    ExecutionTarget,
    GraphEncoding,
    Host,
    InvalidArgument,
    InvalidEncoding,
    ModelConfig,
    NotFound,
    Session,
    Tensor,
    TensorType,
    WasiNNError,
)

from .cases import Case

__all__ = ["LLM_CASES", "MODEL", "llm_cases", "run_llm_case"]

MODEL = "conformance-llm"
GREEDY = b'{"temp": 0}'


class CaseFailure(AssertionError):
    """A case's check failed."""


@final
@dataclass(frozen=True, slots=True)
class LlmCase:
    name: str
    doc: str
    check: Callable[[Session], None]


def _u8(data: bytes) -> Tensor:
    return Tensor((1,), TensorType.U8, np.frombuffer(data, np.uint8))  # WasmEdge's guests: [1] whatever the length


def _ctx(session: Session, metadata: bytes = GREEDY, prompt: bytes | None = b"Once upon") -> int:
    ctx = session.init_execution_context(session.load_by_name(MODEL))
    if metadata:
        session.set_input(ctx, 1, _u8(metadata))
    if prompt is not None:
        session.set_input(ctx, 0, _u8(prompt))
    return ctx


def _text(session: Session, ctx: int, single: bool = False) -> bytes:
    get = session.get_output_single if single else session.get_output
    return bytes(np.asarray(get(ctx, 0).data).reshape(-1).view(np.uint8))


def _usage(session: Session, ctx: int) -> dict[str, Any]:
    raw = bytes(np.asarray(session.get_output(ctx, 1).data).reshape(-1).view(np.uint8))
    data = json.loads(raw)
    keys = ["input_tokens", "output_tokens", "llama_build_number", "llama_commit"]
    if list(data) != keys:
        raise CaseFailure(f"usage JSON keys {list(data)}, expected {keys} in this order")
    if not all(isinstance(data[k], int) and not isinstance(data[k], bool) for k in keys[:3]):
        raise CaseFailure(f"usage JSON: counts and build number must be integers: {raw!r}")
    if not isinstance(data["llama_commit"], str):
        raise CaseFailure(f"usage JSON: llama_commit must be a string: {raw!r}")
    if raw != json.dumps(data).encode():
        raise CaseFailure(f"usage JSON is not written as WasmEdge writes it (', ' and ': ' separators): {raw!r}")
    return data  # type: ignore[no-any-return]


def _stream(session: Session, ctx: int, limit: int = 1000) -> tuple[list[bytes], int]:
    """compute_single until a non-zero errno; the pieces and that errno."""
    pieces: list[bytes] = []
    for _ in range(limit):
        try:
            session.compute_single(ctx)
        except BackendErrno as exc:
            return pieces, exc.errno
        pieces.append(_text(session, ctx, single=True))
    raise CaseFailure(f"compute_single gave {limit} tokens without 100 (end of sequence) or 101 (context full)")


def _expect(errno: int | type[WasiNNError], call: Callable[[], object], what: str) -> WasiNNError:
    try:
        call()
    except BackendErrno as exc:
        if exc.errno == errno:
            return exc
        raise CaseFailure(f"{what}: errno {exc.errno}, expected {errno}") from None
    except WasiNNError as exc:
        if isinstance(errno, type) and isinstance(exc, errno):
            return exc
        raise CaseFailure(f"{what}: {exc.code.value} ({exc.message}), expected {errno}") from None
    raise CaseFailure(f"{what}: succeeded, expected {errno}")


# -- the cases ------------------------------------------------------------------------------------------


def _compute(session: Session) -> None:
    ctx = _ctx(session)
    session.compute(ctx)
    text = _text(session, ctx)
    counts = _usage(session, ctx)
    if not text or counts["output_tokens"] < 1 or counts["input_tokens"] < 2:
        raise CaseFailure(f"compute gave {text!r} with usage {counts}")


def _usage_at_once(session: Session) -> None:
    ctx = _ctx(session)
    counts = _usage(session, ctx)
    if counts["output_tokens"] != 0:
        raise CaseFailure(f"output_tokens before compute is {counts['output_tokens']}, expected 0")
    session.compute(ctx)
    after = _usage(session, ctx)
    if counts["input_tokens"] and counts["input_tokens"] != after["input_tokens"]:
        raise CaseFailure(f"input_tokens changed across compute: {counts} then {after}")


def _stream_equals_compute(session: Session) -> None:
    ctx = _ctx(session)
    session.compute(ctx)
    whole = _text(session, ctx)
    pieces, errno = _stream(session, ctx)
    if errno != 100:
        raise CaseFailure(f"the stream ended with errno {errno}, expected 100 (end of sequence)")
    last = _text(session, ctx, single=True)  # the end-of-sequence token's piece, if the backend renders it
    if b"".join(pieces) + last != whole:
        raise CaseFailure(f"streamed {b''.join(pieces) + last!r}, compute gave {whole!r}")
    if _text(session, ctx) != whole:
        raise CaseFailure("output 0 after streaming is not the whole answer")


def _fini_single(session: Session) -> None:
    ctx = _ctx(session)
    pieces, _ = _stream(session, ctx)
    session.fini_single(ctx)
    if _text(session, ctx) or _usage(session, ctx)["output_tokens"]:
        raise CaseFailure("fini_single left output 0 or output_tokens")
    session.compute_single(ctx)
    if _text(session, ctx, single=True) != pieces[0]:
        raise CaseFailure("after fini_single, compute_single did not start the answer again")


def _set_input_twice(session: Session) -> None:
    first = _ctx(session, prompt=b"The quick")
    session.set_input(first, 0, _u8(b"Once upon"))
    session.compute(first)
    fresh = _ctx(session)
    session.compute(fresh)
    if _text(session, first) != _text(session, fresh):
        raise CaseFailure("a second set_input(0) did not replace the first prompt")


def _n_predict(session: Session) -> None:
    ctx = _ctx(session, metadata=b'{"temp": 0, "n-predict": 3}')
    session.compute(ctx)
    if _usage(session, ctx)["output_tokens"] != 3:
        raise CaseFailure(f"n-predict 3 gave {_usage(session, ctx)['output_tokens']} tokens")


def _seed(session: Session) -> None:
    meta = b'{"temp": 1.5, "seed": 1234, "n-predict": 16}'
    texts = set()
    for _ in range(2):
        ctx = _ctx(session, metadata=meta, prompt=b"zq")
        session.compute(ctx)
        texts.add(_text(session, ctx))
    if len(texts) != 1:
        raise CaseFailure(f"a fixed seed gave different answers: {texts}")


def _prompt_too_long(session: Session) -> None:
    ctx = _ctx(session, prompt=b"word " * 5000)
    _expect(102, lambda: session.compute(ctx), "compute on a prompt longer than the context")
    _expect(102, lambda: session.compute_single(ctx), "compute_single on a prompt longer than the context")


def _compute_without_prompt(session: Session) -> None:
    ctx = _ctx(session, prompt=None)
    _expect(InvalidArgument, lambda: session.compute(ctx), "compute without a prompt")


def _unknown_model(session: Session) -> None:
    _expect(NotFound, lambda: session.load_by_name("no-such-model"), "load_by_name of an unknown name")


def _bad_metadata(session: Session) -> None:
    ctx = _ctx(session)
    _expect(InvalidEncoding, lambda: session.set_input(ctx, 1, _u8(b"{not json")), "metadata that is not JSON")
    _expect(InvalidArgument, lambda: session.set_input(ctx, 1, _u8(b'{"n-predict": "3"}')), "a string for an int")
    _expect(InvalidArgument, lambda: session.set_input(ctx, 1, _u8(b'{"mmproj": "/etc/passwd"}')), "a host path")


def _same_handle(session: Session) -> None:
    first = session.load_by_name(MODEL)
    if session.load_by_name(MODEL, b'{"temp": 1}') != first:
        raise CaseFailure("a second load_by_name of one name gave a new handle (WasmEdge gives the same)")
    session.unload(first)
    if session.load_by_name(MODEL) == first:
        raise CaseFailure("after unload, load_by_name gave the unloaded handle back")


def _unload(session: Session) -> None:
    graph = session.load_by_name(MODEL)
    ctx = session.init_execution_context(graph)
    session.set_input(ctx, 1, _u8(b'{"temp": 0, "n-predict": 2}'))
    session.set_input(ctx, 0, _u8(b"Once upon"))
    session.compute(ctx)
    text = _text(session, ctx)
    session.unload(graph)
    if _text(session, ctx) != text:
        raise CaseFailure("output 0 changed when the graph was unloaded")
    _expect(InvalidArgument, lambda: session.compute(ctx), "compute after unload")
    _expect(InvalidArgument, lambda: session.set_input(ctx, 0, _u8(b"x")), "set_input after unload")
    session.fini_single(ctx)


LLM_CASES: tuple[LlmCase, ...] = (
    LlmCase("compute", "set_input(prompt), compute: text on output 0, usage JSON on output 1", _compute),
    LlmCase("usage_before_compute", "output 1 right after set_input: output_tokens 0", _usage_at_once),
    LlmCase(
        "stream_equals_compute", "compute_single to errno 100 gives compute's text (greedy)", _stream_equals_compute
    ),
    LlmCase("fini_single", "fini_single clears the outputs; the next compute_single starts over", _fini_single),
    LlmCase("set_input_twice", "a second prompt replaces the first", _set_input_twice),
    LlmCase("n_predict", "metadata n-predict on input 1 limits the answer", _n_predict),
    LlmCase("fixed_seed", "temp 1.5 with a fixed seed answers the same twice", _seed),
    LlmCase("prompt_too_long", "a prompt over the context → 102 from compute and compute_single", _prompt_too_long),
    LlmCase("compute_without_prompt", "compute before any prompt → invalid_argument", _compute_without_prompt),
    LlmCase("unknown_model", "load_by_name of an unknown name → not_found", _unknown_model),
    LlmCase(
        "bad_metadata", "not JSON → invalid_encoding; a wrong type or a host path → invalid_argument", _bad_metadata
    ),
    LlmCase("same_handle", "a name keeps its handle until unloaded", _same_handle),
    LlmCase("unload", "after unload, outputs stay and compute → invalid_argument", _unload),
)


def llm_cases(backend: str, target: str) -> list[Case]:
    """Every LLM-layer case for ``backend``."""
    return [
        Case(f"llm/{c.name}", "llm", backend, "ggml", target, family=c.name, format="gguf", doc=c.doc)
        for c in LLM_CASES
    ]


def model_config(config: Config | None, backend: str, target: str) -> ModelConfig | str:
    """The ``conformance-llm`` model for ``backend``, or why there is none."""
    configured = config.model(MODEL) if config is not None else None
    if configured is not None:
        if configured.encoding is not GraphEncoding.GGML:
            return f"--config's model {MODEL!r} is not a ggml model"
        if configured.backend not in (None, backend):
            return f"--config's model {MODEL!r} is pinned to backend {configured.backend!r}"
        return configured
    try:
        from .gguf_models import build
    except ImportError as exc:  # pragma: no cover - gguf is a dependency
        return f"cannot make the tiny GGUF model: {exc}"
    try:
        import torch  # noqa: F401
    except ImportError:
        return (
            "the tiny GGUF model is trained with torch, which is not installed (or give --config a 'conformance-llm')"
        )
    path = build()
    return ModelConfig(MODEL, GraphEncoding.GGML, (ExecutionTarget(target),), (path,), backend=backend)


def run_llm_case(case: Case, host: Host) -> str:
    """Run ``case`` on a fresh session of ``host`` (which has the ``conformance-llm`` model); returns the device."""
    check = next(c.check for c in LLM_CASES if c.name == case.family)
    session = host.new_session()
    try:
        check(session)
        graph = session.load_by_name(MODEL)
        return session.graph_info(graph).device
    finally:
        session.close()
