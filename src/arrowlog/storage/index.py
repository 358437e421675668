"""A segment's two sparse indexes, and the one rule that fills them.

Offset index (``.index``), 8-byte entries, little-endian::

    offset  size  field
         0     4  relative_offset: a frame's base_offset - the segment's base
         4     4  position: the frame's byte position in the .log

Time index (``.timeindex``), 12-byte entries::

    offset  size  field
         0     8  timestamp: the largest timestamp in the segment so far
         8     4  relative_offset of the frame where it was reached (or later)

Both ascend strictly (a time entry's offset never goes back). The rule,
Kafka's: the first frame of a segment and then the first frame after every
``index.interval.bytes`` of log get an offset entry; with each offset entry a
time entry is written when the running largest timestamp grew; when a
segment closes, its time index ends at the segment's largest timestamp.
``Indexer`` applies that rule, and is the only writer of entries: append,
roll and recovery (rebuild) all go through it.

Files grow on demand (``Segment._index_room``: from 4 KiB, doubling, up to
INDEX_BYTES) before an entry is stored, so a full disk is a StorageError,
never a SIGBUS. Thread-safety: writers hold the partition's append lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._native import core
from ..errors import CorruptRecordError, LogClosedError

if TYPE_CHECKING:
    from .segment import Segment

NO_TIMESTAMP = -(1 << 63)
MAX_RELATIVE = (1 << 31) - 1


def _open_mapping(mapping: core.MappedFile | None, path: str) -> core.MappedFile:
    """The index mapping to write an entry into; a closed segment has none (writing
    through a released mapping would crash the process, not raise)."""
    if mapping is None:
        raise LogClosedError(f"index {path} is closed: its segment was closed (reopen the log to append)")
    return mapping


class OffsetIndex:
    """The offset index of ``segment`` (a view over its mapping)."""

    __slots__ = ("segment",)

    def __init__(self, segment: Segment):
        self.segment = segment

    def last(self, entries: int) -> tuple[int, int] | None:
        """(relative_offset, position) of the last of ``entries``."""
        if entries <= 0 or self.segment.index is None:
            return None
        return core.offset_index_lookup(self.segment.index, entries, MAX_RELATIVE)

    def last_agrees(self, entries: int, end: int) -> bool:
        """Whether the last of ``entries`` points at a frame header (fitting
        before ``end``) that holds the entry's offset as its base: a walk
        from there (recovery's tail checks, a roll) counts from the right
        offset. The index has no checksum, so a flipped bit in that entry
        must show here, as a damaged index to rebuild, not as a log whose
        frames disagree with partition.state. (Call it once ``index_is_sane``
        has said the entries lie inside the file.)"""
        if entries <= 0:
            return True
        if self.segment.index is None:
            return False
        raw = self.segment.index.read((entries - 1) * core.OFFSET_ENTRY_SIZE, core.OFFSET_ENTRY_SIZE)
        rel, position = int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")
        try:
            base = core.read_frame_header(self.segment.log, position, end)[0]
        except core.CorruptFrame:
            return False
        return base == self.segment.base_offset + rel

    def append(self, slot: int, relative_offset: int, position: int) -> None:
        """Write entry ``slot``; both fields must ascend strictly."""
        prev = self.last(slot)
        if prev is not None and (relative_offset <= prev[0] or position <= prev[1]):
            raise CorruptRecordError(f"offset index {self.segment.index_path}: entry {slot} ({relative_offset}, "
                                     f"{position}) does not ascend past {prev}")
        mapping = _open_mapping(self.segment.index, self.segment.index_path)
        self.segment._index_room("index", slot, core.OFFSET_ENTRY_SIZE)
        core.write_offset_entry(mapping, slot, relative_offset, position)


class TimeIndex:
    """The time index of ``segment`` (a view over its mapping)."""

    __slots__ = ("segment",)

    def __init__(self, segment: Segment):
        self.segment = segment

    def last_timestamp(self, entries: int) -> int:
        if entries <= 0 or self.segment.time_index is None:
            return NO_TIMESTAMP
        raw = self.segment.time_index.read((entries - 1) * core.TIME_ENTRY_SIZE, 8)
        return int.from_bytes(raw, "little", signed=True)

    def append(self, slot: int, timestamp: int, relative_offset: int) -> None:
        """Write entry ``slot``; timestamps must ascend strictly."""
        last = self.last_timestamp(slot)
        if timestamp <= last:
            raise CorruptRecordError(f"time index {self.segment.time_index_path}: entry {slot} ({timestamp}) does "
                                     f"not ascend past {last}")
        mapping = _open_mapping(self.segment.time_index, self.segment.time_index_path)
        self.segment._index_room("time_index", slot, core.TIME_ENTRY_SIZE)
        core.write_time_entry(mapping, slot, timestamp, relative_offset)


class Indexer:
    """The indexing rule over one segment, from where its indexes stand:
    ``offset_entries``/``time_entries`` written, ``since`` bytes of log
    since the last offset entry (None: the next frame gets one), ``max_ts``
    the largest timestamp so far."""

    __slots__ = ("segment", "interval", "offsets", "times", "offset_entries", "time_entries", "since", "max_ts")

    def __init__(self, segment: Segment, interval: int, offset_entries: int = 0, time_entries: int = 0,
                 since: int | None = None, max_ts: int = NO_TIMESTAMP):
        self.segment = segment
        self.interval = interval
        self.offsets = OffsetIndex(segment)
        self.times = TimeIndex(segment)
        self.offset_entries = offset_entries
        self.time_entries = time_entries
        self.since = interval if since is None else since
        self.max_ts = max_ts

    def add(self, position: int, base_offset: int, size: int, frame_max_ts: int) -> None:
        """A frame of ``size`` bytes at ``position`` was stored."""
        self.max_ts = max(self.max_ts, frame_max_ts)
        if self.offset_entries == 0 or self.since >= self.interval:
            rel = base_offset - self.segment.base_offset
            self.offsets.append(self.offset_entries, rel, position)
            self.offset_entries += 1
            self.since = 0
            if self.max_ts > self.times.last_timestamp(self.time_entries):
                self.times.append(self.time_entries, self.max_ts, rel)
                self.time_entries += 1
        self.since += size

    def seal(self, last_frame_base: int) -> None:
        """The segment closes: its time index ends at its largest timestamp."""
        if self.max_ts > self.times.last_timestamp(self.time_entries):
            self.times.append(self.time_entries, self.max_ts, last_frame_base - self.segment.base_offset)
            self.time_entries += 1
