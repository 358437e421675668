"""Closing many partitions at once (issue 19, close() of 1,024 partitions):
a Producer's close makes one file-system flush for what it wrote and for
the partitions it is the last one out of, and lets go of the segments'
mappings while the disk flushes."""

import errno
import os
import threading
import time

import pytest

import arrowlog
from arrowlog.errors import PartitionFailedError
from arrowlog.storage import LogDir
from arrowlog.storage import partition as partition_mod

PARTS = 8


def produced(path, config=None):
    """A Producer that wrote 5 records into each of PARTS partitions and
    flushed them (written, not synced: its periodic sync is off)."""
    with LogDir(path) as d:
        d.create_topic("t", PARTS)
    p = arrowlog.Producer({"log.dir": path, "linger.ms": 1000, "fsync.interval.ms": 60_000, **(config or {})})
    for i in range(5 * PARTS):
        p.produce("t", b"v%d" % i, partition=i % PARTS)
    p.flush()
    return p


def watch_flushes(monkeypatch, logs):
    """Record, for each file-system flush, whether it ran beside the
    closing thread, whether every writer of ``logs`` was unmapped by its
    end and which of ``logs`` were marked clean then."""
    writers = [log._writer for log in logs]
    seen = []
    real = partition_mod._syncfs

    def syncfs(fd):
        ok = real(fd)
        beside = threading.current_thread() is not threading.main_thread()
        # the closing thread unmaps while this one waits for the disk: by
        # progress, never by a sleep-then-look
        deadline = time.monotonic() + 30
        while beside and any(w.log is not None for w in writers) and time.monotonic() < deadline:
            time.sleep(0.001)
        seen.append((beside, [w.log is None for w in writers], [log.state.clean for log in logs]))
        return ok

    monkeypatch.setattr(partition_mod, "_syncfs", syncfs)
    return seen


def states(path):
    with LogDir(path) as d:
        t = d.topic("t")
        return [(t.partition(i).state.clean, t.partition(i).state.snapshot()["recovery_point"],
                 t.partition(i).high_watermark) for i in range(PARTS)]


def test_a_producer_close_flushes_once_while_it_unmaps_the_segments(tmp_path, monkeypatch):
    path = str(tmp_path / "d")
    p = produced(path)
    logs = [p._log.topic("t").partition(i) for i in range(PARTS)]
    seen = watch_flushes(monkeypatch, logs)
    p.close()
    # one flush, for the data and the directories; during it the segments
    # were unmapped (they used to wait for it), and no partition was marked
    # clean before its data was on disk
    assert seen == [(True, [True] * PARTS, [False] * PARTS)]
    monkeypatch.undo()
    assert states(path) == [(True, 5, 5)] * PARTS


def test_a_producer_close_syncs_what_it_wrote_where_another_process_keeps_the_partitions_open(tmp_path,
                                                                                                monkeypatch):
    path = str(tmp_path / "d")
    p = produced(path)
    other = LogDir(path)  # its own open.lock descriptors: to flock, another process
    held = [other.topic("t").partition(i) for i in range(0, PARTS, 2)]
    seen = watch_flushes(monkeypatch, [p._log.topic("t").partition(i) for i in range(PARTS)])
    p.close()
    assert len(seen) == 1 and seen[0][0]
    # the Producer was the last one out of the odd partitions only: those are
    # clean; the even ones stay open elsewhere, not clean, but what the
    # Producer wrote there is synced all the same
    assert seen[0][2] == [False] * PARTS
    for i, log in zip(range(0, PARTS, 2), held):
        st = log.state.snapshot()
        assert (log.state.clean, st["recovery_point"], st["next_offset"]) == (False, 5, 5), i
    monkeypatch.undo()
    other.close()
    assert states(path) == [(True, 5, 5)] * PARTS


def test_without_syncfs_each_partition_a_producer_wrote_syncs_on_its_own(tmp_path, monkeypatch):
    path = str(tmp_path / "d")
    p = produced(path)
    other = LogDir(path)
    held = [other.topic("t").partition(i) for i in range(0, PARTS, 2)]
    monkeypatch.setattr(partition_mod, "_syncfs", lambda fd: False)  # unavailable, or it failed
    synced = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    p.close()
    assert synced
    for log in held:
        assert log.state.snapshot()["recovery_point"] == 5
    monkeypatch.undo()
    other.close()
    assert states(path) == [(True, 5, 5)] * PARTS


@pytest.mark.parametrize("held_elsewhere", [False, True])
@pytest.mark.parametrize("with_error_cb", [False, True])
def test_a_closing_sync_that_fails_is_told_by_close(tmp_path, monkeypatch, held_elsewhere, with_error_cb):
    path = str(tmp_path / "d")
    errors = []
    p = produced(path, {"error_cb": errors.append} if with_error_cb else None)
    other = LogDir(path) if held_elsewhere else None
    if other is not None:
        for i in range(PARTS):
            other.topic("t").partition(i)

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(partition_mod, "_syncfs", lambda fd: False)
    monkeypatch.setattr(os, "fdatasync", failing)
    if with_error_cb:
        p.close()  # to error_cb, from close() itself: no later call would serve it
        assert len(errors) == PARTS and all("PartitionFailedError" in str(e) for e in errors), errors
    else:
        with pytest.raises(PartitionFailedError):
            p.close()
    monkeypatch.undo()
    if other is not None:
        other.close()
    # not marked clean: the next opener recovers them and finds the records written
    with LogDir(path) as d:
        assert [d.topic("t").partition(i).high_watermark for i in range(PARTS)] == [5] * PARTS


def test_a_producer_close_does_not_wait_for_a_periodic_sync_in_flight_before_its_own_flush(tmp_path, monkeypatch):
    path = str(tmp_path / "d")
    in_periodic = threading.Event()
    closing_flush = threading.Event()
    overlapped = []
    real = partition_mod._syncfs

    def syncfs(fd):
        if threading.current_thread().name == "arrowlog-producer":  # the periodic sync
            in_periodic.set()
            # a slow disk: this flush lasts until the close's own has started
            # beside it (it used to wait for this one to end first)
            overlapped.append(closing_flush.wait(30))
        else:
            closing_flush.set()
        return real(fd)

    monkeypatch.setattr(partition_mod, "_syncfs", syncfs)
    p = produced(path, {"fsync.interval.ms": 20})
    assert in_periodic.wait(30), "no periodic sync started"
    p.close()
    assert overlapped == [True]
    monkeypatch.undo()
    assert states(path) == [(True, 5, 5)] * PARTS


def test_a_producer_closed_while_the_interpreter_exits_does_not_hang(tmp_path):
    """A Producer closed by a finalizer while the interpreter exits (here an
    object in a reference cycle that only the collector at exit reaches; a
    transactional consume-transform-produce loop hung this way), when a new
    thread can no longer start: Thread.start() would wait forever for it, so
    the close flushes inline; the process exits and what it wrote is there."""
    import subprocess
    import sys

    path = str(tmp_path / "data")
    script = (
        "import arrowlog\n"
        f"p = arrowlog.Producer({{'log.dir': {path!r}}})\n"
        "for i in range(50):\n"
        "    p.produce('t', b'v%d' % i, partition=0)\n"
        "p.flush()\n"
        "class Holder:\n"
        "    def __del__(self):\n"
        "        self.p.close()\n"
        "h = Holder()\n"
        "h.p, h.cycle = p, h\n"
        "del h, p\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with LogDir(path) as d:
        pl = d.topic("t").partition(0)
        assert pl.state.clean, "the close at exit marks the partition clean"
        assert pl.high_watermark == 50
