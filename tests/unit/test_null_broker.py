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


def test_fetch_log_batches_decode_to_the_records_at_their_offsets():
    from arrowlog._native.kafka import decode_record_set
    from bench.null_broker import fetch_log

    bases, batches = fetch_log(12, 5, 5)
    assert bases == [0, 5, 10]
    decoded = [b for data in batches for b in decode_record_set(data)]   # CRCs checked
    assert [(b.base_offset, b.record_count, b.last_offset_delta) for b in decoded] == [(0, 5, 4), (5, 5, 4), (10, 2, 1)]
    assert [v for b in decoded for v in b.records.column("value").to_pylist()] == [b"xxxxx"] * 12


def test_a_confluent_consumer_reads_every_record_of_the_fetch_responder_once():
    ck = pytest.importorskip("confluent_kafka")
    from bench.null_broker import FETCH_TOPIC

    proc, bootstrap = start_process(["-m", "bench.null_broker", "--fetch-records", "25000", "--value-size", "10",
                                     "--batch-records", "3000"], "the do-nothing fetch responder")
    try:
        consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "g", "enable.auto.commit": False,
                                "max.partition.fetch.bytes": 50_000})   # several Fetches, the first batch whole
        consumer.assign([ck.TopicPartition(FETCH_TOPIC, 0, 0)])
        offsets, idle = [], 0
        while len(offsets) < 25000 and idle < 3:   # progress, or three 10 s polls that bring nothing
            got = consumer.consume(10_000, 10)
            idle = 0 if got else idle + 1
            for m in got:
                assert m.error() is None
                assert m.value() == b"x" * 10
                offsets.append(m.offset())
        assert offsets == list(range(25000))
        assert consumer.consume(10, 0.3) == []   # the end: a long poll that returns nothing
        consumer.close()
    finally:
        stop_server(proc)


def test_the_c_client_consumes_and_produces_through_the_null_broker():
    from bench.bench_kafka_wire import build_probe, run_probe
    from bench.null_broker import FETCH_TOPIC

    probe, why = build_probe()
    if probe is None:
        pytest.skip(why)
    proc, bootstrap = start_process(["-m", "bench.null_broker", "--fetch-records", "20000", "--value-size", "100"],
                                    "the do-nothing fetch responder")
    try:
        got = run_probe(probe, "consume", 20000, 100, FETCH_TOPIC, proc.pid,
                        {"bootstrap.servers": bootstrap, "group.id": "c", "max.partition.fetch.bytes": 1 << 20})
        assert got["records"] == 20000   # the probe itself fails unless every byte of every value is 'x'
        assert got["server_cpu_s"] > 0
        sent = run_probe(probe, "produce", 5000, 100, "t", proc.pid, {"bootstrap.servers": bootstrap})
        assert sent["records"] == 5000   # it fails unless every record's delivery is reported without error
        with pytest.raises(RuntimeError, match="no-such.property"):
            run_probe(probe, "queue", 10, 100, "t", 0, {"no-such.property": 1})
    finally:
        stop_server(proc)
