"""``wasinn run`` end to end: the demo, every flag syntax, exit codes and traps, stdout hygiene."""

from __future__ import annotations

import io
import re
import shutil

import pytest

from wasinn_core import read_model_files
from wasinn_core._cli._parse import UsageError, parse_dir, parse_nn_graph, parse_nn_preload, parse_wasi_option

from .conftest import DIGITS_IMAGES, DIGITS_MODEL, GUESTS, ROOT
from .test_plugins import run_cli

DIGITS = str(GUESTS / "digits.wasm")
ECHO = str(GUESTS / "echo.wasm")
ONNX_MODEL = str(DIGITS_MODEL / "digits.onnx")


def accuracy(stdout: str) -> float:
    match = re.search(r"accuracy: (\d+)/(\d+)", stdout)
    assert match, stdout
    return int(match.group(1)) / int(match.group(2))


def test_demo_command_classifies_the_digits():
    result = run_cli(
        "run", "--dir", f"{DIGITS_IMAGES}::/images", "--nn-preload", f"digits:onnx:cpu:{ONNX_MODEL}", DIGITS, "/images"
    )
    assert result.returncode == 0, result.stderr
    assert accuracy(result.stdout) >= 0.9
    assert len(re.findall(r"predicted \d \(p=", result.stdout)) == 40
    assert "wasinn:" not in result.stdout  # stdout belongs to the guest
    assert result.stderr == ""


@pytest.mark.parametrize("form", ["wasmtime", "wasmedge", "plain", "mapdir"])
def test_dir_syntaxes(form):
    flags = {
        "wasmtime": ["--dir", f"{DIGITS_IMAGES}::/images"],
        "wasmedge": ["--dir", f"/images:{DIGITS_IMAGES}"],
        "plain": ["--dir", str(DIGITS_IMAGES)],
        "mapdir": ["--mapdir", f"/images::{DIGITS_IMAGES}"],
    }[form]
    guest_dir = str(DIGITS_IMAGES) if form == "plain" else "/images"
    result = run_cli("run", *flags, "--nn-preload", f"digits:ONNX:CPU:{ONNX_MODEL}", DIGITS, guest_dir)
    assert result.returncode == 0, result.stderr
    assert accuracy(result.stdout) >= 0.9


def test_wasmedge_dot_dir_and_guest_load(tmp_path):
    """`--dir .:.` from WasmEdge's docs, with the guest reading the model itself and calling load()."""
    shutil.copytree(DIGITS_IMAGES, tmp_path / "images")
    shutil.copy(ONNX_MODEL, tmp_path / "digits.onnx")
    result = run_cli(
        "run", "--dir", ".:.", DIGITS, "--model", "digits.onnx", "--encoding", "onnx", "images", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "loaded through load()" in result.stdout and accuracy(result.stdout) >= 0.9


def test_nn_graph_wasmtime_syntax(tmp_path):
    model_dir = tmp_path / "digits"
    model_dir.mkdir()
    shutil.copy(ONNX_MODEL, model_dir / "model.onnx")
    for flags in (["--nn-graph", f"onnx::{model_dir}"], ["-S", "nn", "-S", f"nn-graph=onnx::{model_dir}"]):
        result = run_cli("run", *flags, "--dir", f"{DIGITS_IMAGES}::/images", DIGITS, "/images")
        assert result.returncode == 0, result.stderr
        assert '"digits" loaded by name' in result.stdout


def test_nn_preload_two_files_openvino_style(tmp_path):
    xml, bin_ = DIGITS_MODEL / "digits.xml", DIGITS_MODEL / "digits.bin"
    model = parse_nn_preload(f"default:OpenVINO:GPU:{xml}:{bin_}")
    assert model.name == "default" and model.encoding.value == "openvino"
    assert model.paths == (xml, bin_) and [t.value for t in model.targets] == ["gpu"]
    # with only the ONNX plugin allowed, the run names what is missing and what is installed
    result = run_cli(
        "run", "--nn-preload", f"default:openvino:cpu:{xml}:{bin_}", DIGITS, "/x", env={"WASINN_PLUGINS": "onnx"}
    )
    assert result.returncode == 1
    assert "no installed backend claims openvino on cpu" in result.stderr
    assert "installed claims: onnx: onnxruntime" in result.stderr


def test_args_env_and_argv0():
    result = run_cli("run", "--env", "GREETING=hi there", "--env", "HOME", "--argv0", "prog", ECHO, "a", "--b", "-c")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["argv[0]=prog", "argv[1]=a", "argv[2]=--b", "argv[3]=-c"]
    assert "env GREETING=hi there" in lines
    assert any(line.startswith("env HOME=") for line in lines)
    default = run_cli("run", ECHO)
    assert default.stdout.splitlines()[0] == "argv[0]=echo.wasm"


def test_inherit_env():
    result = run_cli("run", "-S", "inherit-env", ECHO, env={"WASINN_TEST_VAR": "42"})
    assert "env WASINN_TEST_VAR=42" in result.stdout


def test_read_only_wasmedge_dir_lists(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    result = run_cli("run", "--dir", f"/data:{tmp_path}:readonly", ECHO, "--ls", "/data")
    assert "ls /data: f.txt" in result.stdout


def test_guest_exit_code_passes_through():
    assert run_cli("run", ECHO, "--exit", "7").returncode == 7
    assert run_cli("run", ECHO, "--exit", "0").returncode == 0


def test_trap_prints_message_and_exits_134():
    result = run_cli("run", ECHO, "--trap")
    assert result.returncode == 134
    assert "trapped" in result.stderr and "unreachable" in result.stderr
    assert result.stdout.startswith("argv[0]=echo.wasm")


def test_wasi_nn_errors_reach_the_guest_and_the_log():
    result = run_cli("run", "--dir", f"{DIGITS_IMAGES}::/images", DIGITS, "/images")
    assert result.returncode == 1
    assert "load_by_name failed: not_found (errno 8)" in result.stderr
    assert "wasinn: WARNING: load_by_name(" in result.stderr and "no model named 'digits'" in result.stderr


def test_gpu_request_is_refused_not_moved_to_cpu():
    result = run_cli("run", "--nn-preload", f"digits:onnx:gpu:{ONNX_MODEL}", DIGITS, "/x")
    assert result.returncode == 1
    assert "cannot run onnx on gpu" in result.stderr and "CUDAExecutionProvider not available" in result.stderr
    fallback = run_cli(
        "-v",
        "run",
        "--fallback",
        "cpu",
        "--dir",
        f"{DIGITS_IMAGES}::/i",
        "--nn-preload",
        f"digits:onnx:gpu:{ONNX_MODEL}",
        DIGITS,
        "/i",
    )
    assert fallback.returncode == 0, fallback.stderr
    assert "requested on gpu but it cannot be served there" in fallback.stderr


def test_verbose_logging_goes_to_stderr():
    result = run_cli(
        "run",
        "-vv",
        "--dir",
        f"{DIGITS_IMAGES}::/images",
        "--nn-preload",
        f"digits:onnx:cpu:{ONNX_MODEL}",
        DIGITS,
        "/images",
    )
    assert "model 'digits' loaded: onnx on cpu with onnxruntime" in result.stderr
    assert "wasinn:" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--nn-preload", "digits:onnx:cpu", DIGITS], "expected NAME:ENCODING:TARGET:PATH"),
        (["run", "--nn-preload", f"d:onyx:cpu:{ONNX_MODEL}", DIGITS], "unknown graph encoding 'onyx'"),
        (["run", "--nn-preload", f"d:onnx:npu:{ONNX_MODEL}", DIGITS], "allowed: cpu, gpu, tpu, auto"),
        (["run", "--nn-preload", "d:onnx:cpu:/no/such.onnx", DIGITS], "model file '/no/such.onnx' does not exist"),
        (["run", "--nn-graph", "onnx:/tmp", DIGITS], "expected ENCODING::DIR"),
        (["run", "--nn-graph", f"onnx::{DIGITS_IMAGES}", DIGITS], "lacks model.onnx"),
        (["run", "--dir", "/no/such/dir::/x", DIGITS], "host directory '/no/such/dir' does not exist"),
        (["run", "--dir", "a:b:c:d", DIGITS], "expected GUEST:HOST[:readonly]"),
        (["run", "-S", "threads", DIGITS], "unsupported WASI option 'threads'"),
        (["run", "--env", "=x", DIGITS], "expected KEY=VALUE"),
        (["run", "--nn-prefer", "onnx", DIGITS], "expected ENCODING[:TARGET]=BACKEND"),
        (["run", "--nn-prefer", "onnx=nosuch", DIGITS], "no installed backend is called 'nosuch'"),
        (["run", "no-such.wasm"], "no such file"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(args, message):
    result = run_cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert result.stdout == ""


def test_config_file_and_config_errors(tmp_path):
    config = tmp_path / "wasinn.toml"
    config.write_text(f'[[models]]\nname = "digits"\nencoding = "onnx"\npath = "{ONNX_MODEL}"\n')
    ok = run_cli("run", "--config", str(config), "--dir", f"{DIGITS_IMAGES}::/images", DIGITS, "/images")
    assert ok.returncode == 0 and accuracy(ok.stdout) >= 0.9
    config.write_text('[[models]]\nname = "digits"\nencoding = "onnx"\npath = "x"\ntarget = "gpu0"\n')
    bad = run_cli("run", "--config", str(config), DIGITS)
    assert bad.returncode == 2 and f"{config}: models[0].target" in bad.stderr


def test_not_a_wasm_module(tmp_path):
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"not wasm")
    result = run_cli("run", str(junk))
    assert result.returncode == 1 and "cannot load module" in result.stderr


def test_module_without_start(tmp_path):
    lib = tmp_path / "lib.wat"
    lib.write_text('(module (memory (export "memory") 1))')
    result = run_cli("run", str(lib))
    assert result.returncode == 1 and "exports no _start" in result.stderr


def test_unknown_import(tmp_path):
    mod = tmp_path / "imp.wat"
    mod.write_text('(module (import "wasi_ephemeral_nn" "no_such_fn" (func)) (func (export "_start")))')
    result = run_cli("run", str(mod))
    assert result.returncode == 1 and "no_such_fn" in result.stderr


def test_progress_bar_for_big_models(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"\1" * (3 * 1024 * 1024))
    stream = io.StringIO()
    blobs = read_model_files([path], progress=True, stream=stream)
    assert bytes(blobs[0]) == path.read_bytes()
    assert "loading big.bin" in stream.getvalue() and "100.0%" in stream.getvalue()
    quiet = io.StringIO()
    read_model_files([path], stream=quiet)  # small, and not a terminal: no bar
    assert quiet.getvalue() == ""


def test_parsers_directly():
    assert parse_dir(f"/g:{ROOT}:readonly") == (str(ROOT), "/g", True)
    assert parse_dir(f"{ROOT}::/g") == (str(ROOT), "/g", False)
    assert parse_wasi_option("nn,inherit-env") == [("nn", ""), ("inherit-env", "")]
    with pytest.raises(UsageError, match="always provides"):
        parse_wasi_option("nn=n")
    model_dir = DIGITS_MODEL
    with pytest.raises(UsageError, match=r"lacks model\.xml, model\.bin"):
        parse_nn_graph(f"openvino::{model_dir}")
