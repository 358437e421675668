"""storage.reader: the one range cursor and the one wait for data."""

import threading
import time
from pathlib import Path

import pytest

from arrowlog import errors
from arrowlog._native import core
from arrowlog.storage import LogDir
from arrowlog.storage.reader import RangeReader, raise_gap, wait_for_data


def batch(n, start_ts=None):
    now = core.wall_clock_ms() if start_ts is None else start_ts
    acc = core.RecordAccumulator()
    for i in range(n):
        acc.append_record(b"k%d" % i, b"v" * 100, now + i)
    return acc.take()


def offsets_of(frames):
    return [o for fr in frames for o in fr.batch.column("offset").to_pylist()]


def drain(reader, max_bytes=1 << 20):
    out = []
    while not reader.done:
        frames = reader.read(max_bytes)
        if not frames:
            break
        out.extend(frames)
    return out


def test_range_is_sliced_at_both_edges(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t", config={"segment.bytes": 16 << 10}).partition(0)
        for _ in range(10):
            log.append(batch(50))
        assert len(log.segment_bases()) > 1  # the range crosses segments
        reader = RangeReader(log, 25, 230)
        frames = drain(reader, max_bytes=1)  # one frame per read
        assert offsets_of(frames) == list(range(25, 230))
        assert [(f.base_offset, f.record_count) for f in frames][0] == (25, 25)
        assert [(f.base_offset, f.record_count) for f in frames][-1] == (200, 30)
        assert reader.done and reader.position == 230
        assert reader.read() == []


def test_whole_frames_are_not_sliced(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t").partition(0)
        for _ in range(4):
            log.append(batch(50))
        frames = drain(RangeReader(log, 60, 120, whole_frames=True))
        assert [(f.base_offset, f.record_count, f.batch.num_rows) for f in frames] == [(50, 50, 50), (100, 50, 50)]


def test_an_open_range_stops_at_the_high_watermark_and_goes_on_after_appends(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t").partition(0)
        log.append(batch(10))
        reader = RangeReader(log, 3)
        assert offsets_of(reader.read()) == list(range(3, 10))
        assert reader.read() == [] and reader.position == 10 and not reader.done
        log.append(batch(5))
        assert offsets_of(reader.read()) == list(range(10, 15))
        # a bounded range past the high watermark returns what is there, then nothing
        bounded = RangeReader(log, 12, 1000)
        assert offsets_of(bounded.read()) == [12, 13, 14]
        assert bounded.read() == [] and not bounded.done


def _log_with_old_segments(d):
    """Segments older than an hour, then new ones; no retention yet."""
    log = d.create_topic("t", config={"segment.bytes": 16 << 10}).partition(0)
    old = core.wall_clock_ms() - 3_600_000
    for _ in range(10):
        log.append(batch(50, start_ts=old))
    for _ in range(10):
        log.append(batch(50))
    return log


def _expire(data_dir):
    """Retention, as another process would run it, deletes the old segments."""
    with LogDir(data_dir) as other:
        other.alter_topic("t", {"retention.ms": 60_000})
        log = other.topic("t").partition(0)
        log.enforce_retention()
        assert log.log_start_offset > 50


def test_retention_under_the_cursor_moves_it_to_the_log_start(data_dir):
    with LogDir(data_dir) as d:
        log = _log_with_old_segments(d)
        reader = RangeReader(log, 0)
        assert offsets_of(reader.read(1)) == list(range(50))
        _expire(data_dir)
        low, high = log.watermarks()
        assert offsets_of(drain(reader)) == list(range(low, high))


def test_retention_gap_is_reported_to_the_caller(data_dir):
    with LogDir(data_dir) as d:
        log = _log_with_old_segments(d)
        gaps = []
        reader = RangeReader(log, 0, 120, on_gap=lambda pos, low: gaps.append((pos, low)) or low)
        reader.read(1)
        _expire(data_dir)
        low = log.log_start_offset
        assert drain(reader) == [] and reader.done  # the rest of the range was deleted
        assert gaps == [(50, low)] and reader.position == 120
        strict = RangeReader(log, 0, on_gap=raise_gap)
        with pytest.raises(errors.OffsetOutOfRangeError, match="deleted by retention"):
            strict.read()


def test_a_gap_handler_cannot_move_the_cursor_outside_the_log(data_dir):
    with LogDir(data_dir) as d:
        log = _log_with_old_segments(d)
        _expire(data_dir)
        with pytest.raises(errors.OffsetOutOfRangeError, match="outside"):
            RangeReader(log, 0, on_gap=lambda pos, low: low - 1).read()


def test_beyond_the_high_watermark_is_an_error_not_a_gap(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t").partition(0)
        log.append(batch(5))
        with pytest.raises(errors.OffsetOutOfRangeError, match="beyond the high watermark"):
            RangeReader(log, 7).read()


@pytest.mark.parametrize("partitions", [1, 3])
def test_wait_for_data_wakes_on_an_append(data_dir, partitions):
    with LogDir(data_dir) as d:
        t = d.create_topic("t", partitions)
        logs = t.partitions()
        pending = [(log, 0) for log in logs]
        assert wait_for_data(d.notifier, pending, 0.01) is False
        target = logs[-1]
        woke = []

        def waiter():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if wait_for_data(d.notifier, pending, 60):
                    if target.high_watermark > 0:
                        woke.append(time.monotonic())
                        return

        th = threading.Thread(target=waiter)
        th.start()
        appended = time.monotonic()
        target.append(batch(1))
        th.join(60)
        assert woke and woke[0] - appended < 30
        assert wait_for_data(d.notifier, pending, 0) is True  # data there: no wait at all


def test_wait_for_data_with_no_partitions_waits_for_any_append_after_seen(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t").partition(0)
        seen = d.notifier.current_word()
        assert wait_for_data(d.notifier, (), 0.01, seen=seen) is False
        log.append(batch(1))  # after `seen`: the wait returns at once
        assert wait_for_data(d.notifier, (), 60, seen=seen) is True


def test_frames_are_crc_checked_unless_the_caller_opts_out(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t", config={"segment.bytes": 16 << 10}).partition(0)
        for _ in range(10):
            log.append(batch(3))
            log.append(batch(50))
    seg = min(p for p in (Path(data_dir) / "topics" / "t" / "0").iterdir() if p.suffix == ".log")  # a closed one
    raw = bytearray(seg.read_bytes())
    raw[raw.index(b"v" * 100) + 7] ^= 0x01  # bit rot in a value
    seg.write_bytes(raw)
    with LogDir(data_dir) as d:
        with pytest.raises(errors.CorruptRecordError):
            RangeReader(d.topic("t").partition(0), 0).read()
    with LogDir(data_dir) as d:
        fr = RangeReader(d.topic("t").partition(0), 0, check_crc=False).read()[0]
        assert fr.record_count == 3


class _CountingLog:
    """A stand-in partition whose data becomes readable after ``ready_after``
    looks at its high watermark; its futex wait records the timeout asked."""

    def __init__(self, ready_after):
        self.looks = 0
        self.ready_after = ready_after
        self.waits = []

    @property
    def high_watermark(self):
        self.looks += 1
        return 1 if self.looks > self.ready_after else 0

    def wait(self, offset, timeout):
        self.waits.append(timeout)
        return self.high_watermark > offset


def test_spin_over_several_partitions_sees_an_append_without_sleeping_on_the_futex():
    logs = [_CountingLog(ready_after=10**9) for _ in range(2)] + [_CountingLog(ready_after=50)]

    class NoNotifier:
        def current_word(self):
            raise AssertionError("a spin that sees the data never gets to the futex")

    # a spin of up to 60 s: ends at the 51st look, long before
    assert wait_for_data(NoNotifier(), [(log, 0) for log in logs], 60, spin_us=60_000_000) is True
    assert logs[-1].looks == 51
    assert all(not log.waits for log in logs)


def test_spin_on_one_partition_sees_an_append_from_another_thread_without_the_futex(data_dir):
    # one partition: the native spin (core.follow_spin) on the mapped high
    # watermark, with the GIL released so the appending thread runs
    with LogDir(data_dir) as d:
        log = d.create_topic("t").partition(0)
        log.wait = lambda offset, timeout: pytest.fail("a spin that sees the data never gets to the futex")
        appender = threading.Thread(target=log.append, args=(batch(1),))
        appender.start()
        try:
            assert wait_for_data(d.notifier, [(log, 0)], 60, spin_us=60_000_000) is True
        finally:
            appender.join()
        assert log.high_watermark == 1


def test_spin_then_sleeps_on_the_futex_for_the_rest_of_the_timeout(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t").partition(0)
        waits = []
        log.wait = lambda offset, timeout: waits.append(timeout) or False
        start = time.perf_counter()
        assert wait_for_data(None, [(log, 0)], 0.5, spin_us=20_000) is False
        assert time.perf_counter() - start >= 0.02  # it looked for the whole spin
        assert waits == [pytest.approx(0.48)]  # then the futex, for the rest of the timeout


def test_spin_with_no_partitions_watches_the_notifier_word(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t").partition(0)
        seen = d.notifier.current_word()
        assert wait_for_data(d.notifier, (), 0.01, seen=seen, spin_us=5_000) is False
        log.append(batch(1))
        assert wait_for_data(d.notifier, (), 60, seen=seen, spin_us=60_000_000) is True
