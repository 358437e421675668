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

import os
import struct

from .._native import core
from ..errors import CorruptRecordError
from .index import TimeIndex
from .segment import SEGMENT_FIXED_HEADER, Segment, segment_name

# The bounds of a published state (core/statecheck.pxi holds them, and the
# one check of them every path makes): offsets below 2^62, and an active
# segment at most one oversized batch past the largest segment.
MAX_OFFSET = core.MAX_OFFSET
MAX_ACTIVE_POSITION = core.MAX_ACTIVE_POSITION

RECOVER_HINT = "run `arrowlog recover` (see docs/DURABILITY.md)"


class MissingDataError(CorruptRecordError):
    """Offsets below the high watermark are in no segment on disk. Raised
    inside a read, which looks again (retention may have moved the log start
    meanwhile) before reporting damage."""


# what each field checked (core.STATE_CHECKS) must be, in words
_SHOULD = {
    "next_offset": f"an offset in 0..{MAX_OFFSET}",
    "log_start_offset": "in 0..next_offset",
    "active_base_offset": "in 0..next_offset",
    "active_position": "a frame boundary inside the segment",
    "offset_index_entries": "within the index",
    "time_index_entries": "within the index",
    "bytes_since_index": "within the segment",
    "recovery_point": "in 0..next_offset",
}


def state_problem(st: dict) -> str | None:
    """Why the published state cannot be true, or None (core.state_fault:
    the check the native close and replay paths make, naming the field)."""
    name = core.state_fault(st)
    if name is None:
        return None
    return f"partition.state says {name}={st[name]}, which is impossible (it must be {_SHOULD[name]})"


def header_problem(fd: int) -> str | None:
    """Why partition.state's header (magic, version, clean word) cannot be
    this version's, or None. A never-written file (no magic) is no problem:
    it is initialised."""
    head = os.pread(fd, 16, 0)
    if len(head) < 16 or head[:8] != b"ARWLSTAT":
        return None
    version, clean = struct.unpack_from("<II", head, 8)
    if version != 1:
        return (f"partition.state has format version {version}, and this arrowlog reads version 1 (a newer "
                "arrowlog wrote it, or the file is damaged; if no newer arrowlog uses this directory, recover "
                "rebuilds it from the segments)")
    if clean not in (0, 1):
        return f"partition.state's clean mark is {clean}, which is impossible (it must be 0 or 1)"
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
