"""flush() appends in the calling thread, skips partitions with nothing
queued, and still waits for a batch the linger thread is appending."""

from __future__ import annotations

import threading

from arrowlog import Producer
from arrowlog.storage import LogDir


def test_flush_waits_for_a_batch_the_linger_thread_is_appending(data_dir):
    with LogDir(data_dir) as d:
        d.create_topic("t", 2)
    with Producer({"log.dir": data_dir, "linger.ms": 60_000}) as p:
        p.produce("t", b"a", partition=0)
        p.flush()
        # as the linger thread holds it while it appends a batch it took (the
        # accumulator is empty by then): flush() must wait for that append
        lock = p._locks[("t", 0)]
        lock.acquire()
        done = threading.Event()
        flusher = threading.Thread(target=lambda: (p.flush(), done.set()))
        try:
            flusher.start()
            assert not done.wait(0.3)  # still waiting for the lock
        finally:
            lock.release()
        assert done.wait(60)
        flusher.join(60)


def test_flush_appends_only_the_partitions_with_records(data_dir, monkeypatch):
    with LogDir(data_dir) as d:
        d.create_topic("t", 64)
    with Producer({"log.dir": data_dir, "linger.ms": 60_000}) as p:
        for i in range(64):
            p.produce("t", b"x", partition=i)
        p.flush()
        sent: list[int] = []
        original = type(p)._send

        def counting(self, slot, partition):
            sent.append(partition)
            return original(self, slot, partition)

        monkeypatch.setattr(type(p), "_send", counting)
        p.produce("t", b"y", partition=7)
        p.produce("t", b"z", partition=40)
        p.flush()
        assert sorted(sent) == [7, 40]
        assert len(p) == 0
    with LogDir(data_dir) as d:
        t = d.topic("t")
        assert [t.partition(i).high_watermark for i in (6, 7, 40)] == [1, 2, 2]
