"""Loading ``torch.export`` archives (``.pt2``) without running anything the archive brings.

``torch.export.load`` trusts its input: it unpickles sample inputs, weights and constants with
``weights_only=False`` (directly or as a fallback), ``pickle.loads`` opaque objects, evaluates the
graph's symbolic-shape strings with ``sympy.sympify`` (which is ``eval``), and ``dlopen``s
AOTInductor libraries packed in the archive. Any of these runs a guest's code on the host.

This loader reads the same archive with torch's own zip reader and deserializer, but:

- every pickled record it needs (weights, tensor constants) is read with torch's restricted
  ``weights_only`` unpickler, with no fallback;
- sample inputs are checked with the same unpickler and dropped (running a program does not need them);
- custom (torchbind) objects, opaque Python objects, AOTInductor and ExecuTorch payloads, and the
  pre-2.6 archive layout are refused;
- every symbolic-shape expression is checked against a small grammar (numbers, symbol names, a
  fixed list of sympy and torch functions, arithmetic) before torch's deserializer sees it.

It depends on torch's private archive helpers; where they are missing (another torch release),
``.pt2`` loading is refused rather than handed to ``torch.export.load``.
"""

from __future__ import annotations

import ast
import io
import re
from typing import Any

import torch

from wasinn_core import InvalidArgument, UnsupportedOperation

from ._screen import screen_exported, walk_dataclasses

__all__ = ["SYMPY_NAMES", "Pt2Refused", "check_sym_expr", "load_exported_program"]


class Pt2Refused(InvalidArgument):
    """An archive holding something wasinn will not load (the message says what and why)."""


_MODEL = "model"

#: Names a symbolic-shape expression may use: sympy's ``srepr`` vocabulary for shape arithmetic and
#: the torch functions the deserializer registers. Nothing here parses strings or touches the host.
SYMPY_NAMES = frozenset(
    {
        # atoms and constructors srepr writes
        "Symbol", "Dummy", "Integer", "Float", "Rational", "Half", "One", "Zero", "NegativeOne",
        "Infinity", "NegativeInfinity", "oo", "zoo", "nan", "true", "false", "BooleanTrue", "BooleanFalse",
        "True", "False", "None", "pi", "E",
        # arithmetic and relations
        "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "floor", "ceiling", "sqrt", "sign",
        "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Unequality", "StrictLessThan", "StrictGreaterThan",
        "LessThan", "GreaterThan", "And", "Or", "Not", "Xor", "Piecewise", "ExprCondPair",
        # torch.utils._sympy.functions, as the deserializer names them
        "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt",
        "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
        "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal",
        "ToFloat", "Identity", "BitwiseFn_bitwise_and", "BitwiseFn_bitwise_or", "BitwiseFn_bitwise_xor",
        # assumption and precision keywords
        "integer", "positive", "negative", "nonnegative", "nonpositive", "real", "finite", "infinite",
        "zero", "nonzero", "even", "odd", "rational", "commutative", "precision", "evaluate",
    }
)  # fmt: skip

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<str>'[A-Za-z0-9_.+\-]*')"
    r"|(?P<op>\*\*|//|<=|>=|==|!=|[-+*/%(),=<>&|~]))"
)
_SYMBOL_NAME = re.compile(r"^[a-z]{1,4}\d+$")  # s0, u3, zuf1, ps2: torch's symbol names
_MAX_EXPR = 4096


def check_sym_expr(text: str) -> None:
    """Refuse a symbolic-shape expression that is anything but shape arithmetic.

    torch's deserializer evaluates these strings with ``sympy.sympify``; this grammar admits
    numbers, quoted symbol names, the names in :data:`SYMPY_NAMES` and arithmetic, and nothing
    that could reach an attribute, a string parser or a builtin.
    """
    if len(text) > _MAX_EXPR or "__" in text:
        raise Pt2Refused(f"the archive's symbolic-shape expression {text[:80]!r} is not shape arithmetic")
    pos = 0
    end = len(text.rstrip())
    while pos < end:
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise Pt2Refused(
                f"the archive's symbolic-shape expression {text[:80]!r} has a character that shape "
                f"arithmetic never uses at offset {pos}"
            )
        name = match.group("name")
        if name is not None and name not in SYMPY_NAMES and not _SYMBOL_NAME.match(name):
            raise Pt2Refused(f"the archive's symbolic-shape expression uses {name!r}, which is not shape arithmetic")
        pos = match.end()


_GUARD_NODES = (
    ast.Expression, ast.Compare, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Subscript, ast.Attribute, ast.Call,
    ast.Name, ast.Constant, ast.Load, ast.Tuple,
    ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
)  # fmt: skip
_GUARD_NAMES = frozenset({"L", "math"})
_GUARD_ATTRS = frozenset({"size", "stride", "storage_offset", "dim", "shape", "isnan", "isinf", "inf"})


def check_guard(text: str) -> None:
    """Refuse a shape guard that is anything but a check on input sizes.

    ``ExportedProgram.module()`` compiles these strings into Python with ``exec``; legitimate ones
    compare ``L['x'].size()[0]`` and the like with numbers.
    """
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise Pt2Refused(f"the archive's shape guard {text[:80]!r} is not a Python expression") from None
    for node in ast.walk(tree):
        ok = isinstance(node, _GUARD_NODES)
        if isinstance(node, ast.Name):
            ok = node.id in _GUARD_NAMES
        elif isinstance(node, ast.Attribute):
            ok = node.attr in _GUARD_ATTRS
        elif isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Attribute) and not node.keywords
        elif isinstance(node, ast.Constant):
            ok = isinstance(node.value, int | float | str) and "__" not in str(node.value)
        if not ok:
            raise Pt2Refused(f"the archive's shape guard {text[:80]!r} is not a check on input sizes")


def _private() -> Any:
    """torch's archive internals this loader builds on, or ``UnsupportedOperation`` naming what is missing."""
    try:
        from torch._export.serde import schema
        from torch._export.serde.serialize import (
            ExportedProgramDeserializer,
            _bytes_to_dataclass,
            deserialize_size,
            deserialize_storage_offset,
            deserialize_stride,
        )
        from torch.export.pt2_archive import _package as package
        from torch.export.pt2_archive import constants
    except ImportError as exc:  # another torch release: never fall back to torch.export.load
        raise UnsupportedOperation(
            f"torch {torch.__version__} lacks the .pt2 reader wasinn's safe loader needs ({exc}); "
            "ExportedProgram archives cannot be loaded safely with it"
        ) from None
    return (
        schema,
        ExportedProgramDeserializer,
        _bytes_to_dataclass,
        (deserialize_size, deserialize_stride, deserialize_storage_offset),
        package,
        constants,
    )


def _restricted_load(data: bytes, what: str) -> Any:
    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # the restricted unpickler names the global it refused
        message = str(exc).strip().splitlines()
        reason = next(
            (line for line in message if "GLOBAL" in line or "Unsupported" in line), message[0] if message else ""
        )
        raise Pt2Refused(
            f"{what} is a pickle that torch's weights-only unpickler refuses ({reason.strip()}); "
            "wasinn never unpickles model data without that restriction"
        ) from None


def _payloads(reader: Any, kind: str, directory: str, config_format: str, helpers: Any) -> dict[str, Any]:
    """Weights or tensor constants by name, with pickled ones read by the restricted unpickler."""
    _, _, _, (size, stride, offset), package, constants = helpers
    names = set(reader.get_file_names())
    config_file = config_format.format(_MODEL)
    if config_file not in names:
        raise Pt2Refused(f"the archive has no {config_file} (a layout older than torch 2.6's is not loaded)")
    config = package._load_payload_config(reader, config_file)
    for payload in config.config.values():
        path = payload.path_name
        if kind == "constant" and not path.startswith(constants.TENSOR_CONSTANT_FILENAME_PREFIX):
            what = "a custom (torchbind) object" if path.startswith(constants.CUSTOM_OBJ_FILENAME_PREFIX) else None
            what = what or (
                "an opaque Python object" if path.startswith(constants.OPAQUE_OBJ_FILENAME_PREFIX) else None
            )
            raise Pt2Refused(
                f"the archive's constant {path!r} is {what or 'of an unknown kind'}, loaded by unpickling "
                "arbitrary objects; wasinn loads tensor constants only"
            )
    files = package._build_file_map(reader, config, directory)  # raw tensor records: no unpickling
    out: dict[str, Any] = {}
    for fqn, payload in config.config.items():
        if payload.use_pickle:
            record = f"{directory}{payload.path_name}"
            value = _restricted_load(reader.read_bytes(record), f"{kind} {fqn!r} ({record})")
            if not isinstance(value, torch.Tensor):
                raise Pt2Refused(f"{kind} {fqn!r} ({record}) is a {type(value).__name__}, not a tensor")
            out[fqn] = value
            continue
        meta = payload.tensor_meta
        if meta is None:
            raise Pt2Refused(f"{kind} {fqn!r} has no tensor metadata")
        tensor = torch.as_strided(
            files[payload.path_name], size(meta.sizes), stride(meta.strides), offset(meta.storage_offset)
        )
        out[fqn] = torch.nn.Parameter(tensor, requires_grad=False) if getattr(payload, "is_param", False) else tensor
    return out


def load_exported_program(data: bytes | memoryview, *, screen: bool = True) -> Any:
    """An ``ExportedProgram`` from ``.pt2`` bytes, loaded as the module docstring describes.

    ``screen=False`` skips the operator screen (for trusted models); the unpickling and evaluation
    checks always apply.

    Raises :class:`Pt2Refused` (``invalid_argument``) for archives holding code, pickled objects or
    anything else this loader will not read, and :class:`~wasinn_core.UnsupportedOperation` when this
    torch release lacks the reader it needs.
    """
    helpers = _private()
    schema, deserializer, bytes_to_dataclass, _, package, constants = helpers
    reader = package.PT2ArchiveReader(io.BytesIO(bytes(data)))
    version = reader.read_string(constants.ARCHIVE_VERSION_PATH)
    if version != constants.ARCHIVE_VERSION_VALUE:
        raise Pt2Refused(f"archive version {version!r} is not {constants.ARCHIVE_VERSION_VALUE!r}")
    names = reader.get_file_names()
    for directory, what in (
        (constants.AOTINDUCTOR_DIR, "AOTInductor native code"),
        (constants.EXECUTORCH_DIR, "an ExecuTorch program"),
    ):
        if any(name.startswith(directory) for name in names):
            raise Pt2Refused(f"the archive holds {what} ({directory}); wasinn loads exported graphs only")
    models = sorted(n for n in names if n.startswith(constants.MODELS_DIR))
    wanted = constants.MODELS_FILENAME_FORMAT.format(_MODEL)
    if wanted not in models:
        raise Pt2Refused(f"the archive has no {wanted} (models: {', '.join(models) or 'none'})")
    serialized = bytes_to_dataclass(schema.ExportedProgram, reader.read_bytes(wanted))
    for node in walk_dataclasses(serialized):
        if isinstance(node, schema.SymExpr):
            check_sym_expr(node.expr_str)
    for guard in serialized.guards_code or ():
        check_guard(guard)
    if screen:
        screen_exported(serialized, schema)
    weights = _payloads(reader, "weight", constants.WEIGHTS_DIR, constants.WEIGHTS_CONFIG_FILENAME_FORMAT, helpers)
    tensors = _payloads(
        reader, "constant", constants.CONSTANTS_DIR, constants.CONSTANTS_CONFIG_FILENAME_FORMAT, helpers
    )
    samples = constants.SAMPLE_INPUTS_FILENAME_FORMAT.format(_MODEL)
    if samples in names:  # checked, then dropped: running a program does not need them
        _restricted_load(reader.read_bytes(samples), f"the sample inputs ({samples})")
    # b"" for the sample inputs: the deserializer then sets example_inputs to None
    return deserializer(None).deserialize(serialized, weights, tensors, b"")
