# Frames: how batches sit in a segment file.
#
# A segment file starts with a segment header (SEGMENT_HEADER_SIZE bytes plus
# the Arrow IPC schema message, padded to 8), then frames back to back. Every
# frame starts on an 8-byte boundary so Arrow can use its buffers in place.
#
# Frame header, 40 bytes, little-endian:
#   offset  size  field
#        0     4  crc32c of bytes [4, 40) of this header and of the body
#        4     4  magic 0x46574C41 ("ALWF")
#        8     8  base_offset (offset of the first record)
#       16     4  body_length (bytes, a multiple of 8)
#       20     4  record_count (> 0; offsets base .. base+count-1)
#       24     8  min_timestamp (ms since the epoch)
#       32     8  max_timestamp
#       40     -  body: one encapsulated Arrow IPC record batch message
#
# The CRC covers everything but itself, so a torn or zero-filled tail, a
# flipped bit or a stale frame from an earlier generation fails the check.

FRAME_HEADER_SIZE = 40
FRAME_MAGIC = 0x46574C41
# A single frame's body may not exceed this: it bounds what recovery or a
# reader will believe from a (possibly corrupt) length field.
MAX_FRAME_BODY = 1 << 30

cdef enum:
    C_FRAME_HEADER = 40
    C_FRAME_MAGIC = 0x46574C41
    C_MAX_FRAME_BODY = 1 << 30


def write_frame(MappedFile m, Py_ssize_t position, int64_t base_offset, uint32_t record_count,
                int64_t min_timestamp, int64_t max_timestamp, body):
    """Copy ``body`` (an IPC message, length a multiple of 8) into the
    mapping at ``position`` behind a frame header; returns the frame's
    total size. The caller holds the append lock and has allocated the
    space; nothing is published here."""
    cdef Py_buffer buf
    PyObject_GetBuffer(body, &buf, PyBUF_SIMPLE)
    cdef uint8_t *dst
    cdef uint32_t crc
    cdef Py_ssize_t n = buf.len
    try:
        if n % 8 != 0:
            raise ValueError("frame body length must be a multiple of 8")
        if n > C_MAX_FRAME_BODY:
            raise ValueError(f"frame body of {n} bytes exceeds the {C_MAX_FRAME_BODY}-byte limit")
        if record_count == 0:
            raise ValueError("a frame holds at least one record")
        m._check(position, C_FRAME_HEADER + n)
        if position % 8 != 0:
            raise ValueError("frames start on 8-byte boundaries")
        dst = m.base + position
        with nogil:
            store_u32(dst + 4, C_FRAME_MAGIC)
            store_i64(dst + 8, base_offset)
            store_u32(dst + 16, <uint32_t>n)
            store_u32(dst + 20, record_count)
            store_i64(dst + 24, min_timestamp)
            store_i64(dst + 32, max_timestamp)
            memcpy(dst + C_FRAME_HEADER, buf.buf, <size_t>n)
            crc = arrowlog_crc32c(0, dst + 4, C_FRAME_HEADER - 4)
            crc = arrowlog_crc32c(crc, dst + C_FRAME_HEADER, <size_t>n)
            store_u32(dst, crc)
    finally:
        PyBuffer_Release(&buf)
    return C_FRAME_HEADER + n


cdef extern from "pwrite_crc.h" nogil:
    int arrowlog_write_body_crc(int fd, const iovec *check, int cnt, long offset, uint32_t crc_in, uint32_t *crc)
    int arrowlog_pwritev_all(int fd, iovec *iov, int cnt, long offset)


def write_frame_pieces(int fd, Py_ssize_t position, int64_t base_offset, uint32_t record_count,
                       int64_t min_timestamp, int64_t max_timestamp, list pieces):
    """Write a frame whose body is the concatenation of ``pieces`` (bytes
    and Arrow buffers, as pyarrow's IPC writer emits them), with no
    intermediate copy: the body goes from the producer's memory to the page
    cache by pwritev, slice by slice right after each slice's CRC (see
    include/pwrite_crc.h); the header follows. Returns the frame's size.
    Nothing is published here."""
    cdef Py_ssize_t npieces = len(pieces)
    cdef Py_buffer *bufs = <Py_buffer *>malloc(sizeof(Py_buffer) * (npieces + 1))
    cdef iovec *check = <iovec *>malloc(sizeof(iovec) * (npieces + 1))
    cdef uint8_t header[C_FRAME_HEADER]
    cdef iovec hiov
    cdef Py_ssize_t i, got = 0, n = 0
    cdef uint32_t crc
    cdef int err = 0
    if bufs == NULL or check == NULL:
        free(bufs)
        free(check)
        raise MemoryError()
    try:
        for i in range(npieces):
            PyObject_GetBuffer(pieces[i], &bufs[i], PyBUF_SIMPLE)
            got += 1
            n += bufs[i].len
        if n % 8 != 0:
            raise ValueError("frame body length must be a multiple of 8")
        if n > C_MAX_FRAME_BODY:
            raise ValueError(f"frame body of {n} bytes exceeds the {C_MAX_FRAME_BODY}-byte limit")
        if record_count == 0:
            raise ValueError("a frame holds at least one record")
        if position % 8 != 0:
            raise ValueError("frames start on 8-byte boundaries")
        with nogil:
            store_u32(header + 4, C_FRAME_MAGIC)
            store_i64(header + 8, base_offset)
            store_u32(header + 16, <uint32_t>n)
            store_u32(header + 20, record_count)
            store_i64(header + 24, min_timestamp)
            store_i64(header + 32, max_timestamp)
            for i in range(npieces):
                check[i].iov_base = bufs[i].buf
                check[i].iov_len = <size_t>bufs[i].len
            err = arrowlog_write_body_crc(fd, check, <int>npieces, position + C_FRAME_HEADER,
                                          arrowlog_crc32c(0, header + 4, C_FRAME_HEADER - 4), &crc)
            if err == 0:
                store_u32(header, crc)
                hiov.iov_base = header
                hiov.iov_len = C_FRAME_HEADER
                err = arrowlog_pwritev_all(fd, &hiov, 1, position)
        if err:
            raise OSError(err, _os.strerror(err))
    finally:
        for i in range(got):
            PyBuffer_Release(&bufs[i])
        free(bufs)
        free(check)
    return C_FRAME_HEADER + n


def read_frame_header(MappedFile m, Py_ssize_t position, Py_ssize_t limit):
    """(base_offset, record_count, body_length, min_ts, max_ts) of the frame
    at ``position`` without checking its CRC (the caller trusts data below
    the published position); raises CorruptFrame if the header cannot be a
    frame that fits before ``limit``."""
    if position < 0 or position + C_FRAME_HEADER > limit or limit > m.capacity:
        raise CorruptFrame(f"no frame header fits at position {position} (limit {limit})")
    cdef const uint8_t *p = m.base + position
    cdef uint32_t body = load_u32(p + 16)
    cdef uint32_t count = load_u32(p + 20)
    if load_u32(p + 4) != C_FRAME_MAGIC or body % 8 != 0 or count == 0 or position + C_FRAME_HEADER + body > limit:
        raise CorruptFrame(f"invalid frame header at position {position}")
    return load_i64(p + 8), count, body, load_i64(p + 24), load_i64(p + 32)


class CorruptFrame(Exception):
    """A frame failed its checks (internal; storage turns it into an
    ArrowlogError or truncates during recovery)."""


cdef inline bint frame_crc_ok(const uint8_t *p, uint32_t body) noexcept nogil:
    """The frame at ``p`` (header and ``body`` bytes) passes its CRC-32C."""
    cdef uint32_t crc = arrowlog_crc32c(0, p + 4, C_FRAME_HEADER - 4)
    return arrowlog_crc32c(crc, p + C_FRAME_HEADER, body) == load_u32(p)


def scan_frames(MappedFile m, Py_ssize_t start, Py_ssize_t limit, int64_t expected_offset,
                bint check_crc=True):
    """Walk frames from ``start`` while they are valid: magic, lengths within
    ``limit``, CRC (when ``check_crc``), and offsets contiguous from
    ``expected_offset``. Returns (end_position, next_offset, frames) where
    frames is a list of (position, base_offset, record_count, max_timestamp,
    frame_size). Stops at the first invalid frame: everything after it is a
    torn tail. Never allocates from a length field."""
    cdef Py_ssize_t pos = start
    cdef const uint8_t *p
    cdef uint32_t body, count
    cdef int64_t base
    cdef bint ok
    frames = []
    if limit > m.capacity:
        limit = m.capacity
    while pos + C_FRAME_HEADER <= limit:
        p = m.base + pos
        body = load_u32(p + 16)
        count = load_u32(p + 20)
        base = load_i64(p + 8)
        if (load_u32(p + 4) != C_FRAME_MAGIC or body % 8 != 0 or body > C_MAX_FRAME_BODY or count == 0
                or pos + C_FRAME_HEADER + <Py_ssize_t>body > limit or base != expected_offset):
            break
        if check_crc:
            with nogil:
                ok = frame_crc_ok(p, body)
            if not ok:
                break
        frames.append((pos, base, count, load_i64(p + 32), C_FRAME_HEADER + body))
        expected_offset = base + count
        pos += C_FRAME_HEADER + body
    return pos, expected_offset, frames


def check_frame_crc(MappedFile m, Py_ssize_t position, Py_ssize_t limit):
    """True when the frame at ``position`` passes its CRC (``verify``)."""
    base, count, body, _, _ = read_frame_header(m, position, limit)
    cdef bint ok
    cdef const uint8_t *p = m.base + position
    cdef uint32_t n = body
    with nogil:
        ok = frame_crc_ok(p, n)
    return ok


def check_frame_crcs(MappedFile m, const int64_t[::1] positions, Py_ssize_t limit):
    """Check the CRC-32C of the frames at ``positions`` (int64) in one pass
    with the GIL released, so two threads can check two halves of a read
    at once. Returns the index of the first frame that fails (or whose
    header or body does not fit before ``limit``), or -1 when all pass."""
    cdef Py_ssize_t i, pos, bad = -1, n = positions.shape[0]
    cdef const uint8_t *p
    cdef uint32_t body
    if limit > m.capacity:
        limit = m.capacity
    with nogil:
        for i in range(n):
            pos = <Py_ssize_t>positions[i]
            if pos < 0 or pos + C_FRAME_HEADER > limit:
                bad = i
                break
            p = m.base + pos
            body = load_u32(p + 16)
            if body > C_MAX_FRAME_BODY or pos + C_FRAME_HEADER + <Py_ssize_t>body > limit:
                bad = i
                break
            if not frame_crc_ok(p, body):
                bad = i
                break
    return bad


def max_entry_length(const int32_t[::1] offsets):
    """The largest ``offsets[i + 1] - offsets[i]``: the longest entry of a
    binary column given its int32 offsets (0 for fewer than two offsets).
    produce_batch()'s size check: numpy's diff would allocate an array of
    lengths, 4 MB of fresh pages (a thousand page faults) per million
    records in a new process; this reads the offsets once and allocates
    nothing."""
    cdef Py_ssize_t n = offsets.shape[0]
    if n < 2:
        return 0
    cdef int32_t best
    with nogil:
        best = _max_gap(&offsets[0], n)
    return best


cdef int32_t _max_gap(const int32_t *o, Py_ssize_t n) noexcept nogil:
    # eight independent maxima the compiler keeps in one vector register
    # (0.19 ms per million offsets; one running maximum is not vectorised: 0.34)
    cdef int32_t lanes[8]
    cdef int32_t best = 0, d
    cdef Py_ssize_t i = 0
    cdef int j
    for j in range(8):
        lanes[j] = 0
    while i + 8 < n:
        for j in range(8):
            d = o[i + j + 1] - o[i + j]
            lanes[j] = d if d > lanes[j] else lanes[j]
        i += 8
    for j in range(8):
        best = lanes[j] if lanes[j] > best else best
    while i + 1 < n:
        d = o[i + 1] - o[i]
        best = d if d > best else best
        i += 1
    return best
