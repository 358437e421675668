"""What users do with two client libraries against one `arrowlog serve`: a consumer group whose members are a
kafka-python and a confluent-kafka consumer splits the partitions and hands them over when one leaves; listing
offsets of an empty topic and offsets for a future time answer as Kafka does in both, and empty vs null keys,
values and header values stay apart."""

from __future__ import annotations

import threading
import time

import pytest

ck = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402
from kafka import TopicPartition as KTP  # noqa: E402

from arrowlog.server import messages as M  # noqa: E402

from .wireclient import call  # noqa: E402


def create(server, topic: str, partitions: int) -> str:
    resp = call(server, M.CREATE_TOPICS, 7, {"topics": [{"name": topic, "num_partitions": partitions,
                                                         "replication_factor": 1}]})
    assert resp["topics"][0]["error_code"] == 0
    return topic


class Polling(threading.Thread):
    """Polls one consumer on a thread of its own until stopped, recording which library read each record and
    the partitions the consumer holds after each poll.

    Each member gets its own thread, as in an application: kafka-python 3.0.12 (and dpkp/kafka-python's main
    today) throws away a JoinGroup+SyncGroup that completes after a ``poll(timeout_ms)`` gave up waiting and
    before the next ``poll`` (``join_group_async`` starts a new join when it finds its join task done), so one
    thread alternating ``kp.poll(100 ms)`` and ``cf.poll(0.1)`` makes it rejoin after every SyncGroup. Any
    Kafka broker triggers that: a JoinGroup is held for the initial rebalance delay (3 s by default in Kafka,
    100 ms here) or until every member has rejoined, longer than the poll timeout."""

    def __init__(self, poll, assignment, seen: dict, lock: threading.Lock):
        super().__init__(daemon=True)
        self.poll, self.assignment, self.seen, self.lock = poll, assignment, seen, lock
        self.holds: set[int] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            got = self.poll()
            held = self.assignment()
            with self.lock:
                self.seen.update(got)
                self.holds = held


def test_a_group_of_a_kafka_python_and_a_confluent_member_splits_and_hands_over(server, topic, group):
    create(server, topic, 4)
    p = KafkaProducer(bootstrap_servers=server.bootstrap, linger_ms=1)
    for i in range(200):
        p.send(topic, value=b"%d" % i, partition=i % 4)
    p.flush(10)
    kp = KafkaConsumer(topic, bootstrap_servers=server.bootstrap, group_id=group, auto_offset_reset="earliest",
                       enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=200)
    cf = ck.Consumer({"bootstrap.servers": server.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                      "enable.auto.commit": False, "heartbeat.interval.ms": 200, "session.timeout.ms": 6000})
    cf.subscribe([topic])

    def kp_poll():
        return {(tp.partition, r.offset): "kafka-python" for tp, rs in kp.poll(timeout_ms=100).items() for r in rs}

    def cf_poll():
        m = cf.poll(0.1)
        return {(m.partition(), m.offset()): "confluent"} if m is not None and m.error() is None else {}

    seen: dict[tuple[int, int], str] = {}
    lock = threading.Lock()
    members = [Polling(kp_poll, lambda: {tp.partition for tp in kp.assignment()}, seen, lock),
               Polling(cf_poll, lambda: {tp.partition for tp in cf.assignment()}, seen, lock)]
    for m in members:
        m.start()

    def settled() -> bool:
        with lock:
            mine, theirs = members[0].holds, members[1].holds
            return (len(seen) == 200 and bool(mine) and bool(theirs) and not mine & theirs
                    and mine | theirs == {0, 1, 2, 3})

    deadline = time.monotonic() + 60
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.05)
    for m in members:
        m.stop.set()
        m.join(30)
    assert len(seen) == 200, f"{len(seen)} of 200 records seen"
    mine, theirs = {tp.partition for tp in kp.assignment()}, {tp.partition for tp in cf.assignment()}
    assert mine and theirs and not mine & theirs and mine | theirs == {0, 1, 2, 3}
    kp.commit()
    cf.commit(asynchronous=False)

    kp.close()                                    # leaves the group: confluent takes every partition
    for i in range(4):
        p.send(topic, value=b"after-%d" % i, partition=i)
    p.flush(10)
    after = set()
    deadline = time.monotonic() + 60
    while len(after) < 4 and time.monotonic() < deadline:
        m = cf.poll(0.2)
        if m is not None and m.error() is None:
            after.add((m.partition(), m.offset(), m.value()))
    assert {tp.partition for tp in cf.assignment()} == {0, 1, 2, 3}
    assert sorted(after) == [(i, 50, b"after-%d" % i) for i in range(4)]   # from the committed offsets
    cf.close()
    p.close()


def test_an_empty_topic_and_a_future_time_list_as_in_kafka(server, topic):
    create(server, topic, 1)
    future = int(time.time() * 1000) + 10 ** 9
    cf = ck.Consumer({"bootstrap.servers": server.bootstrap, "group.id": "unused-" + topic})
    kp = KafkaConsumer(bootstrap_servers=server.bootstrap)
    try:
        assert cf.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=10) == (0, 0)
        assert kp.beginning_offsets([KTP(topic, 0)]) == kp.end_offsets([KTP(topic, 0)]) == {KTP(topic, 0): 0}
        # no record at or after the time: offset -1 (kafka-python: None), empty topic or not
        [empty] = cf.offsets_for_times([ck.TopicPartition(topic, 0, future)], timeout=10)
        assert empty.offset == -1 and empty.error is None
        p = ck.Producer({"bootstrap.servers": server.bootstrap})
        p.produce(topic, value=b"", key=b"", headers=[("null", None), ("", b"")])
        p.produce(topic, value=None, key=None)
        assert p.flush(10) == 0
        [later] = cf.offsets_for_times([ck.TopicPartition(topic, 0, future)], timeout=10)
        assert later.offset == -1
        assert kp.offsets_for_times({KTP(topic, 0): future}) == {KTP(topic, 0): None}
        assert kp.offsets_for_times({KTP(topic, 0): 0})[KTP(topic, 0)].offset == 0
        # empty and null keys and values stay apart, a header's null value stays null
        kp.assign([KTP(topic, 0)])
        kp.seek_to_beginning()
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            got += [r for records in kp.poll(timeout_ms=200).values() for r in records]
        assert [(r.key, r.value) for r in got] == [(b"", b""), (None, None)]
        cf.assign([ck.TopicPartition(topic, 0, 0)])
        m = None
        deadline = time.monotonic() + 30
        while (m is None or m.error() is not None) and time.monotonic() < deadline:
            m = cf.poll(0.2)
        assert m is not None and m.headers() == [("null", None), ("", b"")]
    finally:
        cf.close()
        kp.close()
