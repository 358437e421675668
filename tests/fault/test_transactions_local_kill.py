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

from txnloop import INPUT, OUTPUT, RECORDS, check_exactly_once, kill_and_finish, loop_script, start_loop

from arrowlog import Producer, replay

LOOP = loop_script("""
    from arrowlog import Consumer, Producer, TopicPartition
    data = sys.argv[1]
    producer = Producer({"log.dir": data, "transactional.id": %(txn)r, "transaction.timeout.ms": 60000})
    # first fence the killed run and abort what it left open (its staged offsets too),
    # then read where to start
    producer.init_transactions(30)
    consumer = Consumer({"log.dir": data, "group.id": %(group)r, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    committed = consumer.committed([TopicPartition(%(input)r, 0)])[0].offset
    consumer.assign([TopicPartition(%(input)r, 0, committed if committed >= 0 else 0)])
""", pause_s=0.005)   # a local loop is fast: pauses spread the kills over every step


def test_local_consume_transform_produce_killed_at_random_is_exactly_once(data_dir, seed):
    rng = random.Random(seed)
    with Producer({"log.dir": data_dir}) as p:
        for i in range(RECORDS):
            p.produce(INPUT, value=b"in-%05d" % i, partition=0)
    kill_and_finish(lambda: start_loop(LOOP, data_dir), rng, seed)
    with replay(data_dir, OUTPUT) as r:                        # read_committed
        got = r.to_arrow().column("value").to_pylist()
    check_exactly_once(got, seed)
