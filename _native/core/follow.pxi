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
# (core/envframe.pxi: every length checked against the frame) and points a
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
#     header, as arrowlog.txn.is_control_frame says), its offsets
#     ascending inside the frame's range; core/envframe.pxi checks the rest.

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


cdef class FrameFollower:
    """Reads the frames a consumer follows at the end of one partition's active
    segment (see the top of core/follow.pxi for when it answers; its
    attributes are in core.pxd)."""

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
    envelope batch core/envframe.pxi accepts, has no row, or is a
    transaction marker. ``owner`` keeps the memory alive."""
    cdef EnvFrame fc
    cdef Py_ssize_t i
    if _env_parse(msg, body, count, &fc) != 0 or fc.length == 0 or _env_marker(&fc, count):
        return None
    cdef int64_t rows = fc.length
    # offsets: ascending inside the frame (a compacted frame has gaps)
    cdef const int64_t *offs = <const int64_t *>fc.buf[1]
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
    v.ts = <const int64_t *>fc.buf[3]
    v.koff = <const int32_t *>fc.buf[5]
    v.kdata = fc.buf[6]
    v.kvalid = fc.buf[4] if fc.node_nulls[2] else NULL
    v.kbit = 0
    v.voff = <const int32_t *>fc.buf[8]
    v.vdata = fc.buf[9]
    v.vvalid = fc.buf[7] if fc.node_nulls[3] else NULL
    v.vbit = 0
    v.binary_values = True
    v.headers_col = None
    v.value_col = None
    if fc.node_nulls[4] != rows:  # some record has headers
        v.hoff = <const int32_t *>fc.buf[11]
        v.hvalid = fc.buf[10] if fc.node_nulls[4] else NULL
        v.hkoff = <const int32_t *>fc.buf[14]
        v.hkdata = fc.buf[15]
        v.hvoff = <const int32_t *>fc.buf[17]
        v.hvdata = fc.buf[18]
        v.hvvalid = fc.buf[16] if fc.node_nulls[7] else NULL
    return v


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
