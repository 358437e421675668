"""Recovery and the layout checks of a PartitionLog (see partition.py for
the contract, layout.py for what a clean open checks).

After a crash recovery re-checks every frame from the segment holding the
recovery point, truncates at the first bad one, deletes later segments and
rebuilds the indexes of what it scanned. Below the recovery point segments
are trusted, but must be whole and contiguous: a segment missing there makes
the log resume after the gap (docs/DURABILITY.md says why).
"""

from __future__ import annotations

import os
from typing import Any

from .._native import core
from ..errors import CorruptRecordError
from .files import fsync_dir
from .index import NO_TIMESTAMP, OffsetIndex
from .layout import (
    closed_segment_end,
    damaged,
    missing_between,
    state_problem,
    tail_start,
    walk_frames,
)
from .logbase import LogBase
from .segment import SEGMENT_EXTENSIONS, Segment, segment_name


class RecoveryMixin(LogBase):
    """PartitionLog's recovery, layout checks and verify(); callers hold
    the locks each method names."""

    def recover(self, *, check_all: bool = False) -> dict:
        """Check the log from the segment holding the recovery point onward:
        verify every frame's CRC and the offsets' continuity, truncate at
        the first bad frame, delete later segments, rebuild the indexes of
        what was scanned, and republish the state. Returns a report.
        ``check_all`` (``arrowlog recover``) also CRC-checks every frame of
        the synced segments below the recovery point: one that fails (bit
        rot) is treated as a gap, as a missing segment is."""
        with self._lock, self._append_locked():
            return self._recover_locked(check_all=check_all)

    def _recover_locked(self, *, check_all: bool = False) -> dict:
        report = {"segments_scanned": 0, "bytes_scanned": 0, "truncated_bytes": 0, "segments_deleted": 0,
                  "indexes_rebuilt": 0}
        self.state.repair_seq()
        if self.state.is_initialised():
            self.state.clean = False  # (also rewrites a clean mark that is neither 0 nor 1)
        old = self.state.snapshot() if self.state.is_initialised() else None
        self._drop_segments()
        bases = self._list_bases()
        self._drop_orphan_indexes(bases)
        if not bases:
            # closed at once: the scan below opens it again (keeping this one
            # leaked its three file descriptors)
            Segment.create(self.directory, 0, self.schema, self.compression, self._capacity(), self._now_ms()).close()
            bases = [0]
            fsync_dir(self.directory)
        # an impossible state (see layout.py) is no guide: scan everything
        trusted = old if old is not None and state_problem(old) is None else None
        recovery_point = trusted["recovery_point"] if trusted else 0
        start = 0
        for i, base in enumerate(bases):
            if base <= recovery_point:
                start = i
        log_start = trusted["log_start_offset"] if trusted else bases[0]
        # Segments before `start` are trusted (synced): check their indexes,
        # and that each ends where the next begins. A segment missing there
        # (or unreadable) makes the log resume after it: the segments
        # before the gap move to quarantine/ (docs/DURABILITY.md says why).
        cut = 0
        for i, base in enumerate(bases[:start]):
            try:
                seg = self._open_writer_segment(base)
            except (CorruptRecordError, OSError):
                cut = i + 1
                continue
            try:
                nxt, problem = self._check_closed(seg)
                if problem is None and check_all:
                    problem = self._rotten(seg)
            finally:
                seg.close()
            if problem is not None or nxt != bases[i + 1]:
                cut = i + 1
        if check_all and trusted:
            # from the recovery point on, a bad frame is cut off as a torn
            # write; below it (synced, acknowledged) it is bit rot: a gap
            for i in range(max(start, cut), len(bases)):
                if self._rotten_below(bases[i], recovery_point):
                    cut = i + 1
        if cut:
            self._quarantine(bases[:cut])
            report["segments_quarantined"] = cut
            bases, start = bases[cut:], max(start - cut, 0)
            if not bases:
                # nothing after the gap: the log goes on, empty, at the offset it had reached
                resume = trusted["next_offset"] if trusted else 0  # (a cut needs a trusted state)
                Segment.create(self.directory, resume, self.schema, self.compression, self._capacity(),
                               self._now_ms()).close()
                bases = [resume]
            log_start = max(log_start, bases[0])
        next_offset = bases[start]
        log_start = max(min(log_start, bases[-1]), bases[0])
        log_start = max(b for b in bases if b <= log_start)  # a segment's base, as retention leaves it
        active: tuple[Segment, int, list] | None = None
        for i in range(start, len(bases)):
            base = bases[i]
            if base != next_offset and i > start:
                # a gap: everything from here on is unreachable
                for later in bases[i:]:
                    self._delete_segment_files(later)
                    report["segments_deleted"] += 1
                break
            try:
                seg = self._open_writer_segment(base)
            except (CorruptRecordError, OSError):
                for later in bases[i:]:
                    self._delete_segment_files(later)
                    report["segments_deleted"] += 1
                if active is None:
                    seg = Segment.create(self.directory, next_offset, self.schema, self.compression,
                                         self._capacity(), self._now_ms())
                    active = (seg, seg.header_size, [])
                break
            end, next_offset, frames = core.scan_frames(seg.log, seg.header_size, seg.file_size, base, True)
            report["segments_scanned"] += 1
            report["bytes_scanned"] += end - seg.header_size
            if active is not None:
                active[0].trim(active[1], *self._rebuild(active[0], active[2], report)[:2])
                active[0].close()
            active = (seg, end, frames)
            if end < seg.file_size and i + 1 < len(bases):
                # torn or corrupt inside a non-last segment: drop later segments
                tail = self._scan_tail_garbage(seg, end)
                if tail:
                    for later in bases[i + 1:]:
                        self._delete_segment_files(later)
                        report["segments_deleted"] += 1
                    break
        assert active is not None, "the loop above opens or creates the active segment"
        seg, end, frames = active
        if end < seg.file_size:
            report["truncated_bytes"] += self._garbage_bytes(seg, end)
            seg.trim(end, *seg.index_entries_on_disk())  # zero the tail: no stale frame survives
        oe, te, since, max_ts = self._rebuild(seg, frames, report)
        seg.ensure_allocated(end)
        self._writer = seg
        fsync_dir(self.directory)
        if log_start < bases[0] or log_start > next_offset:
            log_start = bases[0]
        fields = dict(
            log_start_offset=log_start, next_offset=next_offset, active_base_offset=seg.base_offset,
            active_position=end, active_max_timestamp=max_ts if frames else NO_TIMESTAMP,
            offset_index_entries=oe, time_index_entries=te, bytes_since_index=since,
            recovery_point=min(recovery_point, next_offset),
            generation=max(old["generation"], 0) + 1 if old else 1,
            segment_created_ms=seg.created_ms,
        )
        if old is None:
            self.state.initialise(**fields)
        else:
            self.state.publish(**fields)
        self._hint = None
        self._damage = None
        report["next_offset"] = next_offset
        return report

    def _drop_orphan_indexes(self, bases: list[int]) -> None:
        """Delete the .index/.timeindex of a segment whose .log is gone
        (they are rebuilt from a .log, and mean nothing without one)."""
        have = {segment_name(b) for b in bases}
        for name in os.listdir(self.directory):
            stem, ext = os.path.splitext(name)
            if ext in (".index", ".timeindex") and len(stem) == 20 and stem.isdigit() and stem not in have:
                os.unlink(os.path.join(self.directory, name))

    def _rotten_below(self, base: int, recovery_point: int) -> bool:
        """Whether a frame of segment ``base`` below the recovery point
        fails its CRC (with garbage, not zeros, after it)."""
        try:
            seg = self._open_writer_segment(base)
        except (CorruptRecordError, OSError):
            return False  # the main scan deals with it
        try:
            end, nxt, _ = core.scan_frames(seg.log, seg.header_size, seg.file_size, base, True)
            return end < seg.file_size and nxt < recovery_point and self._scan_tail_garbage(seg, end)
        finally:
            seg.close()

    @classmethod
    def _rotten(cls, seg: Segment) -> str | None:
        """Why a closed segment's frames fail their CRCs, or None."""
        end, _, _ = core.scan_frames(seg.log, seg.header_size, seg.file_size, seg.base_offset, True)
        if end < seg.file_size and cls._scan_tail_garbage(seg, end):
            return f"segment {segment_name(seg.base_offset)}.log: the frame at position {end} fails its checks"
        return None

    def _quarantine(self, bases: list[int]) -> None:
        """Move whole segments out of the log, into quarantine/ (kept for a
        person to look at, never read again by arrowlog)."""
        target = os.path.join(self.directory, "quarantine")
        os.makedirs(target, mode=0o700, exist_ok=True)
        for base in bases:
            seg = self._segments.pop(base, None)
            if seg is not None:
                seg.close()
            for ext in SEGMENT_EXTENSIONS:
                name = segment_name(base) + ext
                try:
                    os.rename(os.path.join(self.directory, name), os.path.join(target, name))
                except FileNotFoundError:
                    pass
        fsync_dir(target)
        fsync_dir(self.directory)

    def _rebuild(self, seg: Segment, frames: list, report: dict):
        result = seg.rebuild_indexes(frames, self.index_interval)
        report["indexes_rebuilt"] += 1
        return result

    @staticmethod
    def _garbage_bytes(seg: Segment, end: int) -> int:
        return max(0, seg.file_size - end) if seg.log.read(end, min(64, seg.file_size - end)).strip(b"\0") else 0

    @classmethod
    def _trusted_end(cls, seg: Segment, end: int) -> int:
        """Where to cut a closed segment whose frames end at ``end``: a
        zero tail is the preallocation of a trim at roll that a power loss
        undid (readers would fail on it); anything else is left for verify."""
        return end if end < seg.file_size and not cls._scan_tail_garbage(seg, end) else seg.file_size

    @staticmethod
    def _scan_tail_garbage(seg: Segment, end: int) -> bool:
        return bool(seg.log.read(end, min(4096, seg.file_size - end)).strip(b"\0"))

    def _check_layout(self) -> None:
        """On a clean open (see layout.py): rebuild an index that cannot be
        right, and mark the partition damaged when the published state and
        the segment files disagree."""
        st = self.state.snapshot()
        self._damage = state_problem(st) or self._check_segments(st)

    def _check_segments(self, st: dict) -> str | None:
        bases = self._list_bases()
        active, log_start = st["active_base_offset"], st["log_start_offset"]
        if active not in bases:
            return (f"the active segment {segment_name(active)}.log named by partition.state is missing"
                    if bases else "it has no segment file (.log) at all")
        first = max((b for b in bases if b <= log_start), default=None)
        if first is None:
            return (f"the oldest segment is missing: partition.state says the log starts at offset {log_start} "
                    f"({segment_name(log_start)}.log), the oldest segment file is {segment_name(bases[0])}.log")
        expected = None
        for base in bases:
            if base < first:
                continue  # left by a retention cut short; the next retention deletes it
            if base > active:
                break  # an orphan of a roll cut short; the next append deletes it
            if expected is not None and base != expected:
                if base > expected:
                    return missing_between(expected, base)
                return f"segment {segment_name(base)}.log overlaps the segment before it (which ends at {expected})"
            try:
                # the active segment is checked through the read view the
                # first read then uses (opened once, not twice)
                seg = self._open_writer_segment(base) if base < active else self._check_view(base, st)
            except (CorruptRecordError, OSError) as exc:
                return f"segment {segment_name(base)}.log cannot be opened: {exc}"
            try:
                if base < active:
                    expected, problem = self._check_closed(seg)
                else:
                    problem = self._check_active(seg, st)
            finally:
                if base < active:
                    seg.close()
                else:
                    self._release_view(base)
            if problem is not None:
                return problem
        return None

    def _check_closed(self, seg: Segment) -> tuple[int | None, str | None]:
        """(next offset, problem) of a closed segment; its indexes are
        rebuilt when they cannot be right."""
        oe, te = seg.index_entries_on_disk()
        if self._index_usable(seg, oe, te, seg.file_size):
            nxt, problem = closed_segment_end(seg, seg.file_size)
            if problem is None:
                return nxt, None
        # (only after damage: with CRCs, so a flipped count cannot pass)
        end, nxt, frames = core.scan_frames(seg.log, seg.header_size, seg.file_size, seg.first_offset(seg.file_size),
                                            True)
        oe, te, _, _ = seg.rebuild_indexes(frames, self.index_interval, closed=True)
        seg.trim(self._trusted_end(seg, end), oe, te)
        if end != seg.file_size:
            return None, (f"segment {segment_name(seg.base_offset)}.log: the frame at position {end} is not a valid "
                          f"frame ({seg.file_size - end} bytes from there are unreadable)")
        return nxt, None

    @staticmethod
    def _index_usable(seg: Segment, offset_entries: int, time_entries: int, end: int) -> bool:
        """Whether the indexes can be trusted to start the tail walk: sane,
        and the last offset entry names the frame at its position. An index
        that fails is rebuilt from the frames; it never makes the log
        itself look damaged."""
        return (seg.index_is_sane(offset_entries, time_entries, end)
                and OffsetIndex(seg).last_agrees(offset_entries, end))

    def _check_active(self, seg: Segment, st: dict) -> str | None:
        end, name = st["active_position"], f"{segment_name(seg.base_offset)}.log"
        if not seg.header_size <= end <= seg.file_size:
            return (f"partition.state says active_position={end}, but the active segment {name} holds "
                    f"{seg.file_size} bytes (its header {seg.header_size})")
        oe = st["offset_index_entries"]
        if not self._index_usable(seg, oe, st["time_index_entries"], end):
            _, _, frames = core.scan_frames(seg.log, seg.header_size, end, seg.first_offset(end), True)
            writer = self._open_writer_segment(seg.base_offset)
            try:
                oe, te, since, _ = writer.rebuild_indexes(frames, self.index_interval)
            finally:
                writer.close()
            self.state.publish(offset_index_entries=oe, time_index_entries=te, bytes_since_index=since)
            self._forget_read_views()  # reopened with the rebuilt indexes
            seg = self._check_view(seg.base_offset, st)
        position, base = tail_start(seg, oe, end)
        nxt, reached, _ = walk_frames(seg, position, end, base)
        if reached != end or nxt != st["next_offset"]:
            return (f"partition.state says next_offset={st['next_offset']} at active_position={end}, but the frames "
                    f"of {name} reach offset {nxt} at position {reached}")
        return None

    def _raise_if_damaged(self) -> None:
        if self._damage is not None:
            raise damaged(f"partition {self.topic}-{self.partition} ({self.directory})", self._damage)

    def verify(self) -> dict:
        """CRC-check every published frame; a report of what was found."""
        st = self._snapshot()
        errors: list[str] = []
        report: dict[str, Any] = {"segments": 0, "frames": 0, "records": 0, "bytes": 0, "errors": errors}
        problem = self._damage or state_problem(st)
        if problem is not None:
            errors.append(problem)
            return report
        bases = self._list_bases()
        if bases and bases[0] > st["log_start_offset"]:
            errors.append(f"the oldest segment is missing: the log starts at offset {st['log_start_offset']}, "
                          f"the oldest segment file is {segment_name(bases[0])}.log")
        expected: int | None = None
        for b in bases:
            if b > st["active_base_offset"]:
                errors.append(f"segment {segment_name(b)}.log lies beyond the active segment (unpublished)")
                continue
            try:
                seg = self._segment(b, st)
            except (CorruptRecordError, OSError) as exc:
                errors.append(f"segment {segment_name(b)}.log: {exc}")
                continue
            end = st["active_position"] if b == st["active_base_offset"] else seg.file_size
            if expected is not None and b != expected:
                errors.append(missing_between(expected, b) if b > expected else
                              f"segment {segment_name(b)}.log does not continue from offset {expected}")
            scan_end, nxt, frames = core.scan_frames(seg.log, seg.header_size, end, seg.first_offset(end), True)
            report["segments"] += 1
            report["frames"] += len(frames)
            report["records"] += nxt - b
            report["bytes"] += end
            # where a segment that fails its checks ends is unknown: the next one is not "missing" offsets
            expected = nxt if scan_end == end else None
            if scan_end != end:
                errors.append(f"segment {segment_name(b)}.log: frame at position {scan_end} fails its checks "
                              f"({end - scan_end} bytes after it unreadable)")
        return report
