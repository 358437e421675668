# Produce path: record batches v2 -> Arrow envelope columns.

# the columns are laid out by the one envelope builder, shared with produce()'s accumulator
include "envelope.pxi"

ATTR_CODEC_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20


cdef class DecodedBatch:
    """One record batch of a Produce request: its header and its records as Arrow
    (attributes: src/arrowlog/_native/kafka.pxd)."""

    @property
    def codec(self):
        return self.attributes & ATTR_CODEC_MASK

    @property
    def is_transactional(self):
        return bool(self.attributes & ATTR_TRANSACTIONAL)

    @property
    def is_control(self):
        return bool(self.attributes & ATTR_CONTROL)

    def __repr__(self):
        return (f"DecodedBatch(base_offset={self.base_offset}, record_count={self.record_count}, "
                f"codec={CODEC_NAMES.get(self.codec, self.codec)}, producer_id={self.producer_id}, "
                f"base_sequence={self.base_sequence})")


# The smallest record: length, attributes, timestamp delta, offset delta, key
# length, value length and header count, one byte each.
cdef enum:
    MIN_RECORD_SIZE = 7
    MIN_HEADER_SIZE = 2     # key length 0 and value length -1
# Arrow binary columns address their data with int32 offsets.
cdef int64_t MAX_RECORDS_BLOCK = 0x7FFFFFFF
# Bigger batches are checked and parsed without the GIL, so other threads run meanwhile.
cdef Py_ssize_t NOGIL_BLOCK = 64 * 1024
# A batch whose records carry no headers (the usual case) gets an all-null headers
# column sliced from one cached column of this many rows, not a fresh
# pa.nulls(n, HEADERS_TYPE) per batch (1.1-1.4 µs of CPU and n + 1 offsets for the
# header keys and values each), which storage replaced with its own cached null
# column anyway (PartitionLog._batch_pieces replaces any column whose null_count is n).
cdef Py_ssize_t NULL_HEADERS_ROWS = 1 << 16
cdef object _null_headers_cache = None


cdef object _null_headers_column(Py_ssize_t n):
    """``n`` null header lists: zero validity bits and zero offsets into an empty list of headers."""
    return _env_pa.Array.from_buffers(_ENV_HEADERS_TYPE, n, [_env_pa.py_buffer(bytearray((n + 7) >> 3)),
                                                             _env_pa.py_buffer(bytearray((n + 1) * 4))],
                                      null_count=n, children=[_env_pa.array([], type=_ENV_HEADER_TYPE)])


cdef object _null_headers(Py_ssize_t n):
    """The headers column of ``n`` records without headers: a slice of the cached column
    (a fresh one above NULL_HEADERS_ROWS records, which no Produce from librdkafka reaches)."""
    global _null_headers_cache
    if n > NULL_HEADERS_ROWS:
        return _null_headers_column(n)
    if _null_headers_cache is None:
        _null_headers_cache = _null_headers_column(NULL_HEADERS_ROWS)
    return _null_headers_cache.slice(0, n)


def decode_record_set(data, bint check_crc=True, Py_ssize_t max_uncompressed=DEFAULT_MAX_UNCOMPRESSED):
    """Split a Produce record set into checked, decoded batches.

    Every batch must be complete and valid: a truncated tail, a bad CRC, a
    wrong magic, a record count that disagrees with the records or that the
    bytes cannot hold, or a records block inflating beyond
    ``max_uncompressed`` bytes raise ``RecordBatchError``, so a caller can
    refuse the whole set before it appends anything. All size arithmetic is
    64-bit and every count is checked against the bytes present before
    anything is allocated for it.
    """
    cdef const uint8_t[::1] mv = data
    cdef Py_ssize_t n = mv.shape[0]
    cdef Py_ssize_t pos = 0
    cdef const uint8_t *p
    cdef int64_t batch_length, count, body_len
    cdef uint32_t crc
    cdef size_t crc_len
    cdef DecodedBatch b
    if max_uncompressed < 0:
        raise ValueError("max_uncompressed must not be negative")
    out = []
    while pos < n:
        if n - pos < BATCH_HEADER_SIZE:
            raise RecordBatchError(f"truncated record batch header at byte {pos}: "
                                   f"{n - pos} of {BATCH_HEADER_SIZE} bytes")
        p = &mv[pos]
        batch_length = be32(p + 8)
        if batch_length < BATCH_HEADER_SIZE - LENGTH_PREFIX or batch_length > <int64_t>(n - pos) - LENGTH_PREFIX:
            raise RecordBatchError(f"record batch at byte {pos} claims {batch_length} bytes; "
                                   f"{n - pos - LENGTH_PREFIX} remain")
        if p[16] != 2:
            raise RecordBatchError(f"record batch magic {p[16]} is not supported (only v2)",
                                   UNSUPPORTED_FOR_MESSAGE_FORMAT)
        if check_crc:
            crc_len = <size_t>(batch_length + LENGTH_PREFIX - CRC_START)
            if crc_len >= <size_t>NOGIL_BLOCK:
                with nogil:
                    crc = arrowlog_crc32c(0, p + CRC_START, crc_len)
            else:
                crc = arrowlog_crc32c(0, p + CRC_START, crc_len)
            if crc != be32u(p + 17):
                raise RecordBatchError(f"record batch at byte {pos} fails its CRC-32C check")
        b = DecodedBatch.__new__(DecodedBatch)
        b.base_offset = be64(p)
        b.partition_leader_epoch = be32(p + 12)
        b.attributes = be16(p + 21)
        b.last_offset_delta = be32(p + 23)
        b.base_timestamp = be64(p + 27)
        b.max_timestamp = be64(p + 35)
        b.producer_id = be64(p + 43)
        b.producer_epoch = be16(p + 51)
        b.base_sequence = be32(p + 53)
        b.record_count = be32(p + 57)
        b.size = <Py_ssize_t>(batch_length + LENGTH_PREFIX)
        count = b.record_count
        if count < 1 or <int64_t>b.last_offset_delta != count - 1:
            raise RecordBatchError(f"record batch has record_count {count} but "
                                   f"last_offset_delta {b.last_offset_delta}"
                                   + (" (a batch needs at least one record)" if count == 0 else ""),
                                   INVALID_RECORD)
        body_len = b.size - BATCH_HEADER_SIZE
        codec = b.attributes & ATTR_CODEC_MASK
        # Checked before decompressing: no block we accept can hold more records than this.
        if count > (body_len if codec == CODEC_NONE else max_uncompressed) // MIN_RECORD_SIZE:
            raise RecordBatchError(f"record batch at byte {pos} claims {count} records but its "
                                   f"{body_len}-byte body cannot hold them", INVALID_RECORD)
        body = mv[pos + BATCH_HEADER_SIZE:pos + b.size]
        if codec:
            try:
                body = decompress(codec, body, max_uncompressed)
            except RecordBatchError:
                raise
            except Exception as exc:
                raise RecordBatchError(f"cannot decompress {CODEC_NAMES.get(codec, codec)} record "
                                       f"batch at byte {pos}: {exc}") from None
        b.records = _decode_records(b, body, count, b.base_timestamp,
                                    b.max_timestamp if b.attributes & ATTR_LOG_APPEND_TIME else -1)
        out.append(b)
        pos += b.size
    return out


cdef inline void _set_valid(uint8_t *bitmap, Py_ssize_t i) noexcept nogil:
    bitmap[i >> 3] |= <uint8_t>(1 << (i & 7))


# What the record parser found: done, a first header (the caller allocates the
# header buffers and resumes), or what was wrong with record ``i``.
cdef enum ParseResult:
    PARSED = 0
    NEED_HEADERS
    BAD_LENGTH
    BAD_DELTAS
    BAD_KEY
    BAD_VALUE
    BAD_HEADER_COUNT
    BAD_HEADER_KEY
    BAD_HEADER_VALUE
    FIELDS_DISAGREE
    TRAILING_BYTES

cdef dict PARSE_ERRORS = {
    BAD_LENGTH: "is truncated or has a bad length",
    BAD_DELTAS: "has a bad timestamp or offset delta",
    BAD_KEY: "has a bad key length",
    BAD_VALUE: "has a bad value length",
    BAD_HEADER_COUNT: "has a bad header count",
    BAD_HEADER_KEY: "has a bad header key",
    BAD_HEADER_VALUE: "has a bad header value",
    FIELDS_DISAGREE: "length disagrees with its fields",
}

# HeaderBufs, the headers being written, is declared in kafka.pxd (the cdef
# methods of _HeaderColumn take it).

cdef struct RecordBufs:
    Cursor c
    Py_ssize_t i, count
    int64_t base_ts, log_append_ts, min_ts, max_ts
    int64_t *ts
    int32_t *koff
    int32_t *voff
    uint8_t *kdat
    uint8_t *vdat
    uint8_t *kval
    uint8_t *vval
    Py_ssize_t key_used, value_used, key_nulls, value_nulls
    HeaderBufs h


cdef ParseResult _parse_headers(HeaderBufs *h, Cursor *c, Py_ssize_t i, int64_t hcount) noexcept nogil:
    cdef int64_t j, hk, hv
    if hcount > h.max_headers - h.used:
        return BAD_HEADER_COUNT
    for j in range(hcount):
        hk = read_varint(c)
        if c.bad or hk < 0 or hk > c.end - c.p:
            return BAD_HEADER_KEY
        memcpy(h.kdat + h.key_used, c.p, <size_t>hk)
        h.key_used += hk
        c.p += hk
        h.koff[h.used + 1] = <int32_t>h.key_used
        hv = read_varint(c)
        if c.bad or hv < -1 or hv > c.end - c.p:
            return BAD_HEADER_VALUE
        if hv >= 0:
            memcpy(h.vdat + h.value_used, c.p, <size_t>hv)
            h.value_used += hv
            c.p += hv
            _set_valid(h.vval, h.used)
        else:
            h.value_nulls += 1
        h.voff[h.used + 1] = <int32_t>h.value_used
        h.used += 1
    _set_valid(h.lval, i)
    h.lists += 1
    return PARSED


cdef ParseResult _parse_records(RecordBufs *r) noexcept nogil:
    """Parse records ``r.i`` onwards into the buffers. On NEED_HEADERS the state is
    as it was before record ``r.i``, so the caller can add header buffers and call
    again; on an error ``r.i`` is the record at fault. (The hot state lives in locals,
    written back on the way out: the copies into the buffers could alias ``r``.)"""
    cdef Cursor c = r.c
    cdef const uint8_t *rec_end
    cdef const uint8_t *start
    cdef int64_t length, ts_delta, klen, vlen, hcount, t
    cdef int64_t base_ts = r.base_ts, log_append_ts = r.log_append_ts
    cdef int64_t min_ts = r.min_ts, max_ts = r.max_ts
    cdef Py_ssize_t i = r.i, count = r.count
    cdef Py_ssize_t key_used = r.key_used, value_used = r.value_used
    cdef Py_ssize_t key_nulls = r.key_nulls, value_nulls = r.value_nulls
    cdef Py_ssize_t key_used0, value_used0, key_nulls0, value_nulls0
    cdef int64_t *ts = r.ts
    cdef int32_t *koff = r.koff
    cdef int32_t *voff = r.voff
    cdef uint8_t *kdat = r.kdat
    cdef uint8_t *vdat = r.vdat
    cdef uint8_t *kval = r.kval
    cdef uint8_t *vval = r.vval
    cdef bint has_headers = r.h.present
    cdef ParseResult res = PARSED
    while i < count:
        start = c.p
        key_used0, value_used0, key_nulls0, value_nulls0 = key_used, value_used, key_nulls, value_nulls
        length = read_varlong(&c)
        if c.bad or length < MIN_RECORD_SIZE - 1 or length > c.end - c.p:
            res = BAD_LENGTH
            break
        rec_end = c.p + length
        c.end, rec_end = rec_end, c.end     # bound the cursor to this record
        c.p += 1                            # record attributes: unused (length >= 6 above)
        ts_delta = read_varlong(&c)
        read_varint(&c)                     # offset delta: records are dense
        if c.bad:
            res = BAD_DELTAS
            break
        # Wrapping (not undefined) arithmetic: a hostile delta gives a wrong time, never UB.
        t = log_append_ts if log_append_ts >= 0 else <int64_t>(<uint64_t>base_ts + <uint64_t>ts_delta)
        ts[i] = t
        if t < min_ts:
            min_ts = t
        if t > max_ts:
            max_ts = t
        klen = read_varint(&c)
        if c.bad or klen < -1 or klen > c.end - c.p:
            res = BAD_KEY
            break
        if klen >= 0:
            memcpy(kdat + key_used, c.p, <size_t>klen)
            key_used += klen
            c.p += klen
            _set_valid(kval, i)
        else:
            key_nulls += 1
        koff[i + 1] = <int32_t>key_used
        vlen = read_varint(&c)
        if c.bad or vlen < -1 or vlen > c.end - c.p:
            res = BAD_VALUE
            break
        if vlen >= 0:
            memcpy(vdat + value_used, c.p, <size_t>vlen)
            value_used += vlen
            c.p += vlen
            _set_valid(vval, i)
        else:
            value_nulls += 1
        voff[i + 1] = <int32_t>value_used
        hcount = read_varint(&c)
        if c.bad or hcount < 0 or hcount > (c.end - c.p) // MIN_HEADER_SIZE:
            res = BAD_HEADER_COUNT
            break
        if hcount:
            if not has_headers:
                # Back to the start of this record; it is parsed again once there are buffers.
                c.p, c.end = start, rec_end
                key_used, value_used, key_nulls, value_nulls = key_used0, value_used0, key_nulls0, value_nulls0
                res = NEED_HEADERS
                break
            res = _parse_headers(&r.h, &c, i, hcount)
            if res != PARSED:
                break
        if has_headers:
            r.h.loff[i + 1] = <int32_t>r.h.used
        if c.p != c.end:
            res = FIELDS_DISAGREE
            break
        c.end = rec_end
        i += 1
    if res == PARSED and c.p != c.end:
        res = TRAILING_BYTES
    r.c = c
    r.i = i
    r.min_ts, r.max_ts = min_ts, max_ts
    r.key_used, r.value_used, r.key_nulls, r.value_nulls = key_used, value_used, key_nulls, value_nulls
    return res


cdef class _HeaderColumn:
    """The headers column, built without a Python object per header: per record an
    offset into the headers (null when it has none), then every header's key (UTF-8)
    and value one after the other. Sized for the most headers ``n`` bytes can hold
    (each takes at least 2); pages are committed only as they are written.
    Attributes: src/arrowlog/_native/kafka.pxd."""

    def __cinit__(self, Py_ssize_t count, Py_ssize_t n):
        cdef Py_ssize_t max_headers = n // MIN_HEADER_SIZE
        self.count = count
        self.list_offsets = bytearray((count + 1) * 4)     # zero: no headers before the first
        self.list_valid = bytearray((count + 7) >> 3)
        self.key_offsets = _uninitialised((max_headers + 1) * 4)
        self.value_offsets = _uninitialised((max_headers + 1) * 4)
        self.value_valid = bytearray((max_headers + 7) >> 3)
        self.key_data = _uninitialised(n)
        self.value_data = _uninitialised(n)

    cdef void attach(self, HeaderBufs *h, Py_ssize_t n):
        h.present = 1
        h.max_headers = n // MIN_HEADER_SIZE
        h.used = h.key_used = h.value_used = h.value_nulls = h.lists = 0
        h.loff = <int32_t *>PyByteArray_AS_STRING(self.list_offsets)
        h.lval = <uint8_t *>PyByteArray_AS_STRING(self.list_valid)
        h.koff = <int32_t *>PyByteArray_AS_STRING(self.key_offsets)
        h.voff = <int32_t *>PyByteArray_AS_STRING(self.value_offsets)
        h.vval = <uint8_t *>PyByteArray_AS_STRING(self.value_valid)
        h.kdat = <uint8_t *>PyByteArray_AS_STRING(self.key_data)
        h.vdat = <uint8_t *>PyByteArray_AS_STRING(self.value_data)
        h.koff[0] = 0
        h.voff[0] = 0

    cdef object column(self, HeaderBufs *h):
        try:
            return envelope_headers(self.count, pa.py_buffer(self.list_valid), pa.py_buffer(self.list_offsets),
                                    h.lists, h.used, pa.py_buffer(self.key_offsets),
                                    pa.py_buffer(self.key_data)[:h.key_used], pa.py_buffer(self.value_valid),
                                    pa.py_buffer(self.value_offsets), pa.py_buffer(self.value_data)[:h.value_used],
                                    h.value_nulls, True)
        except pa.ArrowInvalid:
            raise RecordBatchError("a record has a header key that is not UTF-8", INVALID_RECORD) from None


cdef object _decode_records(DecodedBatch b, body, int64_t count, int64_t base_ts, int64_t log_append_ts):
    """Decode ``count`` records into PRODUCE_SCHEMA columns in one pass, without a
    Python object per record or per header, and without the GIL for large blocks."""
    cdef const uint8_t[::1] mv = body
    cdef Py_ssize_t n = mv.shape[0]
    cdef RecordBufs r
    cdef ParseResult res
    cdef _HeaderColumn headers = None

    if n > MAX_RECORDS_BLOCK:
        raise RecordBatchError(f"records block of {n} bytes is larger than 2 GiB")
    if count > n // MIN_RECORD_SIZE:
        raise RecordBatchError(f"record batch claims {count} records but its records block has "
                               f"only {n} bytes", INVALID_RECORD)
    # Every timestamp and offset is written before it is read; the bitmaps start at zero.
    # Reused memory (scratch.pxi): each Arrow buffer is cut to the bytes the column uses.
    ts_buf = _scratch(count * 8, False)
    key_offsets = _scratch((count + 1) * 4, False)
    value_offsets = _scratch((count + 1) * 4, False)
    key_data = _scratch(n, False)
    value_data = _scratch(n, False)
    key_valid = _scratch((count + 7) >> 3, True)
    value_valid = _scratch((count + 7) >> 3, True)
    memset(&r, 0, sizeof(r))
    r.c.p = &mv[0] if n else NULL
    r.c.end = r.c.p + n
    r.count = count
    r.base_ts = base_ts
    r.log_append_ts = log_append_ts
    r.min_ts = INT64_MAX
    r.max_ts = INT64_MIN
    r.ts = <int64_t *>PyByteArray_AS_STRING(ts_buf)
    r.koff = <int32_t *>PyByteArray_AS_STRING(key_offsets)
    r.voff = <int32_t *>PyByteArray_AS_STRING(value_offsets)
    r.kdat = <uint8_t *>PyByteArray_AS_STRING(key_data)
    r.vdat = <uint8_t *>PyByteArray_AS_STRING(value_data)
    r.kval = <uint8_t *>PyByteArray_AS_STRING(key_valid)
    r.vval = <uint8_t *>PyByteArray_AS_STRING(value_valid)
    r.koff[0] = 0
    r.voff[0] = 0
    while True:
        if n >= NOGIL_BLOCK:
            with nogil:
                res = _parse_records(&r)
        else:
            res = _parse_records(&r)
        if res != NEED_HEADERS:
            break
        headers = _HeaderColumn(count, n)
        headers.attach(&r.h, n)
    if res == TRAILING_BYTES:
        raise RecordBatchError(f"{r.c.end - r.c.p} bytes follow the last record")
    if res != PARSED:
        raise RecordBatchError(f"record {r.i} {PARSE_ERRORS[res]}")
    min_ts, max_ts = r.min_ts, r.max_ts
    key_used, value_used, key_nulls, value_nulls = r.key_used, r.value_used, r.key_nulls, r.value_nulls
    b.min_record_timestamp = min_ts
    b.max_record_timestamp = max_ts

    bitmap_size, offsets_size = (count + 7) >> 3, (count + 1) * 4
    return envelope_batch(
        count, pa.py_buffer(ts_buf)[:count * 8],
        envelope_binary(count, pa.py_buffer(key_valid)[:bitmap_size], pa.py_buffer(key_offsets)[:offsets_size],
                        pa.py_buffer(key_data)[:key_used], key_nulls),
        envelope_binary(count, pa.py_buffer(value_valid)[:bitmap_size], pa.py_buffer(value_offsets)[:offsets_size],
                        pa.py_buffer(value_data)[:value_used], value_nulls),
        _null_headers(count) if headers is None else headers.column(&r.h))
