# Fetch path: one stored Arrow batch -> one record batch v2.


cdef struct BinCol:
    const uint8_t *valid      # NULL when the column has no nulls
    const int32_t *offsets    # already advanced by the array's offset
    const uint8_t *data
    Py_ssize_t bit_offset     # the array's offset, for the validity bitmap


cdef inline const uint8_t *_address(buf):
    return <const uint8_t *><uintptr_t>buf.address if buf is not None else NULL


cdef BinCol _bin_col(arr, list keep):
    """Raw pointers into a binary/string Arrow array (kept alive by ``keep``)."""
    cdef BinCol col
    t = arr.type
    if pa.types.is_large_binary(t) or pa.types.is_large_string(t):
        arr = arr.cast(pa.binary())
    elif not (pa.types.is_binary(t) or pa.types.is_string(t)):
        raise TypeError(f"a Kafka record field must be binary or string, not {t}")
    keep.append(arr)
    bufs = arr.buffers()
    col.valid = _address(bufs[0]) if arr.null_count else NULL
    col.offsets = (<const int32_t *>_address(bufs[1])) + <Py_ssize_t>arr.offset
    col.data = _address(bufs[2])
    col.bit_offset = arr.offset
    return col


cdef inline bint _is_valid(BinCol *col, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t k
    if col.valid == NULL:
        return 1
    k = i + col.bit_offset
    return (col.valid[k >> 3] >> (k & 7)) & 1


cdef inline int32_t _len(BinCol *col, Py_ssize_t i) noexcept nogil:
    """Length of element ``i``, -1 for null."""
    if not _is_valid(col, i):
        return -1
    return col.offsets[i + 1] - col.offsets[i]


cdef inline Py_ssize_t _field_size(int32_t length) noexcept nogil:
    return varlong_size(length) + (length if length > 0 else 0)


cdef inline uint8_t *_put_field(uint8_t *w, BinCol *col, Py_ssize_t i, int32_t length) noexcept nogil:
    w += write_varlong(w, length)
    if length > 0:
        memcpy(w, col.data + col.offsets[i], length)
        w += length
    return w


def encode_batch(batch, int codec=0, int64_t producer_id=-1, int16_t producer_epoch=-1,
                 int32_t base_sequence=-1, int64_t first_offset=-1, int64_t next_offset=-1):
    """Encode a stored Arrow batch (columns offset, timestamp, key, value, headers)
    as one Kafka record batch v2, CreateTime, CRC-32C filled in.

    The base offset is the batch's first offset; records keep their own
    offsets as deltas, so a batch read back from any partition encodes the
    same way every time (and can be cached by its base offset).

    ``first_offset``/``next_offset`` (a compacted frame's span: it may hold
    fewer records than offsets, even none) make the batch's baseOffset and
    lastOffsetDelta cover the whole span, as Kafka's cleaner leaves them, so
    a client's next fetch starts after the gap.
    """
    cdef Py_ssize_t count = batch.num_rows
    if count == 0:
        if first_offset < 0 or next_offset <= first_offset:
            raise ValueError("cannot encode an empty batch")
        return _empty_batch(first_offset, next_offset, producer_id, producer_epoch, base_sequence)
    keep = []
    names = batch.schema.names
    offsets_arr = batch.column(names.index("offset"))
    ts_arr = batch.column(names.index("timestamp"))
    ts_type = ts_arr.type
    if offsets_arr.type != pa.int64() or not (pa.types.is_timestamp(ts_type) and ts_type.unit == "ms"):
        raise TypeError("offset must be int64 and timestamp a timestamp in ms, not "
                        f"{offsets_arr.type} and {ts_arr.type}")
    keep.append(offsets_arr)
    keep.append(ts_arr)
    if ts_arr.null_count:
        ts_arr = ts_arr.fill_null(pa.scalar(0, ts_arr.type))
        keep.append(ts_arr)
    cdef const int64_t *off = <const int64_t *>_address(offsets_arr.buffers()[1])
    cdef const int64_t *ts = <const int64_t *>_address(ts_arr.buffers()[1])
    off += <Py_ssize_t>offsets_arr.offset
    ts += <Py_ssize_t>ts_arr.offset
    cdef BinCol key = _bin_col(batch.column(names.index("key")), keep)
    cdef BinCol value = _bin_col(batch.column(names.index("value")), keep)

    # Headers: list<struct<key: string, value: binary>>, flattened to pointers.
    cdef bint has_headers = False
    cdef const int32_t *hoff = NULL
    cdef const uint8_t *hvalid = NULL
    cdef Py_ssize_t hbit = 0
    cdef BinCol hkey
    cdef BinCol hval
    memset(&hkey, 0, sizeof(BinCol))
    memset(&hval, 0, sizeof(BinCol))
    if "headers" in names:
        harr = batch.column(names.index("headers"))
        if harr.null_count < count:
            has_headers = True
            keep.append(harr)
            hbufs = harr.buffers()
            hvalid = _address(hbufs[0]) if harr.null_count else NULL
            hbit = harr.offset
            hoff = (<const int32_t *>_address(hbufs[1])) + <Py_ssize_t>harr.offset
            if not (pa.types.is_list(harr.type) and pa.types.is_struct(harr.type.value_type)
                    and harr.type.value_type.num_fields == 2):
                raise TypeError(f"headers must be list<struct<key, value>>, not {harr.type}")
            hstruct = harr.values
            hkey = _bin_col(hstruct.field(0), keep)
            hval = _bin_col(hstruct.field(1), keep)

    cdef int64_t base_offset = first_offset if 0 <= first_offset <= off[0] else off[0]
    cdef int64_t last_delta = off[count - 1] - base_offset
    if next_offset > off[count - 1]:
        last_delta = next_offset - 1 - base_offset
    cdef int64_t base_ts = ts[0]
    cdef int64_t max_ts = ts[0]
    cdef Py_ssize_t i, j, k, total = 0
    cdef int64_t body
    cdef int32_t klen, vlen, hn, hkl, hvl
    # Pass 1: exact size of the records block.
    for i in range(count):
        if ts[i] > max_ts:
            max_ts = ts[i]
        klen = _len(&key, i)
        vlen = _len(&value, i)
        body = (1 + varlong_size(ts[i] - base_ts) + varlong_size(off[i] - base_offset)
                + _field_size(klen) + _field_size(vlen))
        hn = 0
        if has_headers:
            k = i + hbit
            if hvalid == NULL or (hvalid[k >> 3] >> (k & 7)) & 1:
                hn = hoff[i + 1] - hoff[i]
                for j in range(hoff[i], hoff[i + 1]):
                    body += _field_size(_len(&hkey, j)) + _field_size(_len(&hval, j))
        body += varlong_size(hn)
        total += varlong_size(body) + body

    cdef Py_ssize_t records_size = total
    cdef bint compressed = codec != 0
    out = PyBytes_FromStringAndSize(NULL, BATCH_HEADER_SIZE + (0 if compressed else records_size))
    records = PyBytes_FromStringAndSize(NULL, records_size) if compressed else None
    cdef uint8_t *start = <uint8_t *>PyBytes_AS_STRING(records if compressed else out)
    cdef uint8_t *w = start if compressed else start + BATCH_HEADER_SIZE

    # Pass 2: write the records.
    for i in range(count):
        klen = _len(&key, i)
        vlen = _len(&value, i)
        body = (1 + varlong_size(ts[i] - base_ts) + varlong_size(off[i] - base_offset)
                + _field_size(klen) + _field_size(vlen))
        hn = 0
        if has_headers:
            k = i + hbit
            if hvalid == NULL or (hvalid[k >> 3] >> (k & 7)) & 1:
                hn = hoff[i + 1] - hoff[i]
                for j in range(hoff[i], hoff[i + 1]):
                    body += _field_size(_len(&hkey, j)) + _field_size(_len(&hval, j))
        body += varlong_size(hn)
        w += write_varlong(w, body)
        w[0] = 0
        w += 1
        w += write_varlong(w, ts[i] - base_ts)
        w += write_varlong(w, off[i] - base_offset)
        w = _put_field(w, &key, i, klen)
        w = _put_field(w, &value, i, vlen)
        w += write_varlong(w, hn)
        if hn:
            for j in range(hoff[i], hoff[i + 1]):
                hkl = _len(&hkey, j)
                w = _put_field(w, &hkey, j, hkl)
                hvl = _len(&hval, j)
                w = _put_field(w, &hval, j, hvl)

    if compressed:
        block = compress(codec, records)
        out = PyBytes_FromStringAndSize(NULL, BATCH_HEADER_SIZE + len(block))
        memcpy(PyBytes_AS_STRING(out) + BATCH_HEADER_SIZE, PyBytes_AS_STRING(block), len(block))
    cdef uint8_t *h = <uint8_t *>PyBytes_AS_STRING(out)
    cdef Py_ssize_t size = len(out)
    put64(h, base_offset)
    put32(h + 8, <uint32_t>(size - LENGTH_PREFIX))
    put32(h + 12, 0)                          # partition leader epoch: constant 0
    h[16] = 2                                 # magic
    put16(h + 21, <int16_t>codec)             # attributes: CreateTime, not transactional
    put32(h + 23, <uint32_t>last_delta)
    put64(h + 27, base_ts)
    put64(h + 35, max_ts)
    put64(h + 43, producer_id)
    put16(h + 51, producer_epoch)
    put32(h + 53, <uint32_t>base_sequence)
    put32(h + 57, <uint32_t>count)
    put32(h + 17, arrowlog_crc32c(0, h + CRC_START, size - CRC_START))
    return out


cdef bytes _empty_batch(int64_t first_offset, int64_t next_offset, int64_t producer_id, int16_t producer_epoch,
                        int32_t base_sequence):
    """A record batch with no records spanning first_offset..next_offset-1
    (what Kafka's cleaner leaves when it removes every record of a batch)."""
    out = PyBytes_FromStringAndSize(NULL, BATCH_HEADER_SIZE)
    cdef uint8_t *h = <uint8_t *>PyBytes_AS_STRING(out)
    put64(h, first_offset)
    put32(h + 8, <uint32_t>(BATCH_HEADER_SIZE - LENGTH_PREFIX))
    put32(h + 12, 0)
    h[16] = 2
    put16(h + 21, 0)
    put32(h + 23, <uint32_t>(next_offset - 1 - first_offset))
    put64(h + 27, -1)
    put64(h + 35, -1)
    put64(h + 43, producer_id)
    put16(h + 51, producer_epoch)
    put32(h + 53, <uint32_t>base_sequence)
    put32(h + 57, 0)
    put32(h + 17, arrowlog_crc32c(0, h + CRC_START, BATCH_HEADER_SIZE - CRC_START))
    return out


def batch_info(data):
    """Header fields of the record batch at the start of ``data`` (no CRC check)."""
    cdef const uint8_t[::1] mv = data
    if mv.shape[0] < BATCH_HEADER_SIZE:
        raise RecordBatchError("truncated record batch header")
    cdef const uint8_t *p = &mv[0]
    return {
        "base_offset": be64(p), "batch_length": be32(p + 8), "magic": p[16],
        "crc": be32u(p + 17), "attributes": be16(p + 21), "last_offset_delta": be32(p + 23),
        "base_timestamp": be64(p + 27), "max_timestamp": be64(p + 35),
        "producer_id": be64(p + 43), "producer_epoch": be16(p + 51),
        "base_sequence": be32(p + 53), "record_count": be32(p + 57),
    }
