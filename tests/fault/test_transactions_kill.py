"""kill -9 of a consume-transform-produce loop using Kafka transactions against
``arrowlog serve``: every input record ends up in the output exactly once.

The loop (a confluent-kafka consumer and a transactional producer in one process)
reads the input topic from its group's committed offset, writes one output
record per input record and commits the input offsets with
``send_offsets_to_transaction`` in the same transaction. It is SIGKILLed at a
random point (after a random number of steps, each a transaction's output
produced or a transaction committed, plus a random delay: inside a transaction
with its output already on the server, during its commit, or between two), 10 times (50 with
ARROWLOG_FAULT_LONG=1); the next run's ``init_transactions`` fences the killed
one and aborts what it left open. A last run goes to the end. A
``read_committed`` reader then finds every input value once in the output.
"""

from __future__ import annotations

import random
import time

import pytest
from test_server_kill import start_server
from txnloop import (
    DEADLINE_S,
    INPUT,
    OUTPUT,
    RECORDS,
    check_exactly_once,
    kill_and_finish,
    loop_script,
    start_loop,
)

confluent_kafka = pytest.importorskip("confluent_kafka")

LOOP = loop_script("""
    import confluent_kafka
    from confluent_kafka import TopicPartition
    bootstrap = sys.argv[1]
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": %(group)r,
                                         "enable.auto.commit": False, "isolation.level": "read_committed",
                                         "auto.offset.reset": "earliest"})
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "transactional.id": %(txn)r,
                                         "transaction.timeout.ms": 60000})
    # first fence the killed run and abort what it left open (its staged offsets would
    # otherwise keep the committed offset unstable: KIP-447), then read where to start
    producer.init_transactions(30)
    committed = consumer.committed([TopicPartition(%(input)r, 0)], 30)[0].offset
    consumer.assign([TopicPartition(%(input)r, 0, committed if committed >= 0 else 0)])
""", timeout=30)


def read_committed(bootstrap: str, expected: int) -> list[bytes]:
    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "ctp-check",
                                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([confluent_kafka.TopicPartition(OUTPUT, 0, 0)])
    got, deadline = [], time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                if len(got) >= expected:
                    break   # nothing more after the expected count: duplicates would have shown
                continue
            if not m.error():
                got.append(m.value())
    finally:
        c.close()
    return got


def test_consume_transform_produce_killed_at_random_is_exactly_once(data_dir, seed):
    rng = random.Random(seed)
    server, bootstrap = start_server(data_dir)
    try:
        p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for i in range(RECORDS):
            p.produce(INPUT, value=b"in-%05d" % i, partition=0)
        assert p.flush(60) == 0
        kill_and_finish(lambda: start_loop(LOOP, bootstrap), rng, seed)
        got = read_committed(bootstrap, RECORDS)
    finally:
        server.kill()
        server.wait(30)
    check_exactly_once(got, seed)
