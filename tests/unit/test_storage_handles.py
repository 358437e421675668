"""The descriptor budget: least-recently-used partitions are parked (their
files closed) and reopened transparently on their next use."""

import errno
import multiprocessing as mp
import os

import pytest

from arrowlog import errors
from arrowlog._native import core
from arrowlog.storage import LogDir, handles
from arrowlog.storage.files import storage_error


def batch(n, tag=b"v"):
    now = core.wall_clock_ms()
    acc = core.RecordAccumulator()
    for i in range(n):
        acc.append_record(b"k%d" % i, tag * 10, now + i)
    return acc.take()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def budget():
    old = handles.BUDGET.limit
    handles.set_budget(4)
    yield handles.BUDGET
    handles.BUDGET.limit = old


def values(log):
    out = []
    pos = log.log_start_offset
    while pos < log.high_watermark:
        frames = log.read(pos)
        for f in frames:
            out.extend(f.batch.column("value").to_pylist())
            pos = f.next_offset
    return out


def park_first(d, records, partitions=8):
    """A topic whose partition 0 holds ``records`` records and was parked
    (the budget fixture keeps 4 open) by opening the others; (topic, log,
    the generation of the partition's state before it was parked)."""
    t = d.create_topic("t", partitions)
    log = t.partition(0)
    log.append(batch(records))
    gen = log.state.snapshot()["generation"]
    for p in range(1, partitions):
        t.partition(p)
    assert log._parked
    return t, log, gen


def test_open_partitions_stay_within_the_budget_and_reopen_transparently(data_dir, budget):
    with LogDir(data_dir) as d:
        t = d.create_topic("t", 40)
        before = open_fds()
        logs = [t.partition(p) for p in range(40)]
        for p, log in enumerate(logs):
            log.append(batch(3, b"%d" % p))
        assert len(budget) <= 4
        parked = [log for log in logs if log._parked]
        assert len(parked) >= 36
        # 4 open partitions, not 40: a handful of descriptors each
        assert open_fds() - before <= 4 * handles.FDS_PER_PARTITION
        # every partition, parked or not, reads and appends as before
        for p, log in enumerate(logs):
            assert log.watermarks() == (0, 3)
            assert values(log) == [b"%d" % p * 10] * 3
            log.append(batch(1, b"x"))
            assert log.high_watermark == 4
        assert len(budget) <= 4


def test_a_parked_partition_sees_what_another_process_appended(data_dir, budget):
    with LogDir(data_dir) as d:
        _t, first, _gen = park_first(d, 2)
        ctx = mp.get_context("spawn")
        proc = ctx.Process(target=_append_elsewhere, args=(data_dir,))
        proc.start()
        proc.join(120)
        assert proc.exitcode == 0
        assert first.high_watermark == 7
        assert values(first)[-5:] == [b"o" * 10] * 5


def _append_elsewhere(data_dir):
    with LogDir(data_dir) as d:
        d.topic("t").partition(0).append(batch(5, b"o"))


def test_parking_never_marks_clean_and_close_still_syncs_and_marks_clean(data_dir, budget, monkeypatch):
    with LogDir(data_dir) as d:
        t, log, gen = park_first(d, 3)
        # parked with unsynced appends: not marked clean on disk
        assert not log._state_clean_on_disk()
        # this process reopens it as it left it: no recovery scan
        monkeypatch.setattr(log, "recover", lambda: pytest.fail("a resumed partition was recovered"))
        assert log.high_watermark == 3 and log.state.snapshot()["generation"] == gen
        for p in range(1, 8):
            t.partition(p).watermarks()
        assert log._parked
        monkeypatch.undo()
    # close() of the parked partition: the last one out synced and marked it clean
    with LogDir(data_dir) as d:
        st = d.topic("t").partition(0).state
        assert st.clean and st.snapshot()["recovery_point"] == 3


def test_a_partition_opened_elsewhere_while_parked_is_not_resumed_blindly(data_dir, budget):
    with LogDir(data_dir) as d:
        _t, log, gen = park_first(d, 3)
        with LogDir(data_dir) as other:  # a second session: it recovers the not-clean partition
            other.topic("t").partition(0).append(batch(2))
        assert log.high_watermark == 5 and log.state.snapshot()["generation"] > gen
        assert len(values(log)) == 5
    with LogDir(data_dir) as d, LogDir(data_dir) as sharer:
        handles.set_budget(100)
        held = sharer.topic("t").partition(1)  # another holder of partition 1
        log = d.topic("t").partition(1)
        log.append(batch(2))
        assert log._try_park()
        log.close()
        # not the last one out: no clean mark while the sharer holds it
        assert not held.state.clean
        held.close()
    with LogDir(data_dir) as d:
        assert d.topic("t").partition(1).state.clean


def test_a_failed_or_busy_partition_is_never_parked(data_dir, budget):
    with LogDir(data_dir) as d:
        t = d.create_topic("t", 2)
        log = t.partition(0)
        log.append(batch(1))
        log._failed = OSError(errno.EIO, "fsync failed")
        assert not log._try_park()
        other = t.partition(1)
        with other._lock:
            import threading
            out = []
            th = threading.Thread(target=lambda: out.append(other._try_park()))
            th.start()
            th.join()
        assert out == [False]
        log._failed = None


def test_emfile_is_a_storage_error_that_says_what_to_do():
    err = storage_error(OSError(errno.EMFILE, "Too many open files"), "cannot open partition t-3")
    assert isinstance(err, errors.StorageError)
    assert "RLIMIT_NOFILE" in str(err) and "ulimit -n" in str(err)


def test_the_default_budget_follows_rlimit_nofile(monkeypatch):
    monkeypatch.delenv("ARROWLOG_MAX_OPEN_PARTITIONS", raising=False)
    monkeypatch.setattr(handles.resource, "getrlimit", lambda _what: (1024, 4096))
    assert handles.default_budget() == 1024 // 2 // handles.FDS_PER_PARTITION
    monkeypatch.setenv("ARROWLOG_MAX_OPEN_PARTITIONS", "7")
    assert handles.default_budget() == 7


def count_syncs(monkeypatch):
    calls = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda fd, _real=real, _name=name: (calls.append(_name), _real(fd))[1])
    return calls


def test_a_new_partition_opens_and_takes_its_first_write_without_an_fsync(data_dir, monkeypatch):
    with LogDir(data_dir) as d:
        t = d.create_topic("t", 3)
        calls = count_syncs(monkeypatch)
        for p in range(3):
            t.partition(p).append(batch(2))
        assert calls == []
        monkeypatch.undo()
        log = t.partition(1)
        assert log.watermarks() == (0, 2) and len(values(log)) == 2
        # sync() still makes it durable, directory entries included
        calls = count_syncs(monkeypatch)
        log.sync()
        assert calls and log.state.snapshot()["recovery_point"] == 2


def test_closing_many_partitions_syncs_the_file_system_once_not_each_file(data_dir, monkeypatch):
    # once for the data; the clean marks go with the kernel's writeback
    from arrowlog.storage import partition as partition_mod
    with LogDir(data_dir) as d:
        t = d.create_topic("t", 50)
        for p in range(50):
            t.partition(p).append(batch(p % 3 + 1))
        syncfs = []
        real = partition_mod._syncfs
        monkeypatch.setattr(partition_mod, "_syncfs", lambda fd: (syncfs.append(fd), real(fd))[1])
        calls = count_syncs(monkeypatch)
        t.close()
        assert calls == [] and len(syncfs) == 1
        monkeypatch.undo()
    with LogDir(data_dir) as d:
        t = d.topic("t")
        for p in range(50):
            st = t.partition(p).state
            assert st.clean and st.snapshot()["recovery_point"] == p % 3 + 1


def test_without_syncfs_each_partition_closes_on_its_own(data_dir, monkeypatch):
    from arrowlog.storage import partition as partition_mod
    with LogDir(data_dir) as d:
        t = d.create_topic("t", 5)
        for p in range(5):
            t.partition(p).append(batch(2))
        monkeypatch.setattr(partition_mod, "_syncfs", lambda fd: False)
        t.close()
    with LogDir(data_dir) as d:
        assert all(d.topic("t").partition(p).state.clean for p in range(5))


def test_closing_parked_partitions_marks_them_clean(data_dir, budget):
    with LogDir(data_dir) as d:
        t = d.create_topic("t", 20)
        for p in range(20):
            t.partition(p).append(batch(1))
        assert sum(t.partition(p)._parked for p in range(20)) >= 16
    with LogDir(data_dir) as d:
        t = d.topic("t")
        for p in range(20):
            st = t.partition(p).state
            assert st.clean and st.snapshot()["recovery_point"] == 1


def test_a_parked_partition_once_closed_says_so(data_dir, budget):
    with LogDir(data_dir) as d:
        _t, log, _gen = park_first(d, 1)
        log.close()
        with pytest.raises(errors.StorageError, match="closed"):
            log.append(batch(1))


def test_syncing_many_partitions_syncs_the_file_system_once(data_dir, monkeypatch):
    from arrowlog.storage import partition as partition_mod
    with LogDir(data_dir) as d:
        t = d.create_topic("t", 30)
        logs = [t.partition(p) for p in range(30)]
        for p, log in enumerate(logs):
            log.append(batch(p % 4 + 1))
        syncfs = []
        real = partition_mod._syncfs
        monkeypatch.setattr(partition_mod, "_syncfs", lambda fd: (syncfs.append(fd), real(fd))[1])
        calls = count_syncs(monkeypatch)
        assert partition_mod.sync_many(logs) == []
        assert calls == [] and len(syncfs) == 1
        assert [log.state.snapshot()["recovery_point"] for log in logs] == [p % 4 + 1 for p in range(30)]
        # without syncfs: each log's own sync(), and its failure is reported for that log
        monkeypatch.setattr(partition_mod, "_syncfs", lambda fd: False)
        logs[0].append(batch(1))
        logs[1].append(batch(1))
        logs[1]._failed = OSError(errno.EIO, "fsync failed")
        failed = partition_mod.sync_many(logs[:2])
        assert [(log, type(exc)) for log, exc in failed] == [(logs[1], errors.PartitionFailedError)]
        assert logs[0].state.snapshot()["recovery_point"] == 2
        logs[1]._failed = None
