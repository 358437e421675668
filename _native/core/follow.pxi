# A consumer following the end of a partition: the next frame of the active
# segment straight from the published state to a BatchView, in one call.
#
# The general read (storage/reading.py, storage/reader.py, the consumer's
# _load) takes ~25 µs of Python and pyarrow for one new small frame: a dict
# snapshot of the state, the frame header, a CRC pass bookkept in Python, a
# pyarrow IPC decode, a Frame, the transaction filter reading the headers
# column, the schema conform, and a BatchView built through pyarrow's
# accessors. A FrameFollower does the common case natively: it reads the
# published state under the seqlock, the frame header at the position where
# the last read ended, checks the frame's CRC-32C (once per process, in the
# segment's set of checked positions), parses the frame's Arrow IPC message
# (flatbuffer metadata, every length checked against the frame) and points a
# BatchView at the mapped columns: no pyarrow object is made.
#
# It answers only when every condition of the common case holds; otherwise
# it says so (False) and the caller reads through the general path,
# which raises the errors (a failed CRC, a damaged state) with their names:
#   - the state reads consistently and its generation and active segment are
#     those the follower was made for, the log start is not past the cursor;
#   - the path it was given to watch (the data directory's transaction state)
#     does not exist, looked at after the state was read (arrowlog/txn.py:
#     then no record below that high watermark belongs to a transaction);
#   - a frame starts exactly at the cursor (offset and byte position), inside
#     the published active position and the mapping, and passes its CRC;
#   - its message is an uncompressed RecordBatch of the binary envelope
#     (offset, timestamp, key, value: binary, headers), at least one row,
#     and not a transaction marker (one record with the arrowlog.control
#     header, as arrowlog.txn.is_control_frame says). Its
#     nodes and buffers are those of core/accumulator.pxi's ENV_NODES and
#     ENV_BUFFERS, in the order that file describes.

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef extern from "<unistd.h>" nogil:
    int access(const char *path, int mode)
    int F_OK

cdef extern from *:
    """
    #if defined(__x86_64__) || defined(__i386__)
    static inline void arrowlog_cpu_relax(void) { __builtin_ia32_pause(); }
    #elif defined(__aarch64__)
    static inline void arrowlog_cpu_relax(void) { __asm__ __volatile__("yield"); }
    #else
    static inline void arrowlog_cpu_relax(void) { }
    #endif
    """
    void arrowlog_cpu_relax() nogil


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


cdef class FrameFollower:
    """Reads the frames a consumer follows at the end of one partition's active
    segment (see the top of core/follow.pxi for when it answers)."""

    cdef PartitionState state
    cdef MappedFile log
    cdef readonly int64_t generation
    cdef readonly int64_t active_base
    cdef readonly int64_t offset      # the next offset the cursor expects
    cdef readonly int64_t position    # the byte position of its frame
    cdef str topic
    cdef int32_t partition
    cdef object verified              # set of checked frame positions, None: no CRC check
    cdef object remember              # remember(positions): records a frame that passed
    cdef bytes absent                 # a path that must not exist (None: none)

    def __init__(self, PartitionState state, MappedFile log, int64_t generation, int64_t active_base,
                 int64_t offset, int64_t position, str topic, int32_t partition, verified, remember,
                 absent=None):
        self.state = state
        self.log = log
        self.generation = generation
        self.active_base = active_base
        self.offset = offset
        self.position = position
        self.topic = topic
        self.partition = partition
        self.verified = verified
        self.remember = remember
        self.absent = None if absent is None else _os.fsencode(absent)

    def next_view(self, int64_t offset):
        """The BatchView of the frame at ``offset`` (where the last one ended),
        moving the cursor past it; None when ``offset`` is the high watermark;
        False when the general path must answer."""
        cdef StatePayload p
        if offset != self.offset or not arrowlog_seq_read(self.state.seq, &p, self.state.payload,
                                                          sizeof(StatePayload)):
            return False
        if p.next_offset == offset and p.generation == self.generation:
            return None
        if (p.generation != self.generation or p.active_base_offset != self.active_base
                or p.log_start_offset > offset or p.next_offset < offset or offset < self.active_base):
            return False
        if self.absent is not None and access(self.absent, F_OK) == 0:
            return False
        cdef Py_ssize_t pos = self.position
        cdef Py_ssize_t end = p.active_position
        if end > self.log.capacity or pos < 0 or pos % 8 or pos + C_FRAME_HEADER > end:
            return False
        cdef const uint8_t *f = self.log.base + pos
        cdef uint32_t body = load_u32(f + 16)
        cdef uint32_t count = load_u32(f + 20)
        if (load_u32(f + 4) != C_FRAME_MAGIC or load_i64(f + 8) != offset or count == 0 or body % 8
                or body > C_MAX_FRAME_BODY or pos + C_FRAME_HEADER + <Py_ssize_t>body > end):
            return False
        cdef bint ok = True
        if self.verified is not None and pos not in self.verified:
            with nogil:
                ok = frame_crc_ok(f, body)
            if not ok:
                return False  # the general read names the frame
            self.remember([pos])
        view = envelope_view(f + C_FRAME_HEADER, body, offset, count, self.log, self.topic, self.partition)
        if view is None:
            return False
        self.offset = offset + count
        self.position = pos + C_FRAME_HEADER + body
        return view


cdef object envelope_view(const uint8_t *msg, uint32_t body, int64_t base, uint32_t count, object owner,
                          str topic, int32_t partition):
    """A BatchView over the IPC message of ``body`` bytes at ``msg`` (a frame
    holding offsets base .. base+count-1), or None when it is not an
    uncompressed binary-envelope RecordBatch whose every
    length fits the frame, or when it is a transaction marker. ``owner``
    keeps the memory alive."""
    if body < 8 or load_u32(msg) != 0xFFFFFFFF:
        return None
    cdef Py_ssize_t meta = <int32_t>load_u32(msg + 4)
    if meta <= 0 or meta % 8 or 8 + meta > body:  # the body's buffers start 8-aligned
        return None
    cdef const uint8_t *fb = msg + 8
    cdef Py_ssize_t vt, vs, at, rb, n_nodes, n_bufs, nodes, bufs, i
    cdef Py_ssize_t root = load_u32(fb)
    if not _fb_table(fb, meta, root, &vt, &vs):
        return None
    at = _fb_field(fb, root, vt, vs, 1, 1, meta)  # header_type
    if at <= 0 or fb[at] != 3:                    # MessageHeader.RecordBatch
        return None
    at = _fb_field(fb, root, vt, vs, 3, 8, meta)  # bodyLength
    if at <= 0:
        return None
    cdef int64_t body_len = load_i64(fb + at)
    if body_len < 0 or body_len > <int64_t>body - 8 - meta:
        return None
    at = _fb_field(fb, root, vt, vs, 2, 4, meta)  # header
    if at <= 0:
        return None
    rb = at + <Py_ssize_t>load_u32(fb + at)
    if not _fb_table(fb, meta, rb, &vt, &vs):
        return None
    if _fb_field(fb, rb, vt, vs, 3, 4, meta) != 0:  # compression: the general path decodes it
        return None
    at = _fb_field(fb, rb, vt, vs, 0, 8, meta)  # length
    if at <= 0:
        return None
    cdef int64_t rows = load_i64(fb + at)
    if rows <= 0 or rows > count:
        return None
    at = _fb_field(fb, rb, vt, vs, 1, 4, meta)  # nodes
    if at <= 0:
        return None
    nodes = _fb_vector(fb, at, 16, meta, &n_nodes)
    at = _fb_field(fb, rb, vt, vs, 2, 4, meta)  # buffers
    if nodes < 0 or at <= 0 or n_nodes != ENV_NODES:
        return None
    bufs = _fb_vector(fb, at, 16, meta, &n_bufs)
    if bufs < 0 or n_bufs != ENV_BUFFERS:
        return None
    for i in range(5):  # the top-level columns: one entry a row
        if load_i64(fb + nodes + 16 * i) != rows:
            return None
    if load_i64(fb + nodes + 8) != 0 or load_i64(fb + nodes + 24) != 0:  # offset, timestamp: never null
        return None
    cdef int64_t boff[ENV_BUFFERS]
    cdef int64_t blen[ENV_BUFFERS]
    for i in range(ENV_BUFFERS):
        boff[i] = load_i64(fb + bufs + 16 * i)
        blen[i] = load_i64(fb + bufs + 16 * i + 8)
        if boff[i] < 0 or blen[i] < 0 or boff[i] % 8 or boff[i] > body_len or blen[i] > body_len - boff[i]:
            return None
    cdef const uint8_t *data = fb + meta
    cdef int64_t key_nulls = load_i64(fb + nodes + 40), value_nulls = load_i64(fb + nodes + 56)
    cdef int64_t bitmap = (rows + 7) >> 3
    if (blen[1] < 8 * rows or blen[3] < 8 * rows or blen[5] < 4 * (rows + 1) or blen[8] < 4 * (rows + 1)
            or key_nulls < 0 or key_nulls > rows or value_nulls < 0 or value_nulls > rows
            or (key_nulls and blen[4] < bitmap) or (value_nulls and blen[7] < bitmap)
            or not _offsets_ok(data + boff[5], rows, blen[6]) or not _offsets_ok(data + boff[8], rows, blen[9])):
        return None
    cdef int64_t header_nulls = load_i64(fb + nodes + 72), entries = load_i64(fb + nodes + 80)
    cdef int64_t entry_value_nulls = load_i64(fb + nodes + 120)
    cdef bint with_headers = header_nulls != rows
    if with_headers and (
            header_nulls < 0 or header_nulls > rows or (header_nulls and blen[10] < bitmap)
            or entries < 0 or load_i64(fb + nodes + 88) != 0                          # the entries: never null
            or load_i64(fb + nodes + 96) != entries or load_i64(fb + nodes + 104) != 0  # their keys: never null
            or load_i64(fb + nodes + 112) != entries
            or entry_value_nulls < 0 or entry_value_nulls > entries
            or (entry_value_nulls and blen[16] < ((entries + 7) >> 3))
            or blen[11] < 4 * (rows + 1) or blen[14] < 4 * (entries + 1) or blen[17] < 4 * (entries + 1)
            or not _offsets_ok(data + boff[11], rows, entries)
            or not _offsets_ok(data + boff[14], entries, blen[15])
            or not _offsets_ok(data + boff[17], entries, blen[18])
            or (count == 1 and _has_control_header(data, boff, header_nulls))):
        return None
    # offsets: ascending inside the frame (a compacted frame has gaps)
    cdef const int64_t *offs = <const int64_t *>(data + boff[1])
    cdef int64_t prev = base - 1
    for i in range(rows):
        if offs[i] <= prev:
            return None
        prev = offs[i]
    if prev >= base + count:
        return None
    cdef BatchView v = BatchView.__new__(BatchView)
    v.batch = owner
    v.topic = topic
    v.partition = partition
    v.base_offset = base
    v.num_rows = rows
    v.next_offset = base + count
    v.offs = offs
    v.ts = <const int64_t *>(data + boff[3])
    v.koff = <const int32_t *>(data + boff[5])
    v.kdata = data + boff[6]
    v.kvalid = data + boff[4] if key_nulls else NULL
    v.kbit = 0
    v.voff = <const int32_t *>(data + boff[8])
    v.vdata = data + boff[9]
    v.vvalid = data + boff[7] if value_nulls else NULL
    v.vbit = 0
    v.binary_values = True
    v.headers_col = None
    v.value_col = None
    if with_headers:
        v.hoff = <const int32_t *>(data + boff[11])
        v.hvalid = data + boff[10] if header_nulls else NULL
        v.hkoff = <const int32_t *>(data + boff[14])
        v.hkdata = data + boff[15]
        v.hvoff = <const int32_t *>(data + boff[17])
        v.hvdata = data + boff[18]
        v.hvvalid = data + boff[16] if entry_value_nulls else NULL
    return v


cdef bytes CONTROL_KEY = b"arrowlog.control"  # arrowlog.txn.CONTROL_HEADER


cdef bint _has_control_header(const uint8_t *data, const int64_t *boff, int64_t header_nulls) noexcept:
    """Whether the first record (of a one-record frame) has the transaction
    marker's header (arrowlog.txn.is_control_frame); its lengths checked."""
    if header_nulls and not data[boff[10]] & 1:
        return False
    cdef const int32_t *loff = <const int32_t *>(data + boff[11])
    cdef const int32_t *koff = <const int32_t *>(data + boff[14])
    cdef const char *key = PyBytes_AS_STRING(CONTROL_KEY)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(CONTROL_KEY), e
    for e in range(loff[0], loff[1]):
        if koff[e + 1] - koff[e] == n and memcmp(data + boff[15] + koff[e], key, n) == 0:
            return True
    return False


def follow_spin(PartitionState state, int64_t offset, double seconds):
    """Busy-look at the published high watermark until it passes ``offset``
    (True) or ``seconds`` passed (False), with the GIL released; a CPU
    "pause" between looks keeps the spin off the memory bus and hands the
    core's other hyperthread its cycles, and every 64 looks (a few µs) it
    offers the core to any other runnable thread (sched_yield: immediate
    when there is none), so on a machine with more busy threads than cores
    the spin does not hold a core the appending process may be waiting
    for. It reads only the mapped word (a hint: the read that follows
    takes the state under its seqlock)."""
    cdef double deadline = monotonic_s() + seconds
    cdef const uint64_t *word = <const uint64_t *>&state.payload.next_offset
    cdef int spins = 0
    cdef bint found = False
    with nogil:
        while True:
            if <int64_t>arrowlog_load_u64(word) > offset:
                found = True
                break
            arrowlog_cpu_relax()
            spins += 1
            if spins >= 64:
                spins = 0
                if monotonic_s() >= deadline:
                    break
                sched_yield()
    return found
