"""Reading a PartitionLog: frames by offset, offsets by time.

Readers take no lock: they read the published state under the seqlock and
only look at data below it. Every loop is bounded by what is on disk, and
each frame's CRC-32C is checked before its data is first handed out in the
process (docs/DURABILITY.md; the memory of checked frames is in segment.py).
"""

from __future__ import annotations

import bisect
import functools
import os

import numpy as np
import pyarrow as pa

from .._native import core
from ..errors import CorruptRecordError, OffsetOutOfRangeError
from ..schema import ENVELOPE_SCHEMA
from .cleaner import HEALTH_FILE
from .layout import MissingDataError, damaged, missing_between, reads_problem
from .logbase import LogBase
from .segment import Segment, remember_verified, segment_name, segment_path, verified_frames

MAX_TIMESTAMP = (1 << 63) - 1


def _structure_checked(seg: Segment) -> set[int]:
    """The positions of ``seg``'s frames whose columns a read with CRCs off
    checked to fit their buffers (core.check_frame_batch) in this process.
    Remembered as the CRC checks are (segment.py): shared by every read view
    of the same file, keyed by its device, inode and ctime, its creation time
    and the recovery generation, so a file written since is checked again (a
    view without a key, a writer's, keeps its own). A frame whose CRC passed
    in this process is sound already and is not checked either."""
    own = vars(seg)
    seen = own.get("structure_checked")
    if seen is None:
        key = None if seg.verified_key is None else ("structure", *seg.verified_key)
        seen = own["structure_checked"] = set() if key is None else verified_frames(key)
        own["structure_key"] = key
    return seen


class Frame:
    """One stored batch: offsets base_offset .. base_offset+record_count-1.
    ``batch`` is a zero-copy pa.RecordBatch over the mapped segment."""

    __slots__ = ("base_offset", "record_count", "min_timestamp", "max_timestamp", "size", "batch")

    def __init__(self, base_offset, record_count, min_timestamp, max_timestamp, size, batch):
        self.base_offset = base_offset
        self.record_count = record_count
        self.min_timestamp = min_timestamp
        self.max_timestamp = max_timestamp
        self.size = size
        self.batch = batch

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.record_count

    @property
    def rows(self) -> int:
        """Records held: record_count (the offsets spanned) unless the cleaner
        removed some (docs/FORMAT.md, gaps)."""
        return self.batch.num_rows

    def row_at(self, offset: int) -> int:
        """The first row whose offset is at or after ``offset`` (``rows`` if
        none): offset - base_offset without gaps, else a binary search of
        the offset column."""
        n = self.batch.num_rows
        if n == self.record_count:
            return min(max(offset - self.base_offset, 0), n)
        return int(np.searchsorted(self.batch.column(0).to_numpy(), offset))

    def __repr__(self) -> str:
        return f"<Frame {self.base_offset}..{self.next_offset - 1} size={self.size}>"


class ReadMixin(LogBase):
    """PartitionLog's read() and offset_for_timestamp()."""

    _time_view: core.TimeView | None = None  # offset_for_timestamp's fast path

    # -- reading ------------------------------------------------------------------------

    def _segment(self, base: int, st: dict) -> Segment:
        seg = self._segments.get(base)
        active = base == st["active_base_offset"]
        end = st["active_position"] if active else None
        if seg is not None and (end is None or end <= seg.capacity) and (active or seg.file_size <= seg.capacity):
            if not active and seg.file_size == 0:
                pass
            return seg
        if seg is not None:
            seg.close()
        seg = Segment(self.directory, base, writable=False,
                      capacity=self._capacity(end or 0) if active else None, generation=st["generation"])
        self._segments[base] = seg
        return seg

    def _locate(self, offset: int, st: dict) -> tuple[Segment, int]:
        """(segment, end position) of the segment holding ``offset``."""
        if offset >= st["active_base_offset"]:
            base = st["active_base_offset"]
        else:
            bases = self._known_bases(st)
            base = None
            for b in bases:
                if b <= offset:
                    base = b
                else:
                    break
            if base is None:
                if offset >= st["log_start_offset"]:
                    raise MissingDataError(
                        f"the oldest segment is missing: no segment file holds offset {offset} "
                        f"({segment_name(st['log_start_offset'])}.log, where the log starts, is gone; the oldest "
                        f"segment file is {segment_name(bases[0]) if bases else 'none'}.log)")
                raise OffsetOutOfRangeError(f"offset {offset} of {self.topic}-{self.partition} was deleted "
                                            f"(log start offset is {st['log_start_offset']})")
        seg = self._segment(base, st)
        if base == st["active_base_offset"]:
            end = st["active_position"]
        else:
            end = os.fstat(seg.log_fd).st_size if seg.log_fd >= 0 else seg.file_size
            seg.file_size = end
        return seg, end

    def read(self, offset: int, max_bytes: int = 1 << 20, *, check_crc: bool | None = None) -> list[Frame]:
        """Whole frames starting with the one containing ``offset``, up to
        about ``max_bytes`` (the first frame always, even if larger: Kafka's
        KIP-74 rule). [] when ``offset`` is at the high watermark.

        Each frame's CRC-32C is checked before its data is first handed out
        in this process (``check_crc``: None takes ``self.check_crcs``,
        True by default): bit rot is a CorruptRecordError naming the file
        and byte position, never data.

        Every loop here is bounded by what is on disk: offsets below the
        high watermark that no segment holds (a segment file gone, a gap)
        raise CorruptRecordError after looking again, never an empty answer
        a caller would retry forever."""
        self._raise_if_damaged()
        missing = None
        for attempt in range(3):
            st = self._snapshot()
            problem = reads_problem(st)
            if problem is not None:
                raise damaged(f"partition {self.topic}-{self.partition} ({self.directory})", problem)
            if st["generation"] != self._read_generation:
                # a recovery may have rewritten frames: check them again
                self._forget_read_views()
                self._read_generation = st["generation"]
            if offset < st["log_start_offset"]:
                raise OffsetOutOfRangeError(
                    f"offset {offset} is below the log start offset {st['log_start_offset']} of "
                    f"{self.topic}-{self.partition} (deleted by retention); seek to the beginning")
            if offset > st["next_offset"]:
                raise OffsetOutOfRangeError(
                    f"offset {offset} is beyond the high watermark {st['next_offset']} of {self.topic}-{self.partition}")
            if offset == st["next_offset"]:
                return []
            try:
                frames = self._read(offset, max_bytes, st, self.check_crcs if check_crc is None else check_crc)
                if frames:
                    return frames
                missing = MissingDataError(f"no frame holds offset {offset} below the high watermark "
                                           f"{st['next_offset']} that partition.state publishes")
            except FileNotFoundError:
                # retention removed the segment under us: look again
                self._segments.pop(self._locate_base_guess(offset), None)
            except MissingDataError as exc:
                missing = exc  # retention (or a recovery) may have moved on: look again
            self._bases_key = None
        if missing is not None and offset >= self._snapshot()["log_start_offset"]:
            raise damaged(f"partition {self.topic}-{self.partition} ({self.directory})", str(missing))
        raise OffsetOutOfRangeError(f"offset {offset} of {self.topic}-{self.partition} was deleted")

    def follower(self, offset: int, check_crc: bool | None = None, *,
                 absent: str | None = None) -> core.FrameFollower | None:
        """A FrameFollower (_native/core/follow.pxi) for a cursor at ``offset``,
        where the last read() ended in the active segment, or None when that
        segment cannot be followed natively (compressed, another envelope
        than the binary one, the published state moved on since the read).
        It reads what follows frame by frame as read() would, and leaves
        anything else to read() (``check_crc`` as there), and everything once
        the path ``absent`` exists."""
        hint = self._hint
        if hint is None or hint[0] != offset or self._damage is not None:
            return None
        st = self._snapshot()
        if hint[1] != st["active_base_offset"] or st["generation"] != self._read_generation or reads_problem(st):
            return None
        seg = self._segments.get(hint[1])
        if (seg is None or seg.log is None or seg.compression is not None
                or not seg.schema.equals(ENVELOPE_SCHEMA, check_metadata=True)):
            return None
        check = self.check_crcs if check_crc is None else check_crc
        return core.FrameFollower(self.state, seg.log, st["generation"], hint[1], offset, hint[2], self.topic,
                                  self.partition, seg.verified if check else None,
                                  functools.partial(remember_verified, seg.verified_key, seg.verified), absent)

    def _published_entries(self, seg: Segment, st: dict) -> tuple[int, int]:
        """The active segment's index entry counts ``st`` publishes, once
        the index files are known to hold them: a lookup past a file's end
        under its mapping would be a SIGBUS. The sizes the segment knows are
        asked again (one fstat each) only when a count exceeds them: the
        writer grew the file since."""
        oe, te = st["offset_index_entries"], st["time_index_entries"]
        if oe < 0 or te < 0 or (seg.index is not None and oe * core.OFFSET_ENTRY_SIZE > seg.index_file_size) or \
                (seg.time_index is not None and te * core.TIME_ENTRY_SIZE > seg.time_index_file_size):
            held = seg.index_entries_on_disk()
            if oe < 0 or te < 0 or (seg.index is not None and oe > held[0]) or \
                    (seg.time_index is not None and te > held[1]):
                raise damaged(f"partition {self.topic}-{self.partition} ({self.directory})",
                              f"partition.state says offset_index_entries={oe} and time_index_entries={te}, and "
                              f"the active segment's index files hold {held[0]} and {held[1]}")
        return oe, te

    def _locate_base_guess(self, offset: int) -> int:
        return max((b for b in self._segments if b <= offset), default=-1)

    def _read(self, offset: int, max_bytes: int, st: dict, check_crc: bool) -> list[Frame]:
        frames: list[Frame] = []
        total = 0
        seg, end = self._locate(offset, st)
        hint = self._hint
        if hint is not None and hint[0] == offset and hint[1] == seg.base_offset:
            position = hint[2]
        else:
            if seg.base_offset != st["active_base_offset"]:
                entries = seg.index_entries_on_disk()[0]
            elif offset > seg.base_offset and st["offset_index_entries"]:   # the index is looked up
                entries = self._published_entries(seg, st)[0]
            else:
                entries = 0
            position = seg.frame_position(offset, entries, end)
        while True:
            # the headers first, then one CRC pass over the frames this
            # process has not checked yet, then the batches
            found: list[tuple[int, int, int, int, int, int]] = []
            try:
                while position < end and (total < max_bytes or not (frames or found)):  # KIP-74: one at least
                    base, count, body, min_ts, max_ts = seg.frame_header(position, end)
                    found.append((position, base, count, core.FRAME_HEADER_SIZE + body, min_ts, max_ts))
                    position += core.FRAME_HEADER_SIZE + body
                    total += core.FRAME_HEADER_SIZE + body
            except CorruptRecordError:
                if check_crc:  # a rotten length before it sent the walk astray: name that frame
                    seg.check_crcs([f[:4] for f in found], end)
                raise
            if check_crc:
                seg.check_crcs([f[:4] for f in found], end)
            # with CRCs off, nothing vouches for a frame's offsets (pyarrow decodes
            # a batch without looking): each is checked once (_structure_checked)
            checked = None if check_crc else _structure_checked(seg)
            passed = []
            for pos, base, count, size, min_ts, max_ts in found:
                batch = seg.frame_batch(pos, size - core.FRAME_HEADER_SIZE, count)
                if checked is not None and pos not in checked and pos not in seg.verified:
                    core.check_frame_batch(batch, self.topic, self.partition, base)
                    passed.append(pos)
                frames.append(Frame(base, count, min_ts, max_ts, size, batch))
            if passed:
                remember_verified(vars(seg)["structure_key"], checked, passed)  # type: ignore[arg-type]
            if total >= max_bytes and frames:
                self._hint = (frames[-1].next_offset, seg.base_offset, position)
                return frames
            nxt = frames[-1].next_offset if frames else offset
            if nxt >= st["next_offset"] or seg.base_offset == st["active_base_offset"]:
                self._hint = (nxt, seg.base_offset, position)
                return frames
            done = seg.base_offset
            seg, end = self._locate(nxt, st)
            if seg.base_offset != nxt or seg.base_offset <= done:
                # the segment after ``done`` should begin where it ended
                if seg.base_offset > done:
                    raise MissingDataError(missing_between(nxt, seg.base_offset))
                later = [b for b in self._known_bases(st) if b > done]
                raise MissingDataError(missing_between(nxt, later[0]) if later else
                                       f"no segment holds offset {nxt} (segment {segment_name(done)}.log ends there)")
            position = seg.header_size

    def offset_for_timestamp(self, timestamp: int) -> int | None:
        """The first offset whose timestamp is at or after ``timestamp`` (ms),
        or None if there is none (Kafka's ListOffsets by time). Each frame
        looked at is CRC-checked (check_crcs; once per view), so a rotten
        timestamp or offset is an error, never a wrong answer.

        Per segment from the log start on (a closed one whose largest
        timestamp is below ``timestamp`` is skipped), one native call
        (core.time_lookup) walks time index, offset index, frame headers and
        the found frame's rows; Python only finishes what it hands back: a
        frame to CRC-check first, a compressed frame, or one with gaps.

        Once the segments a lookup needs are known, the whole lookup is one
        native call (core.TimeView, kept per generation, active segment view
        and log start)."""
        self._raise_if_damaged()
        view = self._time_view
        if view is not None and self._segments.get(view.active_base) is view.segment:
            try:
                hit = view.lookup(self.state, timestamp)
            except core.CorruptFrame:
                hit = -1  # the general path names the segment
            if hit is None or hit >= 0:
                return hit
        st = self._snapshot()
        log_start, active_base = st["log_start_offset"], st["active_base_offset"]
        bases = self._known_bases(st)
        # from the segment holding the log start (or the first after it)
        start_idx = max(bisect.bisect_right(bases, log_start) - 1, 0)
        check = self.check_crcs
        gaps = self._gaps(st)
        search_rows = not gaps and not self.compression
        found: int | None = None
        view = self._time_view_for(st, bases[start_idx:], check) if search_rows else None
        for b in bases[start_idx:]:
            if b > active_base:
                break
            try:
                if b == active_base:
                    seg, end = self._locate(max(b, log_start), st)
                    oe, te = self._published_entries(seg, st)
                else:
                    max_ts = self._segment_max_timestamp(b)
                    if max_ts is not None and max_ts < timestamp:
                        continue
                    seg, end = self._locate(max(b, log_start), st)
                    oe, te = seg.index_entries_on_disk()
            except (FileNotFoundError, OffsetOutOfRangeError):
                continue
            try:
                verified = seg.verified if check else None
                if view is not None and b != active_base:
                    view.resolve(b, seg.log, seg.time_index, te, seg.index, oe, seg.header_size, end, verified,
                                 seg.time_sorted)
                got = core.time_lookup(seg.log, seg.time_index, te, seg.index, oe, seg.base_offset, seg.header_size,
                                       end, timestamp, log_start, verified, seg.time_sorted, search_rows)
                found = self._finish_time_lookup(seg, got, timestamp, end, log_start, verified, search_rows) \
                    if isinstance(got, tuple) else got
            except core.CorruptFrame as exc:
                raise CorruptRecordError(f"segment {seg.log_path}: {exc}; run `arrowlog verify` "
                                         "(see docs/DURABILITY.md)") from None
            if found is not None:
                break
        return found

    def _time_view_for(self, st: dict, bases: list[int], check: bool) -> core.TimeView | None:
        """The TimeView of the published state ``st`` (``bases``: the segments
        from the log start on): the one kept if it still applies, else a new
        one, whose closed segments the lookups resolve as they first search
        them."""
        active_base = st["active_base_offset"]
        try:
            seg = self._segment(active_base, st)
        except FileNotFoundError:
            return None
        view = self._time_view
        if (view is not None and view.segment is seg and view.generation == st["generation"]
                and view.active_base == active_base and view.log_start == st["log_start_offset"]):
            return view
        closed = []
        for b in bases:
            if b < active_base:
                ts = self._segment_max_timestamp(b)
                closed.append((MAX_TIMESTAMP if ts is None else ts, b))
        view = self._time_view = core.TimeView(seg, st["generation"], active_base, st["log_start_offset"], closed,
                                               seg.log, seg.time_index, seg.index, seg.header_size,
                                               seg.verified if check else None, seg.time_sorted)
        return view

    def _finish_time_lookup(self, seg: Segment, got: int | tuple | None, timestamp: int, end: int, log_start: int,
                            verified: set[int] | None, search_rows: bool) -> int | None:
        """What core.time_lookup handed back: a frame to CRC-check before the
        walk goes on from it, or the found frame of a compressed log or one
        whose frames may have gaps (then through its Arrow batch)."""
        while isinstance(got, tuple):
            position, base, count, body, min_ts, max_ts, checked = got
            if not checked:  # check it, then walk on from it
                seg.check_crcs([(position, base, count, core.FRAME_HEADER_SIZE + body)], end)
            else:
                found = self._first_in_batch(seg.frame_batch(position, body, count), timestamp, log_start)
                if found is not None:
                    return found
                log_start = base + count  # every row reaching ``timestamp`` lies below the log start
            got = core.time_lookup(seg.log, None, 0, None, 0, seg.base_offset, seg.header_size, end, timestamp,
                                   log_start, verified, seg.time_sorted, search_rows, position)
        return got

    @staticmethod
    def _first_in_batch(batch: pa.RecordBatch, timestamp: int, log_start: int) -> int | None:
        """The offset of the first row of ``batch`` at or above ``log_start`` whose timestamp is at or
        after ``timestamp``; its rows may have gaps (the offset column says)."""
        ts_col, off_col = batch.column(1), batch.column(0)
        ts = np.frombuffer(ts_col.buffers()[1], dtype=np.int64, count=len(ts_col), offset=ts_col.offset * 8)
        offsets = np.frombuffer(off_col.buffers()[1], dtype=np.int64, count=len(off_col), offset=off_col.offset * 8)
        hits = np.flatnonzero((ts >= timestamp) & (offsets >= log_start))
        return int(offsets[hits[0]]) if len(hits) else None

    def _gaps(self, st: dict) -> bool:
        """Whether frames may hold fewer rows than the offsets they span (the
        cleaner removed some: docs/FORMAT.md); looked up once per generation."""
        if self._gaps_key != st["generation"]:
            self._gaps_possible = self.compacted or os.path.exists(os.path.join(self.directory, HEALTH_FILE))
            self._gaps_key = st["generation"]
        return self._gaps_possible

    def _known_bases(self, st: dict) -> list[int]:
        """Segment base offsets, listed again only when the published state
        says segments were added, deleted or recovered."""
        key = (st["active_base_offset"], st["log_start_offset"], st["generation"])
        if self._bases_key != key:
            self._bases = self._list_bases()
            self._bases_key = key
        return self._bases

    def segment_bases(self) -> list[int]:
        return self._list_bases()

    def size_bytes(self) -> int:
        st = self._snapshot()
        total = 0
        for b in self._list_bases():
            if b == st["active_base_offset"]:
                total += st["active_position"]
            else:
                try:
                    total += os.stat(segment_path(self.directory, b)).st_size
                except FileNotFoundError:
                    pass
        return total
