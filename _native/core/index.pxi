# Sparse indexes, searched in place in their mapping.
#
# Offset index (`.index`): 8-byte entries (relative_offset u32, position u32),
# one for the first frame after every `index.interval.bytes` of log (4 KiB by
# default, as Kafka), ascending in both fields.
# Time index (`.timeindex`): 12-byte entries (timestamp i64, relative_offset
# u32): the largest timestamp seen in the segment so far and the frame where
# it was reached, written when it grows; ascending in both fields.
# Relative offsets are u32 and positions u32, which is why a segment rolls
# before 2^31 offsets or MAX_SEGMENT_BYTES.

OFFSET_ENTRY_SIZE = 8
TIME_ENTRY_SIZE = 12


def offset_index_lookup(MappedFile m, Py_ssize_t entries, uint32_t relative_offset):
    """(relative_offset, position) of the last entry at or below
    ``relative_offset``, or None if every entry is above it."""
    if entries * 8 > m.capacity:
        raise IndexError("offset index entry count exceeds its mapping")
    cdef const uint8_t *p = m.base
    cdef Py_ssize_t lo = 0, hi = entries - 1, mid, found = -1
    while lo <= hi:
        mid = (lo + hi) >> 1
        if load_u32(p + mid * 8) <= relative_offset:
            found = mid
            lo = mid + 1
        else:
            hi = mid - 1
    if found < 0:
        return None
    return load_u32(p + found * 8), load_u32(p + found * 8 + 4)


def time_index_lookup(MappedFile m, Py_ssize_t entries, int64_t timestamp):
    """Relative offset of the last entry whose timestamp is below
    ``timestamp`` (a scan for the first record at or after ``timestamp``
    can start there), or None when no entry is below it."""
    if entries * 12 > m.capacity:
        raise IndexError("time index entry count exceeds its mapping")
    cdef const uint8_t *p = m.base
    cdef Py_ssize_t lo = 0, hi = entries - 1, mid, found = -1
    while lo <= hi:
        mid = (lo + hi) >> 1
        if load_i64(p + mid * 12) < timestamp:
            found = mid
            lo = mid + 1
        else:
            hi = mid - 1
    if found < 0:
        return None
    return load_u32(p + found * 12 + 8)


def index_is_sane(MappedFile m, Py_ssize_t entries, Py_ssize_t entry_size, Py_ssize_t segment_size):
    """Kafka's sanityCheck and a little more: entries ascend and positions
    lie inside the segment. A failing index is rebuilt from the log."""
    if entries * entry_size > m.capacity:
        return False
    cdef const uint8_t *p = m.base
    cdef Py_ssize_t i
    cdef uint32_t prev_rel = 0, rel, pos, prev_pos = 0
    cdef int64_t prev_ts = -(1LL << 62), ts
    for i in range(entries):
        if entry_size == 8:
            rel = load_u32(p + i * 8)
            pos = load_u32(p + i * 8 + 4)
            if (i > 0 and (rel <= prev_rel or pos <= prev_pos)) or pos >= segment_size:
                return False
            prev_pos = pos
        else:
            ts = load_i64(p + i * 12)
            rel = load_u32(p + i * 12 + 8)
            if i > 0 and (rel < prev_rel or ts <= prev_ts):
                return False
            prev_ts = ts
        prev_rel = rel
    return True


def write_offset_entry(MappedFile m, Py_ssize_t slot, uint32_t relative_offset, uint32_t position):
    m._check(slot * 8, 8)
    store_u32(m.base + slot * 8, relative_offset)
    store_u32(m.base + slot * 8 + 4, position)


def write_time_entry(MappedFile m, Py_ssize_t slot, int64_t timestamp, uint32_t relative_offset):
    m._check(slot * 12, 12)
    store_i64(m.base + slot * 12, timestamp)
    store_u32(m.base + slot * 12 + 8, relative_offset)


cdef const uint8_t *frame_timestamps(MappedFile m, Py_ssize_t position, Py_ssize_t n,
                                     uint32_t body) except NULL:
    """The timestamp column of the uncompressed frame at ``position`` holding
    ``n`` rows. The body is an IPC message whose buffers start after its
    metadata; the `offset` column (never null: an empty validity buffer, then
    8 bytes a row) comes first, so the timestamps follow at 8 * rows."""
    cdef const uint8_t *p = m.base + position + C_FRAME_HEADER
    cdef int64_t meta = <int32_t>load_u32(p + 4)
    if load_u32(p) != 0xFFFFFFFF or meta <= 0 or 8 + meta + 16 * <int64_t>n > <int64_t>body:
        raise CorruptFrame(f"frame at {position} is not an uncompressed record batch")
    return p + 8 + meta + 8 * n


cdef Py_ssize_t first_at_or_after(const uint8_t *ts, Py_ssize_t n, Py_ssize_t start, int64_t timestamp,
                                  int sorted_hint, bint *is_sorted) noexcept nogil:
    """The first of ``n`` timestamps at ``ts``, from row ``start`` on, that is
    >= ``timestamp`` (-1 if none). ``sorted_hint`` 1 (learnt before): a
    binary search; otherwise one linear pass that also finds out whether all
    ``n`` are non-decreasing (it stops early once they are not)."""
    cdef Py_ssize_t i, lo = start, hi = n, mid, found = -1
    cdef int64_t prev, cur
    is_sorted[0] = True
    if sorted_hint == 1:
        while lo < hi:
            mid = (lo + hi) >> 1
            if load_i64(ts + 8 * mid) >= timestamp:
                hi = mid
            else:
                lo = mid + 1
        return lo if lo < n else -1
    if n == 0:
        return -1
    prev = load_i64(ts)
    for i in range(n):
        cur = load_i64(ts + 8 * i)
        if cur < prev:
            is_sorted[0] = False
            if found >= 0:
                break
        prev = cur
        if found < 0 and i >= start and cur >= timestamp:
            found = i
            if not is_sorted[0]:
                break
    return found


def frame_first_row_at_or_after(
    MappedFile m, Py_ssize_t position, Py_ssize_t limit, int64_t timestamp, int sorted_hint=-1
):
    """(row, sorted) for the uncompressed frame at ``position``: the row of
    the first record with timestamp >= ``timestamp`` (or -1), and whether the
    frame's timestamps are non-decreasing. With ``sorted_hint`` 1 (learnt
    from an earlier call) this is a binary search; otherwise one linear pass
    that also finds out."""
    base, count, body, min_ts, max_ts = read_frame_header(m, position, limit)
    cdef const uint8_t *ts = frame_timestamps(m, position, count, body)
    cdef bint is_sorted
    cdef Py_ssize_t found = first_at_or_after(ts, count, 0, timestamp, sorted_hint, &is_sorted)
    return found, is_sorted


cdef inline bint frame_header_ok(MappedFile m, Py_ssize_t position, Py_ssize_t end) noexcept:
    """What read_frame_header checks, without building its tuple."""
    if position < 0 or position + C_FRAME_HEADER > end:
        return False
    cdef const uint8_t *p = m.base + position
    cdef uint32_t body = load_u32(p + 16)
    return (load_u32(p + 4) == C_FRAME_MAGIC and body % 8 == 0 and load_u32(p + 20) != 0
            and position + C_FRAME_HEADER + <int64_t>body <= end)


cdef Py_ssize_t time_scan_position(MappedFile log, MappedFile time_index, Py_ssize_t time_entries,
                                   MappedFile offset_index, Py_ssize_t offset_entries, int64_t base_offset,
                                   Py_ssize_t header_size, Py_ssize_t end, int64_t timestamp) except -2:
    """A frame position from which a forward scan finds the first record at or
    after ``timestamp``: the frame holding the last time entry below it, found
    through the offset index (Segment.frame_position's rules: an entry that
    points at no frame, or past the wanted offset, is not trusted: the scan
    then starts at the segment's first frame). -1: no frame header fits at the
    first frame's position."""
    cdef const uint8_t *p
    cdef Py_ssize_t lo, hi, mid, found = -1, position = header_size, slot
    cdef uint32_t rel = 0
    cdef int64_t offset, fbase
    if time_index is None or time_entries <= 0:
        return header_size
    if time_entries * 12 > time_index.capacity:
        raise IndexError("time index entry count exceeds its mapping")
    p = time_index.base
    lo, hi = 0, time_entries - 1
    while lo <= hi:
        mid = (lo + hi) >> 1
        if load_i64(p + mid * 12) < timestamp:
            found = mid
            lo = mid + 1
        else:
            hi = mid - 1
    if found < 0:
        return header_size
    rel = load_u32(p + found * 12 + 8)
    offset = base_offset + rel
    if rel > 0 and offset_index is not None and offset_entries > 0:
        if offset_entries * 8 > offset_index.capacity:
            raise IndexError("offset index entry count exceeds its mapping")
        p = offset_index.base
        lo, hi, slot = 0, offset_entries - 1, -1
        while lo <= hi:
            mid = (lo + hi) >> 1
            if load_u32(p + mid * 8) <= rel:
                slot = mid
                lo = mid + 1
            else:
                hi = mid - 1
        if slot >= 0 and header_size <= <Py_ssize_t>load_u32(p + slot * 8 + 4) < end:
            position = load_u32(p + slot * 8 + 4)
    while position < end:
        if not frame_header_ok(log, position, end):
            if position != header_size:  # a bad index entry: scan from the start
                position = header_size
                continue
            return -1
        p = log.base + position
        fbase = load_i64(p + 8)
        if fbase + load_u32(p + 20) > offset:
            if fbase > offset and position != header_size:
                position = header_size  # the index overshot: rescan
                continue
            return position
        position += C_FRAME_HEADER + load_u32(p + 16)
    return end


def time_lookup(MappedFile log, MappedFile time_index, Py_ssize_t time_entries, MappedFile offset_index,
                Py_ssize_t offset_entries, int64_t base_offset, Py_ssize_t header_size, Py_ssize_t end,
                int64_t timestamp, int64_t log_start, set verified, dict sorted_frames, bint search_rows,
                Py_ssize_t resume=-1):
    """One segment's part of a lookup by time (ListOffsets): the first offset
    at or above ``log_start`` whose record's timestamp is >= ``timestamp``,
    in one call: time index, offset index, then frame headers forward from
    there (or from ``resume``, a frame the caller has just CRC-checked) to the
    first frame whose largest timestamp reaches ``timestamp``.

    Returns the offset; None when no frame of the segment (below ``end``)
    reaches it; or, for the caller to finish, the frame's header as
    (position, base, count, body, min_ts, max_ts, crc_checked): a frame whose
    position is not in ``verified`` (its CRC-32C is not checked yet in this
    process; None: checks are off) is handed back before its header is
    trusted, and so is the found frame when ``search_rows`` is false
    (compressed, or rows may have gaps).

    Inside an uncompressed frame the rows are searched here: a binary search
    when ``sorted_frames`` (position -> CRC << 1 | sorted, of this segment)
    says an earlier pass found its timestamps non-decreasing, else one
    linear pass, whose finding is stored there."""
    return search_segment(log, time_index, time_entries, offset_index, offset_entries, base_offset, header_size,
                          end, timestamp, log_start, verified, sorted_frames, search_rows, resume)


cdef object search_segment(MappedFile log, MappedFile time_index, Py_ssize_t time_entries,
                           MappedFile offset_index, Py_ssize_t offset_entries, int64_t base_offset,
                           Py_ssize_t header_size, Py_ssize_t end, int64_t timestamp, int64_t log_start,
                           set verified, dict sorted_frames, bint search_rows, Py_ssize_t resume):
    """time_lookup, callable from C without building its arguments."""
    if log is None:
        raise ValueError("segment is closed")
    if end > log.capacity:
        raise CorruptFrame(f"segment end {end} lies beyond its mapping ({log.capacity} bytes)")
    cdef Py_ssize_t position = resume
    if position < 0:
        position = time_scan_position(log, time_index, time_entries, offset_index, offset_entries,
                                      base_offset, header_size, end, timestamp)
        if position < 0:
            raise CorruptFrame(f"invalid frame header at position {header_size}")
    cdef const uint8_t *p
    cdef const uint8_t *ts
    cdef int64_t fbase, min_ts, max_ts
    cdef uint32_t count, body, crc
    cdef Py_ssize_t row
    cdef int hint
    cdef bint is_sorted
    while position < end:
        if not frame_header_ok(log, position, end):
            raise CorruptFrame(f"invalid frame header at position {position}")
        p = log.base + position
        fbase = load_i64(p + 8)
        body = load_u32(p + 16)
        count = load_u32(p + 20)
        min_ts = load_i64(p + 24)
        max_ts = load_i64(p + 32)
        if verified is not None and position != resume and position not in verified:
            return position, fbase, count, body, min_ts, max_ts, False
        if max_ts >= timestamp and fbase + count > log_start:
            if not search_rows:
                return position, fbase, count, body, min_ts, max_ts, True
            if min_ts >= timestamp:
                return max(fbase, log_start)
            ts = frame_timestamps(log, position, count, body)
            crc = load_u32(p)
            hint = -1
            known = sorted_frames.get(position)
            if known is not None and (<uint64_t>known) >> 1 == crc:
                hint = (<uint64_t>known) & 1
            row = first_at_or_after(ts, count, max(log_start - fbase, 0), timestamp, hint, &is_sorted)
            if hint < 0:
                if len(sorted_frames) > 65536:
                    sorted_frames.clear()
                sorted_frames[position] = (<uint64_t>crc << 1) | is_sorted
            if row >= 0:
                return fbase + row
            if fbase >= log_start:
                raise CorruptFrame(f"frame at {position}: its header's largest timestamp is in none of its rows")
            # every row that reaches ``timestamp`` lies below the log start: on to the next frame
        position += C_FRAME_HEADER + body
    return None


cdef class TimeView:
    """A partition's lookups by time in one native call, for an uncompressed
    log without gaps, while its published generation, active segment and
    log start stay what they were when the storage layer built it.

    ``closed`` lists the closed segments from the log start on as (largest
    timestamp, base offset), in order; those with a timestamp that may
    reach the target are searched through what ``resolve`` gave for them
    (the segment's mappings, entry counts and end, final once it is closed),
    then the active segment as published now. ``lookup`` reads the published
    state itself (no dict) and says -1 when this view cannot answer: the
    state is torn or moved on (a roll, a recovery, retention), the mapping is
    too short, a segment to search is not resolved yet, or a frame is to be
    CRC-checked first: the caller then takes the general path."""
    # attributes: declared in src/arrowlog/_native/core.pxd

    def __init__(self, segment, int64_t generation, int64_t active_base, int64_t log_start, list closed,
                 MappedFile log, MappedFile time_index, MappedFile offset_index, Py_ssize_t header_size,
                 set verified, dict sorted_frames):
        if log is None:
            raise ValueError("segment is closed")
        self.segment = segment
        self.generation = generation
        self.active_base = active_base
        self.log_start = log_start
        self.closed = [(int(ts), int(base)) for ts, base in closed]
        self.resolved = {}
        self.log = log
        self.time_index = time_index
        self.offset_index = offset_index
        self.header_size = header_size
        self.verified = verified
        self.sorted_frames = sorted_frames

    def resolve(self, int64_t base, MappedFile log, MappedFile time_index, Py_ssize_t time_entries,
                MappedFile offset_index, Py_ssize_t offset_entries, Py_ssize_t header_size, Py_ssize_t end,
                set verified, dict sorted_frames):
        """What a search of the closed segment ``base`` needs (its files' sizes
        read after it closed, so they no longer change)."""
        if log is None:
            raise ValueError("segment is closed")
        if end > log.capacity:
            raise CorruptFrame(f"segment end {end} lies beyond its mapping ({log.capacity} bytes)")
        self.resolved[base] = (log, time_index, time_entries, offset_index, offset_entries, header_size, end,
                               verified, sorted_frames)

    def lookup(self, PartitionState state, int64_t timestamp):
        """What the general path would answer (an offset, or None), or -1."""
        cdef StatePayload p
        cdef int64_t max_ts, base
        if not arrowlog_seq_read(state.seq, &p, state.payload, sizeof(StatePayload)):
            return -1
        if (p.generation != self.generation or p.active_base_offset != self.active_base
                or p.log_start_offset != self.log_start
                or p.active_position > self.log.capacity or p.active_position < self.header_size):
            return -1
        for max_ts, base in self.closed:
            if max_ts < timestamp:
                continue
            seg = self.resolved.get(base)
            if seg is None:
                return -1
            got = search_segment(seg[0], seg[1], seg[2], seg[3], seg[4], base, seg[5], seg[6], timestamp,
                                 self.log_start, seg[7], seg[8], True, -1)
            if got is not None:
                return -1 if type(got) is tuple else got
        got = search_segment(self.log, self.time_index, p.time_index_entries, self.offset_index,
                             p.offset_index_entries, self.active_base, self.header_size, p.active_position,
                             timestamp, self.log_start, self.verified, self.sorted_frames, True, -1)
        return -1 if type(got) is tuple else got
