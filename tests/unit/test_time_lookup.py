"""offsets_for_times on a log without gaps: answered from the stored frame
by the native search, without building the frame's Arrow batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowlog import Consumer, Producer, TopicPartition
from arrowlog._native import core
from arrowlog.storage import LogDir
from arrowlog.storage.segment import Segment


def test_time_lookup_without_gaps_builds_no_arrow_batch(tmp_path, monkeypatch):
    data = str(tmp_path / "data")
    LogDir(data).create_topic("t", partitions=1)
    base = 1_700_000_000_000
    # out-of-order timestamps inside each frame: the first at or after T, by offset
    ts = base + np.array([(i * 7919) % 3000 for i in range(3000)], dtype=np.int64)
    with Producer({"log.dir": data}) as p:
        for start in range(0, 3000, 1000):
            p.produce_batch("t", [b"v"] * 1000, timestamps=ts[start:start + 1000], partition=0)
            p.flush()

    def no_batch(*args, **kwargs):
        raise AssertionError("frame_batch called by a lookup on a log without gaps")

    with Consumer({"log.dir": data}) as c:
        monkeypatch.setattr(Segment, "frame_batch", no_batch)
        for t in (base, base + 1, base + 1500, base + 2999, base + 10_000):
            got = c.offsets_for_times([TopicPartition("t", 0, t)])[0].offset
            hits = np.nonzero(ts >= t)[0]
            assert got == (int(hits[0]) if len(hits) else -1), t


# -- against a brute-force oracle ------------------------------------------------------

T0 = 1_700_000_000_000

_batches = st.lists(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 400)), min_size=1, max_size=60),
                    min_size=1, max_size=14)


def _oracle(pl, target: int) -> int | None:
    """The earliest readable offset whose record's timestamp is at or after
    ``target`` (Kafka's ListOffsets by time), from every stored row."""
    start = pl.log_start_offset
    best = None
    for fr in pl.read(start, 1 << 30):
        offsets = fr.batch.column(0).to_pylist()
        stamps = fr.batch.column(1).cast(pa.int64()).to_pylist()
        for off, ts in zip(offsets, stamps):
            if off >= start and ts >= target and (best is None or off < best):
                best = off
    return best


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=_batches, compact=st.booleans(), compression=st.sampled_from([None, "zstd"]),
       delete_at=st.floats(0, 1), targets=st.lists(st.integers(-5, 410), min_size=1, max_size=25))
def test_offset_for_timestamp_matches_an_oracle(tmp_path_factory, batches, compact, compression, delete_at, targets):
    """Random (unsorted) timestamps over several segments, compacted (frames
    with gaps) or not, compressed or not, the log start moved into the middle
    of a frame: every lookup, asked twice (the second bisects a frame found
    sorted), gives the oracle's answer."""
    data = str(tmp_path_factory.mktemp("oracle"))
    config = {"segment.bytes": 4096, "index.interval.bytes": 512}
    if compact:
        config["cleanup.policy"] = "compact"
    if compression:
        config["compression.type"] = compression
    with LogDir(data) as d:
        pl = d.create_topic("t", config=config).partition(0)
        for rows in batches:
            acc = core.RecordAccumulator()
            for key, ts in rows:
                acc.append_record(b"k%d" % key, b"v", T0 + ts)
            pl.append(acc.take())
        if compact:
            d.compact("t", now_ms=T0 + 10 * 86_400_000)
        pl.delete_records(int(delete_at * pl.high_watermark))
        for t in targets + targets:
            assert pl.offset_for_timestamp(T0 + t) == _oracle(pl, T0 + t), t


def test_a_frame_wholly_below_a_mid_frame_log_start_is_passed_over(tmp_path):
    """The rows that reach the target lie below the log start (moved into the
    frame by DeleteRecords): the answer is a later row, never the log start."""
    with LogDir(str(tmp_path)) as d:
        pl = d.create_topic("t").partition(0)
        acc = core.RecordAccumulator()
        for ts in (50, 10, 20, 60, 30):  # offsets 0..4
            acc.append_record(None, b"v", T0 + ts)
        pl.append(acc.take())
        pl.delete_records(2)
        assert pl.offset_for_timestamp(T0 + 40) == 3
        assert pl.offset_for_timestamp(T0 + 40) == 3
        assert pl.offset_for_timestamp(T0 + 61) is None
        assert pl.offset_for_timestamp(T0 + 5) == 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=_batches, deletes=st.lists(st.floats(0, 1), min_size=14, max_size=14),
       targets=st.lists(st.integers(-5, 410), min_size=1, max_size=8))
def test_a_reader_follows_a_growing_log(tmp_path_factory, batches, deletes, targets):
    """A reader of its own (as another process) keeps a fast path while the
    answer lies in the active segment: appends, rolls and DeleteRecords by the
    writer between its lookups never leave it with a stale answer."""
    data = str(tmp_path_factory.mktemp("grow"))
    with LogDir(data) as d, LogDir(data) as r:
        pl = d.create_topic("t", config={"segment.bytes": 4096, "index.interval.bytes": 256}).partition(0)
        reader = r.topic("t").partition(0)
        for rows, delete in zip(batches, deletes):
            acc = core.RecordAccumulator()
            for _, ts in rows:
                acc.append_record(None, b"v", T0 + ts)
            pl.append(acc.take())
            if delete > 0.8:
                pl.delete_records(int((delete - 0.8) * 5 * pl.high_watermark))
            for t in targets:
                assert reader.offset_for_timestamp(T0 + t) == _oracle(pl, T0 + t), t
