"""What users do with two client libraries against one `arrowlog serve`: listing offsets of an empty topic and
offsets for a future time answer as Kafka does in both, and empty vs null keys, values and header values stay apart."""

from __future__ import annotations

import time

import pytest

ck = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")

from kafka import KafkaConsumer  # noqa: E402
from kafka import TopicPartition as KTP  # noqa: E402

from arrowlog.server import messages as M  # noqa: E402

from .wireclient import call  # noqa: E402


def create(server, topic: str, partitions: int) -> str:
    resp = call(server, M.CREATE_TOPICS, 7, {"topics": [{"name": topic, "num_partitions": partitions,
                                                         "replication_factor": 1}]})
    assert resp["topics"][0]["error_code"] == 0
    return topic


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
