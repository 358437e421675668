"""A compacted topic refuses records without a key as Kafka does: INVALID_RECORD for the
partition, with ``record_errors`` naming the keyless records (Produce v8+), and nothing of
the batch written. librdkafka then fails exactly those records with INVALID_RECORD and the
others of the batch with _INVALID_DIFFERENT_RECORD (its test 0011)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from arrowlog._native.kafka import encode_batch
from arrowlog.server import messages as M

from .wireclient import call, high_watermark, produce

INVALID_RECORD = 87
TIMEOUT = 30


def create_compacted(server, topic):
    resp = call(server, M.CREATE_TOPICS, 5, {"topics": [{
        "name": topic, "num_partitions": 1, "replication_factor": 1, "assignments": [],
        "configs": [{"name": "cleanup.policy", "value": "compact"}]}], "timeout_ms": 5000,
        "validate_only": False})
    assert resp["topics"][0]["error_code"] == 0, resp


def batch_with_keys(keys):
    n = len(keys)
    return encode_batch(pa.RecordBatch.from_pydict({
        "offset": pa.array(range(n), pa.int64()),
        "timestamp": pa.array([1_700_000_000_000 + i for i in range(n)], pa.timestamp("ms")),
        "key": pa.array(keys, pa.binary()),
        "value": pa.array([b"v%d" % i for i in range(n)], pa.binary()),
        "headers": pa.nulls(n, pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
    }))


def test_keyless_records_are_named_in_record_errors_and_nothing_is_written(server, topic):
    create_compacted(server, topic)
    keys = [None, b"k1", b"k2", None, b"k4"]
    r = produce(server, topic, batch_with_keys(keys), version=9)
    assert r["error_code"] == INVALID_RECORD
    assert [e["batch_index"] for e in r["record_errors"]] == [0, 3]
    assert "compacted" in r["error_message"]
    assert high_watermark(server, topic) == 0
    # a keyed batch goes in; Produce v7 (no record_errors) still gets INVALID_RECORD
    assert produce(server, topic, batch_with_keys([b"a", b"b"]), version=9)["error_code"] == 0
    assert produce(server, topic, batch_with_keys([b"c", None]), version=7)["error_code"] == INVALID_RECORD
    assert high_watermark(server, topic) == 2


def test_librdkafka_fails_only_the_keyless_records_of_a_batch(server, topic):
    ck = pytest.importorskip("confluent_kafka")
    create_compacted(server, topic)
    results: dict[int, int] = {}
    # one batch: nothing is sent until flush() (which ignores linger.ms), so a
    # loaded machine cannot split the 20 records over batches (with 500 ms,
    # once in a full suite run, every keyed record came back appended: they
    # had gone out in batches without the keyless ones)
    p = ck.Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 60_000})
    for i in range(20):
        p.produce(topic, value=b"v%d" % i, key=None if i % 10 == 0 else b"k%d" % i, partition=0,
                  on_delivery=lambda err, msg, i=i: results.__setitem__(i, err.code() if err else 0))
    assert p.flush(TIMEOUT) == 0
    assert sorted(i for i, code in results.items() if code == ck.KafkaError.INVALID_RECORD) == [0, 10]
    assert {code for i, code in results.items() if i % 10} == {ck.KafkaError._INVALID_DIFFERENT_RECORD}
    assert high_watermark(server, topic) == 0
