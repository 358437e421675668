"""kill -9 of an in-process consume-transform-produce loop (arrowlog.Consumer + a
transactional arrowlog.Producer on one data directory, no server): every input record
ends up in the output exactly once.

The loop reads the input topic from its group's committed offset, writes one output
record per input record and stages the input offsets with
``send_offsets_to_transaction`` in the same transaction. It is SIGKILLed at a random
point (after a random number of steps, each a transaction's output appended or a
transaction committed, plus a random delay: inside a transaction with its output in the
log, with its offsets staged, during its commit, or between two; the loop pauses 5 ms
between steps so the kills spread over them), 10 times (50 with ARROWLOG_FAULT_LONG=1); the
next run's ``init_transactions`` fences the killed one and aborts what it left open (its
records and its staged offsets). A last run goes to the end. A ``read_committed`` replay
then finds every input value once in the output, in order.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import faultlib
from txnloop import RECORDS, check_exactly_once, kill_and_finish

from arrowlog import Producer, replay

INPUT, OUTPUT, GROUP, TXN_ID = "ctp-in", "ctp-out", "ctp-group", "ctp-loop"

LOOP = textwrap.dedent("""
    import sys, time
    from arrowlog import Consumer, Producer, TopicPartition
    data, total = sys.argv[1], int(sys.argv[2])
    producer = Producer({"log.dir": data, "transactional.id": %(txn)r, "transaction.timeout.ms": 60000})
    # first fence the killed run and abort what it left open (its staged offsets too),
    # then read where to start
    producer.init_transactions(30)
    consumer = Consumer({"log.dir": data, "group.id": %(group)r, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    committed = consumer.committed([TopicPartition(%(input)r, 0)])[0].offset
    consumer.assign([TopicPartition(%(input)r, 0, committed if committed >= 0 else 0)])
    print("ready", flush=True)
    position = max(committed, 0)
    while position < total:
        msgs = [m for m in consumer.consume(10, 1.0) if not m.error()]
        if not msgs:
            continue
        producer.begin_transaction()
        for m in msgs:
            producer.produce(%(output)r, value=m.value() + b"!")
        producer.flush()
        print("produced", flush=True)
        time.sleep(0.005)   # a local loop is fast: pauses spread the kills over every step
        position = msgs[-1].offset() + 1
        producer.send_offsets_to_transaction([TopicPartition(%(input)r, 0, position)],
                                             consumer.consumer_group_metadata())
        time.sleep(0.005)
        producer.commit_transaction()
        print("committed", position, flush=True)
        time.sleep(0.005)
    print("done", flush=True)
""") % {"group": GROUP, "input": INPUT, "output": OUTPUT, "txn": TXN_ID}


def run_loop(data: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LOOP, data, str(RECORDS)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=faultlib.writer_env())


def test_local_consume_transform_produce_killed_at_random_is_exactly_once(data_dir, seed):
    rng = random.Random(seed)
    with Producer({"log.dir": data_dir}) as p:
        for i in range(RECORDS):
            p.produce(INPUT, value=b"in-%05d" % i, partition=0)
    kill_and_finish(lambda: run_loop(data_dir), rng, seed)
    with replay(data_dir, OUTPUT) as r:                        # read_committed
        got = r.to_arrow().column("value").to_pylist()
    check_exactly_once(got, seed)
