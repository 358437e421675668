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

# GrowBuf (core.pxd): data, length, capacity.

cdef inline int gb_grow(GrowBuf *b, Py_ssize_t extra, bint zeroed=False) noexcept nogil:
    """Room for ``extra`` more bytes (doubling); ``zeroed`` clears the new
    room, which bitmaps rely on. -1 when out of memory (``b`` unchanged)."""
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
        return -1
    if zeroed:
        memset(p + b.capacity, 0, <size_t>(cap - b.capacity))
    b.data = p
    b.capacity = cap
    return 0


cdef inline int gb_reserve(GrowBuf *b, Py_ssize_t extra, bint zeroed=False) except -1:
    """gb_grow, raising MemoryError."""
    if gb_grow(b, extra, zeroed) != 0:
        raise MemoryError()
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


# The encapsulated Arrow IPC record batch message of the stored envelope
# (arrowlog.schema: offset, timestamp, key, value, headers), written here
# instead of by pyarrow's writer for a one-record flush() (RecordAccumulator.
# frame_body). Its flatbuffer has one fixed layout (little-endian, every
# scalar aligned to its size; positions from the flatbuffer's start, which
# follows the 8-byte prefix 0xFFFFFFFF + metadata length):
#
#     0  u32 root: the Message table (24)
#     8  Message vtable: 12 bytes, table 24, version @16, header_type @18,
#        header @4, bodyLength @8
#    24  Message table: soffset 16, header -> 64, bodyLength, version V5 (4),
#        header_type RecordBatch (3)
#    48  RecordBatch vtable: 10 bytes, table 24, length @8, nodes @4, buffers @16
#    64  RecordBatch table: soffset 16, nodes -> 92, length, buffers -> 228
#    92  nodes: u32 count (8), 8 FieldNodes {length, null_count} (int64 each)
#   228  buffers: u32 count (19), 19 Buffers {offset, length} (int64 each)
#   536  end (a multiple of 8)
#
# The body follows: every buffer padded with zeros to 8 bytes, in the order
# of the schema's fields depth-first (offset, timestamp, key, value,
# headers, its struct, the header keys and values), each field's validity
# bitmap first (length 0 when the field has no null).

cdef enum:
    ENV_NODES = 8
    ENV_BUFFERS = 19
    FB_NODES = 92
    FB_BUFFERS = 228
    FB_SIZE = 536
    SMALL_FRAME = 4096   # frames up to this size are built on the stack (_write_frame)
    RECYCLE_BYTES = 64 << 10  # recycle() keeps a batch holding at most this much memory


cdef inline Py_ssize_t pad8(Py_ssize_t n) noexcept nogil:
    return (n + 7) & ~(<Py_ssize_t>7)


cdef inline void store_u16(uint8_t *p, uint16_t v) noexcept nogil:
    memcpy(p, &v, 2)


cdef void envelope_metadata(uint8_t *fb, Py_ssize_t n, Py_ssize_t entries, const int64_t *nulls,
                            const Py_ssize_t *lens, Py_ssize_t body) noexcept nogil:
    """The flatbuffer above (``fb`` zeroed, FB_SIZE bytes) of ``n`` records
    with ``entries`` headers: ``nulls`` is the 8 fields' null counts, ``lens``
    the 19 buffers' unpadded lengths, ``body`` their padded sum."""
    cdef int64_t lengths[ENV_NODES]
    cdef Py_ssize_t i, at = 0
    cdef uint16_t message_vtable[6]
    cdef uint16_t batch_vtable[5]
    message_vtable[:] = [12, 24, 16, 18, 4, 8]
    batch_vtable[:] = [10, 24, 8, 4, 16]
    store_u32(fb, 24)
    # Message vtable and table
    memcpy(fb + 8, message_vtable, sizeof(message_vtable))
    store_u32(fb + 24, 16)
    store_u32(fb + 28, 64 - 28)
    store_i64(fb + 32, body)
    store_u16(fb + 40, 4)   # MetadataVersion.V5
    fb[42] = 3              # MessageHeader.RecordBatch
    # RecordBatch vtable and table
    memcpy(fb + 48, batch_vtable, sizeof(batch_vtable))
    store_u32(fb + 64, 16)
    store_u32(fb + 68, FB_NODES - 68)
    store_i64(fb + 72, n)
    store_u32(fb + 80, FB_BUFFERS - 80)
    # field nodes: the struct and its children are as long as the header entries
    store_u32(fb + FB_NODES, ENV_NODES)
    for i in range(ENV_NODES):
        lengths[i] = n
    lengths[5] = lengths[6] = lengths[7] = entries
    for i in range(ENV_NODES):
        store_i64(fb + FB_NODES + 4 + 16 * i, lengths[i])
        store_i64(fb + FB_NODES + 12 + 16 * i, nulls[i])
    store_u32(fb + FB_BUFFERS, ENV_BUFFERS)
    for i in range(ENV_BUFFERS):
        store_i64(fb + FB_BUFFERS + 4 + 16 * i, at)
        store_i64(fb + FB_BUFFERS + 12 + 16 * i, lens[i])
        at += pad8(lens[i])


cdef extern from "<sys/file.h>" nogil:
    int flock(int fd, int operation)
    int LOCK_EX, LOCK_UN

cdef extern from "<errno.h>" nogil:
    int EINTR, ENOMEM

cdef extern from "<stdint.h>" nogil:
    int64_t INT64_MIN


cdef int _flock_retry(int fd, int operation) noexcept nogil:
    """flock(), again when a signal interrupts it; 0 or the errno."""
    while flock(fd, operation) != 0:
        if errno != EINTR:
            return errno
    return 0


cdef inline void _bump(uint32_t *word, uint32_t *waiters) noexcept nogil:
    """As PartitionState.publish ends: count the change, wake the waiters."""
    arrowlog_add_u32(word, 1)
    if arrowlog_load_u32(waiters) != 0:
        arrowlog_futex_wake(word)


cdef bint _index_entry_fits(const AppendPlace *t, const StatePayload *p, int64_t relative,
                            int64_t position) noexcept nogil:
    """Whether append_at may write the index entries due now (index.py's
    OffsetIndex/TimeIndex.append checks): both mappings there and their
    files long enough, and the last offset entry strictly below the new one
    (else the general path raises what is wrong)."""
    cdef int64_t oe = p.offset_index_entries, te = p.time_index_entries
    if t.index == NULL or t.time_index == NULL or relative > 0x7fffffff or position > <int64_t>0xffffffff:
        return False
    if ((oe + 1) * 8 > min(t.index_size, t.index_capacity)
            or (te + 1) * 12 > min(t.time_index_size, t.time_index_capacity)):
        return False
    if te > 0 and te * 12 > t.time_index_capacity:
        return False
    return (oe > 0 and load_u32(t.index + 8 * (oe - 1)) < relative
            and load_u32(t.index + 8 * (oe - 1) + 4) < position)


# What _append_check found under the append lock, for _append_store.
cdef struct AppendStep:
    StatePayload p          # the published state, to publish again with the frame
    int64_t base            # the frame's base offset
    int64_t position        # where it goes
    int64_t size            # its bytes
    int64_t max_ts          # the segment's largest timestamp with it
    bint entry              # index entries are due


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
    cdef Py_ssize_t last_count, last_keys, last_values  # the previous batch's size (detach)
    cdef RecordAccumulator spare        # an emptied batch kept by recycle() for the next detach()

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
        self._clear_counts()
        gb_put_i32(&self.koff, 0)
        gb_put_i32(&self.voff, 0)
        gb_put_i32(&self.hoff, 0)
        gb_put_i32(&self.hkoff, 0)
        gb_put_i32(&self.hvoff, 0)
        return 0

    cdef void _clear_counts(self) noexcept:
        """An empty batch's counters (the buffers are _reset's)."""
        self._zero_counts()
        self.callbacks = None

    cdef void _zero_counts(self) noexcept nogil:
        """_clear_counts but the callbacks (None in a batch that has none)."""
        self.count = 0
        self.nbytes = 0
        self.min_timestamp = 0x7fffffffffffffff
        self.max_timestamp = -0x7fffffffffffffff
        self.created = 0.0
        self.key_nulls = self.value_nulls = 0
        self.header_lists = self.header_entries = self.header_value_nulls = 0

    cdef int _reserve(self) except -1:
        """Room for a new batch at once instead of ~12 doublings of each
        buffer: as much as the previous batch took and a quarter more (a
        producer's partitions keep their pace), or, for the first batch,
        batch.size of values. Never more than batch.size: a thousand
        partitions of small batches do not each hold (and fault in) a
        batch.size buffer."""
        cdef Py_ssize_t cap = self.size_hint + (self.size_hint >> 4) + 4096
        cdef Py_ssize_t n = self.last_count + (self.last_count >> 2) + 8
        if self.last_count == 0:
            if self.size_hint and self.vdata.capacity == 0:
                gb_reserve(&self.vdata, cap)
            return 0
        gb_reserve(&self.vdata, min(self.last_values + (self.last_values >> 2) + 64, cap) if self.size_hint else
                   self.last_values + (self.last_values >> 2) + 64)
        gb_reserve(&self.kdata, self.last_keys + (self.last_keys >> 2) + 64)
        gb_reserve(&self.ts, 8 * n)
        gb_reserve(&self.koff, 4 * n)
        gb_reserve(&self.voff, 4 * n)
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
            self._reserve()
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
        cdef RecordAccumulator out = self.spare
        if out is None:
            out = RecordAccumulator.__new__(RecordAccumulator, 0)
        else:
            self.spare = None
        # out's buffers are those of an empty batch: swapped with these, they
        # leave this accumulator empty without freeing and allocating them again
        out.ts, self.ts, out.koff, self.koff = self.ts, out.ts, self.koff, out.koff
        out.kdata, self.kdata, out.kvalid, self.kvalid = self.kdata, out.kdata, self.kvalid, out.kvalid
        out.voff, self.voff, out.vdata, self.vdata = self.voff, out.voff, self.vdata, out.vdata
        out.vvalid, self.vvalid, out.hoff, self.hoff = self.vvalid, out.vvalid, self.hoff, out.hoff
        out.hvalid, self.hvalid, out.hkoff, self.hkoff = self.hvalid, out.hvalid, self.hkoff, out.hkoff
        out.hkdata, self.hkdata, out.hvoff, self.hvoff = self.hkdata, out.hkdata, self.hvoff, out.hvoff
        out.hvdata, self.hvdata, out.hvvalid, self.hvvalid = self.hvdata, out.hvdata, self.hvvalid, out.hvvalid
        out.count, out.nbytes = self.count, self.nbytes
        out.min_timestamp, out.max_timestamp, out.created = self.min_timestamp, self.max_timestamp, self.created
        out.key_nulls, out.value_nulls = self.key_nulls, self.value_nulls
        out.header_lists, out.header_entries = self.header_lists, self.header_entries
        out.header_value_nulls = self.header_value_nulls
        out.callbacks = self.callbacks
        if out.count:
            self.last_count, self.last_keys, self.last_values = out.count, out.kdata.length, out.vdata.length
        self._clear_counts()
        return out

    def recycle(self, RecordAccumulator batch):
        """Keep ``batch``, which this accumulator's detach() returned and
        which is now stored (by append_at or write_frame), for the next
        detach(): its buffers are emptied but keep their memory, so a small
        flush allocates nothing. A batch whose buffers went to Arrow
        (to_batch), or larger than RECYCLE_BYTES, is left to be freed. The
        caller must hold no other reference it still uses."""
        if batch is self or batch.count == 0 or batch._held() > RECYCLE_BYTES:
            return
        batch._empty()
        self.spare = batch

    cdef Py_ssize_t _held(self) noexcept:
        """Bytes of memory the buffers hold."""
        return (self.ts.capacity + self.kdata.capacity + self.vdata.capacity + self.hkdata.capacity
                + self.hvdata.capacity + self.koff.capacity + self.voff.capacity + self.hoff.capacity
                + self.hkoff.capacity + self.hvoff.capacity + self.kvalid.capacity + self.vvalid.capacity
                + self.hvalid.capacity + self.hvvalid.capacity)

    cdef void _empty(self) noexcept:
        """Empty the batch, keeping its buffers' memory (recycle, and the
        staged flush's scratch accumulator)."""
        self._empty_buffers()
        self._clear_counts()

    cdef void _empty_buffers(self) noexcept nogil:
        """_empty's part that needs no GIL: every buffer emptied (a batch
        without callbacks is then empty once _zero_counts has run too)."""
        cdef GrowBuf *bufs[14]
        cdef Py_ssize_t i
        bufs[:] = [&self.ts, &self.kdata, &self.vdata, &self.hkdata, &self.hvdata,
                   &self.koff, &self.voff, &self.hoff, &self.hkoff, &self.hvoff,
                   &self.kvalid, &self.vvalid, &self.hvalid, &self.hvvalid]
        for i in range(14):
            if i >= 10:
                # bitmaps: bytes past the length must be zero (gb_set_bit)
                if bufs[i].length:
                    memset(bufs[i].data, 0, <size_t>bufs[i].length)
                bufs[i].length = 0
            else:
                # offsets keep their leading 0 (_reset put it there)
                bufs[i].length = 4 if i >= 5 else 0

    def take(self):
        """The accumulated records as a pa.RecordBatch of PRODUCE_SCHEMA (no
        copy), leaving the accumulator empty; None when empty."""
        if self.count == 0:
            return None
        return (<RecordAccumulator>self.detach())._to_batch()

    cdef Py_ssize_t _envelope_layout(self, const uint8_t **src, Py_ssize_t *have, Py_ssize_t *lens,
                                     int64_t *nulls) noexcept nogil:
        """The stored envelope's 19 buffers over this accumulator's memory:
        ``src``/``have`` what there is to copy, ``lens`` each buffer's
        length (the rest of it zeros), ``nulls`` the 8 fields' null counts.
        Returns the IPC message's size (prefix, flatbuffer and padded body)."""
        cdef Py_ssize_t n = self.count
        cdef Py_ssize_t m = self.header_entries
        cdef Py_ssize_t bitmap = (n + 7) >> 3
        cdef Py_ssize_t i, body = 0
        memset(src, 0, sizeof(uint8_t *) * ENV_BUFFERS)
        memset(have, 0, sizeof(Py_ssize_t) * ENV_BUFFERS)
        memset(lens, 0, sizeof(Py_ssize_t) * ENV_BUFFERS)
        # 0-1 offset (generated by _fill_envelope), 2-3 timestamp
        lens[1] = n * 8
        src[3], have[3], lens[3] = self.ts.data, self.ts.length, n * 8
        # 4-6 key, 7-9 value
        if self.key_nulls:
            src[4], have[4], lens[4] = self.kvalid.data, self.kvalid.length, bitmap
        src[5], have[5], lens[5] = self.koff.data, self.koff.length, (n + 1) * 4
        src[6], have[6], lens[6] = self.kdata.data, self.kdata.length, self.kdata.length
        if self.value_nulls:
            src[7], have[7], lens[7] = self.vvalid.data, self.vvalid.length, bitmap
        src[8], have[8], lens[8] = self.voff.data, self.voff.length, (n + 1) * 4
        src[9], have[9], lens[9] = self.vdata.data, self.vdata.length, self.vdata.length
        # 10-11 headers list (all null, offsets all 0, when no record has headers)
        if self.header_lists < n:
            lens[10] = bitmap
            if self.header_lists:
                src[10], have[10] = self.hvalid.data, self.hvalid.length
        lens[11] = (n + 1) * 4
        if self.header_lists:
            src[11], have[11] = self.hoff.data, self.hoff.length
        # 12 struct validity (none); 13-15 header keys; 16-18 header values
        src[14], have[14], lens[14] = self.hkoff.data, self.hkoff.length, (m + 1) * 4
        src[15], have[15], lens[15] = self.hkdata.data, self.hkdata.length, self.hkdata.length
        if self.header_value_nulls:
            src[16], have[16], lens[16] = self.hvvalid.data, self.hvvalid.length, (m + 7) >> 3
        src[17], have[17], lens[17] = self.hvoff.data, self.hvoff.length, (m + 1) * 4
        src[18], have[18], lens[18] = self.hvdata.data, self.hvdata.length, self.hvdata.length
        nulls[0] = nulls[1] = nulls[5] = nulls[6] = 0
        nulls[2], nulls[3] = self.key_nulls, self.value_nulls
        nulls[4] = n - self.header_lists
        nulls[7] = self.header_value_nulls
        for i in range(ENV_BUFFERS):
            body += pad8(lens[i])
        return 8 + FB_SIZE + body

    cdef Py_ssize_t _message_size(self) except -1:
        """Bytes of the IPC message frame_body returns."""
        cdef const uint8_t *src[ENV_BUFFERS]
        cdef Py_ssize_t have[ENV_BUFFERS]
        cdef Py_ssize_t lens[ENV_BUFFERS]
        cdef int64_t nulls[ENV_NODES]
        if self.count == 0:
            raise ValueError("a frame holds at least one record")
        return self._envelope_layout(src, have, lens, nulls)

    cdef Py_ssize_t _fill_envelope(self, uint8_t *out, int64_t base_offset) except -1:
        """Write the IPC message (``_message_size()`` bytes) into ``out``."""
        if self.count == 0:
            raise ValueError("a frame holds at least one record")
        with nogil:
            return self._fill_envelope_c(out, base_offset)

    cdef Py_ssize_t _fill_envelope_c(self, uint8_t *out, int64_t base_offset) noexcept nogil:
        """_fill_envelope of a non-empty accumulator, without the GIL."""
        cdef const uint8_t *src[ENV_BUFFERS]
        cdef Py_ssize_t have[ENV_BUFFERS]     # bytes of src (the rest of lens[i] is zeros)
        cdef Py_ssize_t lens[ENV_BUFFERS]
        cdef int64_t nulls[ENV_NODES]
        cdef Py_ssize_t n = self.count
        cdef Py_ssize_t i, k, size
        cdef uint8_t *dst
        size = self._envelope_layout(src, have, lens, nulls)
        memset(out, 0, 8 + FB_SIZE)
        store_u32(out, 0xFFFFFFFF)
        store_u32(out + 4, FB_SIZE)
        envelope_metadata(out + 8, n, self.header_entries, nulls, lens, size - 8 - FB_SIZE)
        dst = out + 8 + FB_SIZE
        for i in range(ENV_BUFFERS):
            k = have[i] if have[i] < lens[i] else lens[i]
            if i == 1:
                for k in range(n):
                    store_i64(dst + 8 * k, base_offset + k)
                k = lens[i]
            elif k > 0:
                memcpy(dst, src[i], <size_t>k)
            memset(dst + k, 0, <size_t>(pad8(lens[i]) - k))
            dst += pad8(lens[i])
        return size

    def frame_body(self, int64_t base_offset):
        """The stored envelope of this accumulator's records, offsets from
        ``base_offset``, as one encapsulated Arrow IPC record batch message
        (bytes, a multiple of 8 long): what pyarrow's writer makes of
        ``to_batch()`` with the offset column, in a few microseconds instead
        of the ~30 that building and serialising the pyarrow batch costs.
        The accumulator is left as it is."""
        result = PyBytes_FromStringAndSize(NULL, self._message_size())
        self._fill_envelope(<uint8_t *>PyBytes_AS_STRING(result), base_offset)
        return result

    def frame_size(self):
        """Bytes of the frame write_frame stores (header and IPC message)."""
        return C_FRAME_HEADER + self._message_size()

    def write_frame(self, int fd, Py_ssize_t position, int64_t base_offset):
        """Store this accumulator's records as one frame (header, CRC-32C,
        frame_body(base_offset)) at ``position`` of the file ``fd``, by a
        single pwrite: the small-flush path, one native call where
        write_frame_pieces takes a list of pieces and two writes. Returns the
        frame's size (frame_size()). The caller holds the append lock and
        has allocated the space; nothing is published here; the accumulator
        is left as it is."""
        return self._write_frame(fd, position, base_offset, C_FRAME_HEADER + self._message_size())

    cdef Py_ssize_t _write_frame(self, int fd, Py_ssize_t position, int64_t base_offset, Py_ssize_t size) except -1:
        """write_frame of a frame of ``size`` bytes (C_FRAME_HEADER + _message_size())."""
        cdef int err
        if size - C_FRAME_HEADER > C_MAX_FRAME_BODY:
            raise ValueError(f"frame body of {size - C_FRAME_HEADER} bytes exceeds the {C_MAX_FRAME_BODY}-byte limit")
        if position % 8 != 0:
            raise ValueError("frames start on 8-byte boundaries")
        if C_FRAME_HEADER + self._message_size() != size:
            raise ValueError("frame size does not match the accumulator's records")
        with nogil:
            err = self._write_frame_c(fd, position, base_offset, size)
        if err == ENOMEM:
            raise MemoryError()
        if err:
            raise OSError(err, _os.strerror(err))
        return size

    cdef int _write_frame_c(self, int fd, Py_ssize_t position, int64_t base_offset, Py_ssize_t size) noexcept nogil:
        """_write_frame's work, without the GIL, once its checks hold: 0, or
        the errno of the write (ENOMEM: no memory for the gathered write).
        A frame up to SMALL_FRAME bytes is built on the stack and written
        by one pwrite; a larger one is gathered: one pwritev of the header
        and IPC metadata, the generated offset column and zero padding (one
        scratch buffer), and the accumulator's own buffers, after one CRC
        pass over the same pieces. A frame of a few hundred records costs
        one syscall and no copy of its keys and values in user space."""
        cdef uint8_t small[SMALL_FRAME]   # a one-record frame needs no malloc
        cdef const uint8_t *src[ENV_BUFFERS]
        cdef Py_ssize_t have[ENV_BUFFERS]
        cdef Py_ssize_t lens[ENV_BUFFERS]
        cdef int64_t nulls[ENV_NODES]
        cdef uint8_t *head = small
        cdef iovec iov[1 + 2 * ENV_BUFFERS]
        cdef Py_ssize_t n = self.count, i, k, z, zeros = 0, message = size - C_FRAME_HEADER
        cdef int cnt = 1, err
        cdef uint32_t crc
        cdef uint8_t *scratch = NULL
        if size <= SMALL_FRAME:
            self._fill_envelope_c(small + C_FRAME_HEADER, base_offset)
            iov[0].iov_len = <size_t>size
        else:
            self._envelope_layout(src, have, lens, nulls)
            for i in range(ENV_BUFFERS):
                k = lens[i] if i == 1 else min(have[i], lens[i])
                zeros = max(zeros, pad8(lens[i]) - k)
            scratch = <uint8_t *>malloc(<size_t>(n * 8 + zeros + 8))
            if scratch == NULL:
                return ENOMEM
            memset(scratch + n * 8, 0, <size_t>(zeros + 8))
            memset(head + C_FRAME_HEADER, 0, 8 + FB_SIZE)
            store_u32(head + C_FRAME_HEADER, 0xFFFFFFFF)
            store_u32(head + C_FRAME_HEADER + 4, FB_SIZE)
            envelope_metadata(head + C_FRAME_HEADER + 8, n, self.header_entries, nulls, lens,
                              message - 8 - FB_SIZE)
            iov[0].iov_len = C_FRAME_HEADER + 8 + FB_SIZE
        memset(head, 0, C_FRAME_HEADER)
        store_u32(head + 4, C_FRAME_MAGIC)
        store_i64(head + 8, base_offset)
        store_u32(head + 16, <uint32_t>message)
        store_u32(head + 20, <uint32_t>n)
        store_i64(head + 24, self.min_timestamp)
        store_i64(head + 32, self.max_timestamp)
        iov[0].iov_base = head
        crc = arrowlog_crc32c(0, head + 4, iov[0].iov_len - 4)
        if scratch != NULL:
            for i in range(ENV_BUFFERS):
                if i == 1:
                    for k in range(n):
                        store_i64(scratch + 8 * k, base_offset + k)
                    k = lens[1]
                    iov[cnt].iov_base = scratch
                    iov[cnt].iov_len = <size_t>k
                    cnt += 1
                else:
                    k = min(have[i], lens[i])
                    if k > 0:
                        iov[cnt].iov_base = <void *>src[i]
                        iov[cnt].iov_len = <size_t>k
                        cnt += 1
                z = pad8(lens[i]) - k
                if z > 0:
                    iov[cnt].iov_base = scratch + n * 8
                    iov[cnt].iov_len = <size_t>z
                    cnt += 1
            for i in range(1, cnt):
                crc = arrowlog_crc32c(crc, <const uint8_t *>iov[i].iov_base, iov[i].iov_len)
        store_u32(head, crc)
        err = arrowlog_pwritev_all(fd, iov, cnt, position)
        free(scratch)
        return err

    def append_at(self, AppendTarget target not None, int64_t now_ms):
        """The common case of a small flush, in one native call, at ``target`` (the
        partition's writable end: PartitionLog.append_target): take the
        partition's append lock (flock ``lock_fd``, the GIL released while
        waiting), read the published state, store the frame at its end
        (write_frame) and publish the new end (and wake readers, through
        ``state`` and the data directory's ``notifier``). Returns the frame's
        base offset.

        Returns -1, having written nothing, when the common case does not
        hold and the caller must take the general path (PartitionLog
        ._append_frame): a torn or inconsistent state (outside
        ``max_offset``/``min_position``/``max_position``), a clean mark
        still set, another generation or active segment than the caller's
        writer (``segment_base``, checked at ``generation``), an empty
        segment, a roll due (``segment_bytes``, ``segment_ms`` at
        ``now_ms``, relative offsets, ``index_bytes``), space not yet
        allocated (``file_size``) and no ``grow`` to allocate it (or one
        that allocated less: see core/target.pxi). An index entry due (after
        ``index_interval`` bytes: the rule of storage/index.py) goes into the
        writer's ``index`` and ``time_index`` mappings, whose files hold
        ``index_size`` and ``time_index_size`` bytes; -1 when one is missing,
        full, or its last entry does not lie below the new one. The caller
        holds the partition's in-process lock and checked the log is open,
        writable and undamaged."""
        return self._append_at(target, now_ms)

    cdef int64_t _append_at(self, AppendTarget t, int64_t now_ms) except -2:
        """append_at's work (see there); -1: not the common case, nothing written."""
        cdef AppendPlace place
        cdef AppendStep step
        cdef int64_t grown
        cdef int rc
        if self.count == 0:
            raise ValueError("a frame holds at least one record")
        if not t.state.writable:
            return -1
        place_of(t, &place)
        step.size = C_FRAME_HEADER + self._message_size()
        if step.size - C_FRAME_HEADER > C_MAX_FRAME_BODY:
            raise ValueError(f"frame body of {step.size - C_FRAME_HEADER} bytes exceeds the "
                             f"{C_MAX_FRAME_BODY}-byte limit")
        with nogil:
            rc = _flock_retry(place.lock_fd, LOCK_EX)
        if rc != 0:
            raise OSError(rc, _os.strerror(rc))
        try:
            rc = self._append_check(&place, now_ms, &step)
            if rc < 0:
                return -1
            if rc > 0:
                # the segment grows here, under the append lock, as the general path grows it
                if t.grow is None:
                    return -1
                grown = t.grow(step.position + step.size)
                if grown < step.position + step.size:
                    return -1
                t.file_size = grown
            with nogil:
                rc = self._append_store(&place, &step)
            if rc == ENOMEM:
                raise MemoryError()
            if rc:
                raise OSError(rc, _os.strerror(rc))
            return step.base
        finally:
            _flock_retry(place.lock_fd, LOCK_UN)

    cdef int64_t _append_nogil(self, const AppendPlace *t, int64_t now_ms, int64_t *grow_to) noexcept nogil:
        """_append_at without the GIL (the staged flush's two threads,
        core/stage.pxi): the frame's base offset, or -1, nothing published,
        whenever _append_at would do anything else: decline, grow the
        segment (a Python call: ``grow_to`` is then set to the end it must
        be allocated to), or fail (the caller's general path then tries
        again, and raises what is wrong)."""
        cdef const uint8_t *src[ENV_BUFFERS]
        cdef Py_ssize_t have[ENV_BUFFERS]
        cdef Py_ssize_t lens[ENV_BUFFERS]
        cdef int64_t nulls[ENV_NODES]
        cdef AppendStep step
        cdef int rc
        if self.count == 0 or not t.writable:
            return -1
        step.size = C_FRAME_HEADER + self._envelope_layout(src, have, lens, nulls)
        if step.size - C_FRAME_HEADER > C_MAX_FRAME_BODY or _flock_retry(t.lock_fd, LOCK_EX) != 0:
            return -1
        rc = self._append_check(t, now_ms, &step)
        if rc == 0:
            rc = self._append_store(t, &step)
        elif rc == 1:
            grow_to[0] = step.position + step.size
        _flock_retry(t.lock_fd, LOCK_UN)
        return step.base if rc == 0 else -1

    cdef int _append_check(self, const AppendPlace *t, int64_t now_ms, AppendStep *a) noexcept nogil:
        """The checks of append_at under the append lock, for a frame of
        ``a.size`` bytes: 0 when it can be stored (``a`` then says where and
        how), 1 when it can once the segment is allocated up to its end
        (``a.position + a.size``), -1 when the general path must take it."""
        cdef StatePayload *p = &a.p
        cdef int64_t base, position
        cdef Py_ssize_t n = self.count
        if not arrowlog_seq_read(t.seq, p, t.payload, sizeof(StatePayload)):
            return -1  # a writer died mid-publish: recovery
        if arrowlog_load_u32(<uint32_t *>(t.state_base + 12)) != 0:
            return -1  # the clean mark is still set: _mark_dirty clears it, durably
        base, position = p.next_offset, p.active_position
        if not (0 <= p.log_start_offset <= base < t.max_offset and 0 <= p.active_base_offset <= base
                and t.min_position <= position <= t.max_position and position % 8 == 0):
            return -1
        if (p.generation != t.generation or p.active_base_offset != t.segment_base or base == t.segment_base
                or position + a.size > t.segment_bytes
                or base + n - t.segment_base > 0x7fffffff
                or (p.offset_index_entries + 1) * 8 > t.index_bytes
                or (p.time_index_entries + 1) * 12 > t.index_bytes
                or now_ms - p.segment_created_ms >= t.segment_ms or p.offset_index_entries == 0):
            return -1
        a.base, a.position = base, position
        a.max_ts = self.max_timestamp if self.max_timestamp > p.active_max_timestamp else p.active_max_timestamp
        a.entry = p.bytes_since_index >= t.index_interval
        if a.entry and not _index_entry_fits(t, p, base - t.segment_base, position):
            return -1
        return 1 if position + a.size > t.file_size else 0

    cdef int _append_store(self, const AppendPlace *t, AppendStep *a) noexcept nogil:
        """Store the frame _append_check placed, its index entries, and
        publish: 0, or the errno of the write (nothing published)."""
        cdef StatePayload *p = &a.p
        cdef int64_t last_ts, relative = a.base - t.segment_base
        cdef int err = self._write_frame_c(t.log_fd, a.position, a.base, a.size)
        if err:
            return err
        if a.entry:
            # as Indexer.add: an offset entry, and a time entry if the largest timestamp grew
            store_u32(t.index + 8 * p.offset_index_entries, <uint32_t>relative)
            store_u32(t.index + 8 * p.offset_index_entries + 4, <uint32_t>a.position)
            p.offset_index_entries += 1
            last_ts = INT64_MIN
            if p.time_index_entries:
                last_ts = load_i64(t.time_index + 12 * (p.time_index_entries - 1))
            if a.max_ts > last_ts:
                store_i64(t.time_index + 12 * p.time_index_entries, a.max_ts)
                store_u32(t.time_index + 12 * p.time_index_entries + 8, <uint32_t>relative)
                p.time_index_entries += 1
            p.bytes_since_index = 0
        p.next_offset = a.base + self.count
        p.active_position = a.position + a.size
        p.active_max_timestamp = a.max_ts
        p.bytes_since_index += a.size
        arrowlog_seq_begin(t.seq)
        memcpy(t.payload, p, sizeof(StatePayload))
        arrowlog_seq_end(t.seq)
        _bump(t.word, t.waiters)
        if t.notifier_word != NULL:
            _bump(t.notifier_word, t.notifier_waiters)
        return 0

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
