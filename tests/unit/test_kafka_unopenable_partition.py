"""A partition the storage cannot open (its directory replaced by a file here;
a permission denied or an I/O error alike) is answered KAFKA_STORAGE_ERROR on
every request, and logged at ERROR once, not on every retry: a client retries
such a partition every few hundred milliseconds for as long as it runs, and
each retry logged the same ERROR line (two a second per client, forever). A new
failure, or one after the partition opened, is logged again."""

from __future__ import annotations

import logging
import os
import socket

from inproc_server import frame, recv_frame, served

from arrowlog import LogDir
from arrowlog.server import messages as M
from arrowlog.server.log_once import LogOnce
from arrowlog.server.wire import Reader

KAFKA_STORAGE_ERROR = 56
DEADLINE_S = 60.0


def latest_offset(s: socket.socket, topic: str) -> tuple[int, int]:
    """(error code, offset) of ListOffsets v1 for ``topic``-0 at LATEST."""
    s.sendall(frame(M.LIST_OFFSETS, 1, {"replica_id": -1, "topics": [
        {"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}]}))
    r = Reader(recv_frame(s))
    assert r.int32() == 1
    p = M.LIST_OFFSETS.decode_response(r, 1)["topics"][0]["partitions"][0]
    return p["error_code"], p.get("offset", -1)


def unopenable_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and r.getMessage().startswith("cannot open t-0")]


def test_an_unopenable_partition_is_an_error_on_every_retry_but_logged_once(tmp_path, caplog):
    data = tmp_path / "d"
    with LogDir(str(data)) as d:
        d.create_topic("t", 1)
    part = data / "topics" / "t" / "0"
    os.rename(part, tmp_path / "saved")
    part.write_bytes(b"not a directory")
    with caplog.at_level(logging.DEBUG, logger="arrowlog.server"), served(data) as (server, _):
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S) as s:
            for _ in range(20):   # a client retrying
                assert latest_offset(s, "t")[0] == KAFKA_STORAGE_ERROR
            assert len(unopenable_errors(caplog)) == 1, unopenable_errors(caplog)
            assert "KAFKA_STORAGE_ERROR without logging again" in unopenable_errors(caplog)[0]

            part.unlink()   # repaired: served again
            os.rename(tmp_path / "saved", part)
            assert latest_offset(s, "t") == (0, 0)


def test_a_new_failure_or_one_after_a_success_is_logged_again(caplog):
    once = LogOnce(logging.getLogger("arrowlog.test"), "retries not logged", size=2)
    with caplog.at_level(logging.DEBUG, logger="arrowlog.test"):
        for message in ("a: EACCES", "a: EACCES", "a: EIO", "a: EIO"):
            once.error("a", message)
        once.forget("a")              # it worked once in between
        once.error("a", "a: EIO")
        for key in ("b", "c", "a"):   # only the last 2 keys are remembered
            once.error(key, f"{key}: EIO")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["a: EACCES (retries not logged)", "a: EIO (retries not logged)",
                      "a: EIO (retries not logged)", "b: EIO (retries not logged)",
                      "c: EIO (retries not logged)", "a: EIO (retries not logged)"]
