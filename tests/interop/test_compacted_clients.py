"""Kafka clients read a compacted topic from offset 0 through arrowlog serve
and see exactly the survivors, with their original offsets: confluent-kafka,
kafka-python, aiokafka and kcat. The topic has gaps inside batches, between
them, and whole segments whose every record was superseded (their batches
are empty: Kafka clients must step over them by lastOffsetDelta)."""

from __future__ import annotations

import asyncio
import random
import subprocess
import time

import pytest

import arrowlog
from arrowlog.storage import LogDir

DAY = 86_400_000


@pytest.fixture
def compacted(server, topic):
    """A compacted topic in the server's data directory, written and cleaned
    by the library (another process, as a Producer's cleaner would); returns
    the survivors as (offset, key, value)."""
    with LogDir(server.data_dir) as ld:
        ld.create_topic(topic, config={"cleanup.policy": "compact", "segment.bytes": 8192})
    p = arrowlog.Producer({"log.dir": str(server.data_dir), "log.cleaner.backoff.ms": 0})
    now = int(time.time() * 1000)
    rng = random.Random(15)
    for i in range(1500):
        if i % 40 == 0:
            p.flush()
        # hot keys and rare ones: survivors spread over the segments; the first
        # 400 records all go to 3 keys (whole segments end up empty)
        k = i % 3 if i < 400 else int(rng.paretovariate(0.7)) % 300
        # the tombstones are young (kept), except those of k7 (two days old: removed)
        tomb = i % 29 == 0
        p.produce(topic, None if tomb else b"v%d" % i, key=b"k%d" % k,
                  timestamp=(now - 2 * DAY) if tomb and k == 7 else now)
    p.flush()
    p.close()
    with LogDir(server.data_dir) as ld:
        (report,) = ld.compact(topic)
        assert report["segments_rewritten"] > 2
        with arrowlog.replay(ld, topic, columns=["offset", "key", "value"]) as r:
            t = r.to_arrow()
    survivors = list(zip(t.column("offset").to_pylist(), t.column("key").to_pylist(), t.column("value").to_pylist()))
    offsets = [s[0] for s in survivors]
    assert offsets[0] > 0 and offsets != list(range(offsets[0], offsets[0] + len(offsets)))  # gaps
    assert None in [s[2] for s in survivors]  # a young tombstone is read as a null value
    return survivors


def test_confluent_kafka_reads_the_survivors(server, topic, compacted):
    ck = pytest.importorskip("confluent_kafka")
    c = ck.Consumer({"bootstrap.servers": server.bootstrap, "group.id": "g-" + topic,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.assign([ck.TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 60
        while len(got) < len(compacted) and time.monotonic() < deadline:
            for m in c.consume(500, 1.0):
                assert m.error() is None, m.error()
                got.append((m.offset(), m.key(), m.value()))
        assert got == compacted
    finally:
        c.close()


def test_kafka_python_reads_the_survivors(server, topic, compacted):
    kafka = pytest.importorskip("kafka")
    c = kafka.KafkaConsumer(bootstrap_servers=server.bootstrap, auto_offset_reset="earliest",
                            enable_auto_commit=False, consumer_timeout_ms=10000)
    try:
        tp = kafka.TopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        got = []
        for m in c:
            got.append((m.offset, m.key, m.value))
            if len(got) == len(compacted):
                break
        assert got == compacted
    finally:
        c.close()


def test_aiokafka_reads_the_survivors(server, topic, compacted):
    pytest.importorskip("aiokafka")
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    async def main():
        c = AIOKafkaConsumer(bootstrap_servers=server.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            c.seek(tp, 0)
            got = []
            deadline = time.monotonic() + 60
            while len(got) < len(compacted) and time.monotonic() < deadline:
                for records in (await c.getmany(timeout_ms=1000)).values():
                    got.extend((m.offset, m.key, m.value) for m in records)
            return got
        finally:
            await c.stop()

    assert asyncio.run(main()) == compacted


def test_kcat_reads_the_survivors(kcat, server, topic, compacted):
    r = subprocess.run([kcat, "-b", server.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-Z",
                        "-f", "%o|%k|%S|%s\n"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = []
    for line in r.stdout.splitlines():
        offset, key, size, value = line.split("|", 3)
        got.append((int(offset), key.encode(), None if size == "-1" else value.encode()))
    assert got == compacted
