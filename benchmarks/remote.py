"""The remote backend over loopback: a KServe server (``python -m wasinn_remote.loopback``) for the runner.

The guest's ``--model`` files reach the server through the plugin's repository upload; the config
prefers the ``remote`` backend for ONNX, so the same guest and model run there instead of in-process.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["WORKLOADS", "loopback"]

#: Workloads the remote column measures (64 MiB each way through REST is a test of the network, not the host).
WORKLOADS = ("tiny", "mnet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def loopback() -> Iterator[Path | None]:
    """A running loopback server; yields a wasinn config that sends ONNX to it, or None without kserve."""
    if importlib.util.find_spec("kserve") is None or importlib.util.find_spec("wasinn_remote") is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="wasinn-bench-remote-") as tmp:
        repository = Path(tmp) / "models"
        repository.mkdir()
        port = _free_port()
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115 - closed below
        command = [sys.executable, "-m", "wasinn_remote.loopback", "--repository", str(repository)]
        command += ["--http-port", str(port), "--grpc-port", str(_free_port())]
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as answer:
                        if json.load(answer).get("ready"):
                            break
                except OSError:
                    time.sleep(0.3)
            else:
                raise RuntimeError(
                    f"the loopback server did not start:\n{(Path(tmp) / 'server.log').read_text()[-2000:]}"
                )
            config = Path(tmp) / "wasinn.toml"
            config.write_text(
                f'[preferences]\nonnx = ["remote"]\n\n[backends.remote]\nurl = "{url}"\n'
                f'repository = "{repository}"\ntimeout_s = 60.0\n'
            )
            yield config
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
