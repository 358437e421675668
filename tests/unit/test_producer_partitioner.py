"""partitioner=murmur2 and murmur2_random on a local directory, as librdkafka's
partitioners of those names place records (keyed: murmur2 of the key; without
a key: the partition of an empty key, or sticky)."""

from __future__ import annotations

import arrowlog
from arrowlog.storage import LogDir


def partitions_of(data: str, topic: str) -> dict[bytes, int]:
    table = arrowlog.replay(data, topic).to_arrow()
    return dict(zip(table.column("value").to_pylist(), table.column("partition").to_pylist()))


def test_murmur2_sends_every_unkeyed_record_where_an_empty_key_goes(tmp_path):
    data = str(tmp_path / "data")
    with LogDir(data) as d:
        d.create_topic("t", 6)
    empty = arrowlog.murmur2_partition(b"", 6)
    with arrowlog.Producer({"log.dir": data, "partitioner": "murmur2"}) as p:
        for i in range(8):
            p.produce("t", b"one-%d" % i)
            p.flush()  # each record its own batch: a sticky partitioner would move on
        p.produce_batch("t", [b"batch-%d" % i for i in range(8)])
        p.produce_batch("t", [b"mixed-0", b"mixed-1"], keys=[b"k", None])
        p.produce("t", b"keyed", key=b"k")
    where = partitions_of(data, "t")
    assert {where[b"one-%d" % i] for i in range(8)} == {empty}
    assert {where[b"batch-%d" % i] for i in range(8)} == {empty}
    assert where[b"mixed-1"] == empty
    assert where[b"mixed-0"] == where[b"keyed"] == arrowlog.murmur2_partition(b"k", 6)


def test_murmur2_random_keeps_unkeyed_records_sticky(tmp_path):
    data = str(tmp_path / "data")
    with LogDir(data) as d:
        d.create_topic("t", 6)
    with arrowlog.Producer({"log.dir": data}) as p:
        for i in range(12):
            p.produce("t", b"one-%d" % i)
            p.flush()
    where = partitions_of(data, "t")
    assert len(set(where.values())) > 1  # the sticky partition moves on after each batch
