"""confluent-kafka (librdkafka) against arrowlog serve."""

from __future__ import annotations

import time

import pytest

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # noqa: E402


def admin(server):
    return AdminClient({"bootstrap.servers": server.bootstrap})


def create(server, topic, partitions):
    a = admin(server)  # keep the client alive until its futures resolve
    for fut in a.create_topics([NewTopic(topic, partitions, 1)]).values():
        fut.result(10)


def consume_all(consumer, n, timeout=20.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for m in consumer.consume(1000, 0.5):
            assert m.error() is None, m.error()
            out.append(m)
    return out


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_idempotent_acks_all_every_codec(server, topic, codec):
    create(server, topic, 2)
    p = ck.Producer({"bootstrap.servers": server.bootstrap, "acks": "all", "enable.idempotence": True,
                     "compression.type": codec, "linger.ms": 5})
    delivered = []
    for i in range(500):
        p.produce(topic, value=b"value-%d" % i, key=b"key-%d" % (i % 7), partition=i % 2,
                  headers=[("n", str(i).encode())] if i % 5 == 0 else None,
                  on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())))
    assert p.flush(20) == 0
    assert all(err is None for err, _, _ in delivered)
    for part in (0, 1):
        assert sorted(o for _, p_, o in delivered if p_ == part) == list(range(250))

    c = ck.Consumer({"bootstrap.servers": server.bootstrap, "group.id": "reader-" + topic,
                     "enable.auto.commit": False})
    c.assign([ck.TopicPartition(topic, 0, 0), ck.TopicPartition(topic, 1, 0)])
    msgs = consume_all(c, 500)
    c.close()
    assert len(msgs) == 500
    by_value = {m.value(): m for m in msgs}
    m0 = by_value[b"value-0"]
    assert m0.key() == b"key-0" and m0.partition() == 0 and m0.offset() == 0
    assert m0.headers() == [("n", b"0")]
    assert by_value[b"value-1"].headers() is None
    assert by_value[b"value-499"].partition() == 1 and by_value[b"value-499"].offset() == 249


def test_consumer_group_of_two_splits_and_rebalances(server, topic, group):
    create(server, topic, 4)
    p = ck.Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 1})
    for i in range(400):
        p.produce(topic, value=b"%d" % i, partition=i % 4)
    assert p.flush(10) == 0

    conf = {"bootstrap.servers": server.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "heartbeat.interval.ms": 200, "session.timeout.ms": 6000}
    a = ck.Consumer(conf)
    b = ck.Consumer(conf)
    a.subscribe([topic])
    b.subscribe([topic])
    seen = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for c, name in ((a, "a"), (b, "b")):
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                seen[(m.partition(), m.offset())] = name
        if len(seen) == 400 and a.assignment() and b.assignment():
            break
    parts_a = {tp.partition for tp in a.assignment()}
    parts_b = {tp.partition for tp in b.assignment()}
    assert len(seen) == 400
    assert parts_a and parts_b and not parts_a & parts_b and parts_a | parts_b == {0, 1, 2, 3}
    a.commit(asynchronous=False)
    b.commit(asynchronous=False)

    # b leaves: a takes over every partition, starting from the committed offsets.
    b.close()
    for i in range(4):
        p.produce(topic, value=b"after-%d" % i, partition=i)
    assert p.flush(10) == 0
    after = set()  # at-least-once: a record may come again after the rebalance
    deadline = time.monotonic() + 30
    while len(after) < 4 and time.monotonic() < deadline:
        m = a.poll(0.2)
        if m is not None and m.error() is None:
            after.add((m.partition(), m.offset(), m.value()))
    assert {tp.partition for tp in a.assignment()} == {0, 1, 2, 3}
    assert sorted(after) == [(i, 100, b"after-%d" % i) for i in range(4)]
    committed = a.committed([ck.TopicPartition(topic, i) for i in range(4)], timeout=10)
    assert [tp.offset for tp in committed] == [100, 100, 100, 100]
    a.close()


def test_offsets_for_times(server, topic):
    create(server, topic, 1)
    p = ck.Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 0})
    base = 1_700_000_000_000
    for i in range(10):
        p.produce(topic, value=b"%d" % i, timestamp=base + i * 1000)
        p.flush(10)  # one batch per record: lookups must land inside and between batches
    c = ck.Consumer({"bootstrap.servers": server.bootstrap, "group.id": "oft-" + topic})
    want = [ck.TopicPartition(topic, 0, base + 3500)]
    [got] = c.offsets_for_times(want, timeout=10)
    assert got.offset == 4
    [got] = c.offsets_for_times([ck.TopicPartition(topic, 0, base)], timeout=10)
    assert got.offset == 0
    [got] = c.offsets_for_times([ck.TopicPartition(topic, 0, base + 60_000)], timeout=10)
    assert got.offset == -1  # no record that late: Kafka answers "end" (-1)
    lo, hi = c.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=10)
    assert (lo, hi) == (0, 10)
    c.close()


def test_admin_create_list_describe_delete(server, topic):
    a = admin(server)
    fs = a.create_topics([NewTopic(topic, 3, 1, config={"retention.ms": "3600000"})])
    fs[topic].result(10)
    again = a.create_topics([NewTopic(topic, 3, 1)])
    with pytest.raises(ck.KafkaException) as exc:
        again[topic].result(10)
    assert exc.value.args[0].code() == ck.KafkaError.TOPIC_ALREADY_EXISTS

    md = a.list_topics(timeout=10)
    assert topic in md.topics
    assert len(md.topics[topic].partitions) == 3
    assert md.cluster_id and md.controller_id == 1

    res = a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    configs = next(iter(res.values())).result(10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "delete"

    for fut in a.delete_topics([topic]).values():
        fut.result(10)
    assert topic not in a.list_topics(timeout=10).topics
    gone = a.delete_topics([topic])
    with pytest.raises(ck.KafkaException):
        gone[topic].result(10)


def test_describe_and_list_groups(server, topic, group):
    create(server, topic, 1)
    c = ck.Consumer({"bootstrap.servers": server.bootstrap, "group.id": group,
                     "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    deadline = time.monotonic() + 15
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.1)
    a = admin(server)
    listed = a.list_consumer_groups().result(10)
    assert group in {g.group_id for g in listed.valid}
    desc = a.describe_consumer_groups([group])[group].result(10)
    assert desc.group_id == group and len(desc.members) == 1
    assert desc.members[0].assignment.topic_partitions[0].topic == topic
    c.close()
