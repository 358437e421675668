"""Peer servers the harness starts and stops itself: redis-server and nats-server.

Each listens on a free 127.0.0.1 port with its data in a temporary directory
that is removed on stop. A binary or client library that is absent raises
:class:`~bench.harness.PeerUnavailable`, which the harness reports as a
missing row.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from .harness import PeerUnavailable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound then released)."""
    return free_port()


SBIN_DIRS = ("/usr/bin", "/usr/sbin")  # Debian puts nats-server in /usr/sbin, often not on a user's PATH


def which(binary: str) -> str:
    path = shutil.which(binary) or next(
        (p for p in (os.path.join(d, binary) for d in SBIN_DIRS) if os.path.exists(p)), None
    )
    if path is None:
        raise PeerUnavailable(f"{binary} is not installed (apt-get install {binary})")
    return path


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PeerUnavailable(f"server exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise PeerUnavailable(f"server did not listen on port {port} within {timeout:.0f} s")


class _Server:
    name = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"arrowlog-bench-{self.name}-")
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self):
        try:
            self.proc = subprocess.Popen(
                self.command(), cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            _wait_port(self.port, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class RedisServer(_Server):
    """redis-server with an append-only file fsynced ``everysec`` or ``always``; no RDB snapshots."""

    name = "redis"

    def __init__(self, appendfsync: str = "everysec") -> None:
        self.binary = which("redis-server")
        self.appendfsync = appendfsync
        super().__init__()

    def command(self) -> list[str]:
        return [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
            "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
            "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning",
        ]

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout
        return next((p[2:] for p in out.split() if p.startswith("v=")), out.strip())

    def client(self):
        try:
            import redis
        except ImportError as exc:
            raise PeerUnavailable("redis-py is not installed (pip install redis hiredis)") from exc
        return redis.Redis(host="127.0.0.1", port=self.port)

    def bulk_load(self, stream: str, keys: list[bytes], values: list[bytes], ids: list[bytes] | None = None) -> None:
        """Fill a stream fast (setup, not measured): raw RESP through ``redis-cli --pipe``."""
        cli = which("redis-cli")
        chunks = []
        sk = stream.encode()
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            rid = ids[i] if ids is not None else b"*"
            parts = (b"XADD", sk, rid, b"k", k, b"v", v)
            chunks.append(b"*7\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        res = subprocess.run(
            [cli, "-p", str(self.port), "--pipe"], input=b"".join(chunks), capture_output=True
        )
        if res.returncode != 0 or b"errors: 0" not in res.stdout:
            raise PeerUnavailable(f"redis-cli --pipe failed: {res.stdout[-200:]!r} {res.stderr[-200:]!r}")


class NatsServer(_Server):
    """nats-server with JetStream, file storage in a temporary directory."""

    name = "nats"

    def __init__(self) -> None:
        self.binary = which("nats-server")
        super().__init__()

    def command(self) -> list[str]:
        return [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.dir]

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout
        return out.strip().split()[-1] if out.strip() else "?"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


# -- SQLite (stdlib): the embedded database a Python user reaches for first ----
SQLITE_SCHEMA = "CREATE TABLE IF NOT EXISTS records (offset INTEGER PRIMARY KEY, ts INTEGER NOT NULL, key BLOB, value BLOB)"
SQLITE_INSERT = "INSERT INTO records (ts, key, value) VALUES (?, ?, ?)"


def open_sqlite(path: str, synchronous: str = "NORMAL"):
    """A WAL-mode database with the records table; ``synchronous`` NORMAL or FULL."""
    import sqlite3

    con = sqlite3.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    con.execute(SQLITE_SCHEMA)
    return con
