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

import arrowlog
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


def test_a_failing_offset_lookup_or_read_is_logged_once_per_partition(tmp_path, caplog, monkeypatch):
    """The same for a partition that opens but whose offset lookup or read fails
    (an I/O error, a damaged index): every ListOffsets or Fetch retry was logged at ERROR."""
    from arrowlog.server import fetch

    data = tmp_path / "d"
    with LogDir(str(data)) as d:
        d.create_topic("t", 1)
    broken = {"on": True}
    real_lookup, real_read = fetch.FetchHandlers._lookup_offset, fetch._read_checked

    def lookup(self, pl, timestamp):
        if broken["on"]:
            raise OSError(5, "Input/output error")
        return real_lookup(self, pl, timestamp)

    def read(pl, offset, max_bytes):
        if broken["on"]:
            raise OSError(5, "Input/output error")
        return real_read(pl, offset, max_bytes)

    monkeypatch.setattr(fetch.FetchHandlers, "_lookup_offset", lookup)
    monkeypatch.setattr(fetch, "_read_checked", read)

    def errors(prefix: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
                and r.getMessage().startswith(prefix)]

    with caplog.at_level(logging.DEBUG, logger="arrowlog.server"), served(data) as (server, _):
        p = arrowlog.Producer({"log.dir": str(data)})
        p.produce("t", b"v")
        p.flush()
        p.close()
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S) as s:
            for _ in range(20):   # a client retrying
                assert latest_offset(s, "t")[0] == KAFKA_STORAGE_ERROR
                assert fetch_error(s, "t") == KAFKA_STORAGE_ERROR
            assert len(errors("offset lookup in t-0 failed")) == 1, errors("offset lookup in t-0 failed")
            assert len(errors("fetch of t-0 at 0 failed")) == 1, errors("fetch of t-0 at 0 failed")
            broken["on"] = False   # works again: served, and a later failure is logged again
            assert latest_offset(s, "t") == (0, 1)
            assert fetch_error(s, "t") == 0
            broken["on"] = True
            assert latest_offset(s, "t")[0] == KAFKA_STORAGE_ERROR
            assert fetch_error(s, "t") == KAFKA_STORAGE_ERROR
            assert len(errors("offset lookup in t-0 failed")) == 2
            assert len(errors("fetch of t-0 at 0 failed")) == 2


def fetch_error(s: socket.socket, topic: str) -> int:
    """The error code of a Fetch v4 of ``topic``-0 from offset 0."""
    s.sendall(frame(M.FETCH, 4, {"replica_id": -1, "max_wait_ms": 0, "min_bytes": 0, "max_bytes": 1 << 20,
                                 "isolation_level": 0, "topics": [{"topic": topic, "partitions": [
                                     {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}]}]}))
    r = Reader(recv_frame(s))
    r.int32()
    return M.FETCH.decode_response(r, 4)["responses"][0]["partitions"][0]["error_code"]
