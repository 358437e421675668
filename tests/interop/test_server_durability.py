"""``arrowlog serve`` keeps what it acknowledges: periodic fsync, recovered
producer state, CRC-checked fetches, storage errors as replies.

Each test runs its own server (``ServerProcess``) on its own directory, so
it can be killed or have its files damaged.
"""

from __future__ import annotations

import time

import pytest

from arrowlog.storage import LogDir

from arrowlog.server import messages as M

from .conftest import ServerProcess
from .wireclient import call, make_batch, produce

DEADLINE_S = 60.0  # generous: CI is a loaded 2-core machine


def wait_for(condition, what: str, deadline_s: float = DEADLINE_S):
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def serve(tmp_path):
    """serve(*options) -> a running ServerProcess on tmp_path/data; all are stopped at the end."""
    started = []

    def start(*extra: str) -> ServerProcess:
        srv = ServerProcess(tmp_path / "data", *extra)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def create_topic(srv, name: str, partitions: int = 1) -> dict:
    resp = call(srv, M.CREATE_TOPICS, 7, {"topics": [{"name": name, "num_partitions": partitions,
                                                      "replication_factor": 1}]})
    return resp["topics"][0]


def test_periodic_flush_advances_the_recovery_point_without_closing(serve, topic):
    srv = serve("--flush-interval", "0.1")
    assert create_topic(srv, topic)["error_code"] == 0
    assert produce(srv, topic, make_batch(5))["error_code"] == 0
    assert produce(srv, topic, make_batch(3))["error_code"] == 0
    d = LogDir(str(srv.data_dir))
    try:
        pl = d.topic(topic).partition(0)
        assert pl.high_watermark == 8
        # the server is still running and keeps the log open: only its periodic fsync can do this
        wait_for(lambda: pl.state.snapshot()["recovery_point"] >= 8, "the recovery point to reach 8")
        assert srv.proc.poll() is None
    finally:
        d.close()
