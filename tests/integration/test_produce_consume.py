"""Producer → log → Consumer and replay, in one process and across several."""

import datetime as dt
import multiprocessing as mp
import os
import time

import numpy as np
import pyarrow as pa
import pytest

import arrowlog
from arrowlog import Consumer, KafkaError, Producer, TopicPartition, errors, replay
from arrowlog._native import core
from arrowlog.schema import HEADERS_TYPE


def read_all(data_dir, topic, partitions=None):
    with Consumer({"log.dir": data_dir}) as c:
        nparts = arrowlog.LogDir(data_dir).topic(topic).num_partitions
        c.assign([TopicPartition(topic, p, arrowlog.OFFSET_BEGINNING) for p in (partitions or range(nparts))])
        out = []
        while True:
            batch = c.consume(1000, 0.2)
            if not batch:
                return out
            out.extend(batch)


def test_produce_then_consume_everything(data_dir):
    delivered = []
    with Producer({"log.dir": data_dir, "num.partitions": 4}) as p:
        for i in range(5000):
            p.produce("t", b"value-%d" % i, key=b"key-%d" % (i % 50), headers=[("n", str(i))] if i % 10 == 0 else None,
                      on_delivery=(lambda err, msg: delivered.append((err, msg))) if i < 100 else None)
        assert p.flush() == 0
        assert len(p) == 0
    assert len(delivered) == 100 and all(err is None for err, _ in delivered)
    msgs = read_all(data_dir, "t")
    assert len(msgs) == 5000
    by_value = {m.value(): m for m in msgs}
    for i in range(5000):
        m = by_value[b"value-%d" % i]
        assert m.key() == b"key-%d" % (i % 50)
        assert m.partition() == arrowlog.murmur2_partition(m.key(), 4)
        assert m.headers() == ([("n", str(i).encode())] if i % 10 == 0 else None)
        assert m.timestamp()[0] == arrowlog.TIMESTAMP_CREATE_TIME
    for p in range(4):
        offs = [m.offset() for m in msgs if m.partition() == p]
        assert offs == list(range(len(offs)))


def test_linger_thread_never_loses_records(data_dir):
    # linger.ms=0 makes the background thread take batches while produce() appends
    with Producer({"log.dir": data_dir, "linger.ms": 0, "batch.size": 5000}) as p:
        for i in range(200_000):
            p.produce("t", b"%d" % i)
    values = replay(data_dir, "t").to_arrow().column("value").to_pylist()
    assert sorted(int(v) for v in values) == list(range(200_000))


def test_unkeyed_records_are_sticky_then_move(data_dir):
    with Producer({"log.dir": data_dir, "num.partitions": 6, "batch.size": 10_000}) as p:
        for i in range(20_000):
            p.produce("t", b"x" * 100)
    t = replay(data_dir, "t").to_arrow()
    counts = np.bincount(t.column("partition").to_numpy(), minlength=6)
    assert counts.sum() == 20_000
    assert (counts > 0).sum() >= 3  # batches moved between partitions


def test_seek_position_watermarks_and_eof(data_dir):
    with Producer({"log.dir": data_dir}) as p:
        for i in range(100):
            p.produce("t", b"%d" % i, partition=0)
    with Consumer({"log.dir": data_dir, "enable.partition.eof": True}) as c:
        tp = TopicPartition("t", 0, 40)
        c.assign([tp])
        assert c.poll(1).offset() == 40
        assert c.position([tp])[0].offset == 41
        c.seek(TopicPartition("t", 0, 95))
        msgs = c.consume(10, 1)
        assert [m.offset() for m in msgs if m.error() is None] == [95, 96, 97, 98, 99]
        eof = msgs[-1] if msgs[-1].error() else c.poll(0.5)
        assert eof.error().code() == KafkaError._PARTITION_EOF
        assert c.get_watermark_offsets(tp) == (0, 100)
        c.seek_to_beginning()
        assert c.poll(1).offset() == 0
        c.seek_to_end()
        assert c.poll(0.05).error().code() == KafkaError._PARTITION_EOF  # reported again after a seek
        assert c.poll(0.05) is None


def test_offsets_for_times_and_time_replay(data_dir):
    base = core.wall_clock_ms() - 100_000
    with Producer({"log.dir": data_dir}) as p:
        for i in range(1000):
            p.produce("t", b"%d" % i, timestamp=base + i * 10)
    with Consumer({"log.dir": data_dir}) as c:
        res = c.offsets_for_times([TopicPartition("t", 0, base + 5005)])
        assert res[0].offset == 501
        res = c.offsets_for_times([TopicPartition("t", 0, base + 10**7)])
        assert res[0].offset == arrowlog.OFFSET_END
    r = replay(data_dir, "t", start=arrowlog.timestamp_ms(base + 2000), end=arrowlog.timestamp_ms(base + 3000))
    assert r.to_arrow().column("offset").to_pylist() == list(range(200, 300))
    r2 = replay(data_dir, "t", start=f"@{base + 9000}")
    assert r2.to_arrow().num_rows == 100
    assert replay(data_dir, "t", start=10, end=20).to_pandas()["offset"].tolist() == list(range(10, 20))


def test_produce_batch_forms(data_dir):
    with Producer({"log.dir": data_dir, "num.partitions": 3}) as p:
        assert p.produce_batch("a", [b"x", "y", b"z"]) == 3
        assert p.produce_batch("a", np.array([b"n1", b"n2"])) == 2
        assert p.produce_batch("a", pa.array(["s1", "s2"])) == 2
        table = pa.table({"value": pa.array([b"v%d" % i for i in range(300)]),
                          "key": pa.array([b"k%d" % (i % 7) for i in range(300)]),
                          "timestamp": pa.array(np.arange(300) + core.wall_clock_ms())})
        assert p.produce_batch("keyed", table) == 300
        with pytest.raises(ValueError, match="keys has 1 entries"):
            p.produce_batch("a", [b"x", b"y"], keys=[b"k"])
        with pytest.raises(TypeError):
            p.produce_batch("a", [1, 2])
    got = replay(data_dir, "keyed").to_arrow()
    assert got.num_rows == 300
    for key, part in zip(got.column("key").to_pylist(), got.column("partition").to_pylist()):
        assert part == arrowlog.murmur2_partition(key, 3)
    assert sorted(replay(data_dir, "a").to_arrow().column("value").to_pylist()) == \
        sorted([b"x", b"y", b"z", b"n1", b"n2", b"s1", b"s2"])


def test_replay_is_zero_copy_and_readable_everywhere(data_dir):
    values = pa.array([os.urandom(100) for _ in range(50_000)], pa.binary())
    with Producer({"log.dir": data_dir}) as p:
        p.produce_batch("t", values)
    r = replay(data_dir, "t")
    table = r.to_arrow()
    assert table.column("value").combine_chunks().equals(values)
    # every key/value/offset/timestamp buffer lies inside the mapped segment
    seg = r._topic.partition(0)._segments[0]
    lo, hi = seg.log.address, seg.log.address + seg.capacity
    for name in ("offset", "timestamp", "key"):
        for chunk in table.column(name).chunks:
            assert all(lo <= b.address < hi for b in chunk.buffers() if b is not None and b.size)
    for chunk in table.column("value").chunks:
        for buf in chunk.buffers()[1:]:
            assert lo <= buf.address < hi
    assert pa.table(r).num_rows == 50_000
    import duckdb
    import polars as pl
    assert duckdb.sql("select count(*) from r").fetchall()[0][0] == 50_000
    assert pl.DataFrame(r).height == 50_000
    assert r.to_polars().height == 50_000
    assert list(r.to_pandas().columns) == ["partition", "offset", "timestamp", "key", "value", "headers"]
    assert replay(data_dir, "t", columns=["offset", "value"]).to_arrow().column_names == ["offset", "value"]
    with pytest.raises(errors.ConfigError):
        replay(data_dir, "t", columns=["nope"])


def test_bad_input_errors(data_dir):
    with pytest.raises(errors.ConfigError, match="lingr.ms"):
        Producer({"log.dir": data_dir, "lingr.ms": 5})
    with pytest.raises(errors.ConfigError, match="auto.offset.reset"):
        Consumer({"log.dir": data_dir, "auto.offset.reset": "sometimes"})
    with pytest.raises(errors.ConfigError, match="log.dir"):
        Producer({})
    with Producer({"log.dir": data_dir}) as p:
        with pytest.raises(errors.InvalidTopicError):
            p.produce("../etc", b"x")
        with pytest.raises(TypeError):
            p.produce("t", 12345)
        p.produce("t", b"x")
        with pytest.raises(errors.UnknownPartitionError):
            p.produce("t", b"x", partition=7)
        with pytest.raises(TypeError):
            p.produce("t", b"x", headers=[("k",)])
    assert sorted(os.listdir(os.path.join(data_dir, "topics"))) == [".lock", ".notify", "t"]
    with Producer(data_dir, linger_ms=1) as p:   # positional location, underscore keys
        p.produce("t", "text")
    with pytest.raises(errors.UnknownTopicError):
        Consumer({"log.dir": data_dir}).assign([TopicPartition("missing", 0)])


def _producer_proc(data_dir, ident, n):
    with Producer({"log.dir": data_dir, "batch.size": 2000}) as p:
        for i in range(n):
            p.produce("shared", b"%d:%d" % (ident, i), partition=0)


def test_many_processes_append_to_one_partition(data_dir):
    arrowlog.LogDir(data_dir).create_topic("shared")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_producer_proc, args=(data_dir, k, 20_000)) for k in range(3)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join(60)
        assert pr.exitcode == 0
    t = replay(data_dir, "shared").to_arrow()
    assert t.column("offset").to_pylist() == list(range(60_000))
    seen = {k: [] for k in range(3)}
    for v in t.column("value").to_pylist():
        k, i = v.split(b":")
        seen[int(k)].append(int(i))
    for k in range(3):
        assert seen[k] == list(range(20_000))  # each producer's order kept, nothing lost
    assert arrowlog.LogDir(data_dir).topic("shared").partition(0).verify()["errors"] == []


def _tail_proc(data_dir, n, q):
    with Consumer({"log.dir": data_dir}) as c:
        c.assign([TopicPartition("live", 0, 0)])
        q.put("ready")
        got, lat = 0, []
        while got < n:
            for m in c.consume(100, 10):
                lat.append(time.time() * 1000 - int(m.value()))
                got += 1
        q.put((got, sorted(lat)[len(lat) // 2]))


def test_consumer_in_another_process_sees_flushed_records_quickly(data_dir):
    arrowlog.LogDir(data_dir).create_topic("live")
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    pr = ctx.Process(target=_tail_proc, args=(data_dir, 200, q))
    pr.start()
    assert q.get(timeout=30) == "ready"
    with Producer({"log.dir": data_dir, "linger.ms": 0}) as p:
        for i in range(200):
            p.produce("live", b"%d" % int(time.time() * 1000))
            p.flush()
            time.sleep(0.002)
    got, median_ms = q.get(timeout=30)
    pr.join(10)
    assert got == 200
    assert median_ms < 100  # woken by the watermark, not by a slow poll


def test_typed_value_topic(data_dir):
    schema = pa.schema([("orderId", pa.string()), ("total", pa.float64())])
    d = arrowlog.LogDir(data_dir)
    d.create_topic("orders", config={"value.schema": schema})
    d.close()
    values = pa.StructArray.from_arrays([pa.array(["a", "b"]), pa.array([1.5, 2.5])], fields=list(schema))
    log = arrowlog.LogDir(data_dir).topic("orders").partition(0)
    n = 2
    b = pa.RecordBatch.from_arrays([pa.array(np.full(n, core.wall_clock_ms())).cast(pa.timestamp("ms", tz="UTC")),
                                    pa.nulls(n, pa.binary()), values, pa.nulls(n, HEADERS_TYPE)],
                                   names=["timestamp", "key", "value", "headers"])
    log.append(b)
    t = replay(data_dir, "orders").to_arrow()
    assert t.column_names == ["partition", "offset", "timestamp", "key", "orderId", "total", "headers"]
    assert t.column("total").to_pylist() == [1.5, 2.5]
    with Producer({"log.dir": data_dir}) as p:
        p.produce_batch("orders", pa.table({"orderId": ["c", "d"], "total": [3, 4]}), keys=[b"k1", b"k2"])
        p.produce_batch("orders", [{"orderId": "e", "total": 5.0}])
        p.produce("orders", b'{"orderId": "f", "total": 6.5}')
        p.flush()
        with pytest.raises(ValueError, match="value schema"):
            p.produce_batch("orders", pa.table({"orderId": ["x"]}))
    t = replay(data_dir, "orders").to_arrow()
    assert t.column("orderId").to_pylist() == ["a", "b", "c", "d", "e", "f"]
    assert t.column("total").to_pylist() == [1.5, 2.5, 3.0, 4.0, 5.0, 6.5]
    with Consumer({"log.dir": data_dir}) as c:
        c.assign([TopicPartition("orders", 0, 5)])
        assert c.poll(1).value() == {"orderId": "f", "total": 6.5}


def test_datetime_timestamps(data_dir):
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    with Producer({"log.dir": data_dir}) as p:
        p.produce("t", b"x", timestamp=when)
    with Consumer({"log.dir": data_dir}) as c:
        c.assign([TopicPartition("t", 0, 0)])
        assert c.poll(1).timestamp()[1] == int(when.timestamp() * 1000)


@pytest.mark.parametrize("linger_ms", [0, 20])
def test_lingering_batch_is_appended_without_flush(data_dir, linger_ms):
    p = Producer({"log.dir": data_dir, "linger.ms": linger_ms})
    with Consumer({"log.dir": data_dir}) as c:
        for round_ in range(3):
            p.produce("t", b"r%d" % round_)
            if round_ == 0:
                c.assign([TopicPartition("t", 0, 0)])
            m = c.poll(5.0)  # no flush(), no poll() on the producer: the linger thread appends it
            assert m is not None and m.value() == b"r%d" % round_
    p.close()


def test_producer_dropped_without_close_is_collected_and_appends(data_dir):
    import gc
    import threading

    before = threading.active_count()
    p = Producer({"log.dir": data_dir, "linger.ms": 60_000})
    p.produce("t", b"queued")
    del p
    gc.collect()
    for _ in range(100):
        if threading.active_count() == before:
            break
        time.sleep(0.01)
    assert threading.active_count() == before  # its linger thread ended
    assert replay(data_dir, "t").to_arrow().column("value").to_pylist() == [b"queued"]
