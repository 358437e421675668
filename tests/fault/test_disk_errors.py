"""Disk full, read-only file systems and failing fsyncs.

Disk full and read-only need root (tmpfs and loop mounts) and run in a
child process, so that a SIGBUS (a store into an unbacked page) would fail
the test rather than end the run. The fsync failure is injected in process
(os.fdatasync raising EIO, as libfiu would) and runs anywhere.
"""

from __future__ import annotations

import errno
import os
import subprocess

import faultlib
import pytest

from arrowlog.errors import PartitionFailedError, StorageError


@pytest.mark.parametrize("segment_bytes,value_bytes,where,bulk", [
    (256 << 10, 2000, "rolling to a new segment", False),
    (64 << 20, 16 << 10, "growing the active segment", False),
    (64 << 20, 16 << 10, "growing the active segment, produce_batch's native frames", True),
])
def test_disk_full_is_a_clear_error_and_appends_resume(root_workdir, segment_bytes, value_bytes, where, bulk):
    with faultlib.tmpfs(os.path.join(root_workdir, "fs"), "48m") as fs:
        out = faultlib.scenario("disk_full", fs=fs, segment_bytes=segment_bytes, value_bytes=value_bytes, bulk=bulk)
    assert out["errors"], f"the disk never filled up ({where})"
    assert out["is_storage_error"], out["errors"]
    assert "disk is full" in out["errors"][0], out["errors"][0]
    # nothing acknowledged (or published) after the first error
    assert out["hw_after"] == out["hw_at_first_error"]
    assert out["resumed"][0] == out["hw_after"], "appends did not resume right after the last acknowledged one"


def test_read_only_remount_fails_writes_and_keeps_reads(ext4):
    img = ext4(64)
    img.mount()
    out = faultlib.scenario("read_only", mnt=img.mnt, remount="remount,abort")
    assert "setup_failed" not in out, out
    # every attempt fails with a StorageError that says why (EROFS on the
    # write, or a failed partition if an fsync was refused first)
    assert all(e and e.startswith(("StorageError", "PartitionFailedError")) for e in out["write_errors"]), out
    assert all("read-only" in e or "refuses writes" in e or "failed" in e for e in out["write_errors"]), out
    assert out["hw_unchanged"] and out["read_ok"]


def test_log_on_a_read_only_mount_can_be_read(ext4, tmp_path):
    img = ext4(64)
    img.mount()
    d, pl = faultlib.open_partition(os.path.join(img.mnt, "data"))
    pl.append(faultlib.make_batch([b"a", b"b"]))
    d.close()
    del d, pl
    ro = os.path.join(os.path.dirname(img.mnt), "ro")
    os.makedirs(ro)
    faultlib.run("mount", "--bind", img.mnt, ro)
    try:
        faultlib.run("mount", "-o", "remount,bind,ro", ro)
        d, pl = faultlib.open_partition(os.path.join(ro, "data"))
        try:
            assert faultlib.read_log(pl).high_watermark == 2
            with pytest.raises(StorageError, match="read-only"):
                pl.append(faultlib.make_batch([b"c"]))
            assert pl.wait(5, 0.05) is False  # nothing can arrive; no write to the state mapping
        finally:
            d.close()
    finally:
        subprocess.run(["umount", "-l", ro], capture_output=True)


def test_fsync_failure_fails_the_partition(data_dir, monkeypatch):
    d, pl = faultlib.open_partition(data_dir)
    acked = {}
    for b in range(5):
        vals = faultlib.batch_values(0, b, 3, 20)
        base = pl.append(faultlib.make_batch(vals), fsync=True)
        acked.update((base + j, v) for j, v in enumerate(vals))
    hw = pl.high_watermark

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(PartitionFailedError):
        pl.append(faultlib.make_batch(faultlib.batch_values(0, 5, 2, 0)), fsync=True)
    assert pl.high_watermark == hw, "a record whose fsync failed became visible"
    monkeypatch.undo()  # the disk is fine again, but the pages may be gone: stay failed
    with pytest.raises(PartitionFailedError):
        pl.append(faultlib.make_batch(faultlib.batch_values(0, 6, 2, 0)))
    with pytest.raises(PartitionFailedError):
        pl.flush(fsync=True)
    assert issubclass(PartitionFailedError, StorageError)
    faultlib.check_log(faultlib.read_log(pl), acked)  # reads still work
    d.close()
    # Reopening recovers from disk and takes appends again. The batch whose
    # fsync failed was never acknowledged: recovery may keep it (its frame is
    # whole in the page cache) or not, like any write cut short by a crash.
    d, pl = faultlib.open_partition(data_dir)
    contents = faultlib.read_log(pl)
    faultlib.check_log(contents, acked)
    assert contents.high_watermark in (hw, hw + 2)
    assert pl.append(faultlib.make_batch(faultlib.batch_values(1, 0, 1, 0)), fsync=True) == contents.high_watermark
    d.close()


def serve_reports_and_close(p) -> None:
    """Serve a failed producer's delivery reports (the pending error may be
    raised once more first), then close it."""
    for _ in range(2):
        try:
            p.poll(0)
        except StorageError:
            pass
    try:
        p.close()
    except StorageError:
        pass


def test_fsync_failure_reaches_the_producer(data_dir, monkeypatch):
    import arrowlog.backends.local.producer

    faultlib.open_partition(data_dir)[0].close()
    p = arrowlog.backends.local.producer.Producer({"log.dir": data_dir, "durability": "fsync", "linger.ms": 0})
    reports = []
    p.produce(faultlib.TOPIC, b"ok", partition=0, on_delivery=lambda err, msg: reports.append(err))
    p.flush()
    assert reports == [None]

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    p.produce(faultlib.TOPIC, b"lost", partition=0, on_delivery=lambda err, msg: reports.append(err))
    with pytest.raises(StorageError):
        p.flush()
    monkeypatch.undo()
    serve_reports_and_close(p)
    assert len(reports) == 2 and reports[1] is not None, "the failed record was reported as delivered"


def test_failed_background_fsync_fails_later_appends(data_dir, monkeypatch):
    """durability=written: the fsync that fails is the producer's sync (or
    its background one); the partition is failed from then on, so nothing
    more is acknowledged as written either."""
    import arrowlog.backends.local.producer

    faultlib.open_partition(data_dir)[0].close()
    p = arrowlog.backends.local.producer.Producer({"log.dir": data_dir, "linger.ms": 0, "fsync.interval.ms": 0})
    p.produce(faultlib.TOPIC, b"ok", partition=0)
    p.flush()

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    # the file system's sync fails too: each partition's own fdatasync then tells which one failed
    monkeypatch.setattr(arrowlog.storage.partition, "_syncfs", lambda fd: False)
    with pytest.raises(PartitionFailedError):
        p.sync()
    monkeypatch.undo()
    reports = []
    p.produce(faultlib.TOPIC, b"after", partition=0, on_delivery=lambda err, msg: reports.append(err))
    with pytest.raises(PartitionFailedError):
        p.flush()
    serve_reports_and_close(p)
    assert len(reports) == 1 and reports[0] is not None, "a record was acknowledged on a failed partition"


def disk_usage(path: str) -> int:
    """Bytes of disk blocks held by the files under ``path`` (what du counts)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def test_small_produce_into_many_new_partitions_uses_little_disk(data_dir):
    """Preallocation grows with use: a 5 KB produce into 64 new partitions
    allocated 64 x 37 MiB (one 16 MiB segment step and two 10 MiB indexes
    each) before; now 64 KiB of segment and a page per index."""
    import arrowlog

    faultlib.LogDir(data_dir).create_topic("wide", partitions=64)
    p = arrowlog.Producer({"log.dir": data_dir, "linger.ms": 0})
    try:
        for i in range(64):
            p.produce("wide", b"v" * 80, partition=i)
        assert p.flush(60) == 0
        used = disk_usage(data_dir)  # while the partitions are open (active segments untrimmed)
    finally:
        p.close()
    assert used < 8 << 20, f"64 new partitions with 80 bytes each hold {used / 2**20:.1f} MiB of disk"
    with faultlib.LogDir(data_dir) as d:
        assert all(d.topic("wide").partition(i).high_watermark == 1 for i in range(64))


@pytest.mark.parametrize("free_pages", [0, 1, 10, 17, 19, 20])
def test_disk_full_while_a_partition_is_first_opened(root_workdir, free_pages):
    """ENOSPC at every step of a new partition's first open and first
    append (partition.state, the first segment, its indexes, the first
    growth): a StorageError saying the disk is full, never a raw OSError;
    once space is back the partition works."""
    with faultlib.tmpfs(os.path.join(root_workdir, "fs"), "4m") as fs:
        out = faultlib.scenario("disk_full_at_open", fs=fs, free_pages=free_pages)
    if out["error"] is None:
        assert out["values"] == ["first", "after"]
        return
    assert out["is_storage_error"], out["error"]
    assert "disk is full" in out["error"], out["error"]
    named = {0: "partition.state", 1: "00000000000000000000.log"}.get(free_pages)
    assert named is None or named in out["error"], out["error"]
    assert out["values"] == ["after"], "a record was kept although its append failed"
