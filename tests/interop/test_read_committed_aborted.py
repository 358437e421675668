"""A read_committed reader gets past a run of aborted records larger than its fetch size
(librdkafka's 0129): the aborted batches go out as their offsets alone (empty batches),
so the reader advances instead of asking for the same offset forever."""

from __future__ import annotations

import time

import pytest

from arrowlog._native.kafka import batch_info
from arrowlog.server import messages as M

from .wireclient import call

ck = pytest.importorskip("confluent_kafka")
TIMEOUT = 30


def produce_aborted_then_committed(server, topic):
    p = ck.Producer({"bootstrap.servers": server.bootstrap, "transactional.id": f"{topic}-txn",
                     "linger.ms": 1000})
    p.init_transactions(TIMEOUT)
    p.begin_transaction()
    for i in range(300):
        p.produce(topic, value=b"x" * 1000, key=b"aborted-%d" % i, partition=0)
    assert p.flush(TIMEOUT) == 0   # written, then aborted (abort_transaction drops what is unsent)
    p.abort_transaction(TIMEOUT)
    p.begin_transaction()
    p.produce(topic, value=b"committed", partition=0)
    p.commit_transaction(TIMEOUT)


def test_read_committed_reader_passes_aborted_data_larger_than_its_fetch_size(server, topic, group):
    produce_aborted_then_committed(server, topic)
    c = ck.Consumer({"bootstrap.servers": server.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "isolation.level": "read_committed", "max.partition.fetch.bytes": 20000,
                     "enable.partition.eof": True})
    c.subscribe([topic])
    got, eof, deadline = [], False, time.monotonic() + TIMEOUT
    try:
        while not eof and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == ck.KafkaError._PARTITION_EOF, m.error()
                eof = True
            else:
                got.append(m.value())
    finally:
        c.close()
    assert eof, f"the read_committed reader never reached the end (read {got})"
    assert got == [b"committed"]


def test_an_aborted_batch_goes_out_as_its_offsets_without_records(server, topic):
    produce_aborted_then_committed(server, topic)
    resp = call(server, M.FETCH, 12, {
        "replica_id": -1, "max_wait_ms": 0, "min_bytes": 0, "max_bytes": 1 << 20, "isolation_level": 1,
        "session_id": 0, "session_epoch": -1, "forgotten_topics_data": [], "rack_id": "",
        "topics": [{"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20,
                                                    "current_leader_epoch": -1, "log_start_offset": -1}]}]})
    part = resp["responses"][0]["partitions"][0]
    assert part["error_code"] == 0
    first = batch_info(bytes(part["records"]))   # the first batch of the record set
    assert (first["base_offset"], first["record_count"]) == (0, 0), first
    assert first["batch_length"] == 49   # the header alone: no records
