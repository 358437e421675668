# produce_batch's frames, written without pyarrow's IPC writer.
#
# A bulk frame holds the caller's key and value arrays (binary), a timestamp
# column (the caller's int64 buffer, or one timestamp for every record) and
# no headers. Its IPC message is the one pyarrow's writer makes of the
# envelope batch (appending.py, _batch_pieces and _serialize), byte for byte:
# the flatbuffer is pyarrow's own, captured once from a serialised sample
# (bulk_template) and patched with this frame's lengths and null counts; the
# body follows pyarrow's rules for a sliced array's buffers:
#
#   validity   none without a null; else, at array offset 0 and a bitmap of
#              at most pad64(ceil(n / 8)) bytes, the bitmap as it is; else a
#              copy of the n bits, trailing bits zero, ceil(n / 8) bytes
#   offsets    n + 1 int32, rebased to start at 0
#   data       at array offset 0 and pad64(total) >= its size, the whole
#              buffer; else min(pad64(total), size - first offset) bytes
#              from the first offset (up to 63 bytes past the last entry)
#   int64      at array offset 0 and a buffer of at most pad64(8n) bytes,
#              the whole buffer; else n values from the array's offset
#
# Every buffer is padded with zeros to 8 bytes. Anything else (headers, a
# value schema, an offset layout these rules do not cover) goes through
# pyarrow's writer: bulk_frame() returns None.
#
# Nothing is copied in user space but what must be generated (the offset
# column, a constant timestamp column, rebased offsets, shifted bitmaps):
# those are made a slice at a time in one scratch buffer, and the body is
# checksummed and written slice by slice as include/pwrite_crc.h does.

cdef extern from "pwrite_crc.h" nogil:
    Py_ssize_t ARROWLOG_CRC_STEP

cdef enum:
    BK_MEM = 0        # bytes at src
    BK_SEQ64 = 1      # int64 base_offset + i (the offset column)
    BK_CONST64 = 2    # int64 value, n times
    BK_REBASE32 = 3   # int32 src[i] - src[0]
    BK_BITS = 4       # count bits of src from bit value, trailing bits zero
    BK_HEAD_MAX = 1024  # frame header + IPC prefix + flatbuffer, at most

cdef struct BulkStream:
    int fd
    long offset
    iovec iov[64]
    int cnt
    Py_ssize_t pending
    uint8_t *scratch
    Py_ssize_t used
    uint32_t crc
    int err

cdef uint8_t _BK_ZEROS[8]
memset(_BK_ZEROS, 0, 8)

# (template bytes, bodyLength, RecordBatch length, nodes, buffers): positions
# in the message (from its 0xFFFFFFFF prefix), made by bulk_template()
cdef object _bk_template = None


cdef inline Py_ssize_t pad64(Py_ssize_t n) noexcept nogil:
    return (n + 63) & ~(<Py_ssize_t>63)


cdef inline const uint8_t *_bk_address(object buf):
    return <const uint8_t *><uintptr_t>buf.address


def bulk_template(message):
    """Take ``message`` (pyarrow's IPC message of an envelope batch) as the
    flatbuffer every bulk frame patches: returns the positions of its
    bodyLength, length, nodes and buffers fields, found by walking the
    flatbuffer. Raises ValueError when it is not the layout bulk frames need."""
    global _bk_template
    cdef bytes m = bytes(message)
    if len(m) < 16 or m[:4] != b"\xff\xff\xff\xff":
        raise ValueError("not an IPC message with a continuation prefix")
    meta = int.from_bytes(m[4:8], "little")
    fb = m[8:8 + meta]

    def u32(p):
        return int.from_bytes(fb[p:p + 4], "little")

    def field(table, i):
        vt = table - int.from_bytes(fb[table:table + 4], "little", signed=True)
        size = int.from_bytes(fb[vt:vt + 2], "little")
        if 4 + 2 * i + 2 > size:
            return 0
        rel = int.from_bytes(fb[vt + 4 + 2 * i:vt + 6 + 2 * i], "little")
        return table + rel if rel else 0

    root = u32(0)
    header = field(root, 2)
    batch = header + u32(header)
    body, length, nodes, buffers = field(root, 3), field(batch, 0), field(batch, 1), field(batch, 2)
    if not (body and length and nodes and buffers) or field(batch, 3) or field(batch, 4) or field(root, 4):
        raise ValueError("the envelope's IPC message has fields bulk frames do not write")
    nodes += u32(nodes)
    buffers += u32(buffers)
    if u32(nodes) != ENV_NODES or u32(buffers) != ENV_BUFFERS or (8 + meta) % 8 or 48 + meta > BK_HEAD_MAX:
        raise ValueError("the envelope's IPC message is not 8 nodes and 19 buffers")
    _bk_template = (m[:8 + meta], 8 + body, 8 + length, 8 + nodes + 4, 8 + buffers + 4)
    return _bk_template[1:]


cdef int _bk_binary(BulkPart *p, object arr, Py_ssize_t n, int64_t *nulls) except -2:
    """Parts 0-2 (validity, offsets, data) of a binary column; -1 when the
    rules above do not cover it."""
    bufs = arr.buffers()
    cdef Py_ssize_t off = arr.offset, nn = arr.null_count, bitmap = (n + 7) >> 3, size
    cdef const uint8_t *o
    cdef int32_t o0, on
    nulls[0] = nn
    p[0].kind, p[0].src, p[0].length = BK_MEM, NULL, 0
    if nn:
        if bufs[0] is None:
            return -1
        size = bufs[0].size
        if off != 0 or pad64(bitmap) < size:
            p[0].kind, p[0].src, p[0].length, p[0].value, p[0].count = BK_BITS, _bk_address(bufs[0]), bitmap, off, n
            if size < (off + n + 7) >> 3:
                return -1
        elif size < bitmap:
            return -1
        else:
            p[0].src, p[0].length = _bk_address(bufs[0]), size
    if bufs[1] is None or bufs[1].size < (off + n + 1) * 4:
        return -1
    o = _bk_address(bufs[1]) + off * 4
    memcpy(&o0, o, 4)
    memcpy(&on, o + 4 * n, 4)
    p[1].kind, p[1].src, p[1].length = (BK_MEM if o0 == 0 else BK_REBASE32), o, (n + 1) * 4
    size = 0 if bufs[2] is None else bufs[2].size
    if o0 < 0 or on < o0 or on > size:
        return -1
    p[2].kind, p[2].src = BK_MEM, NULL
    if bufs[2] is not None:   # (not a conditional expression: its temporary would drop the const)
        p[2].src = _bk_address(bufs[2])
    if off != 0 or pad64(on - o0) < size:
        p[2].src, p[2].length = p[2].src + o0, min(pad64(on - o0), size - o0)
    elif o0 != 0:
        return -1
    else:
        p[2].length = size
    return 0


cdef class BulkFrame:
    """One frame of produce_batch, as bulk_frame() describes it: the
    accumulator's protocol (count, frame_size, write_frame) for
    PartitionLog._append_frame; its attributes are declared in core.pxd."""

    def frame_size(self):
        return C_FRAME_HEADER + self.message

    def write_frame(self, int fd, Py_ssize_t position, int64_t base_offset):
        """Store the frame at ``position`` of ``fd`` (offsets from
        ``base_offset``): the body slice by slice, then the header. Returns
        its size; nothing is published here."""
        cdef bytes template = _bk_template[0]
        cdef Py_ssize_t at_body = _bk_template[1], at_len = _bk_template[2]
        cdef Py_ssize_t at_nodes = _bk_template[3], at_bufs = _bk_template[4]
        cdef Py_ssize_t meta = len(template), i, at = 0
        cdef uint8_t head[BK_HEAD_MAX]
        cdef uint8_t *msg = head + C_FRAME_HEADER
        cdef BulkStream s
        cdef iovec hiov
        cdef int64_t lengths[ENV_NODES]
        if position % 8 != 0:
            raise ValueError("frames start on 8-byte boundaries")
        if self.message > C_MAX_FRAME_BODY:
            raise ValueError(f"frame body of {self.message} bytes exceeds the {C_MAX_FRAME_BODY}-byte limit")
        memcpy(msg, <const char *>template, meta)
        for i in range(ENV_NODES):
            lengths[i] = self.count if i < 5 else 0
        for i in range(ENV_BUFFERS):  # the scratch holds at most a slice of the generated parts
            if self.parts[i].kind != BK_MEM:
                at += self.parts[i].length
        s.scratch = <uint8_t *>malloc(<size_t>(min(at, ARROWLOG_CRC_STEP) + 8))
        at = 0
        if s.scratch == NULL:
            raise MemoryError()
        self.parts[1].value = base_offset
        try:
            with nogil:
                store_i64(msg + at_body, self.message - meta)
                store_i64(msg + at_len, self.count)
                for i in range(ENV_NODES):
                    store_i64(msg + at_nodes + 16 * i, lengths[i])
                    store_i64(msg + at_nodes + 16 * i + 8, self.nulls[i])
                for i in range(ENV_BUFFERS):
                    store_i64(msg + at_bufs + 16 * i, at)
                    store_i64(msg + at_bufs + 16 * i + 8, self.parts[i].length)
                    at += pad8(self.parts[i].length)
                store_u32(head + 4, C_FRAME_MAGIC)
                store_i64(head + 8, base_offset)
                store_u32(head + 16, <uint32_t>self.message)
                store_u32(head + 20, <uint32_t>self.count)
                store_i64(head + 24, self.min_ts)
                store_i64(head + 32, self.max_ts)
                s.fd, s.offset, s.cnt, s.pending, s.used, s.err = fd, position + C_FRAME_HEADER, 0, 0, 0, 0
                s.crc = arrowlog_crc32c(0, head + 4, C_FRAME_HEADER - 4)
                if _bk_put(&s, msg, meta) == 0:
                    for i in range(ENV_BUFFERS):
                        if (_bk_part(&s, &self.parts[i])
                                or _bk_put(&s, _BK_ZEROS, pad8(self.parts[i].length) - self.parts[i].length)):
                            break
                    else:
                        if _bk_flush(&s) == 0:
                            store_u32(head, s.crc)
                            hiov.iov_base = head
                            hiov.iov_len = C_FRAME_HEADER
                            s.err = arrowlog_pwritev_all(fd, &hiov, 1, position)
            if s.err:
                raise OSError(s.err, _os.strerror(s.err))
        finally:
            free(s.scratch)
        return C_FRAME_HEADER + self.message


cdef int _bk_flush(BulkStream *s) noexcept nogil:
    if s.cnt:
        s.err = arrowlog_pwritev_all(s.fd, s.iov, s.cnt, s.offset)
        if s.err:
            return -1
        s.offset += s.pending
    s.cnt = 0
    s.pending = 0
    s.used = 0
    return 0


cdef inline int _bk_add(BulkStream *s, const uint8_t *p, Py_ssize_t n) noexcept nogil:
    """Checksum ``n`` bytes at ``p`` and gather them into the slice."""
    s.crc = arrowlog_crc32c(s.crc, p, <size_t>n)
    s.iov[s.cnt].iov_base = <void *>p
    s.iov[s.cnt].iov_len = <size_t>n
    s.cnt += 1
    s.pending += n
    if s.pending == ARROWLOG_CRC_STEP or s.cnt == 64:
        return _bk_flush(s)
    return 0


cdef int _bk_put(BulkStream *s, const uint8_t *p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t step
    while n > 0:
        step = min(n, ARROWLOG_CRC_STEP - s.pending)
        if _bk_add(s, p, step):
            return -1
        p += step
        n -= step
    return 0


cdef void _bk_fill(const BulkPart *part, Py_ssize_t start, Py_ssize_t n, uint8_t *out) noexcept nogil:
    """Bytes [start, start + n) of a generated part (start a multiple of 8,
    or of 4 for int32 offsets, as the slices cut them)."""
    cdef Py_ssize_t i, q, last
    cdef int64_t b, v
    cdef int32_t o0, x
    cdef int sh
    cdef uint8_t byte
    if part.kind == BK_SEQ64:
        for i in range(n // 8):
            store_i64(out + 8 * i, part.value + start // 8 + i)
    elif part.kind == BK_CONST64:
        for i in range(n // 8):
            store_i64(out + 8 * i, part.value)
    elif part.kind == BK_REBASE32:
        memcpy(&o0, part.src, 4)
        for i in range(n // 4):
            memcpy(&x, part.src + start + 4 * i, 4)
            x -= o0
            memcpy(out + 4 * i, &x, 4)
    else:  # BK_BITS
        last = (part.value + part.count - 1) >> 3
        for i in range(n):
            b = part.value + 8 * (start + i)
            q = b >> 3
            sh = b & 7
            byte = part.src[q] >> sh
            if sh and q + 1 <= last:
                byte |= <uint8_t>(part.src[q + 1] << (8 - sh))
            if start + i == part.length - 1 and part.count % 8:
                byte &= <uint8_t>((1 << (part.count % 8)) - 1)
            out[i] = byte


cdef int _bk_part(BulkStream *s, const BulkPart *part) noexcept nogil:
    cdef Py_ssize_t done = 0, step
    if part.kind == BK_MEM:
        return _bk_put(s, part.src, part.length)
    while done < part.length:
        step = min(part.length - done, ARROWLOG_CRC_STEP - s.pending)
        _bk_fill(part, done, step, s.scratch + s.used)
        s.used += step
        if _bk_add(s, s.scratch + s.used - step, step):
            return -1
        done += step
    return 0


def bulk_frame(Py_ssize_t n, int64_t min_ts, int64_t max_ts, timestamps, keys, values, headers,
               Py_ssize_t timestamp_rows=0):
    """The frame of ``n`` records (n >= 1) with ``keys`` and ``values``
    (pa.BinaryArray), ``timestamps`` (an int: every record's, stored as the
    first n of a column of ``timestamp_rows`` (at least n) such values; or a
    timestamp array without nulls) and ``headers`` (an all-null column, as
    PartitionLog._nulls makes it), or None when pyarrow's writer must write
    it (the rules above do not cover the arrays, or bulk_template was not
    given a layout)."""
    if _bk_template is None or n < 1 or n > 0xFFFFFFFF:  # (a frame's record count is a u32)
        return None
    cdef BulkFrame f = BulkFrame.__new__(BulkFrame)
    cdef Py_ssize_t i, at, body = 0
    f.count, f.min_ts, f.max_ts = n, min_ts, max_ts
    f.keep = (timestamps, keys, values, headers)
    memset(f.parts, 0, sizeof(f.parts))
    memset(f.nulls, 0, sizeof(f.nulls))
    f.parts[1].kind, f.parts[1].length = BK_SEQ64, n * 8
    if isinstance(timestamps, int):
        # as the first timestamp_rows of a column of that one value
        at = max(timestamp_rows, n)
        f.parts[3].kind, f.parts[3].value = BK_CONST64, timestamps
        f.parts[3].length = n * 8 if pad64(n * 8) < at * 8 else at * 8
    else:
        if timestamps.null_count or len(timestamps) != n:
            return None
        tb = timestamps.buffers()[1]
        at = timestamps.offset
        if tb is None or tb.size < (at + n) * 8:
            return None
        if at != 0 or pad64(n * 8) < tb.size:
            f.parts[3].src, f.parts[3].length = _bk_address(tb) + at * 8, n * 8
        else:
            f.parts[3].src, f.parts[3].length = _bk_address(tb), tb.size
    if len(keys) != n or len(values) != n or len(headers) != n or headers.null_count != n:
        return None
    if _bk_binary(&f.parts[4], keys, n, &f.nulls[2]) or _bk_binary(&f.parts[7], values, n, &f.nulls[3]):
        return None
    # headers: all null; the list's validity and offsets, its empty struct
    # child: no validity, keys and values of 0 entries (one 0 offset each)
    hb = headers.buffers()
    if headers.offset != 0 or len(hb) < 2 or hb[0] is None or hb[1] is None or len(headers.values) != 0:
        return None
    if hb[0].size < (n + 7) >> 3 or hb[1].size < (n + 1) * 4:
        return None
    f.nulls[4] = n
    if pad64((n + 7) >> 3) < hb[0].size:
        f.parts[10].kind, f.parts[10].src = BK_BITS, _bk_address(hb[0])
        f.parts[10].length, f.parts[10].count = (n + 7) >> 3, n
    else:
        f.parts[10].src, f.parts[10].length = _bk_address(hb[0]), hb[0].size
    f.parts[11].src, f.parts[11].length = _bk_address(hb[1]), (n + 1) * 4
    f.parts[11].kind = BK_MEM if (<const int32_t *>f.parts[11].src)[0] == 0 else BK_REBASE32
    f.parts[14].src, f.parts[14].length = _BK_ZEROS, 4
    f.parts[17].src, f.parts[17].length = _BK_ZEROS, 4
    for i in range(ENV_BUFFERS):
        body += pad8(f.parts[i].length)
    f.message = len(_bk_template[0]) + body
    return f
