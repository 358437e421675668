# Produce path: record batches v2 -> Arrow envelope columns.

# the envelope is defined once, in arrowlog/schema.py
from arrowlog.schema import (
    HEADERS_TYPE as _HEADERS_TYPE, PRODUCE_SCHEMA as _PRODUCE_SCHEMA, TIMESTAMP_TYPE as _TIMESTAMP_TYPE,
)

ATTR_CODEC_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20


cdef class DecodedBatch:
    """One record batch of a Produce request: its header and its records as Arrow."""

    cdef public int64_t base_offset
    cdef public int32_t partition_leader_epoch
    cdef public int16_t attributes
    cdef public int32_t last_offset_delta
    cdef public int64_t base_timestamp
    cdef public int64_t max_timestamp
    cdef public int64_t min_record_timestamp   # of the decoded records (the header has no minimum)
    cdef public int64_t max_record_timestamp
    cdef public int64_t producer_id
    cdef public int16_t producer_epoch
    cdef public int32_t base_sequence
    cdef public int32_t record_count
    cdef public Py_ssize_t size          # bytes on the wire, header included
    cdef public object records           # pa.RecordBatch in PRODUCE_SCHEMA (arrowlog.schema)

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
            crc = arrowlog_crc32c(0, p + CRC_START, <size_t>(batch_length + LENGTH_PREFIX - CRC_START))
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
        if count < 0 or <int64_t>b.last_offset_delta != count - 1:
            raise RecordBatchError(f"record batch has record_count {count} but "
                                   f"last_offset_delta {b.last_offset_delta}", INVALID_RECORD)
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


cdef inline bytearray _uninitialised(Py_ssize_t size):
    """A bytearray whose pages are not touched until written (for data buffers
    sized by the worst case)."""
    return <bytearray>PyByteArray_FromStringAndSize(NULL, size)


cdef object _decode_records(DecodedBatch b, body, int64_t count, int64_t base_ts, int64_t log_append_ts):
    """Decode ``count`` records into PRODUCE_SCHEMA columns (one pass, no per-record objects
    except for headers, which are rare)."""
    cdef const uint8_t[::1] mv = body
    cdef Py_ssize_t n = mv.shape[0]
    cdef Cursor c
    cdef const uint8_t *rec_end
    cdef int64_t length, ts_delta, klen, vlen, hcount, hk, hv, j
    cdef Py_ssize_t i, key_used = 0, value_used = 0, key_nulls = 0, value_nulls = 0
    cdef Py_ssize_t bitmap_size
    cdef int64_t t, min_ts = INT64_MAX, max_ts = INT64_MIN

    if n > MAX_RECORDS_BLOCK:
        raise RecordBatchError(f"records block of {n} bytes is larger than 2 GiB")
    if count > n // MIN_RECORD_SIZE:
        raise RecordBatchError(f"record batch claims {count} records but its records block has "
                               f"only {n} bytes", INVALID_RECORD)
    bitmap_size = (count + 7) >> 3
    ts_buf = bytearray(count * 8)
    key_offsets = bytearray((count + 1) * 4)
    value_offsets = bytearray((count + 1) * 4)
    key_data = _uninitialised(n)
    value_data = _uninitialised(n)
    key_valid = bytearray(bitmap_size)
    value_valid = bytearray(bitmap_size)
    cdef int64_t *ts = <int64_t *>PyByteArray_AS_STRING(ts_buf)
    cdef int32_t *koff = <int32_t *>PyByteArray_AS_STRING(key_offsets)
    cdef int32_t *voff = <int32_t *>PyByteArray_AS_STRING(value_offsets)
    cdef uint8_t *kdat = <uint8_t *>PyByteArray_AS_STRING(key_data)
    cdef uint8_t *vdat = <uint8_t *>PyByteArray_AS_STRING(value_data)
    cdef uint8_t *kval = <uint8_t *>PyByteArray_AS_STRING(key_valid)
    cdef uint8_t *vval = <uint8_t *>PyByteArray_AS_STRING(value_valid)
    headers = None

    c.p = &mv[0] if n else NULL
    c.end = c.p + n
    c.bad = 0
    koff[0] = 0
    voff[0] = 0
    for i in range(count):
        length = read_varlong(&c)
        if c.bad or length < MIN_RECORD_SIZE - 1 or length > c.end - c.p:
            raise RecordBatchError(f"record {i} is truncated or has a bad length")
        rec_end = c.p + length
        c.end, rec_end = rec_end, c.end     # bound the cursor to this record
        c.p += 1                            # record attributes: unused (length >= 6 above)
        ts_delta = read_varlong(&c)
        read_varint(&c)                     # offset delta: records are dense
        if c.bad:
            raise RecordBatchError(f"record {i} has a bad timestamp or offset delta")
        # Wrapping (not undefined) arithmetic: a hostile delta gives a wrong time, never UB.
        t = log_append_ts if log_append_ts >= 0 else <int64_t>(<uint64_t>base_ts + <uint64_t>ts_delta)
        ts[i] = t
        if t < min_ts:
            min_ts = t
        if t > max_ts:
            max_ts = t
        klen = read_varint(&c)
        if c.bad or klen < -1 or klen > c.end - c.p:
            raise RecordBatchError(f"record {i} has a bad key length")
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
            raise RecordBatchError(f"record {i} has a bad value length")
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
            raise RecordBatchError(f"record {i} has a bad header count")
        if hcount:
            if headers is None:
                headers = [None] * count
            hl = []
            for j in range(hcount):
                hk = read_varint(&c)
                if c.bad or hk < 0 or hk > c.end - c.p:
                    raise RecordBatchError(f"record {i} has a bad header key")
                try:
                    name = (<const char *>c.p)[:hk].decode("utf-8")
                except UnicodeDecodeError:
                    raise RecordBatchError(f"record {i} has a header key that is not UTF-8",
                                           INVALID_RECORD) from None
                c.p += hk
                hv = read_varint(&c)
                if c.bad or hv < -1 or hv > c.end - c.p:
                    raise RecordBatchError(f"record {i} has a bad header value")
                if hv >= 0:
                    hl.append({"key": name, "value": (<const char *>c.p)[:hv]})
                    c.p += hv
                else:
                    hl.append({"key": name, "value": None})
            headers[i] = hl
        if c.p != c.end:
            raise RecordBatchError(f"record {i} length disagrees with its fields")
        c.end = rec_end
    if c.p != c.end:
        raise RecordBatchError(f"{c.end - c.p} bytes follow the last record")
    b.min_record_timestamp = min_ts
    b.max_record_timestamp = max_ts

    cols = [
        pa.Array.from_buffers(_TIMESTAMP_TYPE, count, [None, pa.py_buffer(ts_buf)]),
        pa.Array.from_buffers(pa.binary(), count,
                              [pa.py_buffer(key_valid) if key_nulls else None,
                               pa.py_buffer(key_offsets), pa.py_buffer(key_data)[:key_used]],
                              null_count=key_nulls),
        pa.Array.from_buffers(pa.binary(), count,
                              [pa.py_buffer(value_valid) if value_nulls else None,
                               pa.py_buffer(value_offsets), pa.py_buffer(value_data)[:value_used]],
                              null_count=value_nulls),
        pa.nulls(count, _HEADERS_TYPE) if headers is None else pa.array(headers, type=_HEADERS_TYPE),
    ]
    return pa.RecordBatch.from_arrays(cols, schema=_PRODUCE_SCHEMA)
