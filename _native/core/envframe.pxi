# The one native reader of an envelope frame's Arrow IPC message (the
# RecordBatch core/accumulator.pxi writes: flatbuffer metadata, then a body
# with ENV_NODES field nodes and ENV_BUFFERS buffers, in the order that file
# describes). Its users: the consumer's follower (core/follow.pxi) and the
# replay of small partitions (core/replayview.pxi); each adds only its own
# rules. Every length, offset and count comes from the disk and is checked
# here before anything points into the frame; any doubt is a "no" (-1), and
# the caller reads through the general path, which names what is wrong.

cdef struct EnvFrame:
    int64_t length                      # the batch's rows
    int64_t node_length[ENV_NODES]
    int64_t node_nulls[ENV_NODES]
    const uint8_t *buf[ENV_BUFFERS]     # into the body; checked by _env_fits
    int64_t buf_len[ENV_BUFFERS]


cdef inline bint _fb_table(const uint8_t *fb, Py_ssize_t size, Py_ssize_t table, Py_ssize_t *vtable,
                           Py_ssize_t *vsize) noexcept nogil:
    """The vtable of the flatbuffer table at ``table``; False if out of bounds."""
    if table < 0 or table + 4 > size or table % 4:
        return False
    cdef Py_ssize_t vt = table - <int32_t>load_u32(fb + table)
    if vt < 0 or vt + 4 > size or vt % 2:
        return False
    cdef Py_ssize_t n = fb[vt] | (fb[vt + 1] << 8)
    if n < 4 or vt + n > size:
        return False
    vtable[0] = vt
    vsize[0] = n
    return True


cdef inline Py_ssize_t _fb_field(const uint8_t *fb, Py_ssize_t table, Py_ssize_t vt, Py_ssize_t vsize,
                                 int field, Py_ssize_t width, Py_ssize_t size) noexcept nogil:
    """The position of field ``field`` (``width`` bytes) of a table; 0 when
    absent, -1 when it does not fit in the flatbuffer."""
    cdef Py_ssize_t slot = 4 + 2 * field
    if slot + 2 > vsize:
        return 0
    cdef Py_ssize_t rel = fb[vt + slot] | (fb[vt + slot + 1] << 8)
    if rel == 0:
        return 0
    if table + rel + width > size:
        return -1
    return table + rel


cdef inline Py_ssize_t _fb_vector(const uint8_t *fb, Py_ssize_t at, Py_ssize_t item, Py_ssize_t size,
                                  Py_ssize_t *count) noexcept nogil:
    """The first item of the vector the offset field at ``at`` points to
    (``count`` items of ``item`` bytes); -1 when it does not fit."""
    cdef Py_ssize_t v = at + <Py_ssize_t>load_u32(fb + at)
    if v + 4 > size:
        return -1
    cdef Py_ssize_t n = load_u32(fb + v)
    if n > size or v + 4 + n * item > size:
        return -1
    count[0] = n
    return v + 4


cdef int64_t _null_count(const uint8_t *valid, int64_t r0, int64_t k) noexcept nogil:
    """The zero bits of ``valid`` from bit ``r0`` on, over ``k`` bits (0 without a bitmap)."""
    cdef int64_t i, j, nulls = 0
    if valid == NULL:
        return 0
    for i in range(k):
        j = r0 + i
        nulls += 1 - ((valid[j >> 3] >> (j & 7)) & 1)
    return nulls


cdef inline bint _offsets_ok(const uint8_t *o, Py_ssize_t rows, int64_t data_len) noexcept nogil:
    """A binary column's ``rows`` + 1 int32 offsets start at or above 0, never
    go down and end inside its data buffer of ``data_len`` bytes."""
    cdef int32_t prev = <int32_t>load_u32(o), cur
    cdef Py_ssize_t i
    if prev < 0:
        return False
    for i in range(1, rows + 1):
        cur = <int32_t>load_u32(o + 4 * i)
        if cur < prev:
            return False
        prev = cur
    return prev <= data_len


cdef int _env_parse(const uint8_t *msg, int64_t size, int64_t count, EnvFrame *fc) noexcept nogil:
    """The envelope batch in the IPC message of ``size`` bytes at ``msg`` (a
    frame of ``count`` offsets): 0 with ``fc`` filled and its columns checked
    (_env_fits), -1 for anything else (compressed, not a record batch, not
    the envelope's nodes and buffers, a length or offset that does not fit)."""
    cdef Py_ssize_t meta, prefix = 8, vt, vs, at, rb, n, nodes, bufs, i
    if size < 8:
        return -1
    if load_u32(msg) == <uint32_t>0xFFFFFFFFU:
        meta = <int32_t>load_u32(msg + 4)
    else:  # the pre-1.0 prefix: the length alone
        meta = <int32_t>load_u32(msg)
        prefix = 4
    # the body (and its buffers, at 8-aligned offsets) starts 8-aligned
    if meta < 4 or (prefix + meta) % 8 or prefix + meta > size:
        return -1
    cdef const uint8_t *fb = msg + prefix
    cdef Py_ssize_t root = load_u32(fb)
    if not _fb_table(fb, meta, root, &vt, &vs):
        return -1
    at = _fb_field(fb, root, vt, vs, 1, 1, meta)  # header_type
    if at <= 0 or fb[at] != 3:                    # MessageHeader.RecordBatch
        return -1
    at = _fb_field(fb, root, vt, vs, 3, 8, meta)  # bodyLength
    if at <= 0:
        return -1
    cdef int64_t body_len = load_i64(fb + at)
    if body_len < 0 or body_len > size - prefix - meta:
        return -1
    at = _fb_field(fb, root, vt, vs, 2, 4, meta)  # header
    if at <= 0:
        return -1
    rb = at + <Py_ssize_t>load_u32(fb + at)
    if not _fb_table(fb, meta, rb, &vt, &vs):
        return -1
    if _fb_field(fb, rb, vt, vs, 3, 4, meta) != 0:  # compression: the general path decodes it
        return -1
    at = _fb_field(fb, rb, vt, vs, 0, 8, meta)  # length (absent: 0)
    if at < 0:
        return -1
    fc.length = load_i64(fb + at) if at else 0
    at = _fb_field(fb, rb, vt, vs, 1, 4, meta)  # nodes: [FieldNode {length, null_count}]
    if at <= 0:
        return -1
    nodes = _fb_vector(fb, at, 16, meta, &n)
    if nodes < 0 or n != ENV_NODES:
        return -1
    for i in range(ENV_NODES):  # (no column has more entries than the body bytes)
        fc.node_length[i] = load_i64(fb + nodes + 16 * i)
        fc.node_nulls[i] = load_i64(fb + nodes + 16 * i + 8)
        if (fc.node_length[i] < 0 or fc.node_length[i] > body_len or fc.node_nulls[i] < 0
                or fc.node_nulls[i] > fc.node_length[i]):
            return -1
    at = _fb_field(fb, rb, vt, vs, 2, 4, meta)  # buffers: [Buffer {offset, length}]
    if at <= 0:
        return -1
    bufs = _fb_vector(fb, at, 16, meta, &n)
    if bufs < 0 or n != ENV_BUFFERS:
        return -1
    cdef int64_t off, ln
    for i in range(ENV_BUFFERS):
        off = load_i64(fb + bufs + 16 * i)
        ln = load_i64(fb + bufs + 16 * i + 8)
        if off < 0 or ln < 0 or off % 8 or off > body_len or ln > body_len - off:
            return -1
        fc.buf[i] = fb + meta + off
        fc.buf_len[i] = ln
    return _env_fits(fc, count)


# buffers of the envelope's nodes: offset [0, 1], timestamp [2, 3], key [4, 5, 6],
# value [7, 8, 9], headers [10, 11], its struct [12], keys [13, 14, 15], values [16, 17, 18]

cdef inline bint _binary_ok(const EnvFrame *fc, int64_t rows, int64_t nulls, int valid) noexcept nogil:
    """The binary column whose validity bitmap is buffer ``valid`` (then
    its offsets, its data) holds ``rows`` values, ``nulls`` of them null."""
    return ((not nulls or fc.buf_len[valid] >= (rows + 7) >> 3) and fc.buf_len[valid + 1] >= 4 * (rows + 1)
            and _offsets_ok(fc.buf[valid + 1], rows, fc.buf_len[valid + 2]))


cdef int _env_fits(const EnvFrame *fc, int64_t count) noexcept nogil:
    """The frame's columns hold what their nodes say (0), else -1 (also for
    a null offset or timestamp, a header entry that is null or has a null
    key: the general way)."""
    cdef int64_t n = fc.length, e = fc.node_length[5]
    cdef int i
    if n < 0 or n > count:
        return -1
    for i in range(5):  # the top-level columns: one entry a row
        if fc.node_length[i] != n:
            return -1
    if fc.node_nulls[0] or fc.node_nulls[1] or fc.buf_len[1] < 8 * n or fc.buf_len[3] < 8 * n:
        return -1
    if not _binary_ok(fc, n, fc.node_nulls[2], 4) or not _binary_ok(fc, n, fc.node_nulls[3], 7):
        return -1
    if fc.node_nulls[4] == n:  # no record has headers
        return 0
    if (fc.node_length[6] != e or fc.node_length[7] != e or fc.node_nulls[5] or fc.node_nulls[6]
            or (fc.node_nulls[4] and fc.buf_len[10] < (n + 7) >> 3) or fc.buf_len[11] < 4 * (n + 1)
            or not _offsets_ok(fc.buf[11], n, e)
            or not _binary_ok(fc, e, 0, 13) or not _binary_ok(fc, e, fc.node_nulls[7], 16)):
        return -1
    return 0


cdef bint _env_marker(const EnvFrame *fc, int64_t count) noexcept nogil:
    """Whether the frame is a transaction marker: one record whose headers
    hold the control header (arrowlog.txn.is_control_frame)."""
    if count != 1 or fc.length != 1 or fc.node_nulls[4] == 1:
        return False
    cdef const int32_t *loff = <const int32_t *>fc.buf[11]
    cdef const int32_t *koff = <const int32_t *>fc.buf[14]
    cdef Py_ssize_t e
    for e in range(loff[0], loff[1]):
        if koff[e + 1] - koff[e] == 16 and memcmp(fc.buf[15] + koff[e], b"arrowlog.control", 16) == 0:
            return True
    return False
