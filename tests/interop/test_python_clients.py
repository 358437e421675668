"""kafka-python and aiokafka against arrowlog serve: produce, group consume, commit, seek."""

from __future__ import annotations

import asyncio

import pytest

kafka = pytest.importorskip("kafka")
aiokafka = pytest.importorskip("aiokafka")

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402


def test_kafka_python_produce_group_commit_seek(server, topic, group):
    p = KafkaProducer(bootstrap_servers=server.bootstrap, linger_ms=5)
    futures = [p.send(topic, key=b"k%d" % (i % 3), value=b"v%d" % i, headers=[("i", b"%d" % i)])
               for i in range(200)]
    p.flush(10)
    offsets = [f.get(10).offset for f in futures]
    p.close()
    assert offsets == list(range(200))

    c = KafkaConsumer(topic, bootstrap_servers=server.bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=10000)
    got = []
    for m in c:
        got.append(m)
        if len(got) == 150:
            break
    assert [m.offset for m in got] == list(range(150))
    assert got[7].key == b"k1" and got[7].value == b"v7" and got[7].headers == [("i", b"7")]
    tp = TopicPartition(topic, 0)
    c.commit({tp: kafka.OffsetAndMetadata(150, "half way", -1)})
    assert c.committed(tp) == 150
    c.seek(tp, 20)
    assert next(c).offset == 20
    c.seek_to_end(tp)
    assert c.position(tp) == 200
    c.close()

    # A new member of the group resumes from the committed offset.
    c2 = KafkaConsumer(topic, bootstrap_servers=server.bootstrap, group_id=group,
                       auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=10000)
    assert next(c2).offset == 150
    c2.close()


def test_aiokafka_produce_group_commit_seek(server, topic, group):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as ATP

    async def main():
        p = AIOKafkaProducer(bootstrap_servers=server.bootstrap, compression_type="gzip")
        await p.start()
        try:
            sent = [await p.send_and_wait(topic, b"a%d" % i, key=b"x") for i in range(50)]
            batch = p.create_batch()
            for i in range(50, 100):
                batch.append(key=None, value=b"a%d" % i, timestamp=None)
            await p.send_batch(batch, topic, partition=0)
        finally:
            await p.stop()
        assert [r.offset for r in sent] == list(range(50))

        c = AIOKafkaConsumer(topic, bootstrap_servers=server.bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
        await c.start()
        try:
            seen = []
            while len(seen) < 100:
                msgs = await c.getmany(timeout_ms=2000)
                for records in msgs.values():
                    seen.extend(records)
            assert [m.offset for m in seen] == list(range(100))
            assert seen[60].value == b"a60" and seen[0].key == b"x"
            tp = ATP(topic, 0)
            await c.commit({tp: 100})
            assert await c.committed(tp) == 100
            c.seek(tp, 42)
            assert (await c.getone()).offset == 42
        finally:
            await c.stop()

    asyncio.run(asyncio.wait_for(main(), 60))
