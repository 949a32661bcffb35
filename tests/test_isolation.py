"""Guest models in confined worker processes: what a model with the worker's full authority cannot do.

:mod:`tests.exploit_backend` stands for a library a crafted model has taken over: it performs
whatever its model asks. In a worker (the default for guest models) every escape fails: files
outside the libraries' own, the host's processes, sockets, programs. The same actions in the host
process succeed, which shows each assertion can fail. Crashes, hangs and runaway allocations cost
the guest its graph and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from wasinn_core import (
    BackendError,
    Config,
    ExecutionTarget,
    GraphEncoding,
    Host,
    Limits,
    PluginManager,
    Tensor,
    UnsupportedOperation,
)
from wasinn_core.testing import registered

from . import exploit_backend
from .exploit_backend import ENCODING, program

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="worker processes need Linux pidfds")

CPU = ExecutionTarget.CPU


@pytest.fixture
def plugins():
    pm = PluginManager(environ={})
    with registered(pm, exploit_backend.SPEC, name="exploit"):
        yield pm


def make_host(plugins: PluginManager, **isolation: object) -> Host:
    return Host(Config.from_dict({"isolation": isolation} if isolation else {}), plugins=plugins)


@pytest.fixture
def host(plugins):
    h = make_host(plugins)
    yield h
    h.close()


@pytest.fixture
def in_process(plugins):
    h = make_host(plugins, guest="none")
    yield h
    h.close()


def run(host: Host, data: bytes, limits: Limits | None = None) -> dict:
    session = host.new_session(limits)
    try:
        ctx = session.init_execution_context(session.load([memoryview(data)], ENCODING, CPU))
        session.set_input(ctx, 0, Tensor.from_array(np.zeros(1, np.float32)))
        session.compute(ctx)
        return json.loads(bytes(session.get_output(ctx, 0).data))
    finally:
        session.close()


def outcome(host: Host, *actions: list) -> list[dict]:
    return run(host, program(compute=actions))["compute"]


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(f"TOPSECRET-{os.getpid()}-{time.time_ns()}")
    return path


# -- files ------------------------------------------------------------------------------------------------


def test_a_worker_reads_no_host_file_by_absolute_relative_or_symlinked_path(host, in_process, secret, monkeypatch):
    guest_dir = secret.parent / "preopen"
    guest_dir.mkdir()
    (guest_dir / "link").symlink_to(secret)
    monkeypatch.chdir(secret.parent)  # what a relative path means in the host
    attempts = [
        ["read", str(secret)],
        ["read", secret.name],
        ["read", f"../../../../../..{secret}"],
        ["read", str(guest_dir / "link")],
        ["read", "/etc/passwd"],
        ["listdir", str(secret.parent)],
        ["read", str(Path(__file__).parents[1] / "README.md")],  # the project's files beside its packages
    ]
    isolated = outcome(host, *attempts)
    assert [r["ok"] for r in isolated] == [False] * len(attempts), isolated
    assert all("PermissionError" in r["detail"] or "FileNotFoundError" in r["detail"] for r in isolated)
    assert secret.read_text() not in json.dumps(isolated)
    leaked = outcome(in_process, *attempts[:2], attempts[3])  # the same model in the host process
    assert all(r["ok"] and r["detail"] == secret.read_text() for r in leaked), leaked


def test_a_worker_writes_only_its_own_scratch_folder(host, tmp_path):
    isolated = outcome(
        host, ["write", str(tmp_path / "planted"), "x"], ["write", "mine.txt", "x"], ["read", "mine.txt"]
    )
    assert [r["ok"] for r in isolated] == [False, True, True]
    assert not (tmp_path / "planted").exists()


def test_a_worker_runs_no_program(host, in_process, tmp_path):
    marker = tmp_path / "ran"
    assert not outcome(host, ["exec", "/usr/bin/touch", str(marker)])[0]["ok"]
    assert not marker.exists()
    assert outcome(in_process, ["exec", "/usr/bin/touch", str(marker)])[0]["ok"] and marker.exists()


# -- network and other processes --------------------------------------------------------------------------


@pytest.fixture
def listeners(tmp_path):
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    unix_path = str(tmp_path / "host.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(unix_path)
    unix.listen()
    yield [
        ["tcp", "127.0.0.1", tcp.getsockname()[1]],
        ["udp", "127.0.0.1", udp.getsockname()[1]],
        ["unix", unix_path],
    ]
    for s in (tcp, udp, unix):
        s.close()


def test_a_worker_opens_no_socket(host, in_process, listeners):
    isolated = outcome(host, *listeners)
    assert [r["ok"] for r in isolated] == [False, False, False], isolated
    assert all("PermissionError" in r["detail"] for r in isolated)
    assert [r["ok"] for r in outcome(in_process, *listeners)] == [True, True, True]


def test_a_worker_cannot_signal_trace_or_read_the_host(host):
    received = []
    previous = signal.signal(signal.SIGUSR2, lambda *a: received.append(a))
    try:
        me = os.getpid()
        isolated = outcome(host, ["kill", me], ["proc", me, "environ"], ["proc", me, "cmdline"], ["proc", me, "mem"])
        time.sleep(0.2)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert not received, "the worker signalled the host"
    assert [r["ok"] for r in isolated] == [False] * 4, isolated


def test_a_worker_gets_none_of_the_hosts_secrets_from_its_environment(host, monkeypatch):
    monkeypatch.setenv("API_TOKEN_FOR_A_TEST", "s3cr3t")
    names = outcome(host, ["env"])[0]["detail"].split(",")
    assert "API_TOKEN_FOR_A_TEST" not in names and "HOME" in names


# -- faults: crash, hang, memory ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["segfault", "abort", "exit"])
def test_a_crashing_load_costs_the_guest_that_load_only(host, fault):
    session = host.new_session()
    with pytest.raises(BackendError, match="died during load") as info:
        session.load([memoryview(program(load=[[fault]]))], ENCODING, CPU)
    assert {"segfault": "SIGSEGV", "abort": "SIGABRT", "exit": "status 3"}[fault] in info.value.message
    assert run(host, program(compute=[["env"]]))["compute"][0]["ok"]  # a new worker serves the next load
    assert session.load([memoryview(program())], ENCODING, CPU) == 0  # the failed load took no handle
    session.close()


def test_a_crash_in_compute_kills_that_graph_and_nothing_else(host):
    session = host.new_session()
    good = session.init_execution_context(session.load([memoryview(program(compute=[["env"]]))], ENCODING, CPU))
    bad = session.init_execution_context(session.load([memoryview(program(compute=[["segfault"]]))], ENCODING, CPU))
    x = Tensor.from_array(np.zeros(1, np.float32))
    for ctx in (good, bad):
        session.set_input(ctx, 0, x)
    with pytest.raises(BackendError, match="died during compute: killed by SIGSEGV"):
        session.compute(bad)
    with pytest.raises(BackendError, match="is gone"):
        session.compute(bad)
    for _ in range(3):
        session.compute(good)
        assert json.loads(bytes(session.get_output(good, 0).data))["compute"][0]["ok"]
    session.finalize_execution_context(bad)  # releasing a dead graph's context still works
    session.close()


def test_a_hanging_compute_is_killed_at_its_deadline(host):
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"did not finish compute within 1 s \(compute_timeout_s\); it was killed"):
        run(host, program(compute=[["hang"]]), Limits(compute_timeout_s=1))
    assert time.monotonic() - start < 10


def test_a_hanging_load_is_killed_at_its_deadline(host):
    with pytest.raises(BackendError, match=r"did not finish load within 1 s \(load_timeout_s\)"):
        run(host, program(load=[["hang"]]), Limits(load_timeout_s=1))


def test_a_worker_cannot_allocate_past_its_memory_cap(host):
    limits = Limits(worker_memory_bytes=256 * 1024 * 1024)
    result = run(host, program(compute=[["alloc", 64 * 1024 * 1024], ["alloc", 2 * 1024**3]]), limits)["compute"]
    assert result[0]["ok"] and not result[1]["ok"] and "MemoryError" in result[1]["detail"]


# -- a lying worker ---------------------------------------------------------------------------------------


def _forged(message: bytes) -> str:
    return (len(message).to_bytes(4, "little") + message).hex()


@pytest.mark.parametrize(
    "raw",
    [
        "ffffffff",  # a length past the limit
        _forged(b"not json"),
        _forged(b'{"ok": true, "outputs": [{"name": "x", "dims": [1000000], "type": "f32", "offset": 0, '
                b'"nbytes": 4000000}], "written": true}'),  # an output outside its arena
        _forged(b'{"ok": true, "outputs": [{"name": "x", "dims": [4], "type": "f32", "offset": 0, "nbytes": 3}], '
                b'"written": true}'),  # a size that does not match its shape
        _forged(b'{"ok": false, "code": "runtime_error", "message": "line one\\nwasinn: WARNING: forged"}'),
    ],
)  # fmt: skip
def test_a_worker_that_lies_is_killed_or_its_words_are_defused(host, raw, caplog):
    with pytest.raises(BackendError) as info:
        run(host, program(compute=[["forge", raw]]), Limits(compute_timeout_s=5))
    assert "\n" not in info.value.message
    assert "forged" in info.value.message or "killed" in info.value.message or "died" in info.value.message


# -- the rest of the host keeps working ----------------------------------------------------------------------


def test_another_guest_gets_correct_results_while_one_attacks(host):
    """Two guests in one process: one crashes, hangs and allocates its workers; the other never notices."""
    errors: list[str] = []
    stop = threading.Event()

    def honest() -> None:
        n = 0
        while not stop.is_set():
            result = run(host, program(compute=[["write", "own.txt", f"round {n}"], ["read", "own.txt"]]))
            if result["compute"][1]["detail"] != f"round {n}":
                errors.append(str(result))
            n += 1

    thread = threading.Thread(target=honest)
    thread.start()
    for fault in ("segfault", "abort", "hang"):
        with pytest.raises(BackendError):
            run(host, program(compute=[[fault]]), Limits(compute_timeout_s=1))
    run(host, program(compute=[["alloc", 2 * 1024**3]]), Limits(worker_memory_bytes=128 * 1024 * 1024))
    stop.set()
    thread.join(30)
    assert not errors


# -- where the kernel cannot confine ----------------------------------------------------------------------------


def test_without_landlock_program_formats_from_guests_are_refused_not_run_unconfined(monkeypatch, digits_onnx):
    """A test double for an old kernel or another OS: WASINN_LANDLOCK_ABI=0 makes the probe report no Landlock."""
    monkeypatch.setenv("WASINN_LANDLOCK_ABI", "0")
    host = Host(Config(), plugins=PluginManager(environ={}))
    session = host.new_session()
    with pytest.raises(UnsupportedOperation, match="guest-supplied pytorch models run only in a confined worker") as e:
        session.load([memoryview(b"PK\x03\x04")], GraphEncoding.PYTORCH, CPU)
    assert "[isolation] unconfined_guest_load" in e.value.message and "Landlock ABI forced to 0" in e.value.message
    graph = session.load([memoryview(digits_onnx)], GraphEncoding.ONNX, CPU)
    info = session.graph_info(graph)
    assert info.isolation == "process" and "unavailable" in info.isolation_reason
    session.close()
    host.close()


def test_graph_info_says_where_a_graph_runs_and_why(host, in_process):
    for h, mode, why in ((host, "process", '[isolation] guest = "process"'), (in_process, "none", 'guest = "none"')):
        session = h.new_session()
        info = session.graph_info(session.load([memoryview(program())], ENCODING, CPU))
        assert info.isolation == mode and why in info.isolation_reason
        session.close()
    session = host.new_session()
    info = session.graph_info(session.load([memoryview(program())], ENCODING, CPU))
    assert "Landlock ABI" in info.isolation_reason and "seccomp" in info.isolation_reason
    assert info.device.startswith("exploit (pid ") and str(os.getpid()) not in info.device
    session.close()


def workers() -> set[int]:
    """The pids of every worker of this process's zygotes."""
    zygotes = {int(p) for p in os.listdir("/proc") if p.isdigit() and _is_child_zygote(int(p))}
    return {int(t) for z in zygotes for t in _children(z)}


def test_workers_end_with_their_graphs_and_sessions(host):
    session = host.new_session()
    before = workers()  # other tests' hosts share the zygote: their spares stay
    graphs = [session.load([memoryview(program())], ENCODING, CPU) for _ in range(3)]
    during = workers()  # a worker per graph (the first may be a spare from before), and a new spare
    for g in graphs:
        session.unload(g)
    session.close()
    time.sleep(0.2)
    after = workers()
    assert len(during - after) >= 3  # the three graphs' workers ended with them
    assert len(after - before) <= 1  # what these loads leave is at most the warm spare


def test_hosts_with_many_different_limits_leave_spares_for_the_last_few_settings_only(host):
    before = workers()
    for i in range(8):  # each cap is another worker setting, with a spare of its own
        run(host, program(), Limits(worker_memory_bytes=(512 + i) * 1024 * 1024))
    time.sleep(0.5)  # the last load's spare starts after it
    assert len(workers() - before) <= 4


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def _is_child_zygote(pid: int) -> bool:
    try:
        return "_isolation._zygote" in Path(f"/proc/{pid}/cmdline").read_text() and str(pid) in _children(os.getpid())
    except OSError:
        return False


def test_where_there_are_no_worker_processes_guest_programs_are_refused_and_data_formats_run_in_process(
    monkeypatch, digits_onnx
):
    """A test double for macOS or Windows (no memfd, no pidfd): the platform check says so."""
    from wasinn_core._isolation import _policy

    monkeypatch.setattr(_policy, "WORKERS_MISSING", "worker processes need Linux (a test double)")
    host = Host(Config(), plugins=PluginManager(environ={}))
    session = host.new_session()
    with pytest.raises(UnsupportedOperation, match=r"guest-supplied pytorch models run only in a confined worker"):
        session.load([memoryview(b"PK\x03\x04")], GraphEncoding.PYTORCH, CPU)
    info = session.graph_info(session.load([memoryview(digits_onnx)], GraphEncoding.ONNX, CPU))
    assert info.isolation == "none" and "worker processes need Linux (a test double)" in info.isolation_reason
    assert "none: worker processes need Linux" in host.registry.isolator.describe_confinement()
    session.close()
    host.close()


def test_the_channel_hands_over_descriptors_and_refuses_too_many_without_leaking_them(tmp_path):
    from wasinn_core._isolation._channel import Channel, ChannelClosed

    host_end, worker_end = socket.socketpair()
    channel = Channel(worker_end)
    files = [os.open(tmp_path, os.O_RDONLY) for _ in range(9)]
    try:
        socket.send_fds(host_end, [b'\x0c\x00\x00\x00{"op":"one"}'], files[:1])
        message, fds = channel.receive_with_fds()
        assert message == {"op": "one"} and len(fds) == 1
        assert os.path.samestat(os.fstat(fds[0]), os.fstat(files[0]))
        os.close(fds[0])
        open_before = len(os.listdir("/proc/self/fd"))
        socket.send_fds(host_end, [b'\x0c\x00\x00\x00{"op":"two"}'], files)  # one more than a message may carry
        with pytest.raises(ChannelClosed, match="more than 8 descriptors"):
            channel.receive_with_fds()
        assert len(os.listdir("/proc/self/fd")) == open_before  # the ones that arrived were closed
    finally:
        for fd in files:
            os.close(fd)
        host_end.close()
        channel.close()
