"""The cases of the suite: what each one checks, what it needs, and how it is named.

A case id is stable and human-readable; expectations files refer to it:

    abi/<case>                                          ABI layer (guest abi.wasm, abi_ext.wasm, ...)
    component/<wit-version>/<case>                      component layer (generated WAT components)
    backend/<encoding>/<format>/<target>/<dtype>/<family>[/<variant>]   backend layer
    operators/onnx/<target>/<operator>/<onnx test name>  operator layer (ONNX's node tests)
    llm/<case>                                          LLM layer (backends claiming ggml)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, final

from .components import COMPONENT_CASES, VERSIONS

Layer = Literal["abi", "component", "backend", "operators", "llm"]

#: Tensor types of the backend layer, in report order.
DTYPES = ("f16", "bf16", "f32", "f64", "u8", "i32", "i64")
FLOATS = ("f16", "bf16", "f32", "f64")

#: Model formats the suite can generate, per encoding.
FORMATS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx",),
    "openvino": ("ir",),
    "pytorch": ("torchscript", "exported_program"),
}
#: What a backend must declare to be given a format's cases.
FORMAT_FEATURES: dict[str, tuple[str, ...]] = {
    "torchscript": ("pytorch:torchscript",),
    "exported_program": ("pytorch:exported_program",),
}


@final
@dataclass(frozen=True, slots=True)
class Family:
    """A model family of the backend layer."""

    name: str
    doc: str
    dtypes: tuple[str, ...]
    variants: tuple[str, ...] = ("",)
    requires: tuple[str, ...] = ()
    variant_requires: dict[str, tuple[str, ...]] = field(default_factory=dict)
    formats: tuple[str, ...] = ()  # the model formats it exists in (empty: every format)


FAMILIES = (
    Family("affine", "y = 2x + 3 on a static 2x3 input", DTYPES),
    Family("transpose", "y = xᵀ: 2x3 in, 3x2 out (the output's real shape)", DTYPES),
    Family(
        "two_io",
        "(a, b) -> (sum = a + b, product = a * b), inputs and outputs by index or by name",
        DTYPES,
        variants=("by_index", "by_name"),
        requires=("multi_output",),
        variant_requires={"by_name": ("named_io",)},
    ),
    Family(
        "matmul",
        "y = x·W + b with seeded W (4x3) and b; x is Nx4 with a dynamic N",
        FLOATS,
        variants=("batch1", "batch2", "batch5"),
        requires=("dynamic_batch",),
    ),
    Family(
        "affine_int32_data",
        "y = 2x + 3 with its 16-bit float constants in TensorProto.int32_data, the form onnx.helper.make_tensor "
        "writes (exporters write raw_data, as every other ONNX model of the suite does)",
        ("f16", "bf16"),
        formats=("onnx",),
    ),
)


@final
@dataclass(frozen=True, slots=True)
class AbiCase:
    """An ABI-layer case: a guest, a case name inside it, and what it needs of the runtime."""

    name: str
    guest: str
    doc: str
    requires: tuple[str, ...] = ()


def _abi(guest: str, requires: tuple[str, ...], rows: str) -> list[AbiCase]:
    cases = []
    for line in rows.strip().splitlines():
        name, _, doc = line.partition(":")
        cases.append(AbiCase(name.strip(), guest, doc.strip(), requires))
    return cases


def _all_abi_cases() -> list[AbiCase]:
    cases: list[AbiCase] = []
    cases += _abi(
        "abi",
        (),
        """
        load: load from bytes succeeds and writes a handle
        load_handles_distinct: three loads give distinct, increasing handles
        load_unknown_encoding: encoding code 99 → invalid_encoding
        load_unsupported_encoding: an encoding no backend claims → invalid_encoding
        load_zero_builders: zero builders → invalid_argument
        load_extra_builder: one builder too many → invalid_argument
        load_builder_out_of_bounds: a builder span past the end of memory → invalid_argument
        load_builder_array_out_of_bounds: the builder array past the end of memory → invalid_argument
        load_graph_out_of_bounds: the graph out-pointer past the end of memory → invalid_argument
        load_unknown_target: target code 9 → invalid_argument
        load_corrupt_model: garbage model bytes → runtime_error or invalid_argument
        load_truncated_model: half a model → runtime_error or invalid_argument
        load_by_name_unknown: an unknown name → not_found
        load_by_name_out_of_bounds: a name span past the end of memory → invalid_argument
        init: init_execution_context succeeds and writes a handle
        init_unknown_graph: an unknown graph handle → invalid_argument
        init_out_of_bounds: the context out-pointer past the end of memory → invalid_argument
        context_handles_distinct: four contexts of one graph have distinct handles
        inference: set_input, compute, get_output give y = 2x + 3
        set_input_unknown_context: an unknown context → invalid_argument
        set_input_tensor_out_of_bounds: the tensor record past the end of memory → invalid_argument
        set_input_dims_out_of_bounds: the dimensions past the end of memory → invalid_argument
        set_input_data_out_of_bounds: the data past the end of memory → invalid_argument
        set_input_data_too_short: data length below ∏dims × size → invalid_argument
        set_input_data_too_long: data length above ∏dims × size → invalid_argument
        set_input_unknown_type: tensor type code 6 → invalid_argument
        set_input_bad_index: input index 7 of a one-input model → invalid_argument
        set_input_padding_garbage: garbage in the 3 padding bytes after the type is ignored
        compute_unknown_context: an unknown context → invalid_argument
        compute_without_input: compute before set_input → invalid_argument or runtime_error
        repeated_compute: ten computes on one context, each output follows its input
        many_contexts: eight contexts of one graph, interleaved, stay independent
        many_graphs: eight graphs with a context each
        get_output: the output and bytes_written are right
        get_output_too_small: a 10-byte buffer → too_large, bytes_written = 24, nothing written past it
        get_output_zero_buffer: a 0-byte buffer → too_large, bytes_written = 24
        get_output_buffer_out_of_bounds: the buffer past the end of memory → invalid_argument
        get_output_written_out_of_bounds: bytes_written past the end of memory → invalid_argument
        get_output_bad_index: output index 9 → invalid_argument
        get_output_unknown_context: an unknown context → invalid_argument
        get_output_before_compute: get_output before compute → invalid_argument or runtime_error
    """,
    )
    cases.append(
        AbiCase("set_input_wrong_shape", "abi", "a 3x2 tensor for a 2x3 input → invalid_argument", ("shape_checks",))
    )
    cases.append(
        AbiCase(
            "set_input_wrong_type",
            "abi",
            "an i32 tensor for an f32 input → invalid_argument (at set_input or compute)",
            ("type_checks",),
        )
    )
    cases += _abi(
        "abi",
        ("named_models",),
        """
        load_by_name: load_by_name of the named model, then a correct inference
    """,
    )
    cases += _abi(
        "abi",
        ("unavailable_target",),
        """
        load_unavailable_target: a target nothing can serve here → unsupported_operation
    """,
    )
    cases += _abi(
        "abi",
        ("limits",),
        """
        graph_limit: loading past the runtime's graph limit → busy
        tensor_limit: a 2 MiB input past the runtime's tensor limit → too_large
    """,
    )
    cases += _abi(
        "abi_ext",
        ("extensions",),
        """
        unload: unload succeeds
        unload_twice: a second unload of one handle → invalid_argument
        unload_unknown: unload of an unknown handle → invalid_argument
        init_after_unload: init_execution_context on an unloaded graph → invalid_argument
        graph_handles_not_reused: a handle released by unload is not given out again
        context_survives_unload: a context keeps working after its graph's handle is unloaded
        finalize: finalize_execution_context succeeds
        finalize_twice: a second finalize → invalid_argument
        use_after_finalize: set_input, compute, get_output after finalize → invalid_argument
        context_handles_not_reused: a finalized context's handle is not given out again
        load_by_name_with_config_unknown: an unknown name → not_found
        load_by_name_with_config_out_of_bounds: a config span past the end of memory → invalid_argument
        streaming_unsupported: compute_single etc. on a non-streaming backend → unsupported_operation
        streaming_unknown_context: compute_single, fini_single on an unknown context → invalid_argument
    """,
    )
    cases += _abi(
        "abi_ext",
        ("extensions", "named_models"),
        """
        load_by_name_with_config_empty: load_by_name_with_config with "{}" works like load_by_name
        load_by_name_with_config_bad_json: config bytes that are not JSON → invalid_argument
    """,
    )
    cases.append(AbiCase("missing_memory", "missing_memory", "a module exporting no memory → missing_memory"))
    return cases


ABI_CASES: tuple[AbiCase, ...] = tuple(_all_abi_cases())


@final
@dataclass(frozen=True, slots=True)
class Case:
    """One test of the suite, for one backend (and, for the ABI layer, one runtime)."""

    id: str
    layer: Layer
    backend: str
    encoding: str
    target: str
    dtype: str = "-"
    family: str = ""
    variant: str = ""
    format: str = ""
    requires: tuple[str, ...] = ()
    doc: str = ""
    guest: str = ""

    @property
    def row(self) -> tuple[str, str, str, str]:
        """The capability-matrix row: (backend or runtime, encoding or 'abi', target, dtype)."""
        if self.layer == "abi":
            return (self.backend, "abi", self.target, "-")
        if self.layer == "component":
            return (self.backend, f"wit@{self.variant.removeprefix('0.2.0-rc-')}", self.target, "-")
        if self.layer == "operators":
            return (self.backend, "onnx operators", self.target, self.dtype)
        if self.layer == "llm":
            return (self.backend, "ggml/llm", self.target, "-")
        return (self.backend, f"{self.encoding}/{self.format}", self.target, self.dtype)


def undeclared_types(backend: str, lacking: Iterable[str], notes: Mapping[str, str]) -> str | None:
    """The skip message for tensor types a backend does not declare, with the backend's own reasons, or ``None``."""
    names = sorted(lacking)
    if not names:
        return None
    whys = [notes[t] if len(names) == 1 else f"{t}: {notes[t]}" for t in names if t in notes]
    return f"{backend} does not declare tensor type {', '.join(names)}" + (f": {'; '.join(whys)}" if whys else "")


def backend_cases(backend: str, encodings: Iterable[str], target: str) -> list[Case]:
    """Every backend-layer case for a backend claiming ``encodings``."""
    cases = []
    for encoding in encodings:
        for fmt in FORMATS.get(encoding, ()):
            for family in FAMILIES:
                if family.formats and fmt not in family.formats:
                    continue
                for dtype in family.dtypes:
                    for variant in family.variants:
                        parts = ["backend", encoding, fmt, target, dtype, family.name] + ([variant] if variant else [])
                        requires = (
                            family.requires + family.variant_requires.get(variant, ()) + FORMAT_FEATURES.get(fmt, ())
                        )
                        cases.append(
                            Case(
                                "/".join(parts),
                                "backend",
                                backend,
                                encoding,
                                target,
                                dtype,
                                family.name,
                                variant,
                                fmt,
                                requires,
                                family.doc,
                            )
                        )
    return cases


def abi_cases(backend: str, encoding: str, target: str) -> list[Case]:
    """Every ABI-layer case, run with ``backend``'s encoding as the model format."""
    fmt = FORMATS[encoding][0]
    return [
        Case(
            f"abi/{c.name}",
            "abi",
            backend,
            encoding,
            target,
            family=c.name,
            format=fmt,
            requires=c.requires,
            doc=c.doc,
            guest=c.guest,
        )
        for c in ABI_CASES
    ]


def component_cases(backend: str, encoding: str, target: str) -> list[Case]:
    """Every component-layer case, for each wasi:nn WIT version, with ``backend``'s encoding as the model format."""
    fmt = FORMATS[encoding][0]
    return [
        Case(
            f"component/{version}/{c.name}",
            "component",
            backend,
            encoding,
            target,
            family=c.name,
            variant=version,
            format=fmt,
            requires=c.requires,
            doc=c.doc,
            guest="component",
        )
        for version in VERSIONS
        for c in COMPONENT_CASES
        if version in c.versions
    ]
