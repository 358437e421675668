"""Is a partition's layout believable? The published state against itself
and against the segment files on disk.

A cleanly closed partition skips recovery on its next open, so nothing
would re-derive what ``partition.state`` says from the segments: a value
that cannot be true there (next_offset=10^12, log_start=-5,
active_position=1) or a segment file that went missing (the oldest one, or
one in the middle, leaving a gap of offsets) would make readers loop
forever looking for records that are not there. The first opener therefore
checks, in O(segments) small reads:

* every state field lies in its possible range;
* the segment holding the log start offset exists, and so does the active
  segment;
* each closed segment, from its last offset-index entry on, ends exactly at
  its file's end and at the base offset of the next segment (no gap);
* the active segment's frames end exactly at ``active_position`` with
  ``next_offset``.

A failed check marks the partition damaged: every read and append then
raises CorruptRecordError naming the file and saying to run
``arrowlog recover``; ``verify()`` reports it. Readers also bound every loop
by what is on disk (see PartitionLog.read), for damage that happens while a
partition is open.
"""

from __future__ import annotations

from .._native import core
from ..errors import CorruptRecordError
from .index import TimeIndex
from .segment import INDEX_BYTES, MAX_SEGMENT_BYTES, SEGMENT_FIXED_HEADER, Segment, segment_name

# Offsets beyond this are impossible: 2^62 records at a billion a second
# is 146 years.
MAX_OFFSET = 1 << 62
# The active segment may exceed MAX_SEGMENT_BYTES by one oversized batch.
MAX_ACTIVE_POSITION = MAX_SEGMENT_BYTES + (1 << 31)

RECOVER_HINT = "run `arrowlog recover` (see docs/DURABILITY.md)"


class MissingDataError(CorruptRecordError):
    """Offsets below the high watermark are in no segment on disk. Raised
    inside a read, which looks again (retention may have moved the log start
    meanwhile) before reporting damage."""


def state_problem(st: dict) -> str | None:
    """Why the published state cannot be true, or None."""
    checks = (
        ("next_offset", 0 <= st["next_offset"] < MAX_OFFSET, f"an offset in 0..{MAX_OFFSET}"),
        ("log_start_offset", 0 <= st["log_start_offset"] <= st["next_offset"], "in 0..next_offset"),
        ("active_base_offset", 0 <= st["active_base_offset"] <= st["next_offset"], "in 0..next_offset"),
        ("active_position", SEGMENT_FIXED_HEADER <= st["active_position"] <= MAX_ACTIVE_POSITION
         and st["active_position"] % 8 == 0, "a frame boundary inside the segment"),
        ("offset_index_entries", 0 <= st["offset_index_entries"] <= INDEX_BYTES // core.OFFSET_ENTRY_SIZE,
         "within the index"),
        ("time_index_entries", 0 <= st["time_index_entries"] <= INDEX_BYTES // core.TIME_ENTRY_SIZE,
         "within the index"),
        ("bytes_since_index", 0 <= st["bytes_since_index"] <= MAX_ACTIVE_POSITION, "within the segment"),
        ("recovery_point", 0 <= st["recovery_point"] < MAX_OFFSET, "an offset"),
    )
    for name, ok, should in checks:
        if not ok:
            return f"partition.state says {name}={st[name]}, which is impossible (it must be {should})"
    return None


def reads_problem(st: dict) -> str | None:
    """The few fields every read trusts, checked on each read (cheap)."""
    if not (0 <= st["log_start_offset"] <= st["next_offset"] < MAX_OFFSET
            and 0 <= st["active_base_offset"] <= st["next_offset"]
            and SEGMENT_FIXED_HEADER <= st["active_position"] <= MAX_ACTIVE_POSITION):
        return state_problem(st) or "partition.state is inconsistent"
    return None


def walk_frames(seg: Segment, start: int, end: int, expected: int | None) -> tuple[int, int, int]:
    """Walk frames from ``start`` to ``end``; returns (next_offset, position
    reached, largest max timestamp seen). Stops at the first frame that
    fails its CRC or does not continue the offsets. The CRC is checked
    because a flipped bit in a count would otherwise make the next segment
    look misplaced; the walk covers at most index.interval.bytes and one
    frame (a few MiB at ~30 GB/s: well under a millisecond a segment)."""
    position, max_ts = start, -(1 << 63)
    nxt = expected
    while position < end:
        try:
            base, count, body, _, frame_max = core.read_frame_header(seg.log, position, end)
            if not core.check_frame_crc(seg.log, position, end):
                break
        except core.CorruptFrame:
            break
        if nxt is not None and base != nxt:
            break
        nxt = base + count
        max_ts = max(max_ts, frame_max)
        position += core.FRAME_HEADER_SIZE + body
    return (seg.base_offset if nxt is None else nxt), position, max_ts


def tail_start(seg: Segment, offset_entries: int, end: int) -> tuple[int, int | None]:
    """(position, base offset) of the last indexed frame, from which a walk
    reaches the segment's end in at most index.interval.bytes."""
    if offset_entries and seg.index is not None:
        hit = core.offset_index_lookup(seg.index, offset_entries, (1 << 31) - 1)
        if hit is not None and seg.header_size <= hit[1] < end:
            return hit[1], seg.base_offset + hit[0]
    return seg.header_size, seg.first_offset(end)


def closed_segment_end(seg: Segment, end: int) -> tuple[int | None, str | None]:
    """(next offset, problem) of a closed segment of ``end`` bytes, walking
    from its last index entry; also checks that its time index ends at the
    largest timestamp of that tail (Kafka's rule for a closed segment)."""
    oe, te = seg.index_entries_on_disk()
    position, base = tail_start(seg, oe, end)
    nxt, reached, tail_max = walk_frames(seg, position, end, base)
    name = segment_name(seg.base_offset) + ".log"
    if reached != end:
        return None, f"segment {name}: the frame at position {reached} is not a valid frame ({end - reached} bytes after it)"
    if te and tail_max > TimeIndex(seg).last_timestamp(te):
        return nxt, "time index"
    return nxt, None


def missing_between(before: int, after: int) -> str:
    """Words for offsets [before, after) that no segment holds."""
    return (f"segment {segment_name(before)}.log is missing: offsets {before}..{after - 1} are in no segment "
            f"(the next segment is {segment_name(after)}.log)")


def damaged(where: str, problem: str) -> CorruptRecordError:
    return CorruptRecordError(f"{where} is damaged: {problem}; {RECOVER_HINT}")
