"""Closing many partitions at once (issue 19, close() of 1,024 partitions):
a Producer's close makes one file-system flush for what it wrote and for
the partitions it is the last one out of, and lets go of the segments'
mappings while the disk flushes."""

import errno
import fcntl
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


def partition_dirs(path):
    return [os.path.join(path, "topics", "t", str(i)) for i in range(PARTS)]


def test_close_fds_closes_every_descriptor_given_and_counts_the_failures(tmp_path):
    from arrowlog._native import core
    fds = [os.open(str(tmp_path / f"f{i}"), os.O_CREAT | os.O_RDWR, 0o600) for i in range(4)]
    os.close(fds[3])  # already closed: a failure, counted, never raised
    assert core.close_fds([fds[0], -1, fds[1], fds[2], fds[3]]) == 1
    for fd in fds:
        with pytest.raises(OSError) as info:
            os.fstat(fd)
        assert info.value.errno == errno.EBADF
    assert core.close_fds([]) == 0


def test_a_close_lets_go_of_every_descriptor_in_one_native_pass(tmp_path, monkeypatch):
    from arrowlog._native import core
    path = str(tmp_path / "d")
    p = produced(path)
    passes = []
    real = core.close_fds

    def close_fds(fds):
        passes.append(len(fds))
        return real(fds)

    monkeypatch.setattr(partition_mod.core, "close_fds", close_fds)
    p.close()
    # the segments' descriptors went while the disk flushed (their stats
    # taken for the marks); the last pass closes each partition's state and
    # two lock files (releasing the flocks) once every mark is left, all at once
    assert passes[-1] == 3 * PARTS
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not [f for f in held if f.startswith(path)]
    # and another opener takes each partition as its first opener again
    for d in partition_dirs(path):
        fd = os.open(f"{d}/open.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_the_marks_of_the_native_close_pass_are_those_write_mark_leaves(tmp_path):
    from arrowlog._native import core
    from arrowlog.storage.layout_mark import MARK_OFFSET, MARK_SIZE, SEGMENT_MARK_SIZE, mark_holds, write_mark
    both = MARK_SIZE + SEGMENT_MARK_SIZE   # the layout mark and replay's segment mark
    path = str(tmp_path / "d")
    produced(path).close()
    for d in partition_dirs(path):
        fd = os.open(f"{d}/partition.state", os.O_RDWR)
        try:
            native = os.pread(fd, both, MARK_OFFSET)
            assert native.startswith(b"ARWLMARK") and native[MARK_SIZE:].startswith(b"ARWLSEGM")
            assert mark_holds(fd, d)
            st = core.PartitionState(core.MappedFile(fd, core.STATE_FILE_SIZE, False, d))
            assert st.clean and st.snapshot()["recovery_point"] == 5
            write_mark(fd, d, st.snapshot())  # the Python mark of the same state and files
            assert os.pread(fd, both, MARK_OFFSET) == native
        finally:
            os.close(fd)


def test_a_partition_with_a_cleaners_swap_left_is_closed_clean_but_not_marked(tmp_path):
    from arrowlog.storage.cleaner import CLEANING_DIR
    from arrowlog.storage.layout_mark import MARK_OFFSET, MARK_SIZE
    path = str(tmp_path / "d")
    p = produced(path)
    dirs = partition_dirs(path)
    os.mkdir(os.path.join(dirs[1], CLEANING_DIR))  # a swap a dead cleaner left: the next opener finishes it
    p.close()
    marks = []
    for d in dirs:
        with open(f"{d}/partition.state", "rb") as f:
            marks.append(os.pread(f.fileno(), MARK_SIZE, MARK_OFFSET)[:8])
    assert marks[1] == b"\0" * 8
    assert marks[:1] + marks[2:] == [b"ARWLMARK"] * (PARTS - 1)
    assert all(clean for clean, _rp, _hw in states(path)[2:])


def test_a_compacted_partition_closed_cleanly_gets_its_mark(tmp_path):
    """A cleaning round leaves no `cleaning` subdirectory behind (it used to
    stay, empty, and a close never marks a directory with one), so the next
    clean close marks the partition and the next opener skips its layout
    check."""
    import pyarrow as pa

    from arrowlog.schema import PRODUCE_SCHEMA
    from arrowlog.storage.cleaner import CLEANING_DIR
    from arrowlog.storage.layout_mark import MARK_OFFSET, MARK_SIZE, mark_holds

    def batch(i):
        return pa.RecordBatch.from_pydict({"timestamp": [1_000 + i], "key": [b"k%d" % (i % 3)],
                                           "value": [b"v%d" % i * 20], "headers": [None]}, schema=PRODUCE_SCHEMA)

    path = str(tmp_path / "d")
    with LogDir(path) as d:
        t = d.create_topic("t", 1, config={"cleanup.policy": "compact", "segment.bytes": 4096})
        log = t.partition(0)
        for i in range(60):
            log.append(batch(i))
        report = d.compact("t", now_ms=1 << 50)
        directory = log.directory
        assert sum(r["segments_rewritten"] for r in report) > 0, report  # a swap happened
        assert not os.path.lexists(os.path.join(directory, CLEANING_DIR))
        log.delete_records(log.high_watermark - 1)  # the log now starts in its active segment
    fd = os.open(os.path.join(directory, "partition.state"), os.O_RDONLY)
    try:
        assert os.pread(fd, MARK_SIZE, MARK_OFFSET)[:8] == b"ARWLMARK"
        assert mark_holds(fd, directory)
    finally:
        os.close(fd)
