"""Replay's native read of small clean partitions (backends/local/clean_read.py,
_native/core/replayview.pxi) against the general path: the same table, or
the same error, whatever the topic holds (issue 19, replay over many
partitions)."""

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest
from fds import open_paths
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arrowlog
from arrowlog._native import core
from arrowlog.backends.local import clean_read
from arrowlog.backends.local.replay import Replay
from arrowlog.errors import CorruptRecordError
from arrowlog.schema import PRODUCE_SCHEMA
from arrowlog.storage import LogDir, layout_mark
from arrowlog.storage.layout_mark import write_mark
from arrowlog.storage.segment import forget_verified

record = st.tuples(
    st.one_of(st.none(), st.binary(max_size=12)),              # key
    st.one_of(st.none(), st.binary(max_size=40)),              # value (None: a tombstone)
    st.sampled_from([None, None, None, [("h", b"x")]]),       # headers
)
frame = st.lists(record, min_size=1, max_size=6)


def batch(records, ts=1_000):
    return pa.RecordBatch.from_pydict({
        "timestamp": [ts + i for i in range(len(records))],
        "key": [r[0] for r in records],
        "value": [r[1] for r in records],
        "headers": [r[2] for r in records],
    }, schema=PRODUCE_SCHEMA)


def write(path, partitions, config=None, deletes=None):
    """A topic "t" whose partition i holds the frames partitions[i]; deletes
    maps a partition to a DeleteRecords offset. Closed cleanly."""
    with LogDir(path) as d:
        d.create_topic("t", len(partitions), config=config or {})
        t = d.topic("t")
        for p, frames in enumerate(partitions):
            log = t.partition(p)
            for records in frames:
                log.append(batch(records))
            if deletes and p in deletes:
                log.delete_records(min(deletes[p], log.high_watermark))


def both(path, **kw):
    """(table read with the native path, the same range read the general way)."""
    r = arrowlog.replay(path, "t", **kw)
    try:
        fast = r.to_arrow()
        r._clean = None
        forget_verified()
        slow = r.to_arrow()
        return fast, slow
    finally:
        r.close()


def general_partitions(monkeypatch):
    """The partitions a replay sends the general way, as they are asked."""
    asked = []
    real = Replay._stored_table

    def spy(self, partitions):
        asked.extend(partitions)
        return real(self, partitions)
    monkeypatch.setattr(Replay, "_stored_table", spy)
    return asked


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(partitions=st.lists(st.lists(frame, max_size=3), min_size=1, max_size=6),
       compressed=st.booleans(), deletes=st.dictionaries(st.integers(0, 5), st.integers(0, 12), max_size=3),
       start=st.one_of(st.just("beginning"), st.integers(0, 15)), end=st.one_of(st.just("end"), st.integers(0, 20)),
       halves=st.booleans())
def test_the_native_read_gives_the_general_paths_table(tmp_path_factory, partitions, compressed, deletes, start,
                                                        end, halves):
    path = str(tmp_path_factory.mktemp("d"))
    write(path, partitions, {"compression.type": "zstd"} if compressed else None, deletes)
    with pytest.MonkeyPatch.context() as mp:
        if halves:  # read in two halves on two threads, as a replay of many partitions is
            mp.setattr(clean_read, "PARALLEL_STATES", 1)
            mp.setattr(clean_read, "PARALLEL_BYTES", 1)
        asked = general_partitions(mp)
        r = arrowlog.replay(path, "t", start=start, end=end)
        fast = r.to_arrow()
        ranges = r.ranges
        r.close()
    fast_again, slow = both(path, start=start, end=end)
    assert fast.schema == slow.schema
    assert fast.equals(slow) and fast_again.equals(slow)
    # only what the native read leaves out (compressed frames) went the general way
    if not compressed:
        assert not {p for p, (lo, hi) in ranges.items() if lo < hi} & set(asked)


def test_small_clean_partitions_are_read_natively_and_the_others_the_general_way(tmp_path, monkeypatch):
    path = str(tmp_path / "d")
    plain = [[(b"k", b"v", None)] * 3]
    with_headers = [[(b"k", b"v", [("h", b"x"), ("h2", None)]), (None, None, None)]]
    marker = [[(None, None, [("arrowlog.control", b"commit")])]]  # a transaction marker's shape
    write(path, [plain, with_headers + marker + with_headers, with_headers, plain])
    asked = general_partitions(monkeypatch)
    fast, slow = both(path)
    assert fast.equals(slow)
    # the one holding a marker went the general way, which leaves the marker
    # out (the second to_arrow() of both() is all general)
    assert asked[:1] == [1] and asked[1:] == [0, 1, 2, 3]
    assert fast.num_rows == 3 + 4 + 2 + 3
    # partitions 0 and 2, 3 (around it) were read into a batch each side of it
    assert fast.column("partition").num_chunks == 3
    assert fast.column("headers").to_pylist()[-5:-3] == [[{"key": "h", "value": b"x"}, {"key": "h2", "value": None}],
                                                         None]


def test_a_partition_with_a_writer_or_a_changed_segment_goes_the_general_way(tmp_path, monkeypatch):
    path = str(tmp_path / "d")
    write(path, [[[(b"k", b"v", None)]]] * 4)
    with open(os.path.join(path, "topics", "t", "1", "stray"), "w"):
        pass  # the directory changed: no matter, the replay reads the active segment alone
    os.utime(segment_path(path, 3), ns=(1, 1))  # the segment's times: no longer as marked
    with LogDir(path) as d:
        d.topic("t").partition(2).append(batch([(b"k2", b"v2", None)]))  # open, not clean
        asked = general_partitions(monkeypatch)
        r = arrowlog.replay(d, "t")
        table = r.to_arrow()
        assert asked == [2, 3]
        assert table.column("value").to_pylist() == [b"v", b"v", b"v", b"v2", b"v"]


def segment_path(path, p):
    return os.path.join(path, "topics", "t", str(p), f"{0:020d}.log")


def state_fd(path, p, flags=os.O_RDWR):
    return os.open(os.path.join(path, "topics", "t", str(p), "partition.state"), flags)


def truncate(seg):
    os.truncate(seg, os.path.getsize(seg) - 8)


def append_raw(seg):
    with open(seg, "ab") as f:
        f.write(b"\0" * 8)


def restore_times_after_a_write(seg):
    st = os.stat(seg)
    with open(seg, "r+b") as f:
        f.seek(st.st_size - 8)
        f.write(b"\1" * 8)  # beyond the frames: the data read stays the same
    os.utime(seg, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime forged back; ctime still moves


def append_from_another_process(seg):
    subprocess.run([sys.executable, "-c", f"open({seg!r}, 'ab').write(bytes(8))"], check=True)


def replace_by_rename(seg):
    """Another file, the same bytes and times, renamed over it: only the inode tells."""
    st = os.stat(seg)
    with open(seg, "rb") as f:
        raw = f.read()
    with open(seg + ".new", "wb") as f:
        f.write(raw.replace(b"v" * 30, b"w" * 30))
    os.utime(seg + ".new", ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(seg + ".new", seg)


@pytest.mark.parametrize("halves", [False, True])
@pytest.mark.parametrize("change", [truncate, append_raw, append_from_another_process, restore_times_after_a_write,
                                    replace_by_rename])
def test_a_segment_changed_after_its_mark_is_never_served_natively(tmp_path, monkeypatch, change, halves):
    path = str(tmp_path / "d")
    write(path, [[[(b"k", b"v" * 30, None)] * 3]] * 2)
    change(segment_path(path, 1))
    if halves:  # partition 1 read on the calling thread, 0 on the helper
        monkeypatch.setattr(clean_read, "PARALLEL_STATES", 1)
        monkeypatch.setattr(clean_read, "PARALLEL_BYTES", 1)
    asked = general_partitions(monkeypatch)
    r = arrowlog.replay(path, "t")
    try:
        try:
            fast = r.to_arrow()
        except arrowlog.errors.ArrowlogError as e:
            fast = e
        assert asked[:1] == [1]
        r._clean = None
        forget_verified()
        try:
            slow = r.to_arrow()
        except arrowlog.errors.ArrowlogError as e:
            slow = e
    finally:
        r.close()
    if isinstance(slow, Exception):
        assert type(fast) is type(slow) and str(fast) == str(slow)
    else:
        assert fast.equals(slow) and fast.num_rows == 6


def test_a_segment_rewritten_in_place_is_not_served_even_without_crc_checks(tmp_path, monkeypatch):
    """Same size, other bytes, and no CRC-32C check to catch it (a LogDir
    with check_crcs=False): only the mark can tell, and the write moved the
    file's times."""
    path = str(tmp_path / "d")
    write(path, [[[(b"k", b"v" * 30, None)]]] * 2)
    seg = segment_path(path, 1)
    with open(seg, "rb") as f:
        raw = f.read()
    with open(seg, "r+b") as f:
        f.write(raw.replace(b"v" * 30, b"w" * 30))
    asked = general_partitions(monkeypatch)
    with LogDir(path, check_crcs=False) as d:
        r = arrowlog.replay(d, "t")
        # the general way's open checks the layout, the last frame's CRC-32C included
        with pytest.raises(CorruptRecordError, match="is damaged"):
            r.to_arrow()
    assert asked == [1]


def test_a_state_without_a_segment_mark_or_with_a_stale_one_goes_the_general_way(tmp_path, monkeypatch):
    path = str(tmp_path / "d")
    write(path, [[[(b"k", b"v", None)]]] * 3)
    # 1: an older arrowlog's clean close (the layout mark alone)
    fd = state_fd(path, 1)
    try:
        os.pwrite(fd, b"\0" * layout_mark.SEGMENT_MARK_SIZE, layout_mark.SEGMENT_MARK_OFFSET)
    finally:
        os.close(fd)
    # 2: an older arrowlog's session published (seqlock bumped) and cleared
    # only the layout mark: the segment mark left behind is not this state's
    fd = state_fd(path, 2)
    try:
        seq = int.from_bytes(os.pread(fd, 8, 16), "little")
        os.pwrite(fd, (seq + 2).to_bytes(8, "little"), 16)
        os.pwrite(fd, b"\0" * layout_mark.MARK_SIZE, layout_mark.MARK_OFFSET)
    finally:
        os.close(fd)
    states = clean_read.CleanStates(LogDir(path).topic("t"), [0, 1, 2])
    assert states.states[:, 0].tolist() == [1, 0, 0]
    asked = general_partitions(monkeypatch)
    fast, slow = both(path)
    assert fast.equals(slow) and fast.num_rows == 3
    assert asked[:2] == [1, 2]


def test_a_segment_appended_between_replay_and_to_arrow_reads_the_range_resolved(tmp_path):
    path = str(tmp_path / "d")
    write(path, [[[(b"k", b"v", None)] * 2]] * 2)
    r = arrowlog.replay(path, "t")
    try:
        with LogDir(path) as d:  # another writer: the segment grows, its mark goes
            d.topic("t").partition(1).append(batch([(b"k2", b"v2", None)]))
        table = r.to_arrow()
        assert table.num_rows == 4 and table.column("value").to_pylist() == [b"v"] * 4
    finally:
        r.close()


def rot(path, partition):
    """Flip a value byte of the partition's last frame; its mark still vouches
    for the segment (rot the file's times do not show)."""
    seg = os.path.join(path, "topics", "t", str(partition), f"{0:020d}.log")
    with open(seg, "r+b") as f:
        data = f.read()
        at = data.rindex(b"v" * 30)  # inside the frame's value bytes
        f.seek(at)
        f.write(b"w")
    directory = os.path.dirname(seg)
    fd = os.open(os.path.join(directory, "partition.state"), os.O_RDWR)
    try:
        state = core.PartitionState(core.MappedFile(fd, core.STATE_FILE_SIZE, False, "partition.state"))
        write_mark(fd, directory, state.snapshot())
        del state
    finally:
        os.close(fd)


@pytest.mark.parametrize("halves", [False, True])
def test_a_rotten_frame_is_the_same_error_as_the_general_paths(tmp_path, monkeypatch, halves):
    path = str(tmp_path / "d")
    write(path, [[[(b"k", b"v" * 30, None)] * 3]] * 6)
    rot(path, 1)
    if halves:  # partition 1 is then read on the helper thread
        monkeypatch.setattr(clean_read, "PARALLEL_STATES", 4)
        monkeypatch.setattr(clean_read, "PARALLEL_BYTES", 1)
    errors = []
    for native in (True, False):
        forget_verified()
        r = arrowlog.replay(path, "t")
        if not native:
            r._clean = None
        with pytest.raises(CorruptRecordError) as info:
            r.to_arrow()
        errors.append(str(info.value))
        r.close()
    assert errors[0] == errors[1] and "fails its CRC-32C" in errors[0]


def test_a_helper_that_takes_no_more_work_leaves_both_halves_to_the_caller(tmp_path, monkeypatch):
    """The helper thread's executor shut down (as at the interpreter's exit:
    submit() raises RuntimeError): a replay split in halves reads them both here."""
    path = str(tmp_path / "d")
    write(path, [[[(b"k%d" % p, b"v" * 30, None)] * 3] for p in range(6)])
    pool = ThreadPoolExecutor(1)
    pool.shutdown()
    monkeypatch.setattr(clean_read, "helper_thread", lambda: pool)
    monkeypatch.setattr(clean_read, "PARALLEL_STATES", 1)
    monkeypatch.setattr(clean_read, "PARALLEL_BYTES", 1)
    asked = general_partitions(monkeypatch)
    fast, slow = both(path)
    assert asked == list(range(6))  # only the general read of both() asked for them
    assert fast.num_rows == 18 and fast.equals(slow)
    rot(path, 4)
    forget_verified()
    r = arrowlog.replay(path, "t")
    try:
        with pytest.raises(CorruptRecordError, match="fails its CRC-32C"):
            r.to_arrow()
    finally:
        r.close()


def test_a_native_replay_keeps_no_descriptor_of_the_partitions(tmp_path):
    path = str(tmp_path / "d")
    write(path, [[[(b"k", b"v", None)]]] * 8)
    r = arrowlog.replay(path, "t")
    try:
        table = r.to_arrow()
        assert table.num_rows == 8
        assert [p for p in open_paths() if p.startswith(os.path.join(path, "topics", "t", ""))] == []
    finally:
        r.close()


def test_partitions_fill_batches_up_to_the_batch_limit(tmp_path, monkeypatch):
    path = str(tmp_path / "d")
    write(path, [[[(b"k%d" % p, b"v" * 50, None)] * 4] for p in range(6)])
    monkeypatch.setattr(clean_read, "BATCH_BYTES", 1)  # a batch per partition
    fast, slow = both(path)
    assert fast.equals(slow)
    assert fast.column("value").num_chunks == 6


def test_partitions_of_two_digits_and_rolled_segments_are_found_by_the_native_read(tmp_path, monkeypatch):
    # the native read names each partition's files itself (replayview.pxi
    # _rv_path, _rv_segment_name): partitions 10 and 11, and active segments
    # whose base offset is not 0 (segment.bytes rolls them), are read natively
    path = str(tmp_path / "d")
    big = [(b"k", b"v" * 3000, None)]
    # (a partition whose log starts below its active segment goes the
    # general way: its older segments' records are deleted)
    write(path, [[[(b"k%d" % p, b"v%d" % p, None)] * 2] + [big] * (p % 3) * 2 for p in range(12)],
          {"segment.bytes": 4096}, deletes={p: 1 + (p % 3) * 2 for p in range(12) if p % 3})
    topic = os.path.join(path, "topics", "t")
    bases = [max(int(f[:-4]) for f in os.listdir(os.path.join(topic, str(p))) if f.endswith(".log"))
             for p in range(12)]
    assert {b > 0 for b in bases} == {True, False}
    asked = general_partitions(monkeypatch)
    r = arrowlog.replay(path, "t")
    fast = r.to_arrow()
    r.close()
    assert asked == []
    _, slow = both(path)
    assert fast.equals(slow)
    assert fast.column("partition").to_pylist() == [p for p in range(12) for _ in range(1 if p % 3 else 2)]


def test_many_partitions_are_read_in_two_halves_on_two_threads(tmp_path, monkeypatch):
    path = str(tmp_path / "d")
    plain = [[(b"k", b"v" * 30, None)] * 3]
    marker = [[(None, None, [("arrowlog.control", b"commit")])]]  # goes the general way
    write(path, [plain, plain + marker, plain, plain, plain + marker, plain])
    monkeypatch.setattr(clean_read, "PARALLEL_STATES", 4)
    monkeypatch.setattr(clean_read, "PARALLEL_BYTES", 1)
    if clean_read.helper_thread() is None:
        pytest.skip("the process may run on one core only: one thread reads")
    threads = []
    real = clean_read.CleanStates._pieces
    caller = threading.get_ident()
    helper_began = threading.Event()

    def spy(self, *args):
        threads.append((threading.get_ident(), args[-2:]))
        if threading.get_ident() != caller:
            helper_began.set()
        else:
            # the caller's half waits until the helper has begun its own: on a
            # loaded machine the helper may not have been given a core before
            # the caller's half is done, and the caller then (rightly) reads
            # that half too; this test is about the split, not the scheduler
            helper_began.wait(120)
        return real(self, *args)
    monkeypatch.setattr(clean_read.CleanStates, "_pieces", spy)
    asked = general_partitions(monkeypatch)
    fast, slow = both(path)
    assert fast.equals(slow)
    # one half on the helper thread, the other on the caller's; the general
    # way's partitions read afterwards, in order, on the caller's thread
    assert sorted(t[1] for t in threads) == [(0, 3), (3, 6)]
    assert len({t[0] for t in threads}) == 2 and threading.get_ident() in {t[0] for t in threads}
    assert asked[:2] == [1, 4]
    assert fast.column("partition").to_pylist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3 + [5] * 3



def test_the_halves_hold_about_the_same_bytes_to_read():
    if clean_read.helper_thread() is None:
        pytest.skip("the process may run on one core only: one thread reads")
    assert clean_read._halves(np.array([6, 0, 0, 2, 2, 2]), 12) == 1
    assert clean_read._halves(np.array([1, 1, 1, 1]), 4) == 2
    assert clean_read._halves(np.array([0, 0, 3, 0, 3, 3, 3, 0]), 1) == 5
    assert clean_read._halves(np.array([1, 1, 1, 1]), 5) is None  # too little to hand half of it over
    assert clean_read._halves(np.array([0, 0, 9, 0]), 1) is None  # one partition's: one thread
    assert clean_read._halves(np.array([], dtype=np.int64), 1) is None


def test_a_native_replay_leaves_the_files_access_times_as_they_were(tmp_path):
    """(relatime would update them on the first read after a write: a
    journal transaction per file, two files a partition)"""
    path = str(tmp_path / "d")
    write(path, [[[(b"k", b"v", None)]]] * 3)
    files = [segment_path(path, p) for p in range(3)] + \
        [os.path.join(path, "topics", "t", str(p), "partition.state") for p in range(3)]
    # (never read since written: their access times are not after their
    # last change, so a read would update them)
    before = [os.stat(f).st_atime_ns for f in files]
    with pytest.MonkeyPatch.context() as mp:
        asked = general_partitions(mp)
        r = arrowlog.replay(path, "t")
        assert r.to_arrow().num_rows == 3
        r.close()
    assert asked == []  # (read natively)
    assert [os.stat(f).st_atime_ns for f in files] == before


def test_a_compacted_topic_gives_the_general_paths_table(tmp_path):
    """Compacted segments (frames with gaps in their offsets), the log start
    moved inside a frame of the active segment: the same table."""
    path = str(tmp_path / "d")
    with LogDir(path) as d:
        t = d.create_topic("t", 3, config={"cleanup.policy": "compact", "segment.bytes": 4096})
        for p in range(3):
            log = t.partition(p)
            for i in range(40):
                log.append(batch([(b"k%d" % (i % 5), b"v%d" % i * 8, None), (b"k%d" % (i % 7), None, None)]))
        d.compact("t", now_ms=1 << 50)
        log = t.partition(1)
        log.delete_records(log.high_watermark - 3)  # inside the last frame (of two records)
    fast, slow = both(path)
    assert fast.equals(slow)
    assert fast.column("partition").to_pylist().count(1) == 3


def test_null_values_of_large_frames_keep_their_place(tmp_path):
    """A frame's values are moved down over the frame's own bytes before
    them: its value validity was read after that move, so tombstones in a
    frame larger than the room below it came out as garbage bits."""
    path = str(tmp_path / "d")
    n = 600
    records = [(b"k%d" % i, None if i % 5 == 0 else b"v" * (90 + i % 11), [("h", b"x")] if i % 4 == 0 else None)
               for i in range(n)]
    write(path, [[records], [records[:7], records]])
    fast, slow = both(path)
    assert fast.column("value").null_count == slow.column("value").null_count == 2 * (n // 5) + 2
    assert fast.equals(slow)


def test_a_half_the_helper_has_not_started_is_read_on_the_calling_thread(tmp_path, monkeypatch):
    """On a busy machine the helper thread may get no core for a while: the
    calling thread then reads both halves instead of waiting for it."""
    path = str(tmp_path / "d")
    write(path, [[[(b"k%d" % p, b"v" * 30, None)] * 3] for p in range(6)])
    monkeypatch.setattr(clean_read, "PARALLEL_STATES", 2)
    monkeypatch.setattr(clean_read, "PARALLEL_BYTES", 1)
    busy = ThreadPoolExecutor(1)
    released = threading.Event()

    def hold():
        if not released.wait(60):
            released.set()  # (a guard against a hang: what waited for the helper gets it then)
    busy.submit(hold)
    monkeypatch.setattr(clean_read, "helper_thread", lambda: busy)
    try:
        fast, slow = both(path)
        assert not released.is_set()  # done without the helper
    finally:
        released.set()
        busy.shutdown()
    assert fast.equals(slow)
    assert fast.column("partition").to_pylist() == [p for p in range(6) for _ in range(3)]
