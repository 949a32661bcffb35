"""The remote backend over loopback: a KServe server (``wasinn_remote.loopback``) for the runner.

The guest's ``--model`` files reach the server through the plugin's repository upload; the config
prefers the ``remote`` backend for ONNX, so the same guest and model run there instead of in-process.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["WORKLOADS", "loopback"]

#: Workloads the remote column measures (64 MiB each way through REST is a test of the network, not the host).
WORKLOADS = ("tiny", "mnet")


@contextmanager
def loopback() -> Iterator[Path | None]:
    """A running loopback server; yields a wasinn config that sends ONNX to it, or None without kserve."""
    if importlib.util.find_spec("kserve") is None or importlib.util.find_spec("wasinn_remote") is None:
        yield None
        return
    from wasinn_remote.loopback import running

    with tempfile.TemporaryDirectory(prefix="wasinn-bench-remote-") as tmp:
        repository = Path(tmp) / "models"
        repository.mkdir()
        with running(repository, Path(tmp) / "server.log") as server:
            config = Path(tmp) / "wasinn.toml"
            config.write_text(
                f'[preferences]\nonnx = ["remote"]\n\n[backends.remote]\nurl = "{server.http}"\n'
                f'repository = "{repository}"\ntimeout_s = 60.0\n'
            )
            yield config
