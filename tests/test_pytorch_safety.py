"""PyTorch archives that would run code or reach the host: refused on every path, legitimate ones still load.

Each hostile ``.pt2`` of :mod:`tests.hostile` is first shown to run its command under an unrestricted
``torch.export.load`` (so the test would fail if wasinn's loader were as trusting), then loaded through
a real wasm guest on default settings and as a named model: the command never runs, the guest gets
``invalid_argument`` and the log names the refusal.
"""

from __future__ import annotations

import ast
import io
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is installed by `make test`")

from wasinn_core import Config, ExecutionTarget, GraphEncoding, Host, InvalidArgument, Tensor  # noqa: E402
from wasinn_core.testing import run_guest  # noqa: E402
from wasinn_pytorch._pt2 import Pt2Refused, check_guard, check_sym_expr  # noqa: E402

from . import hostile, models  # noqa: E402
from .conftest import GUESTS  # noqa: E402
from .test_plugins import run_cli  # noqa: E402

PICKLE_AND_EVAL = ("sample_inputs", "weight", "constant", "opaque_object", "sym_expr", "guard")
REFUSAL = {
    "sample_inputs": "weights-only unpickler refuses",
    "weight": "weights-only unpickler refuses",
    "constant": "weights-only unpickler refuses",
    "opaque_object": "an opaque Python object",
    "sym_expr": "is not shape arithmetic",
    "guard": "is not a check on input sizes",
    "aotinductor": "AOTInductor native code",
    "from_file": "aten::from_file (reads a host file)",
}


def unrestricted_load(path: Path) -> subprocess.CompletedProcess[str]:
    """What torch itself does with the archive: load it and run it, in a child process."""
    code = (
        f"import io, torch\nep = torch.export.load(io.BytesIO(open({str(path)!r}, 'rb').read()))\n"
        "ep.module()(torch.ones(2, 3))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind", PICKLE_AND_EVAL)
def test_the_hostile_archives_really_run_their_command_under_torch_export_load(tmp_path, kind):
    marker = tmp_path / "ran"
    path = models.write(tmp_path / "evil.pt2", hostile.hostile_pt2(kind, str(marker)))
    unrestricted_load(path)
    assert marker.exists(), f"{kind}: the archive is not hostile, so the tests below would prove nothing"


INPUT = "input.bin"
CPU = ExecutionTarget.CPU


def classify(model: Path) -> list[str]:
    """The classify guest's arguments: load ``model`` from the preopen /m and run it on a 2x3 input."""
    return ["--model", f"/m/{model.name}", "--encoding", "pytorch", "--dims", "2x3", f"/m/{INPUT}"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / INPUT).write_bytes(np.ones((2, 3), np.float32).tobytes())
    return tmp_path


def test_guest_pt2_with_a_command_in_its_sample_inputs_is_refused_by_wasinn_run(folder):
    """The reported attack, end to end: `wasinn run` with no flags, a guest loading its own .pt2."""
    marker = folder / "ran"
    model = models.write(folder / "evil.pt2", hostile.hostile_pt2("sample_inputs", str(marker)))
    result = run_cli("run", "--dir", f"{folder}::/m", str(GUESTS / "classify.wasm"), *classify(model))
    assert not marker.exists(), "the guest's command ran on the host"
    assert result.returncode == 1
    assert "load failed: invalid_argument (errno 1)" in result.stderr
    assert "load(" in result.stderr and "weights-only unpickler refuses" in result.stderr
    assert "GLOBAL posix.system" in result.stderr  # the log names what the archive tried


@pytest.mark.parametrize("kind", hostile.PT2_ATTACKS)
def test_guest_pt2_attacks_are_refused_through_a_real_guest(folder, plugins, caplog, kind):
    marker = folder / "ran"
    model = models.write(folder / "evil.pt2", hostile.hostile_pt2(kind, str(marker)))
    host = Host(Config(), plugins=plugins)  # default settings
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        run = run_guest(host, GUESTS / "classify.wasm", classify(model), [(str(folder), "/m", True)])
    host.close()
    assert not marker.exists()
    assert run.exit_code == 1 and "load failed: invalid_argument (errno 1)" in run.stderr
    assert any(REFUSAL[kind] in r.getMessage() and r.getMessage().startswith("load(") for r in caplog.records)


@pytest.mark.parametrize("kind", PICKLE_AND_EVAL)
def test_named_pt2_attacks_are_refused_the_same_way(folder, kind):
    marker = folder / "ran"
    model = models.write(folder / "evil.pt2", hostile.hostile_pt2(kind, str(marker)))
    result = run_cli(
        "run", "--nn-preload", f"evil:pytorch:cpu:{model}", "--dir", f"{folder}::/m", str(GUESTS / "classify.wasm"),
        "--name", "evil", "--dims", "2x3", f"/m/{INPUT}",
    )  # fmt: skip
    assert not marker.exists()
    assert result.returncode == 1
    assert REFUSAL[kind] in result.stderr and "wasinn: error:" in result.stderr


# -- legitimate archives --------------------------------------------------------------------------------


def run_session(host: Host, data: bytes, x: np.ndarray) -> np.ndarray:
    session = host.new_session()
    try:
        graph = session.load([memoryview(data)], GraphEncoding.PYTORCH, CPU)
        ctx = session.init_execution_context(graph)
        session.set_input(ctx, 0, Tensor.from_array(x))
        session.compute(ctx)
        return np.array(session.get_output(ctx, 0).data)
    finally:
        session.close()


@pytest.mark.parametrize("variant", ["static", "dynamic", "no_sample_inputs"])
def test_legitimate_pt2_archives_still_load_and_compute(host, variant):
    data = hostile.legit_pt2(dynamic=variant == "dynamic")
    if variant == "no_sample_inputs":
        data = hostile.without_sample_inputs(data)
    x = np.arange(12, dtype=np.float32).reshape(4, 3) if variant == "dynamic" else np.ones((2, 3), np.float32)
    with torch.no_grad():
        want = hostile.legit_module()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_session(host, data, x), want, rtol=1e-6, atol=1e-6)


def test_the_digits_pt2_still_classifies(host):
    from .conftest import DIGITS_IMAGES, DIGITS_MODEL, read_pgm

    image = read_pgm(DIGITS_IMAGES / "digit-000.pgm")
    got = run_session(host, (DIGITS_MODEL / "digits.pt2").read_bytes(), image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        want = torch.jit.load(str(DIGITS_MODEL / "digits.pt"))(torch.from_numpy(image)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def _unrestricted_loads(path: Path) -> list[str]:
    """Calls of an unrestricted unpickler in a source file: torch.export.load, pickle.load(s), torch.load
    without weights_only=True, and anything passed weights_only=False."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if (
            name in ("torch.export.load", "pickle.load", "pickle.loads", "torch._C._pickle_load_obj")
            or (name == "torch.load" and keywords.get("weights_only") != "True")
            or keywords.get("weights_only") == "False"
        ):
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_code_path_unpickles_model_bytes_without_restriction(tmp_path):
    """Product code never calls an unrestricted unpickler on a model (tests do, on purpose, in a child)."""
    from .conftest import ROOT

    planted = tmp_path / "planted.py"
    planted.write_text("import torch\ntorch.load(f, weights_only=False)\ntorch.export.load(f)\n")
    assert len(_unrestricted_loads(planted)) == 2  # the scan sees what it looks for
    found = [
        hit
        for top in ("wasinn_core", "plugins", "conformance", "examples", "benchmarks", "guests")
        for path in sorted((ROOT / top).rglob("*.py"))
        for hit in _unrestricted_loads(path)
    ]
    assert not found, "\n".join(found)


# -- the grammar checks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Symbol('s77', positive=True, integer=True)",
        "Mul(Integer(2), Symbol('s0', integer=True, positive=True))",
        "FloorDiv(Add(Symbol('s0', integer=True), Integer(-1)), Integer(2))",
        "Float('0.5', precision=53)",
        "Max(1, s0) <= 2048",
    ],
)
def test_shape_arithmetic_passes_the_grammar(text):
    check_sym_expr(text)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('id')",
        "Symbol('s0').__class__",
        "s0.func",  # attribute access
        "sympify('1+1')",
        "lambdify(s0, s0)",
        "Symbol('a b')",
        "Integer(1)[0]",
    ],
)
def test_anything_else_is_refused_by_the_grammar(text):
    with pytest.raises(Pt2Refused):
        check_sym_expr(text)


def test_shape_guards_are_checks_on_input_sizes_only():
    check_guard("L['x'].size()[0] <= 1024")
    check_guard("2 <= L['x'].size()[0] and L['y'].stride()[1] == 1")
    check_guard("not math.isnan(L['t'])")
    for bad in ("print(1)", "L['x'].__class__", "open('/etc/passwd').read() == ''", "(lambda: 1)() == 1"):
        with pytest.raises(Pt2Refused):
            check_guard(bad)


# -- TorchScript: the operator screen ------------------------------------------------------------------


class ReadsAFile(torch.nn.Module):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_file(self.path, size=4, dtype=torch.uint8).float() + x


class Prints(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("from the model")
        return x


class SetsState(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.data = torch.zeros(4)

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.data, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        self.data = torch.from_file("/etc/hostname", size=4, dtype=torch.uint8).float()
        self.training = state[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.data + x


def scripted(module: torch.nn.Module) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(module), buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (lambda p: ReadsAFile(p), "aten::from_file (reads a host file) in __torch__"),
        (lambda p: Prints(), "prim::Print (writes to the host's stdout)"),
        (lambda p: SetsState(), "defines __setstate__"),
    ],
)
def test_torchscript_reaching_the_host_is_refused_before_it_runs(host, tmp_path, module, message):
    secret = tmp_path / "secret"
    secret.write_bytes(b"ABCD")
    data = scripted(module(str(secret)))
    session = host.new_session()
    with pytest.raises(InvalidArgument, match="refuses") as info:  # from the worker: errno and message cross
        session.load([memoryview(data)], GraphEncoding.PYTORCH, CPU)
    assert message in info.value.message
    session.close()


def test_a_screened_torchscript_module_really_reads_the_file_without_the_screen(tmp_path):
    """The screen's test is meaningful: torch itself runs the operator."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"ABCD")
    module = torch.jit.load(io.BytesIO(scripted(ReadsAFile(str(secret)))))
    assert module(torch.zeros(4)).tolist() == [65.0, 66.0, 67.0, 68.0]
