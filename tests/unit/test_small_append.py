"""The small-flush path: PartitionLog.append_records stores a producer
accumulator in one native call (RecordAccumulator.append_at) when the common
case holds, and stores exactly what the general path (_append_frame) would:
the same segment, index and time-index bytes, the same published state."""

from __future__ import annotations

import os

import numpy as np

from arrowlog._native import core
from arrowlog.storage import LogDir
from arrowlog.storage.appending import AppendMixin

CONFIG = {"segment.bytes": 24 << 10, "index.interval.bytes": 700, "retention.ms": -1}


def accumulators(seed: int, count: int) -> list[core.RecordAccumulator]:
    rng = np.random.default_rng(seed)
    out = []
    for b in range(count):
        acc = core.RecordAccumulator()
        for i in range(int(rng.integers(1, 6))):
            # timestamps that go back now and then: the running maximum matters
            ts = 1_700_000_000_000 + b * 10 + int(rng.integers(-30, 30))
            acc.append_record(None if i % 3 == 2 else b"k%d" % i, b"v" * int(rng.integers(0, 120)), ts,
                              [("h", b"x")] if i % 4 == 3 else None)
        out.append(acc)
    return out


def files(part: str) -> dict[str, bytes]:
    skip = ("partition.state", "partition.lock", "partition.open")  # state compared field by field
    out = {}
    for name in sorted(os.listdir(part)):
        if name not in skip and os.path.isfile(os.path.join(part, name)):
            with open(os.path.join(part, name), "rb") as f:
                out[name] = f.read().rstrip(b"\0")  # preallocated room is not content
    return out


def general(pl, acc: core.RecordAccumulator) -> int:
    """append_records' general path, as every small append took before append_at."""
    return pl._append_frame(acc.count, acc.min_timestamp, acc.max_timestamp, False,
                            lambda base: [acc.frame_body(base)], acc)


def write(path: str, accs: list[core.RecordAccumulator], append=None) -> tuple[list[int], dict, str]:
    d = LogDir(path)
    pl = d.create_topic("t", partitions=1, config=CONFIG).partition(0)
    bases = [pl.append_records(acc) if append is None else append(pl, acc) for acc in accs]
    state = pl.state.snapshot()
    part = pl.directory
    d.close()
    state.pop("segment_created_ms")
    return bases, state, part


def test_native_appends_store_what_the_general_path_stores(tmp_path, monkeypatch):
    calls: list = []
    with monkeypatch.context() as m:
        m.setattr(AppendMixin, "_append_frame", _counting(AppendMixin._append_frame, calls))
        native = write(str(tmp_path / "native"), accumulators(7, 400))
    assert len(calls) < 100  # most of them native
    slow = write(str(tmp_path / "general"), accumulators(7, 400), general)
    assert native[0] == slow[0]  # base offsets
    assert native[1] == slow[1]  # published state, index entry counts included
    got, want = files(native[2]), files(slow[2])
    assert len([n for n in want if n.endswith(".log")]) >= 4  # rolls happened on the way
    assert got.keys() == want.keys()
    for name in want:
        if name.endswith(".log"):  # the segment header holds its creation time
            got[name], want[name] = got[name][64:], want[name][64:]
        assert got[name] == want[name], name


def _counting(fn, calls: list):
    def wrapper(self, *args, **kwargs):
        calls.append(1)
        return fn(self, *args, **kwargs)
    return wrapper


def test_most_small_appends_take_the_native_path(data_dir, monkeypatch):
    calls: list = []
    monkeypatch.setattr(AppendMixin, "_append_frame", _counting(AppendMixin._append_frame, calls))
    with LogDir(data_dir) as d:
        pl = d.create_topic("t", partitions=1).partition(0)
        for acc in accumulators(3, 1000):
            pl.append_records(acc)
        assert pl.state.snapshot()["next_offset"] > 1000
        assert pl.verify()["errors"] == []
    # the first appends (the writer opens, its generation is learnt) and the
    # index files growing take the general path; every other append is native
    assert len(calls) < 20


def three_appended(d: LogDir):
    """A partition of three frames: its log, writer segment, published state
    and a fourth batch to append."""
    pl = d.create_topic("t", partitions=1).partition(0)
    for acc in accumulators(1, 3):
        pl.append_records(acc)
    return pl, pl._writer, pl.state.snapshot(), accumulators(2, 1)[0]


def test_append_at_declines_what_is_not_the_common_case_and_writes_nothing(data_dir):
    with LogDir(data_dir) as d:
        pl, seg, st, acc = three_appended(d)

        def append_at(**change):
            args = dict(generation=pl._writer_generation, file_size=seg.file_size, segment_bytes=pl.segment_bytes,
                        segment_ms=pl.segment_ms, now_ms=pl._now_ms(), index_interval=pl.index_interval)
            args.update(change)
            target = core.AppendTarget(pl.state, None, pl._append_fd, seg.log_fd, seg.base_offset, args["generation"],
                                       args["file_size"], args["segment_bytes"], args["segment_ms"],
                                       args["index_interval"], 10 << 20, 1 << 62, 64, 1 << 40, seg.index,
                                       seg.index_file_size, seg.time_index, seg.time_index_file_size)
            return acc.append_at(target, args["now_ms"])

        assert append_at(generation=pl._writer_generation + 1) == -1  # another process recovered the log
        assert append_at(segment_bytes=st["active_position"]) == -1   # a roll is due
        assert append_at(now_ms=st["segment_created_ms"] + pl.segment_ms) == -1  # segment.ms passed
        assert append_at(file_size=st["active_position"]) == -1       # the space is not allocated yet
        pl.state.clean = True
        assert append_at() == -1                                       # _mark_dirty must clear it first
        pl.state.clean = False
        assert pl.state.snapshot() == st                               # nothing published
        assert os.pread(seg.log_fd, 8, st["active_position"]) == b"\0" * 8  # nor written
        base = append_at()
        assert base == st["next_offset"]
        after = pl.state.snapshot()
        assert after["next_offset"] == base + acc.count
        assert after["active_position"] == st["active_position"] + acc.frame_size()
        assert pl.verify()["errors"] == []
        rows = [r for f in pl.read(base, 1 << 20) for r in f.batch.to_pylist()]
        assert [r["offset"] for r in rows] == list(range(base, base + acc.count))


def test_a_native_append_counts_the_change_for_waiting_readers(data_dir):
    # readers sleep on the futex word of the partition (PartitionLog.wait) or of
    # the data directory (wait_for_data with several partitions)
    with LogDir(data_dir) as d:
        pl = d.create_topic("t", partitions=1).partition(0)
        for acc in accumulators(1, 2):
            pl.append_records(acc)
        words = pl.state.current_word(), d.notifier.current_word()
        calls: list = []
        original = AppendMixin._append_frame
        AppendMixin._append_frame = _counting(original, calls)
        try:
            pl.append_records(accumulators(4, 1)[0])
        finally:
            AppendMixin._append_frame = original
        assert calls == []  # (native)
        assert pl.state.current_word() == (words[0] + 1) % (1 << 32)
        assert d.notifier.current_word() == (words[1] + 1) % (1 << 32)


def produce_rounds(path: str, partitions: int, rounds: int) -> list[tuple[dict, dict[str, bytes]]]:
    """Keyed records (some null values, some headers, timestamps that go back
    now and then) produced over ``partitions`` and flushed ``rounds`` times by
    one Producer: each partition's published state and files."""
    from arrowlog import Producer
    rng = np.random.default_rng(11)
    with LogDir(path) as d:
        d.create_topic("t", partitions=partitions, config=CONFIG)
    with Producer({"log.dir": path, "linger.ms": 600_000}) as p:
        for r in range(rounds):
            for i in range(int(rng.integers(partitions, 6 * partitions))):
                ts = 1_700_000_000_000 + r * 100 + int(rng.integers(-30, 30))
                p.produce("t", None if i % 7 == 6 else b"v" * int(rng.integers(0, 300)), key=b"key-%d" % i,
                          timestamp=ts, headers=[("h", b"x")] if i % 5 == 4 else None)
            assert p.flush() == 0
    out = []
    with LogDir(path) as d:
        for q in range(partitions):
            pl = d.topic("t").partition(q)
            state = pl.state.snapshot()
            state.pop("segment_created_ms")
            got = files(pl.directory)
            out.append((state, {n: b[64:] if n.endswith(".log") else b for n, b in got.items()}))
    return out


def test_a_flush_over_many_partitions_stores_what_the_general_path_stores(tmp_path, monkeypatch):
    # flush() appends every partition's batch in one native loop (ProducerCore._append_ready)
    calls: list = []
    with monkeypatch.context() as m:
        m.setattr(AppendMixin, "_append_frame", _counting(AppendMixin._append_frame, calls))
        native = produce_rounds(str(tmp_path / "native"), 64, 12)
    with monkeypatch.context() as m:
        m.setattr(AppendMixin, "append_target", lambda self: None)  # every batch through _append_frame
        slow = produce_rounds(str(tmp_path / "general"), 64, 12)
    assert len(calls) < 64 * 12 // 2  # most batches native
    assert sum(len(files) for _, files in slow) > 3 * 64  # rolls and index entries on the way
    for q in range(64):
        assert native[q][0] == slow[q][0], q  # published state, index entry counts included
        assert native[q][1] == slow[q][1], q


def large_accumulators(seed: int, count: int) -> list[core.RecordAccumulator]:
    """Batches of 4 to 120 KiB (above the frame a stack buffer holds, some
    above 64 KiB): keys with nulls, headers on some records."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(count):
        acc = core.RecordAccumulator()
        for i in range(int(rng.integers(40, 1000))):
            acc.append_record(None if i % 9 == 8 else b"key-%d" % i, b"v" * int(rng.integers(0, 200)),
                              1_700_000_000_000 + b * 10 + int(rng.integers(-30, 30)),
                              [("h", None if i % 2 else b"x")] if i % 11 == 10 else None)
        out.append(acc)
    return out


def filled(pl, acc: core.RecordAccumulator) -> int:
    """The general path with frame_body's one-buffer message as its pieces."""
    return pl._append_frame(acc.count, acc.min_timestamp, acc.max_timestamp, False,
                            lambda base: [acc.frame_body(base)])


def test_large_batches_are_gathered_into_the_frame_the_general_path_writes(tmp_path):
    # above a few KiB the native write gathers the accumulator's buffers (one pwritev, no
    # frame buffer); the oracle is the frame frame_body builds in one buffer, written by the
    # general path (test_native_envelope_writer checks frame_body against pyarrow)
    native = write(str(tmp_path / "native"), large_accumulators(5, 40))
    slow = write(str(tmp_path / "general"), large_accumulators(5, 40), filled)
    assert native[0] == slow[0] and native[1] == slow[1]
    got, want = files(native[2]), files(slow[2])
    assert got.keys() == want.keys()
    for name in want:
        if name.endswith(".log"):
            got[name], want[name] = got[name][64:], want[name][64:]
        assert got[name] == want[name], name


def test_append_at_grows_the_segment_through_its_target_or_declines(data_dir):
    """A frame ending beyond ``file_size``: append_at calls the target's
    ``grow`` with the frame's end under the append lock, writes when the
    segment now holds it, declines (nothing written) when it does not, and
    raises what ``grow`` raised, the lock released."""
    from arrowlog.errors import StorageError
    with LogDir(data_dir) as d:
        pl, seg, st, acc = three_appended(d)
        end = st["active_position"] + acc.frame_size()
        asked: list = []

        def target(grow):
            return core.AppendTarget(pl.state, None, pl._append_fd, seg.log_fd, seg.base_offset, pl._writer_generation,
                                     st["active_position"], pl.segment_bytes, pl.segment_ms, pl.index_interval,
                                     10 << 20, 1 << 62, 64, 1 << 40, seg.index, seg.index_file_size, seg.time_index,
                                     seg.time_index_file_size, None, grow)

        def short(n):
            asked.append(n)
            return n - 8

        def failing(n):
            raise StorageError(28, "cannot grow segment: the disk is full")

        assert acc.append_at(target(short), pl._now_ms()) == -1
        assert asked == [end]
        assert pl.state.snapshot() == st
        assert os.pread(seg.log_fd, 8, st["active_position"]) == b"\0" * 8
        try:
            acc.append_at(target(failing), pl._now_ms())
            raise AssertionError("grow's error was not raised")
        except StorageError as exc:
            assert "disk is full" in str(exc)
        assert pl.state.snapshot() == st
        t = target(lambda n: asked.append(n) or n + 4096)
        assert acc.append_at(t, pl._now_ms()) == st["next_offset"]  # (the append lock was released)
        assert asked == [end, end] and t.file_size == end + 4096
        assert pl.state.snapshot()["active_position"] == end
        assert pl.verify()["errors"] == []
