"""The indexing rule is one: what appends and rolls write into a segment's
indexes is exactly what recovery rebuilds from its frames."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from arrowlog._native import core
from arrowlog.errors import CorruptRecordError, LogClosedError
from arrowlog.schema import ENVELOPE_SCHEMA, HEADERS_TYPE, PRODUCE_SCHEMA
from arrowlog.storage import LogDir
from arrowlog.storage.index import OffsetIndex, TimeIndex
from arrowlog.storage.segment import Segment


def batch(n: int, ts: list[int]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(np.array(ts, dtype=np.int64)).cast(pa.timestamp("ms", tz="UTC")), pa.nulls(n, pa.binary()),
         pa.array([b"v" * 50] * n, pa.binary()), pa.nulls(n, HEADERS_TYPE)], schema=PRODUCE_SCHEMA)


def test_rebuilt_indexes_equal_what_appends_and_rolls_wrote(tmp_path):
    d = LogDir(str(tmp_path / "data"))
    pl = d.create_topic("t", partitions=1, config={"segment.bytes": 16 << 10, "index.interval.bytes": 700,
                                                  "retention.ms": -1}).partition(0)
    rng = np.random.default_rng(5)
    for b in range(200):
        n = int(rng.integers(1, 8))
        # timestamps that go back now and then: the running maximum matters
        pl.append(batch(n, [int(t) for t in 1_700_000_000_000 + b * 10 + rng.integers(-30, 30, n)]))
    bases = pl.segment_bases()
    assert len(bases) >= 4
    d.close()
    part = str(tmp_path / "data" / "topics" / "t" / "0")
    for base in bases[:-1]:  # the closed segments
        stem = os.path.join(part, f"{base:020d}")
        written = [open(stem + ext, "rb").read() for ext in (".index", ".timeindex")]
        seg = Segment(part, base, writable=True, capacity=1 << 20)
        try:
            end, _, frames = core.scan_frames(seg.log, seg.header_size, seg.file_size, base, True)
            assert end == seg.file_size
            oe, te, _, _ = seg.rebuild_indexes(frames, 700, closed=True)
            rebuilt = [seg.index.read(0, oe * core.OFFSET_ENTRY_SIZE),
                       seg.time_index.read(0, te * core.TIME_ENTRY_SIZE)]
        finally:
            seg.close()
        assert rebuilt == written, f"segment {base}: the rebuilt indexes differ from the written ones"


def test_entries_must_ascend(tmp_path):
    seg = Segment.create(str(tmp_path), 100, ENVELOPE_SCHEMA, None, 1 << 20, 0)
    try:
        offsets, times = OffsetIndex(seg), TimeIndex(seg)
        offsets.append(0, 0, seg.header_size)
        offsets.append(1, 5, seg.header_size + 800)
        with pytest.raises(CorruptRecordError, match="does not ascend"):
            offsets.append(2, 5, seg.header_size + 1600)
        with pytest.raises(CorruptRecordError, match="does not ascend"):
            offsets.append(2, 9, seg.header_size + 800)
        times.append(0, 1000, 0)
        with pytest.raises(CorruptRecordError, match="does not ascend"):
            times.append(1, 1000, 5)
        assert times.last_timestamp(1) == 1000 and offsets.last(2) == (5, seg.header_size + 800)
    finally:
        seg.close()


def test_index_files_grow_with_entries(tmp_path):
    seg = Segment.create(str(tmp_path), 0, ENVELOPE_SCHEMA, None, 1 << 20, 0)
    try:
        assert os.path.getsize(seg.index_path) == 4096
        offsets = OffsetIndex(seg)
        for i in range(1500):  # 12,000 bytes of entries
            offsets.append(i, i, seg.header_size + 8 * i)
        assert os.path.getsize(seg.index_path) == 16384  # 4 KiB, doubled twice
    finally:
        seg.close()


@pytest.mark.parametrize("which", ["offset", "time"])
def test_writing_an_entry_into_a_closed_segment_raises(tmp_path, which):
    """A closed segment has released its index mappings: an append is LogClosedError,
    not a write through a None mapping (which crashed the process)."""
    seg = Segment.create(str(tmp_path), 100, ENVELOPE_SCHEMA, None, 1 << 20, 0)
    header = seg.header_size
    seg.close()
    with pytest.raises(LogClosedError, match="is closed"):
        if which == "offset":
            OffsetIndex(seg).append(0, 0, header)
        else:
            TimeIndex(seg).append(0, 1_700_000_000_000, 0)
