"""The same data directory through both doors: the Kafka wire and arrowlog's own API."""

from __future__ import annotations

import time

import pytest

import arrowlog

ck = pytest.importorskip("confluent_kafka")


def test_produce_over_the_wire_replay_in_process(server, topic):
    p = ck.Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 5, "compression.type": "lz4"})
    for i in range(1000):
        p.produce(topic, value=b"wire-%d" % i, key=b"k%d" % (i % 10), timestamp=1_700_000_000_000 + i,
                  headers=[("src", b"wire")] if i == 0 else None)
    assert p.flush(10) == 0
    # The server flushes on an interval; replay reads what is published, which is immediate.
    table = arrowlog.replay(str(server.data_dir), topic).to_arrow()
    assert table.num_rows == 1000
    assert table.column("offset").to_pylist() == list(range(1000))
    assert table.column("value")[999].as_py() == b"wire-999"
    assert table.column("key")[13].as_py() == b"k3"
    assert table.column("timestamp")[5].value == 1_700_000_000_005
    assert table.column("headers")[0].as_py() == [{"key": "src", "value": b"wire"}]


def test_produce_in_process_consume_over_the_wire(server, topic):
    with arrowlog.Producer({"log.dir": str(server.data_dir), "linger.ms": 1}) as p:
        for i in range(300):
            p.produce(topic, value=b"local-%d" % i, key=b"k" if i % 2 else None,
                      headers=[("n", b"%d" % i)] if i == 7 else None)
        p.flush()
    c = ck.Consumer({"bootstrap.servers": server.bootstrap, "group.id": "x-" + topic,
                     "enable.auto.commit": False})
    c.assign([ck.TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + 20
    while len(got) < 300 and time.monotonic() < deadline:
        got.extend(m for m in c.consume(500, 0.5) if m.error() is None)
    c.close()
    assert [m.offset() for m in got] == list(range(300))
    assert got[10].value() == b"local-10" and got[10].key() is None and got[11].key() == b"k"
    assert got[7].headers() == [("n", b"7")]
