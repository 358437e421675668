"""A roll walks the active segment's frame headers from its last index
entry to find the last frame's base offset (appending._last_frame_base, for
the time index's seal). A header damaged since the partition was opened is
a CorruptRecordError naming the partition, the segment and the position,
and the roll changes nothing: restored, the same append goes through."""

from __future__ import annotations

import os
import struct

import pyarrow as pa
import pytest

from arrowlog._native import core
from arrowlog.errors import CorruptRecordError
from arrowlog.schema import PRODUCE_SCHEMA
from arrowlog.storage import LogDir

SEGMENT_BYTES = 4096


def batch(n: int, size: int, ts: int = 1_000) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"timestamp": [ts + i for i in range(n)], "key": [b"k%d" % i for i in range(n)],
                                       "value": [bytes([i]) * size for i in range(n)], "headers": [None] * n},
                                      schema=PRODUCE_SCHEMA)


def last_frame(log_path: str, header_size: int, end: int) -> int:
    with open(log_path, "rb") as f:
        raw = f.read(end)
    pos = last = header_size
    while pos < end:
        last = pos
        pos += core.FRAME_HEADER_SIZE + struct.unpack_from("<I", raw, pos + 16)[0]
    assert pos == end
    return last


DAMAGE = {
    "magic": lambda pos, end: (4, b"\0\0\0\0"),
    "length past the end": lambda pos, end: (16, struct.pack("<I", end - pos)),
    "wrapped length": lambda pos, end: (16, struct.pack("<I", 0xFFFFFFF8)),
    "base offset below the segment": lambda pos, end: (8, struct.pack("<q", -1)),
    "base offset past the log end": lambda pos, end: (8, struct.pack("<q", 1 << 40)),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_last_frame_header_fails_the_roll_naming_where(tmp_path, damage):
    with LogDir(str(tmp_path / "d")) as d:
        d.create_topic("t", 1, config={"segment.bytes": SEGMENT_BYTES, "index.interval.bytes": 1 << 20})
        log = d.topic("t").partition(0)
        for i in range(3):
            log.append(batch(2, 200, ts=1_000 + i))
        st = log.state.snapshot()
        seg_path = os.path.join(log.directory, f"{0:020d}.log")
        header_size = log._writer.header_size
        pos = last_frame(seg_path, header_size, st["active_position"])
        at, raw = DAMAGE[damage](pos, st["active_position"])
        fd = os.open(seg_path, os.O_RDWR)
        try:
            good = os.pread(fd, len(raw), pos + at)
            os.pwrite(fd, raw, pos + at)   # damage since the open, through the file (the mapping is shared)
            before = os.pread(fd, st["active_position"], 0)
            with pytest.raises(CorruptRecordError) as err:
                log.append(batch(4, 1000))     # does not fit: the segment rolls
            message = str(err.value)
            assert "t-0" in message and f"{0:020d}.log" in message and f"position {pos}" in message, message
            assert "arrowlog recover" in message
            # nothing changed: the segment's bytes, the published offsets, no new segment
            assert os.pread(fd, st["active_position"], 0) == before
            after = log.state.snapshot()
            assert (after["next_offset"], after["active_base_offset"]) == (st["next_offset"], 0)
            assert sorted(n for n in os.listdir(log.directory) if n.endswith(".log")) == [f"{0:020d}.log"]
            os.pwrite(fd, good, pos + at)
        finally:
            os.close(fd)
        assert log.append(batch(4, 1000)) == st["next_offset"]
        assert log.state.snapshot()["active_base_offset"] == st["next_offset"]
        values = [v for f in log.read(0, 1 << 20) for v in f.batch.column("value").to_pylist()]
        assert values == [bytes([i]) * 200 for _ in range(3) for i in range(2)] + [bytes([i]) * 1000 for i in range(4)]


@pytest.mark.parametrize("count", [100_000, -(1 << 63) + 20])
@pytest.mark.parametrize("field", ["offset_index_entries", "time_index_entries"])
def test_an_index_entry_count_beyond_its_file_fails_the_roll_instead_of_a_sigbus(tmp_path, field, count):
    """A count inside the state's bounds (a full index is 10 MiB) but past
    what the active segment's index file holds, published meanwhile by
    someone else: the roll's walk and the time index's seal would read past
    the file's end under its mapping."""
    with LogDir(str(tmp_path / "d")) as d:
        d.create_topic("t", 1, config={"segment.bytes": SEGMENT_BYTES, "index.interval.bytes": 1})
        log = d.topic("t").partition(0)
        for i in range(3):
            log.append(batch(2, 200, ts=1_000 + i))
        st = log.state.snapshot()
        log.state.publish(**{field: count})   # (negative: the sign bit flipped)
        with pytest.raises(CorruptRecordError, match=f"partition.state says {field}={count}, and its index file holds"):
            log.append(batch(4, 1000))
        assert log.state.snapshot()["next_offset"] == st["next_offset"]
        log.state.publish(**{field: st[field]})
        assert log.append(batch(4, 1000)) == st["next_offset"]
