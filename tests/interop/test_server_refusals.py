"""What ``arrowlog serve`` does not implement is refused as "not supported"
(UNSUPPORTED_VERSION, or INVALID_REQUEST with a message), never as an
authorisation failure."""

from __future__ import annotations

import struct

import crc32c
import pytest

from arrowlog.server import messages as M

from .wireclient import call, high_watermark, make_batch, still_serving

confluent_kafka = pytest.importorskip("confluent_kafka")

UNSUPPORTED_VERSION, INVALID_REQUEST = 35, 42


@pytest.fixture
def created(server, topic):
    resp = call(server, M.CREATE_TOPICS, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                                         "replication_factor": 1}]})
    assert resp["topics"][0]["error_code"] == 0
    return topic


def produce_as(server, topic, records, transactional_id=None):
    resp = call(server, M.PRODUCE, 9, {
        "transactional_id": transactional_id, "acks": -1, "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}]})
    return resp["responses"][0]["partition_responses"][0]


def with_attributes(batch: bytes, bits: int) -> bytes:
    """A Kafka record batch with attribute ``bits`` set (and its CRC-32C redone)."""
    b = bytearray(batch)
    attrs = struct.unpack_from(">h", b, 21)[0] | bits
    struct.pack_into(">h", b, 21, attrs)
    struct.pack_into(">I", b, 17, crc32c.crc32c(bytes(b[21:])))
    return bytes(b)


def test_transactions_are_refused_as_unsupported(server, created):
    init = call(server, M.INIT_PRODUCER_ID, 2, {"transactional_id": "tx-1", "transaction_timeout_ms": 60000})
    assert init["error_code"] == UNSUPPORTED_VERSION
    r = produce_as(server, created, make_batch(2), transactional_id="tx-1")
    assert r["error_code"] == INVALID_REQUEST and "transactions are not supported" in r["error_message"]
    for bits, what in ((0x10, "transactional"), (0x20, "control")):
        r = produce_as(server, created, with_attributes(make_batch(2), bits))
        assert r["error_code"] == INVALID_REQUEST, what
        assert "transactions are not supported" in r["error_message"]
    assert high_watermark(server, created) == 0
    still_serving(server)


def test_confluent_transactional_producer_is_told_not_supported(server, created):
    p = confluent_kafka.Producer({"bootstrap.servers": server.bootstrap, "transactional.id": "tx-2",
                                  "transaction.timeout.ms": 10000})
    try:
        with pytest.raises(confluent_kafka.KafkaException) as info:
            p.init_transactions(3)
    finally:
        del p
    err = info.value.args[0]
    # librdkafka retries until the timeout, then reports the broker's answer
    assert err.code() == confluent_kafka.KafkaError.UNSUPPORTED_VERSION, err
    assert "authoriz" not in err.str().lower(), err.str()
