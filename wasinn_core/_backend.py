"""The protocol a backend implements, and the records a plugin publishes.

A plugin's ``wasinn_backends`` hook returns :class:`BackendSpec` records. The
host creates each :class:`Backend` lazily, once per process, through the spec's
``factory``. A backend turns builders into a :class:`Graph`; a graph makes
:class:`ExecutionContext` objects; a context takes inputs, computes and gives
outputs. A backend never sees guest pointers, and the ABI layer never sees a
library: :class:`~wasinn_core.Tensor` values are all that cross.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, final

from ._errors import UnsupportedOperation
from ._types import ExecutionTarget, GraphEncoding, Tensor, TensorType

__all__ = [
    "KNOWN_FEATURES",
    "PLUGIN_API_VERSION",
    "Availability",
    "Backend",
    "BackendSpec",
    "Capabilities",
    "ExecutionContext",
    "Graph",
    "OptionSpec",
    "TensorKey",
]

#: The plugin API version of this host: (major, minor). A plugin built for a
#: different major, or a newer minor, is refused with a clear error.
PLUGIN_API_VERSION: tuple[int, int] = (1, 2)

#: An input or output is addressed by position (witx index) or by name.
TensorKey = int | str


@final
@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a backend can run on a target here, and if not, exactly why.

    ``device`` names what would be used when available (``"CPU"``, ``"cuda:0"``).
    """

    available: bool
    reason: str = ""
    device: str = ""

    @classmethod
    def yes(cls, device: str) -> Availability:
        """Available, on ``device``."""
        return cls(True, "", device)

    @classmethod
    def no(cls, reason: str) -> Availability:
        """Unavailable, because of ``reason`` (a full sentence for the user)."""
        return cls(False, reason, "")


@final
@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One backend option, settable in ``[backends.NAME]`` or a model's ``options``.

    ``type`` is one of ``bool``, ``int``, ``float``, ``str``, ``list`` or ``dict``;
    ``choices`` restricts a ``str`` option to a set of values. ``guest=False``
    marks an option a guest must never set (anything naming a host path or
    library internals), even if an embedder lists it in ``guest_options``.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    guest: bool = True


#: Features a backend can declare in :class:`Capabilities` (the conformance suite's vocabulary).
KNOWN_FEATURES = frozenset(
    {
        "named_io",  # inputs and outputs by name as well as by index
        "multi_output",  # models with several outputs
        "dynamic_batch",  # a dynamic first dimension
        "shape_checks",  # rank/static dimensions checked before or at compute (invalid_argument)
        "type_checks",  # input tensor types checked against the model (invalid_argument)
        # model formats, ENCODING:FORMAT. A backend declaring any of them is tested on those formats only
        # (the pytorch ones are required for their formats in any case).
        "onnx:onnx",  # ONNX files
        "openvino:ir",  # OpenVINO IR (xml + weights)
        "pytorch:torchscript",  # TorchScript archives
        "pytorch:exported_program",  # torch.export archives
    }
)


@final
@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend supports, for the conformance suite and for users.

    :param dtypes: tensor types it computes at their full precision (a type it accepts but computes in
        a narrower one, such as f64 in f32, is left out).
    :param features: names from :data:`KNOWN_FEATURES`; any other name fails the plugin, with the
        known ones in the message (a typo would otherwise skip the cases silently).
    :param notes: why a tensor type or feature is left out, by its name (``{"f64": "computed in f32"}``):
        the conformance suite skips the cases that need it with this reason.

    .. versionadded:: 1.1
    """

    dtypes: frozenset[TensorType] = frozenset({TensorType.F32})
    features: frozenset[str] = frozenset()
    notes: Mapping[str, str] = field(default_factory=dict)


@final
@dataclass(frozen=True, slots=True)
class BackendSpec:
    """What a plugin publishes about one backend.

    :param name: short unique backend name used in config (``"onnxruntime"``).
    :param factory: creates the :class:`Backend`; called once, lazily.
    :param encodings: each claimed encoding with its default preference; when
        several backends claim one encoding, the higher preference is tried
        first unless the config orders them (dedicated engines use 100). A
        preference of 0 claims the encoding only for models pinned to the
        backend or where the config's preferences name it.
    :param targets: the execution targets the backend can ever serve.
    :param probe: ``probe(target, options)`` tells whether ``target`` is
        available here with these backend options, and why not.
    :param library: the library the backend drives (``"onnxruntime"``).
    :param library_version: that library's version.
    :param api_version: the :data:`PLUGIN_API_VERSION` the plugin was built for.
    :param options: the options the backend accepts.
    :param builders: number of builders expected per encoding, when fixed.
    :param description: one line for ``wasinn plugins``.
    :param capabilities: what it supports (default: f32 only, no features).
    :param isolation: ``"process"`` (default): the backend may run graphs in confined worker processes;
        ``"none"``: it parses no model bytes itself (it hands them to a server), so its graphs stay in
        the host process unless the embedder's config says otherwise.

    .. versionadded:: 1.2 ``isolation``
    """

    name: str
    factory: Callable[[], Backend]
    encodings: Mapping[GraphEncoding, int]
    targets: frozenset[ExecutionTarget]
    probe: Callable[[ExecutionTarget, Mapping[str, Any]], Availability]
    library: str = ""
    library_version: str = ""
    api_version: tuple[int, int] = PLUGIN_API_VERSION
    options: tuple[OptionSpec, ...] = ()
    builders: Mapping[GraphEncoding, int] = field(default_factory=dict)
    description: str = ""
    capabilities: Capabilities = Capabilities()
    isolation: str = "process"

    def option(self, name: str) -> OptionSpec | None:
        """The option called ``name``, if the backend has one."""
        return next((o for o in self.options if o.name == name), None)

    def defaults(self) -> dict[str, Any]:
        """Every option at its default value."""
        return {o.name: o.default for o in self.options}


class ExecutionContext(ABC):
    """One inference state of a graph: inputs in, ``compute``, outputs out.

    Contexts of one graph are independent. Outputs are replaced on every
    ``compute``, never accumulated.
    """

    @abstractmethod
    def set_input(self, key: TensorKey, tensor: Tensor) -> None:
        """Set input ``key`` (index or name).

        ``tensor.data`` is a borrowed view of guest memory that is only valid
        during this call: copy what you keep (exactly once, ideally straight
        into the library's own buffer). Raise
        :class:`~wasinn_core.InvalidArgument` for an unknown key or a type or
        shape the model does not accept.
        """

    @abstractmethod
    def compute(self) -> None:
        """Run the graph on the inputs set so far."""

    @abstractmethod
    def get_output(self, key: TensorKey) -> Tensor:
        """Output ``key`` (index or name) of the last ``compute``, in host memory."""

    def output_names(self) -> Sequence[str]:
        """Names of the outputs of the last ``compute``, in order (for named ABIs)."""
        raise UnsupportedOperation(f"{type(self).__name__} does not name its outputs")

    def compute_single(self) -> None:
        """One streaming step (WasmEdge extension); unsupported by default."""
        raise UnsupportedOperation(f"{type(self).__name__} does not stream (compute_single)")

    def get_output_single(self, key: TensorKey) -> Tensor:
        """Output of the last streaming step; unsupported by default."""
        raise UnsupportedOperation(f"{type(self).__name__} does not stream (get_output_single)")

    def fini_single(self) -> None:
        """Reset the streaming state; unsupported by default."""
        raise UnsupportedOperation(f"{type(self).__name__} does not stream (fini_single)")

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release everything the context holds (device memory included)."""


class Graph(ABC):
    """A loaded model, ready to make execution contexts."""

    #: The device actually used, in the library's words (``"CPUExecutionProvider"``).
    device: str = ""

    #: Inputs are byte strings: only their bytes count, and a data length that does not fit the
    #: dimensions is accepted (GGML prompts: WasmEdge's guests send U8 with dimensions ``[1]``
    #: whatever the length). Read once, when the graph is loaded.
    byte_inputs: bool = False

    @abstractmethod
    def init_execution_context(self) -> ExecutionContext:
        """A new, independent execution context."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model. Called once, after its last context is closed."""


class Backend(ABC):
    """A backend engine: turns graph builders into graphs on a target."""

    @abstractmethod
    def load(
        self,
        builders: Sequence[memoryview],
        encoding: GraphEncoding,
        target: ExecutionTarget,
        options: Mapping[str, Any],
    ) -> Graph:
        """Load a graph from ``builders`` (borrowed: copy what you keep).

        ``options`` are the backend options merged over their defaults.
        Raise :class:`~wasinn_core.InvalidArgument` for a wrong builder
        count, :class:`~wasinn_core.UnsupportedOperation` when the target
        cannot be used, and let library errors propagate.
        """

    def warm_up(self) -> None:  # noqa: B027 - optional hook
        """Import and prepare what loading a model will need (on a model of the plugin's own).

        Called before a worker process loads a guest model (see ``docs/reliability.md``): once in the
        backend's zygote, so that every worker forked from it starts warm. Where that leaves the
        zygote with more than one thread (a library starting its thread pools), the zygote starts
        over without the library, and each worker imports it and calls this itself, confined, ahead
        of the load it is kept for.

        .. versionadded:: 1.2
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release process-wide library state."""
