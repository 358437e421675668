"""File descriptors: what a closed object held is released, and so is what an object dropped without
close() held, once it is collected. A long-lived process (or the test suite, one process) that leaked
them ran out of descriptors, and a leaked deleted segment kept the disk space compaction reclaimed."""

from __future__ import annotations

import gc
import os
import time

from fds import open_paths

import arrowlog
from arrowlog import Consumer, Producer, TopicPartition
from arrowlog.server.txn_state import TxnState
from arrowlog.storage import LogDir
from arrowlog.txn import ConsumerGroupMetadata

DEADLINE_S = 60.0


def held(path) -> list[str]:
    """What this process has open under ``path``, after a garbage collection."""
    gc.collect()
    root = os.path.realpath(path) + os.sep
    return sorted(p for p in open_paths() if p.startswith(root))


def assert_released(path, what: str) -> None:
    """Everything under ``path`` is closed, at once or (an object a background thread still held for
    a moment: a Producer's) within the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while (left := held(path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"{what} left open: {left}"


def produce(data: str, topic: str = "in", n: int = 3) -> None:
    with Producer({"log.dir": data}) as p:
        for i in range(n):
            p.produce(topic, b"v%d" % i)


def consume_one(c: Consumer) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            return
    raise AssertionError("no record came")


def test_a_closed_transactional_producer_that_sent_offsets_leaves_nothing_open(data_dir):
    produce(data_dir)
    p = Producer({"log.dir": data_dir, "transactional.id": "etl"})
    p.init_transactions(10)
    p.begin_transaction()
    p.produce("out", b"x")
    p.send_offsets_to_transaction([TopicPartition("in", 0, 1)], ConsumerGroupMetadata("g"))
    p.commit_transaction(10)
    p.close()
    assert held(data_dir) == []   # the transaction state's lock and journal, the group's journal and .seq


def test_closed_read_committed_readers_leave_the_transaction_state_closed(data_dir):
    p = Producer({"log.dir": data_dir, "transactional.id": "etl"})
    p.init_transactions(10)
    p.begin_transaction()
    p.produce("out", b"committed")
    p.commit_transaction(10)
    p.begin_transaction()
    p.produce("out", b"open")
    p.flush()
    producers = held(data_dir)                # the open producer's, the transaction state's lock among them
    with Consumer({"log.dir": data_dir, "isolation.level": "read_committed"}) as c:
        c.assign([TopicPartition("out", 0, 0)])
        consume_one(c)
    with arrowlog.replay(data_dir, "out", isolation="read_committed") as r:
        assert r.to_arrow().column("value").to_pylist() == [b"committed"]
    with arrowlog.dataset(data_dir, "out") as ds:
        ds.to_table()
    assert held(data_dir) == producers
    p.close()
    assert held(data_dir) == []


def test_a_log_kept_open_after_compaction_holds_no_deleted_segment(tmp_path):
    data = str(tmp_path / "data")
    with LogDir(data) as ld:
        ld.create_topic("t", config={"cleanup.policy": "compact", "segment.bytes": 16384})
    with Producer({"log.dir": data}) as p:
        for i in range(2000):
            p.produce("t", b"v%d" % i, key=b"k%d" % (i % 40))
            if i % 50 == 0:
                p.flush()
    with LogDir(data) as ld:
        plog = ld.topic("t").partition(0)
        offset = 0
        while offset < plog.high_watermark:   # a read view of every segment
            offset = plog.read(offset)[-1].next_offset
        (report,) = ld.compact("t")
        assert report["segments_rewritten"] > 0
        gone = [p for p in held(data) if p.endswith("(deleted)")]
        assert gone == [], f"compaction's replaced segments are still open: {gone}"
        assert plog.read(0)                   # and the log reads on
    assert held(data) == []


def test_a_log_dropped_without_close_releases_its_descriptors(data_dir):
    produce(data_dir, n=20)
    ld = LogDir(data_dir)
    plog = ld.topic("in").partition(0)
    assert plog.read(0)
    assert held(data_dir)                     # .lock, partition.state, open.lock, segments, ...
    del ld, plog
    assert held(data_dir) == []


def test_a_transaction_state_dropped_without_close_releases_its_descriptors(data_dir):
    os.makedirs(data_dir)
    state = TxnState(data_dir, owner=False)
    assert held(data_dir)                     # its lock and journal
    del state
    assert held(data_dir) == []


def test_a_producer_dropped_mid_transaction_releases_everything(data_dir):
    p = Producer({"log.dir": data_dir, "transactional.id": "etl"})
    p.init_transactions(10)
    p.begin_transaction()
    p.produce("out", b"x")
    p.flush()
    del p
    assert_released(data_dir, "a transactional producer dropped without close()")


def test_a_group_consumer_dropped_without_close_releases_everything(data_dir):
    produce(data_dir)
    c = Consumer({"log.dir": data_dir, "group.id": "g", "auto.offset.reset": "earliest"})
    c.subscribe(["in"])
    consume_one(c)
    c.commit(asynchronous=False)
    del c
    assert_released(data_dir, "a group consumer dropped without close()")   # its member file, partition locks
    with Consumer({"log.dir": data_dir, "group.id": "g"}) as other:   # and the group goes on without it
        other.subscribe(["in"])
        deadline = time.monotonic() + DEADLINE_S
        while not other.assignment() and time.monotonic() < deadline:
            other.poll(0.2)
        assert other.assignment() == [TopicPartition("in", 0)]
