# The record accumulator: many small produce() calls gathered into native
# buffers laid out as Arrow arrays, with no Python object kept per record.
#
# The buffers are those of the record envelope less `offset` (which the log
# assigns), as envelope.pxi lays them out: timestamps; key and value
# validity, offsets and bytes; the headers' list validity and offsets, and
# their keys' and values' offsets, bytes and validity. Validity bitmaps and
# the headers' buffers are only kept once a null or a header appears.
#
# Buffers grow geometrically and are handed to Arrow without a copy when the
# batch is taken (NativeBuffer owns the malloc'd memory from then on).

import pyarrow as _pa

# the columns are laid out by the one envelope builder, shared with the Kafka decoder
include "envelope.pxi"

cdef struct GrowBuf:
    uint8_t *data
    Py_ssize_t length
    Py_ssize_t capacity


cdef inline int gb_reserve(GrowBuf *b, Py_ssize_t extra, bint zeroed=False) except -1:
    """Room for ``extra`` more bytes (doubling); ``zeroed`` clears the new
    room, which bitmaps rely on."""
    cdef Py_ssize_t need = b.length + extra
    cdef Py_ssize_t cap
    cdef uint8_t *p
    if need <= b.capacity:
        return 0
    cap = b.capacity * 2 if b.capacity else 256
    while cap < need:
        cap *= 2
    p = <uint8_t *>realloc(b.data, <size_t>cap)
    if p == NULL:
        raise MemoryError()
    if zeroed:
        memset(p + b.capacity, 0, <size_t>(cap - b.capacity))
    b.data = p
    b.capacity = cap
    return 0


cdef inline int gb_put(GrowBuf *b, const void *src, Py_ssize_t n) except -1:
    if b.length + n > b.capacity:
        gb_reserve(b, n)
    memcpy(b.data + b.length, src, <size_t>n)
    b.length += n
    return 0


cdef inline int gb_put_i32(GrowBuf *b, int32_t v) except -1:
    if b.length + 4 > b.capacity:
        gb_reserve(b, 4)
    memcpy(b.data + b.length, &v, 4)
    b.length += 4
    return 0


cdef inline int gb_put_i64(GrowBuf *b, int64_t v) except -1:
    if b.length + 8 > b.capacity:
        gb_reserve(b, 8)
    memcpy(b.data + b.length, &v, 8)
    b.length += 8
    return 0


cdef inline int gb_set_bit(GrowBuf *b, Py_ssize_t i) except -1:
    cdef Py_ssize_t byte = i >> 3
    if byte >= b.capacity:
        gb_reserve(b, byte + 1 - b.length, True)
    if byte >= b.length:
        b.length = byte + 1
    b.data[byte] |= <uint8_t>(1 << (i & 7))
    return 0


cdef inline int gb_fill_bits(GrowBuf *b, Py_ssize_t nbits) except -1:
    """Set bits 0..nbits-1 (records before the first null were all valid)."""
    cdef Py_ssize_t full = nbits >> 3, k
    if nbits == 0:
        return 0
    gb_extend_bits(b, nbits)
    memset(b.data, 0xff, <size_t>full)
    for k in range(full << 3, nbits):
        b.data[k >> 3] |= <uint8_t>(1 << (k & 7))
    return 0


cdef inline int gb_extend_bits(GrowBuf *b, Py_ssize_t nbits) except -1:
    # make room for bit index nbits-1 (bit stays 0: null)
    cdef Py_ssize_t byte = (nbits - 1) >> 3
    if byte >= b.capacity:
        gb_reserve(b, byte + 1 - b.length, True)
    if byte >= b.length:
        b.length = byte + 1
    return 0


cdef class NativeBuffer:
    """Owns malloc'd bytes handed over by an accumulator; Arrow wraps it
    without copying and frees it through this object."""
    cdef uint8_t *data
    cdef Py_ssize_t size

    def __dealloc__(self):
        if self.data != NULL:
            free(self.data)
            self.data = NULL

    def __getbuffer__(self, Py_buffer *view, int flags):
        PyBuffer_FillInfo(view, self, self.data, self.size, 0, flags)

    def __len__(self):
        return self.size


cdef object take_buffer(GrowBuf *b, Py_ssize_t size):
    """Move ``b``'s memory into an Arrow buffer of ``size`` bytes."""
    cdef NativeBuffer nb = NativeBuffer.__new__(NativeBuffer)
    if b.data == NULL:
        gb_reserve(b, 8)
    nb.data = b.data
    nb.size = size
    b.data = NULL
    b.length = 0
    b.capacity = 0
    return _pa.py_buffer(nb)


cdef class RecordAccumulator:
    """Records for one partition, waiting to become one frame.

    Not thread-safe on its own: the producer appends under the GIL and takes
    a batch under the partition's in-process lock.
    """
    cdef GrowBuf ts, koff, kdata, kvalid, voff, vdata, vvalid
    cdef GrowBuf hoff, hvalid, hkoff, hkdata, hvoff, hvdata, hvvalid
    cdef readonly Py_ssize_t count
    cdef readonly Py_ssize_t nbytes
    cdef readonly int64_t min_timestamp
    cdef readonly int64_t max_timestamp
    cdef readonly double created
    cdef Py_ssize_t key_nulls, value_nulls, header_lists, header_entries, header_value_nulls
    cdef public list callbacks          # [(index, callable)] for records with on_delivery
    cdef public Py_ssize_t size_hint    # bytes of values a full batch holds (batch.size)

    def __cinit__(self, Py_ssize_t size_hint=0):
        self.size_hint = size_hint
        self._reset()

    def __dealloc__(self):
        self._free()

    cdef void _free(self):
        cdef GrowBuf *bufs[14]
        bufs[:] = [&self.ts, &self.koff, &self.kdata, &self.kvalid, &self.voff, &self.vdata, &self.vvalid,
                   &self.hoff, &self.hvalid, &self.hkoff, &self.hkdata, &self.hvoff, &self.hvdata, &self.hvvalid]
        for i in range(14):
            if bufs[i].data != NULL:
                free(bufs[i].data)
            bufs[i].data = NULL
            bufs[i].length = 0
            bufs[i].capacity = 0

    cdef int _reset(self) except -1:
        self._free()
        self.count = 0
        self.nbytes = 0
        self.min_timestamp = 0x7fffffffffffffff
        self.max_timestamp = -0x7fffffffffffffff
        self.created = 0.0
        self.key_nulls = self.value_nulls = 0
        self.header_lists = self.header_entries = self.header_value_nulls = 0
        self.callbacks = None
        gb_put_i32(&self.koff, 0)
        gb_put_i32(&self.voff, 0)
        gb_put_i32(&self.hoff, 0)
        gb_put_i32(&self.hkoff, 0)
        gb_put_i32(&self.hvoff, 0)
        return 0

    cdef int append(self, const char *key, Py_ssize_t key_len, const char *value, Py_ssize_t value_len,
                    int64_t timestamp) except -1:
        """Append one record; a negative length means null. Validity bitmaps
        and header list offsets are only kept once a null or a header has
        appeared (backfilled then), so the common record costs two copies,
        two offsets and a timestamp."""
        cdef Py_ssize_t i = self.count
        if i == 0:
            self.created = monotonic_s()
            if self.size_hint and self.vdata.capacity == 0:
                # one allocation for the batch's values instead of ~12 doublings
                gb_reserve(&self.vdata, self.size_hint + (self.size_hint >> 4) + 4096)
        if key_len >= 0:
            if self.kdata.length + key_len > 0x7fffffff:
                raise OverflowError("batch keys exceed 2 GiB")
            gb_put(&self.kdata, key, key_len)
            if self.key_nulls:
                gb_set_bit(&self.kvalid, i)
            self.nbytes += key_len
        else:
            if not self.key_nulls:
                gb_fill_bits(&self.kvalid, i)
            gb_extend_bits(&self.kvalid, i + 1)
            self.key_nulls += 1
        gb_put_i32(&self.koff, <int32_t>self.kdata.length)
        if value_len >= 0:
            if self.vdata.length + value_len > 0x7fffffff:
                raise OverflowError("batch values exceed 2 GiB")
            gb_put(&self.vdata, value, value_len)
            if self.value_nulls:
                gb_set_bit(&self.vvalid, i)
            self.nbytes += value_len
        else:
            if not self.value_nulls:
                gb_fill_bits(&self.vvalid, i)
            gb_extend_bits(&self.vvalid, i + 1)
            self.value_nulls += 1
        gb_put_i32(&self.voff, <int32_t>self.vdata.length)
        gb_put_i64(&self.ts, timestamp)
        if timestamp < self.min_timestamp:
            self.min_timestamp = timestamp
        if timestamp > self.max_timestamp:
            self.max_timestamp = timestamp
        if self.header_lists:
            # a null list unless append_headers follows
            gb_put_i32(&self.hoff, <int32_t>self.header_entries)
            gb_extend_bits(&self.hvalid, i + 1)
        self.nbytes += 24
        self.count = i + 1
        return 0

    cdef int append_headers(self, object headers) except -1:
        """Attach headers to the record just appended: a list of (str,
        bytes | None) pairs, as normalize_headers returns."""
        cdef Py_ssize_t i = self.count - 1
        cdef Py_ssize_t j
        cdef const char *p
        cdef Py_ssize_t n
        if not self.header_lists:
            # the first record with headers: records 0..i-1 had none
            for j in range(i + 1):
                gb_put_i32(&self.hoff, 0)
            gb_extend_bits(&self.hvalid, i + 1)
        for hk, hv in headers:
            p = PyUnicode_AsUTF8AndSize(hk, &n)
            gb_put(&self.hkdata, p, n)
            gb_put_i32(&self.hkoff, <int32_t>self.hkdata.length)
            self.nbytes += n
            if hv is None:
                gb_extend_bits(&self.hvvalid, self.header_entries + 1)
                self.header_value_nulls += 1
            else:
                gb_put(&self.hvdata, PyBytes_AS_STRING(hv), PyBytes_GET_SIZE(hv))
                gb_set_bit(&self.hvvalid, self.header_entries)
                self.nbytes += PyBytes_GET_SIZE(hv)
            gb_put_i32(&self.hvoff, <int32_t>self.hvdata.length)
            self.header_entries += 1
        # this record's list end offset, and its validity bit
        memcpy(self.hoff.data + 4 * (i + 1), &self.header_entries, 4)
        gb_set_bit(&self.hvalid, i)
        self.header_lists += 1
        return 0

    def append_record(self, key, value, int64_t timestamp, headers=None):
        """Python-level append (tests and slow paths); key/value are bytes-like or None."""
        cdef bytes k = None if key is None else bytes(key)
        cdef bytes v = None if value is None else bytes(value)
        self.append(NULL if k is None else PyBytes_AS_STRING(k), -1 if k is None else PyBytes_GET_SIZE(k),
                    NULL if v is None else PyBytes_AS_STRING(v), -1 if v is None else PyBytes_GET_SIZE(v),
                    timestamp)
        if headers is not None:
            self.append_headers(normalize_headers(headers))

    def add_callback(self, Py_ssize_t index, callback):
        if self.callbacks is None:
            self.callbacks = []
        self.callbacks.append((index, callback))

    def detach(self):
        """Move every accumulated record into a new accumulator and leave
        this one empty, without running any Python code in between: a
        producer thread appending concurrently (the GIL can change hands
        inside pyarrow calls) either lands before the move or in the empty
        accumulator, never in buffers being handed to Arrow."""
        cdef RecordAccumulator out = RecordAccumulator.__new__(RecordAccumulator, 0)
        out._free()
        out.ts, out.koff, out.kdata, out.kvalid = self.ts, self.koff, self.kdata, self.kvalid
        out.voff, out.vdata, out.vvalid = self.voff, self.vdata, self.vvalid
        out.hoff, out.hvalid, out.hkoff, out.hkdata = self.hoff, self.hvalid, self.hkoff, self.hkdata
        out.hvoff, out.hvdata, out.hvvalid = self.hvoff, self.hvdata, self.hvvalid
        out.count, out.nbytes = self.count, self.nbytes
        out.min_timestamp, out.max_timestamp, out.created = self.min_timestamp, self.max_timestamp, self.created
        out.key_nulls, out.value_nulls = self.key_nulls, self.value_nulls
        out.header_lists, out.header_entries = self.header_lists, self.header_entries
        out.header_value_nulls = self.header_value_nulls
        out.callbacks = self.callbacks
        cdef GrowBuf *bufs[14]
        bufs[:] = [&self.ts, &self.koff, &self.kdata, &self.kvalid, &self.voff, &self.vdata, &self.vvalid,
                   &self.hoff, &self.hvalid, &self.hkoff, &self.hkdata, &self.hvoff, &self.hvdata, &self.hvvalid]
        for i in range(14):
            bufs[i].data = NULL
            bufs[i].length = 0
            bufs[i].capacity = 0
        self._reset()
        return out

    def take(self):
        """The accumulated records as a pa.RecordBatch of PRODUCE_SCHEMA (no
        copy), leaving the accumulator empty; None when empty."""
        if self.count == 0:
            return None
        return (<RecordAccumulator>self.detach())._to_batch()

    def to_batch(self):
        """This (detached) accumulator's records as a pa.RecordBatch (with no
        rows when it holds none), leaving it empty."""
        return self._to_batch()

    cdef object _to_batch(self):
        cdef Py_ssize_t n = self.count
        cdef Py_ssize_t m = self.header_entries
        keys = envelope_binary(n, take_buffer(&self.kvalid, (n + 7) >> 3) if self.key_nulls else None,
                               take_buffer(&self.koff, (n + 1) * 4), take_buffer(&self.kdata, self.kdata.length),
                               self.key_nulls)
        values = envelope_binary(n, take_buffer(&self.vvalid, (n + 7) >> 3) if self.value_nulls else None,
                                 take_buffer(&self.voff, (n + 1) * 4), take_buffer(&self.vdata, self.vdata.length),
                                 self.value_nulls)
        headers = None
        if self.header_lists:
            headers = envelope_headers(
                n, take_buffer(&self.hvalid, (n + 7) >> 3), take_buffer(&self.hoff, (n + 1) * 4),
                self.header_lists, m, take_buffer(&self.hkoff, (m + 1) * 4),
                take_buffer(&self.hkdata, self.hkdata.length),
                take_buffer(&self.hvvalid, (m + 7) >> 3) if self.header_value_nulls else None,
                take_buffer(&self.hvoff, (m + 1) * 4), take_buffer(&self.hvdata, self.hvdata.length),
                self.header_value_nulls, False)  # keys came from str objects: UTF-8 already
        batch = envelope_batch(n, take_buffer(&self.ts, n * 8), keys, values, headers)
        self._reset()
        return batch
