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


def frame_first_row_at_or_after(
    MappedFile m, Py_ssize_t position, Py_ssize_t limit, int64_t timestamp, int sorted_hint=-1
):
    """(row, sorted) for the uncompressed frame at ``position``: the row of
    the first record with timestamp >= ``timestamp`` (or -1), and whether the
    frame's timestamps are non-decreasing. With ``sorted_hint`` 1 (learnt
    from an earlier call) this is a binary search; otherwise one linear pass
    that also finds out. The body is an IPC message whose buffers start after
    its metadata; the `offset` column (never null: an empty validity buffer,
    then 8 bytes a row) comes first, so the timestamps follow at 8 * rows."""
    base, count, body, min_ts, max_ts = read_frame_header(m, position, limit)
    cdef const uint8_t *p = m.base + position + C_FRAME_HEADER
    cdef int64_t meta = <int32_t>load_u32(p + 4)
    cdef Py_ssize_t n = count
    if load_u32(p) != 0xFFFFFFFF or meta <= 0 or 8 + meta + 16 * n > <int64_t>body:
        raise CorruptFrame(f"frame at {position} is not an uncompressed record batch")
    cdef const uint8_t *ts = p + 8 + meta + 8 * n
    cdef Py_ssize_t i, lo, hi, mid, found = -1
    cdef int64_t prev, cur
    cdef bint is_sorted = True
    if sorted_hint == 1:
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) >> 1
            if load_i64(ts + 8 * mid) >= timestamp:
                hi = mid
            else:
                lo = mid + 1
        return (lo if lo < n else -1), True
    prev = load_i64(ts)
    for i in range(n):
        cur = load_i64(ts + 8 * i)
        if cur < prev:
            is_sorted = False
        prev = cur
        if cur >= timestamp:
            found = i
            break
    if found >= 0 and is_sorted:
        # sortedness of the rest decides whether later lookups may bisect
        for i in range(found + 1, n):
            cur = load_i64(ts + 8 * i)
            if cur < prev:
                is_sorted = False
                break
            prev = cur
    return found, is_sorted
