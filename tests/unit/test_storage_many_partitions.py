"""Replay over many small partitions: what each partition costs the reader
(issue 19, many partitions)."""

import os
import time

import pyarrow as pa
from fds import open_paths

import arrowlog
from arrowlog.schema import PRODUCE_SCHEMA
from arrowlog.storage import LogDir


def fill(path, partitions, per_partition):
    with LogDir(path) as d:
        d.create_topic("t", partitions)
    with arrowlog.Producer({"log.dir": path, "linger.ms": 1000}) as p:
        for i in range(partitions * per_partition):
            p.produce("t", b"v%d" % i, partition=i % partitions)
        p.flush()


def test_the_partition_column_holds_no_more_memory_than_its_rows(tmp_path):
    path = str(tmp_path / "d")
    fill(path, 64, 3)
    table = arrowlog.replay(path, "t").to_arrow()
    assert table.num_rows == 64 * 3
    assert sorted(set(table.column("partition").to_pylist())) == list(range(64))
    assert table.column("partition").to_pylist() == sorted(table.column("partition").to_pylist())
    # int32 per row, at most twice over (the cached array grows by doubling);
    # a fixed 65,536-row array per partition held 16 MiB here
    assert table.column("partition").get_total_buffer_size() <= 64 * 3 * 4 * 2 + 64 * 64


def test_a_replay_holds_no_index_descriptor_once_the_segments_are_mapped(tmp_path, monkeypatch):
    from arrowlog.backends.local import clean_read
    monkeypatch.setattr(clean_read, "SMALL_PARTITION_BYTES", 0)  # every partition the general way (mapped)
    path = str(tmp_path / "d")
    fill(path, 4, 50)
    r = arrowlog.replay(path, "t")
    try:
        table = r.to_arrow()
        assert table.num_rows == 200
        opened = [p for p in open_paths() if p.startswith(path)]
        assert any(p.endswith("partition.state") for p in opened), opened
        # the active segment was checked and read through one read view,
        # whose index descriptors were closed once they were mapped
        assert len([p for p in opened if p.endswith(".log")]) == 4, opened
        assert not [p for p in opened if p.endswith((".index", ".timeindex"))], opened
        # a session that only reads never opens append.lock
        assert not [p for p in opened if p.endswith("append.lock")], opened
        assert len([p for p in opened if p.endswith("open.lock")]) == 4, opened
        # a read from the middle still uses them, opened on first use
        log = r._logdir.topic("t").partition(0)
        frames = log.read(25)
        assert frames and frames[0].base_offset <= 25 < frames[0].next_offset
        # and an append opens it when it needs it
        log.append(pa.RecordBatch.from_pydict({"timestamp": [1], "key": [b"k"], "value": [b"v"], "headers": [None]},
                                              schema=PRODUCE_SCHEMA))
        assert log.high_watermark == 51
        assert [p for p in open_paths() if p.endswith(os.path.join("t", "0", "append.lock"))]
    finally:
        r.close()


def test_a_producer_close_syncs_the_file_system_once_for_the_data_and_not_for_the_clean_marks(tmp_path,
                                                                                                monkeypatch):
    from arrowlog.storage import partition as partition_mod
    path = str(tmp_path / "d")
    with LogDir(path) as d:
        d.create_topic("t", 40)
    p = arrowlog.Producer({"log.dir": path, "linger.ms": 1000})
    for i in range(400):
        p.produce("t", b"v%d" % i, partition=i % 40)
    p.flush()
    syncfs = []
    real = partition_mod._syncfs
    monkeypatch.setattr(partition_mod, "_syncfs", lambda fd: (syncfs.append(fd), real(fd))[1])
    p.close()
    # the data once (the Producer's last sync), not a second time before
    # the clean marks, and not for the marks (the kernel writes them back)
    assert len(syncfs) == 1
    monkeypatch.undo()
    with LogDir(path) as d:
        t = d.topic("t")
        for part in range(40):
            st = t.partition(part).state
            assert st.clean and st.snapshot()["recovery_point"] == 10


def test_a_closing_syncfs_runs_while_the_segments_are_unmapped_and_the_marks_wait_for_it(tmp_path, monkeypatch):
    from arrowlog.storage import partition as partition_mod
    path = str(tmp_path / "d")
    d = LogDir(path)
    t = d.create_topic("t", 8)
    logs = [t.partition(i) for i in range(8)]
    batch = pa.RecordBatch.from_pydict({"timestamp": [1], "key": [b"k"], "value": [b"v"], "headers": [None]},
                                       schema=PRODUCE_SCHEMA)
    for log in logs:
        log.append(batch)  # written, not synced: the close syncs
    writers = [log._writer for log in logs]
    seen = []
    real = partition_mod._syncfs

    def syncfs(fd):
        ok = real(fd)
        # the flush's wait is where the munmaps go: by its end every writer is
        # unmapped (the other thread did it), and no partition is marked clean yet
        deadline = time.monotonic() + 20
        while any(w.log is not None for w in writers) and time.monotonic() < deadline:
            time.sleep(0.001)
        seen.append(([w.log is None for w in writers], [log.state.clean for log in logs]))
        return ok
    monkeypatch.setattr(partition_mod, "_syncfs", syncfs)
    d.close()
    assert seen == [([True] * 8, [False] * 8)]
    monkeypatch.undo()
    with LogDir(path) as d:
        for i in range(8):
            st = d.topic("t").partition(i).state
            assert st.clean and st.snapshot()["recovery_point"] == 1


def test_syncing_a_partition_whose_closed_segments_are_synced_lists_no_directory(tmp_path, monkeypatch):
    from arrowlog._native import core

    def one(value):
        acc = core.RecordAccumulator()
        acc.append_record(b"k", value, core.wall_clock_ms())
        log.append(acc.take())

    with LogDir(str(tmp_path / "d")) as d:
        log = d.create_topic("t", 1, config={"segment.bytes": 4096}).partition(0)
        # fill until a third segment has just started (a roll leaves it empty)
        while len(log.segment_bases()) < 3:
            one(b"v" * 300)
        log.sync()
        listed = []
        real = os.listdir
        monkeypatch.setattr(os, "listdir", lambda p=".": (listed.append(p), real(p))[1])
        one(b"v")  # into the active segment: the closed ones are all below the recovery point
        st = log.state.snapshot()
        assert st["active_base_offset"] <= st["recovery_point"] < st["next_offset"]
        log.sync()
        assert listed == []
        assert log.state.snapshot()["recovery_point"] == st["next_offset"]


def test_opening_an_existing_partition_makes_no_directory(tmp_path, monkeypatch):
    path = str(tmp_path / "d")
    fill(path, 3, 2)
    made = []
    real = os.mkdir
    monkeypatch.setattr(os, "mkdir", lambda p, *a, **k: (made.append(p), real(p, *a, **k))[1])
    assert arrowlog.replay(path, "t").to_arrow().num_rows == 6
    assert not [p for p in made if "/topics/t/" in os.fspath(p)]


def test_to_arrow_over_many_partitions_builds_the_partition_column_once(tmp_path):
    path = str(tmp_path / "d")
    with LogDir(path) as d:
        d.create_topic("t", 8)
    with arrowlog.Producer({"log.dir": path, "linger.ms": 1000}) as p:
        for round_ in range(3):  # three frames a partition
            for i in range(40):
                p.produce("t", b"v%d-%d" % (round_, i), key=b"k%d" % i, partition=i % 8)
            p.flush()
    r = arrowlog.replay(path, "t")
    table = r.to_arrow()
    # one chunk for all partitions, not one a frame
    assert table.column("partition").num_chunks == 1
    # the same rows, in the same order, as the batches a stream yields
    streamed = pa.Table.from_batches(list(r), schema=r.schema)
    assert table.schema == streamed.schema == r.schema
    assert table.equals(streamed)
    assert table.column("partition").to_pylist() == [p for p in range(8) for _ in range(15)]
    # the stored values stay zero-copy: the value buffers point into the segments' mappings
    values = table.column("value").chunk(0)
    assert values.buffers()[2].address != pa.array(values.to_pylist(), pa.binary()).buffers()[2].address


def test_a_replay_without_transactions_looks_for_them_once(tmp_path, monkeypatch):
    from arrowlog import txn
    path = str(tmp_path / "d")
    fill(path, 16, 3)
    looks = []
    real = os.path.isdir
    monkeypatch.setattr(txn.os.path, "isdir",
                        lambda p: (looks.append(p) if str(p).endswith("transactions") else None, real(p))[1])
    table = arrowlog.replay(path, "t").to_arrow()
    assert table.num_rows == 48
    assert len([p for p in looks if str(p).endswith("transactions")]) == 1
