"""bench/null_broker.py: the do-nothing acceptor the Kafka-wire produce row is measured against."""

from __future__ import annotations

import pytest
from kafka_batch_craft import with_block

from bench.bench_kafka_wire import start_process, stop_server
from bench.null_broker import record_count


def test_record_count_sums_the_batch_headers_and_stops_at_a_short_one():
    records = with_block(0, b"\0" * 7, 3) + with_block(0, b"", 5)
    assert record_count(records) == 8
    assert record_count(records + b"\0" * 20) == 8   # a truncated header is not counted
    assert record_count(None) == 0


def test_a_confluent_producer_gets_every_record_acknowledged_at_consecutive_offsets():
    ck = pytest.importorskip("confluent_kafka")
    proc, bootstrap = start_process(["-m", "bench.null_broker"], "the do-nothing acceptor")
    try:
        offsets, errors = [], []

        def report(err, msg):
            (errors if err else offsets).append(err or msg.offset())

        producer = ck.Producer({"bootstrap.servers": bootstrap})
        for i in range(2000):
            producer.produce("t", b"v%d" % i, on_delivery=report)
        assert producer.flush(60) == 0
        assert errors == []
        assert sorted(offsets) == list(range(2000))
    finally:
        stop_server(proc)
