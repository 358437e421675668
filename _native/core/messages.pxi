# Messages read from the log, and the views that make them cheap.
#
# A consumer turns each stored frame into a BatchView: raw pointers into the
# frame's Arrow buffers (which point into the mapped segment), plus the
# RecordBatch that keeps them alive (or, for a view core/follow.pxi made
# straight from a frame, the MappedFile). A Message is a (view, row) pair; key(),
# value() and headers() copy out of the mapping only when called.

cimport cython
from cpython.unicode cimport PyUnicode_DecodeUTF8

TIMESTAMP_NOT_AVAILABLE = 0
TIMESTAMP_CREATE_TIME = 1
TIMESTAMP_LOG_APPEND_TIME = 2


# A batch decoded by pyarrow (the general read) is not checked past its
# message's own lengths: with check.crcs off a damaged frame's offsets can
# point anywhere. BatchView checks what it reads through raw pointers (and
# the headers pyarrow reads for it) once, when it binds the batch, so a
# damaged frame is a CorruptRecordError from the read, never a wild read.

def damaged_frame(str topic, int32_t partition, int64_t base_offset, str what):
    """The CorruptRecordError for a frame read with check.crcs off that
    ``what`` (its damage) shows is damaged."""
    from arrowlog.errors import CorruptRecordError
    return CorruptRecordError(
        f"topic {topic!r} partition {partition}: the frame at offset {base_offset} is damaged: {what}. It was not "
        "CRC-checked (check.crcs is off); read it with check.crcs on to have the damage named, and restore the "
        "partition from a replica or a backup")


cdef _damaged(str topic, int32_t partition, int64_t base_offset, str column):
    raise damaged_frame(topic, partition, base_offset,
                        f"its {column} column's lengths or offsets do not fit its buffers")


def check_frame_batch(batch, str topic, int32_t partition, int64_t base_offset):
    """Raise damaged_frame's CorruptRecordError unless every column of the
    stored ``batch`` fits its buffers (what BatchView checks when it binds a
    batch; here the headers even when every row's are null, and a value
    column of another type through pyarrow's full validation): what a read
    asks of a frame nobody CRC-checked before anything looks into it. A batch
    that passes also passes pyarrow's full validation (tests/unit/
    test_replay_unchecked.py), so no later reader validates it again."""
    cdef Py_ssize_t n = batch.num_rows
    if not n:
        return
    for i, column in enumerate(("offset", "timestamp", "key", "value", "headers")):
        try:  # buffer sizes first (shallow: no null count is computed): pyarrow aborts counting a short bitmap
            batch.column(i).validate()
        except (_pa.ArrowInvalid, ValueError):
            _damaged(topic, partition, base_offset, column)
    if not _fixed_fits(batch.column(0), n) or not _fixed_fits(batch.column(1), n):
        _damaged(topic, partition, base_offset, "offset or timestamp")
    if not _binary_fits(batch.column(2), n):
        _damaged(topic, partition, base_offset, "key")
    value = batch.column(3)
    if value.type == _pa.binary():
        if not _binary_fits(value, n):
            _damaged(topic, partition, base_offset, "value")
    else:
        try:
            value.validate(full=True)
        except _pa.ArrowInvalid:
            _damaged(topic, partition, base_offset, "value")
    headers = batch.column(4)
    if not _headers_fit(headers, n):
        _damaged(topic, partition, base_offset, "headers")
    # and what full validation adds (nothing read goes past a buffer without it)
    for column, arr in (("key", batch.column(2)), ("value", value), ("headers", headers),
                        ("headers", headers.values), ("headers", headers.values.field(0)),
                        ("headers", headers.values.field(1))):
        if not _nulls_agree(arr):
            _damaged(topic, partition, base_offset, column)


cdef bint _valid_fits(arr, bufs, Py_ssize_t rows) except -1:
    """Whether ``arr`` (``bufs``: its buffers) has at least ``rows`` entries
    and, if it has a validity bitmap, one that covers them."""
    if len(arr) < rows:
        return False
    # the size before null_count: a damaged node's unknown count makes pyarrow
    # count the bitmap, and counting past a short one aborts the process
    return bufs[0] is None or bufs[0].size >= (arr.offset + rows + 7) >> 3


cdef bint _nulls_agree(arr) except -1:
    """Whether ``arr``'s null count (a stored frame's node says it) is what
    its validity bitmap, checked to cover it, says."""
    bufs = arr.buffers()
    if bufs[0] is None:
        return arr.null_count == 0
    cdef uintptr_t addr = bufs[0].address
    return _null_count(<const uint8_t *>addr, arr.offset, len(arr)) == arr.null_count


cdef bint _fixed_fits(arr, Py_ssize_t rows) except -1:
    """Whether the int64 column ``arr`` (no nulls) holds ``rows`` values."""
    bufs = arr.buffers()
    return len(arr) >= rows and bufs[1] is not None and bufs[1].size >= 8 * (arr.offset + rows)


cdef bint _offsets_fit(arr, bufs, Py_ssize_t rows, int64_t data_len) except -1:
    """Whether ``arr``'s ``rows`` + 1 int32 offsets (buffer 1 of ``bufs``)
    are there and pass _offsets_ok against ``data_len``."""
    cdef Py_ssize_t shift = arr.offset
    if not _valid_fits(arr, bufs, rows) or bufs[1] is None or bufs[1].size < 4 * (shift + rows + 1):
        return False
    cdef uintptr_t addr = bufs[1].address
    return _offsets_ok((<const uint8_t *>addr) + 4 * shift, rows, data_len)


cdef bint _binary_fits(arr, Py_ssize_t rows) except -1:
    """Whether the binary or string column ``arr`` holds ``rows`` values
    whose validity bitmap, offsets and data fit its buffers."""
    if not rows:
        return True
    bufs = arr.buffers()
    return _offsets_fit(arr, bufs, rows, bufs[2].size if bufs[2] is not None else 0)


cdef bint _headers_fit(arr, Py_ssize_t rows) except -1:
    """Whether the headers column ``arr`` (list<struct<key: string, value:
    binary>>) holds ``rows`` lists whose entries fit its child arrays."""
    if not rows:
        return True
    entries = arr.values
    cdef Py_ssize_t n = len(entries)
    if not _offsets_fit(arr, arr.buffers(), rows, n) or not _valid_fits(entries, entries.buffers(), n):
        return False
    keys = entries.field(0)
    if not (_binary_fits(keys, n) and _binary_fits(entries.field(1), n)):
        return False
    try:  # the keys are strings: UTF-8 (nothing else checks it; only the keys' bytes are read)
        keys.validate(full=True)
    except _pa.ArrowInvalid:
        return False
    return True


cdef class BatchView:
    """Pointers into one stored batch (columns offset, timestamp, key,
    value, headers) for record-at-a-time access."""

    def __init__(self, batch, str topic, int32_t partition, int64_t base_offset, int64_t next_offset=-1):
        self.batch = batch
        self.topic = topic
        self.partition = partition
        self.base_offset = base_offset
        self.num_rows = batch.num_rows
        self.next_offset = next_offset if next_offset >= 0 else base_offset + self.num_rows
        cdef uintptr_t offs_addr = 0
        cdef Py_ssize_t offs_shift = 0
        self.offs = NULL
        if self.num_rows:
            offs = batch.column(0)
            offs_addr = offs.buffers()[1].address
            offs_shift = offs.offset
            self.offs = (<const int64_t *>offs_addr) + offs_shift
        ts = batch.column(1)
        tb = ts.buffers()
        cdef uintptr_t ts_addr = tb[1].address
        cdef Py_ssize_t ts_off = ts.offset
        self.ts = (<const int64_t *>ts_addr) + ts_off
        if self.num_rows and not (_fixed_fits(offs, self.num_rows) and _fixed_fits(ts, self.num_rows)):
            _damaged(self.topic, self.partition, self.base_offset, "offset or timestamp")
        self.koff, self.kdata, self.kvalid, self.kbit = NULL, NULL, NULL, 0
        self._bind_binary(batch.column(2), True)
        value = batch.column(3)
        self.value_col = value
        self.binary_values = value.type == _pa.binary()
        if self.binary_values:
            self._bind_binary(value, False)
        headers = batch.column(4)
        self.headers_col = headers if headers.null_count < len(headers) else None
        if self.headers_col is not None and not _headers_fit(headers, self.num_rows):
            _damaged(self.topic, self.partition, self.base_offset, "headers")

    cdef _bind_binary(self, arr, bint is_key):
        if not _binary_fits(arr, self.num_rows):
            _damaged(self.topic, self.partition, self.base_offset, "key" if is_key else "value")
        cdef const int32_t *off = NULL
        cdef const uint8_t *valid = NULL
        cdef const uint8_t *data = NULL
        cdef uintptr_t addr
        cdef Py_ssize_t shift = arr.offset
        bufs = arr.buffers()
        if bufs[0] is not None and arr.null_count:
            addr = bufs[0].address
            valid = <const uint8_t *>addr
        if bufs[1] is not None:
            addr = bufs[1].address
            off = (<const int32_t *>addr) + shift
        if bufs[2] is not None:
            addr = bufs[2].address
            data = <const uint8_t *>addr
        if is_key:
            self.koff, self.kdata, self.kvalid, self.kbit = off, data, valid, arr.offset
        else:
            self.voff, self.vdata, self.vvalid, self.vbit = off, data, valid, arr.offset

    cdef inline object key_at(self, Py_ssize_t i):
        if self.koff == NULL:
            return None
        if self.kvalid != NULL and not (self.kvalid[(i + self.kbit) >> 3] >> ((i + self.kbit) & 7)) & 1:
            return None
        return PyBytes_FromStringAndSize(<const char *>self.kdata + self.koff[i], self.koff[i + 1] - self.koff[i])

    cdef inline object value_at(self, Py_ssize_t i):
        if not self.binary_values:
            return self.value_col[i].as_py()
        if self.vvalid != NULL and not (self.vvalid[(i + self.vbit) >> 3] >> ((i + self.vbit) & 7)) & 1:
            return None
        return PyBytes_FromStringAndSize(<const char *>self.vdata + self.voff[i], self.voff[i + 1] - self.voff[i])

    cdef inline Py_ssize_t value_len(self, Py_ssize_t i):
        if not self.binary_values:
            return 0
        return self.voff[i + 1] - self.voff[i]

    cdef object headers_at(self, Py_ssize_t i):
        if self.hoff != NULL:
            return self._native_headers(i)
        if self.headers_col is None:
            return None
        try:
            h = self.headers_col[i].as_py()
        except UnicodeDecodeError:  # only an unchecked frame (check.crcs off) can hold one
            raise damaged_frame(self.topic, self.partition, self.base_offset, "a header key is not UTF-8")
        if h is None:
            return None
        return [(e["key"], e["value"]) for e in h]

    cdef object _native_headers(self, Py_ssize_t i):
        """Row ``i``'s headers from the pointers core/follow.pxi checked."""
        if self.hvalid != NULL and not (self.hvalid[i >> 3] >> (i & 7)) & 1:
            return None
        cdef Py_ssize_t e
        out = []
        for e in range(self.hoff[i], self.hoff[i + 1]):
            try:
                key = PyUnicode_DecodeUTF8(<const char *>self.hkdata + self.hkoff[e],
                                           self.hkoff[e + 1] - self.hkoff[e], NULL)
            except UnicodeDecodeError:  # only an unchecked frame (check.crcs off) can hold one
                raise damaged_frame(self.topic, self.partition, self.base_offset, "a header key is not UTF-8")
            if self.hvvalid != NULL and not (self.hvvalid[e >> 3] >> (e & 7)) & 1:
                value = None
            else:
                value = PyBytes_FromStringAndSize(<const char *>self.hvdata + self.hvoff[e],
                                                  self.hvoff[e + 1] - self.hvoff[e])
            out.append((key, value))
        return out

    cdef inline Message message(self, Py_ssize_t i):
        cdef Message m = Message.__new__(Message)
        m._topic = self.topic
        m._partition = self.partition
        m._offset = self.offs[i]  # the stored offset: compacted frames have gaps
        m._timestamp = self.ts[i]
        m._ts_type = 1
        m._view = self
        m._row = i
        return m

    def offset_at(self, Py_ssize_t i):
        """The offset of row ``i``; next_offset past the last row."""
        return self.offs[i] if 0 <= i < self.num_rows else self.next_offset

    def message_at(self, Py_ssize_t i):
        if i < 0 or i >= self.num_rows:
            raise IndexError(i)
        return self.message(i)

    def fill(self, list out, Py_ssize_t start, Py_ssize_t stop):
        """Append Messages for rows [start, stop) to ``out``."""
        cdef Py_ssize_t i
        if stop > self.num_rows:
            stop = self.num_rows
        for i in range(start, stop):
            out.append(self.message(i))
        return stop

    def first_row_at_or_after(self, int64_t timestamp):
        """Index of the first row with timestamp >= ``timestamp``, or -1."""
        cdef Py_ssize_t i
        for i in range(self.num_rows):
            if self.ts[i] >= timestamp:
                return i
        return -1


@cython.freelist(1024)
@cython.no_gc
cdef class Message:
    """One record, named and shaped like confluent_kafka.Message.

    ``timestamp()`` is a (type, ms) pair; ``headers()`` a list of (str,
    bytes) or None; ``error()`` None for records, a KafkaError for events
    such as end of partition.

    Messages are not tracked by the cycle collector: a consume(1000) loop
    creates a million of them a second, and tracking them made the
    collector run every 700 (a fifth of the loop's time). What a Message
    refers to (its batch view, topic, error, and values given to set_*())
    does not refer back to it; a value that did would only be freed with
    the process.
    """

    def __init__(self, topic=None, value=None, key=None, headers=None, error=None, timestamp=None,
                 partition=-1, offset=-1001, latency=None, leader_epoch=None):
        self._topic = topic
        self._value = value
        self._key = key
        self._headers = headers
        self._error = error
        self._partition = partition if partition is not None else -1
        self._offset = offset if offset is not None else -1001
        if timestamp is None:
            self._ts_type, self._timestamp = 0, -1
        elif isinstance(timestamp, tuple):
            self._ts_type, self._timestamp = timestamp
        else:
            self._ts_type, self._timestamp = 1, timestamp
        self._own = True

    def topic(self):
        return self._topic

    def partition(self):
        """The partition, or None when the message has none (librdkafka's
        unassigned partition, -1), as confluent-kafka says it."""
        return self._partition if self._partition != -1 else None

    def offset(self):
        """The offset, or None when the message has none (a delivery report
        of a record that was not appended, an error event), as
        confluent-kafka says it."""
        return self._offset if self._offset >= 0 else None

    def timestamp(self):
        """(TIMESTAMP_CREATE_TIME, ms), or (TIMESTAMP_NOT_AVAILABLE, -1)."""
        return (self._ts_type, self._timestamp)

    def key(self):
        if self._own or self._view is None:
            return self._key
        return self._view.key_at(self._row)

    def value(self):
        if self._own or self._view is None:
            return self._value
        return self._view.value_at(self._row)

    def headers(self):
        if self._own or self._view is None:
            return self._headers
        return self._view.headers_at(self._row)

    def error(self):
        return self._error

    def latency(self):
        return None

    def leader_epoch(self):
        return None

    def len(self):
        if self._own or self._view is None:
            v = self._value
            return 0 if v is None else len(v)
        return self._view.value_len(self._row)

    def __len__(self):
        return self.len()

    def set_value(self, value):
        self._materialise()
        self._value = value

    def set_key(self, key):
        self._materialise()
        self._key = key

    def set_headers(self, headers):
        self._materialise()
        self._headers = headers

    cdef _materialise(self):
        if not self._own and self._view is not None:
            self._key = self._view.key_at(self._row)
            self._value = self._view.value_at(self._row)
            self._headers = self._view.headers_at(self._row)
        self._own = True

    def __repr__(self):
        if self._error is not None:
            return f"<Message error={self._error!r}>"
        return (f"<Message topic={self._topic!r} partition={self._partition} offset={self._offset} "
                f"key={self.key()!r} len={self.len()}>")
