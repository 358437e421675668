"""flush() appends in the calling thread, skips partitions with nothing
queued, and still waits for a batch the linger thread is appending."""

from __future__ import annotations

import threading
import time

from arrowlog import Producer
from arrowlog.storage import LogDir
from arrowlog.storage.partition import PartitionLog


def test_flush_waits_for_a_batch_the_linger_thread_is_appending(data_dir):
    with LogDir(data_dir) as d:
        d.create_topic("t", 2)
    with Producer({"log.dir": data_dir, "linger.ms": 60_000}) as p:
        p.produce("t", b"a", partition=0)
        # what the linger thread's _send does: under the partition's lock it
        # takes the batch (the accumulator is empty from then on) and appends it
        lock = p._locks[("t", 0)]
        lock.acquire()
        acc = p._slots["t"].accumulators[0].detach()
        done = threading.Event()
        flusher = threading.Thread(target=lambda: (p.flush(), done.set()))
        try:
            flusher.start()
            assert not done.wait(0.3)  # flush() waits for the append in flight
        finally:
            p._slots["t"].topic.partition(0).append_records(acc)
            p._sent(acc.count)
            lock.release()
        assert done.wait(60)
        flusher.join(60)
        assert p._slots["t"].topic.partition(0).high_watermark == 1


def test_flush_appends_only_the_partitions_with_records(data_dir, monkeypatch):
    with LogDir(data_dir) as d:
        d.create_topic("t", 64)
    with Producer({"log.dir": data_dir, "linger.ms": 60_000}) as p:
        for i in range(64):
            p.produce("t", b"x", partition=i)
        p.flush()
        sent: list[int] = []
        original = PartitionLog.append_target  # what flush() asks of each partition it appends to

        def counting(self):
            sent.append(self.partition)
            return original(self)

        monkeypatch.setattr(PartitionLog, "append_target", counting)
        p.produce("t", b"y", partition=7)
        p.produce("t", b"z", partition=40)
        p.flush()
        assert sorted(sent) == [7, 40]
        assert len(p) == 0
    with LogDir(data_dir) as d:
        t = d.topic("t")
        assert [t.partition(i).high_watermark for i in (6, 7, 40)] == [1, 2, 2]


def test_flush_with_nothing_queued_looks_at_no_partition(data_dir, monkeypatch):
    with LogDir(data_dir) as d:
        d.create_topic("t", 1024)
    with Producer({"log.dir": data_dir, "linger.ms": 60_000}) as p:
        p.produce("t", b"x", key=b"k")
        assert p.flush() == 0
        monkeypatch.setattr(type(p), "_send_all", lambda self, *a, **k: (_ for _ in ()).throw(AssertionError))
        assert p.flush() == 0  # nothing queued: no walk over the 1,024 accumulators
        assert len(p) == 0


def test_produce_makes_the_first_in_batch_upcall_only_when_it_has_work():
    """A record that starts a batch calls _first_in_batch (Python) only
    while the linger thread is idle (to wake it) or an error waits to be
    raised; otherwise produce() stays in C."""
    from arrowlog._native import core

    seen = []

    class Core(core.ProducerCore):
        def _open_slot(self, topic):
            slot = self._slots[topic] = core.TopicSlot(topic, None, 1)
            return slot

        def _first_in_batch(self, slot, partition):
            seen.append((partition, self._bg_idle, self._error))

    c = Core()
    c._bg_idle = False
    c.produce("t", b"a")
    assert seen == []
    c._slots["t"].accumulators[0].detach()
    c._bg_idle = True
    c.produce("t", b"b")
    c.produce("t", b"c")  # not the first in its batch
    assert seen == [(0, True, None)]
    c._slots["t"].accumulators[0].detach()
    err = RuntimeError("disk full")
    c._bg_idle, c._error = False, err
    c.produce("t", b"d")
    assert seen == [(0, True, None), (0, False, err)]


def test_a_background_error_is_raised_by_the_next_produce(data_dir):
    with LogDir(data_dir) as d:
        d.create_topic("t", 1)
    with Producer({"log.dir": data_dir, "linger.ms": 0}) as p:
        p.produce("t", b"a")
        p.flush()
        p._bg_idle = False
        p._error = OSError(28, "no space left on device")
        try:
            p.produce("t", b"b")
        except OSError as exc:
            assert exc.errno == 28
        else:
            raise AssertionError("produce() did not raise the pending error")
        assert p.flush() == 0


def test_poll_with_a_timeout_appends_a_batch_once_it_lingered(data_dir):
    """poll(timeout) waits for the oldest batch to be due (linger.pending_wait)
    and appends it itself, serving its delivery report."""
    reports = []
    with Producer({"log.dir": data_dir, "linger.ms": 200}) as p:
        p.produce("t", b"a", on_delivery=lambda err, msg: reports.append((err, msg.offset())))
        deadline = time.monotonic() + 60
        while not reports and time.monotonic() < deadline:
            p.poll(30)
        assert reports == [(None, 0)]
        assert len(p) == 0
