"""The in-process Consumer and replay() on a directory ``arrowlog serve`` wrote transactions to:
markers are never returned, read_committed (the default) leaves out aborted
records and stops at an open transaction, read_uncommitted reads every record."""

from __future__ import annotations

import signal

import pytest
from test_transactions_cli import TOPIC, start_server
from test_transactions_local import consumed as read_values

from arrowlog import replay

confluent_kafka = pytest.importorskip("confluent_kafka")

DEADLINE_S = 30.0


def replayed(data: str, **kw) -> list[tuple[int, bytes]]:
    with replay(data, TOPIC, **kw) as r:
        t = r.to_arrow()
    return list(zip(t.column("offset").to_pylist(), t.column("value").to_pylist()))


def test_in_process_reader_skips_markers_and_aborted_records(tmp_path):
    data = str(tmp_path / "data")
    proc, bootstrap = start_server(data)
    try:
        p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "transactional.id": "lib-reader"})
        p.init_transactions(30)
        p.begin_transaction()
        for i in range(3):
            p.produce(TOPIC, value=b"c%d" % i)                    # 0-2, COMMIT at 3
        p.commit_transaction(30)
        p.begin_transaction()
        for i in range(2):
            p.produce(TOPIC, value=b"a%d" % i)                    # 4-5, ABORT at 6
        p.flush(30)
        p.abort_transaction(30)
        p.begin_transaction()
        p.produce(TOPIC, value=b"open")                           # 7, still open
        p.flush(30)
        committed, position = read_values(data, "read_committed", 3)
        assert committed == [b"c0", b"c1", b"c2"]
        assert position == 7      # past the markers and the aborted records, stopped at the open transaction
        everything, position = read_values(data, "read_uncommitted", 6)
        assert everything == [b"c0", b"c1", b"c2", b"a0", b"a1", b"open"]
        assert position == 8
        assert replayed(data) == [(0, b"c0"), (1, b"c1"), (2, b"c2")]       # replay's default: read_committed
        assert [v for _, v in replayed(data, isolation="read_uncommitted")] == everything
        p.commit_transaction(30)                                  # COMMIT at 8
        committed, position = read_values(data, "read_committed", 4)
        assert committed == [b"c0", b"c1", b"c2", b"open"] and position == 9
        assert replayed(data)[-1] == (7, b"open")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
