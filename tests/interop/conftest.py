"""A Kafka-protocol arrowlog server for the interop tests.

One server process per test session, started with
``python -m arrowlog.server --data DIR --listen 127.0.0.1:0`` (the bound
address is its first line of stdout) and stopped with SIGTERM, which must
shut it down cleanly. Tests use their own topic and group names.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import arrowlog

SRC = str(Path(arrowlog.__file__).resolve().parent.parent)


class ServerProcess:
    def __init__(self, data_dir: Path, *extra: str):
        env = dict(os.environ)
        env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "arrowlog.server", "--data", str(data_dir),
             "--listen", "127.0.0.1:0", "--partitions", "1", *extra],
            stdout=subprocess.PIPE, stderr=self._log, env=env, text=True)
        line = self.proc.stdout.readline().strip()
        if not line:
            self.proc.wait(10)
            raise RuntimeError("arrowlog server did not start:\n" + self.log_path.read_text())
        self.bootstrap = line
        self.host, port = line.rsplit(":", 1)
        self.port = int(port)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("wire") / "data"
    srv = ServerProcess(data)
    yield srv
    code = srv.stop()
    assert code == 0, "server did not shut down cleanly:\n" + srv.log()


@pytest.fixture
def topic():
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def created(server, topic):
    """``topic``, created with one partition."""
    from arrowlog.server import messages as M

    from .wireclient import call

    resp = call(server, M.CREATE_TOPICS, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                                         "replication_factor": 1}]})
    assert resp["topics"][0]["error_code"] == 0
    return topic


@pytest.fixture
def group():
    return "g-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def kcat():
    """Debian's kcat, installed by the test setup (make system-deps) if missing."""
    path = shutil.which("kcat")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "kcat"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not installed: run `make system-deps` (apt-get install kcat)")
    return path
