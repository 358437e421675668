# Replay of many small clean partitions in two native passes (issue 19).
#
# A replay of a topic of 1,024 small partitions spent ~110 µs of Python on
# each: a PartitionLog (two opens, a flock, a mapping of its state, the
# layout mark's four stat()s), a segment view (open, mapping, header), one
# IPC decode per frame, and the unmapping afterwards. For a partition its
# last clean close left as it is (layout_mark.py: clean state, mark digest
# still matching the files), none of that is needed to read it:
#
#   clean_states()   at Replay(): per partition, partition.state read with
#                    one pread (no lock, no mapping, no descriptor kept), the
#                    clean word, the seqlock and the layout mark checked
#                    against four stat()s: its published watermarks;
#   read_small()     at to_arrow(): per partition, the active segment read
#                    with one pread, its header and every frame's CRC-32C
#                    checked, each frame's Arrow IPC message parsed
#                    (core/envframe.pxi: every length bounds-checked), the
#                    rows of the range appended to ONE set of buffers for many
#                    partitions: one RecordBatch instead of two per
#                    partition.
#
# Both run without the GIL (clean_read.py gives a large replay's two halves
# to two threads, one SmallReader each).
#
# Anything unusual (no mark, a stale one, a transaction marker, compression,
# a schema other than the expected one, a CRC that fails, a length that does
# not fit) makes the partition go the general way (replay.py), which reads
# it, or raises the error it always raised. Large partitions go that way too:
# their batches stay zero-copy views of the mapped segment, where copying
# would cost more than the fixed cost it saves.

cdef extern from "<sys/stat.h>" nogil:
    cdef struct timespec_st "timespec":
        long tv_sec
        long tv_nsec
    ctypedef struct struct_stat "struct stat":
        unsigned long st_dev
        unsigned long st_ino
        long st_size
        timespec_st st_mtim
        timespec_st st_ctim
    int c_fstatat "fstatat"(int dirfd, const char *path, struct_stat *buf, int flags)
    int c_fstat "fstat"(int fd, struct_stat *buf)

cdef extern from "<fcntl.h>" nogil:
    int c_open "open"(const char *path, int flags)
    int c_openat "openat"(int dirfd, const char *path, int flags)
    int O_RDONLY, O_CLOEXEC, O_NOFOLLOW, O_DIRECTORY, O_PATH, O_NOATIME

from libc.errno cimport errno, EPERM

cdef extern from "<unistd.h>" nogil:
    ssize_t c_pread "pread"(int fd, void *buf, size_t n, long offset)
    int c_close "close"(int fd)

from libc.string cimport memcmp as _rv_memcmp, memmove

cdef int _rv_reserve(GrowBuf *b, int64_t extra, bint zeroed=False) noexcept nogil:
    """gb_reserve without the GIL (the reading pass runs without it, on two
    threads for a large replay): -1 when memory runs out (the caller raises
    MemoryError once it holds the GIL again)."""
    cdef int64_t need = b.length + extra, cap
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


cdef int _presize(GrowBuf *b, int64_t size, ArenaBlock *block, bint warm=True) except -1:
    """Give the empty ``b`` room for ``size`` bytes at once (no doubling
    copies); a large one from the arena (arena.pxi: pages an earlier
    replay's table left, else huge pages, which a copy into fresh memory
    faults in 512 times less often), noted in ``block``; ``warm``: see
    arena_take."""
    if b.capacity >= size or b.length:
        return 0
    if size < ARENA_LEAST:
        return gb_reserve(b, size)
    if arena_take(size, warm, block) == NULL:
        raise MemoryError()
    free(b.data)
    b.data = <uint8_t *>block.p
    b.capacity = block.size
    return 0


cdef void _drop_block(GrowBuf *b, ArenaBlock *block) noexcept:
    """Empty ``b``, its memory back to the arena when it is ``block``."""
    if block.p != NULL and <void *>b.data == block.p and b.capacity == block.size:
        arena_give(b.data, b.capacity, max(b.length, block.touched))
    else:
        free(b.data)
    block.p = NULL
    b.data = NULL
    b.length = b.capacity = 0


cdef object _take_block(GrowBuf *b, Py_ssize_t size, ArenaBlock *block):
    """take_buffer, for a buffer _presize may have given an arena block
    (``block``): that goes back to the arena with the Arrow buffer."""
    cdef ArenaBuffer ab
    cdef void *p = block.p
    block.p = NULL
    if p == NULL or <void *>b.data != p or b.capacity != block.size:   # (growth past the presize moved it)
        return take_buffer(b, size)
    ab = ArenaBuffer.__new__(ArenaBuffer)
    ab.block, ab.block_size, ab.size, ab.touched = p, block.size, size, block.touched
    b.data = NULL
    b.length = b.capacity = 0
    return _pa.py_buffer(ab)

# clean_states() columns: the published state and, from the segment mark,
# what the active segment's .log was at the clean close
CLEAN_FIELDS = ("ok", "log_start_offset", "next_offset", "active_base_offset", "active_position", "generation",
                "dev", "ino", "size", "mtime_ns", "ctime_ns")
cdef enum:
    CS_OK = 0
    CS_LOG_START = 1
    CS_NEXT = 2
    CS_ACTIVE_BASE = 3
    CS_ACTIVE_POS = 4
    CS_GENERATION = 5
    CS_DEV = 6            # CS_DEV..CS_CTIME: the segment mark's facts, in _stat_fields order
    CS_INO = 7
    CS_SIZE = 8
    CS_MTIME = 9
    CS_CTIME = 10
    CS_FIELDS = 11
    RV_MARK_AT = 256       # the layout mark (layout_mark.py): magic, digest (closing.pxi writes it)
    RV_SEG_MARK_AT = 272   # the segment mark (layout_mark.py): magic, 5 facts, digest
    RV_SEG_MARK = 56
    RV_HEAD = RV_SEG_MARK_AT + RV_SEG_MARK   # the state's header, payload and both marks
    RV_SEG_FIXED = 40      # segment header before the schema message
    RV_PATH = 64           # "<partition>/<20 digits>.log" and "<partition>/partition.state" fit

cdef uint64_t RV_LAYOUT_SEED = 0x6172776c6d61726bULL   # "arwlmark"
cdef uint64_t RV_SEGMENT_SEED = 0x6172776c7365676dULL  # "arwlsegm"


cdef int _rv_path(char *out, int64_t partition, const char *name, Py_ssize_t name_len) noexcept nogil:
    """``<partition>/<name>`` (name_len bytes, NUL included) into ``out``
    (RV_PATH bytes), the path of a partition's file relative to its topic's
    directory; -1 for a negative partition. Written out by hand: snprintf
    took ~1% of a replay over 1,024 partitions, two paths a partition."""
    cdef char digits[20]
    cdef uint64_t v
    cdef int n = 0, i
    if partition < 0 or name_len > RV_PATH - 21:
        return -1
    v = <uint64_t>partition
    while True:
        digits[n] = <char>(48 + v % 10)
        n += 1
        v //= 10
        if v == 0:
            break
    for i in range(n):
        out[i] = digits[n - 1 - i]
    out[n] = 47   # "/"
    memcpy(out + n + 1, name, <size_t>name_len)
    return 0


cdef int _rv_segment_name(char *out, int64_t base_offset) noexcept nogil:
    """A segment's .log name (its base offset in 20 digits, as
    storage/segment_files.py names it) and its NUL into ``out`` (25 bytes); -1 for
    a negative base offset."""
    cdef uint64_t v
    cdef int i
    if base_offset < 0:
        return -1
    v = <uint64_t>base_offset
    for i in range(19, -1, -1):
        out[i] = <char>(48 + v % 10)
        v //= 10
    memcpy(out + 20, b".log", 5)
    return 0


cdef inline uint64_t _fmix64(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 33
    return h


cdef uint64_t _mark_digest(uint64_t seed, const uint8_t *state, const int64_t *stats, int n) noexcept nogil:
    """A mark's digest: the state's bytes [16, 120) (seqlock counter and
    payload) and ``n`` stat fields (5 a file: dev, ino, size, mtime ns,
    ctime ns)."""
    cdef uint64_t h = seed
    cdef int i
    for i in range(13):
        h = _fmix64(h ^ <uint64_t>load_i64(state + 8 * i)) + 0x9e3779b97f4a7c15ULL
    for i in range(n):
        h = _fmix64(h ^ <uint64_t>stats[i]) + 0x9e3779b97f4a7c15ULL
    return h


cdef int _stat_result_fields(object st, int64_t *out) except -1:
    out[0], out[1], out[2], out[3], out[4] = st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
    return 0


cdef int _state_bytes(object state, Py_buffer *buf) except -1:
    PyObject_GetBuffer(state, buf, PyBUF_SIMPLE)
    if buf.len != 104:
        PyBuffer_Release(buf)
        raise ValueError("a mark's digest takes the state's bytes [16, 120)")
    return 0


def mark_digest(state, stats):
    """The layout mark's 8-byte digest of ``state`` (partition.state's bytes
    [16, 120)) and ``stats`` (four os.stat_result: the partition directory
    and the active segment's .log, .index and .timeindex)."""
    cdef Py_buffer buf
    cdef int64_t s[20]
    cdef uint64_t h
    cdef int i = 0
    for st in stats:
        if i >= 20:
            raise ValueError("mark_digest takes four stat results")
        _stat_result_fields(st, s + i)
        i += 5
    if i != 20:
        raise ValueError("mark_digest takes four stat results")
    _state_bytes(state, &buf)
    h = _mark_digest(RV_LAYOUT_SEED, <const uint8_t *>buf.buf, s, 20)
    PyBuffer_Release(&buf)
    return PyBytes_FromStringAndSize(<char *>&h, 8)


def segment_mark(state, log_stat):
    """The segment mark (RV_SEG_MARK bytes: magic b"ARWLSEGM", the active
    .log's dev, ino, size, mtime ns and ctime ns as ``log_stat`` gives
    them, and their digest with ``state``, partition.state's bytes
    [16, 120))."""
    cdef Py_buffer buf
    cdef uint8_t out[RV_SEG_MARK]
    cdef int64_t facts[5]
    cdef uint64_t h
    _stat_result_fields(log_stat, facts)
    _state_bytes(state, &buf)
    h = _mark_digest(RV_SEGMENT_SEED, <const uint8_t *>buf.buf, facts, 5)
    PyBuffer_Release(&buf)
    memcpy(out, <const char *>b"ARWLSEGM", 8)
    memcpy(out + 8, facts, 40)
    memcpy(out + 48, &h, 8)
    return PyBytes_FromStringAndSize(<char *>out, RV_SEG_MARK)


cdef int _open_to_read(int dir_fd, const char *path) noexcept nogil:
    """``path`` (relative to ``dir_fd``) opened to read, without updating
    its access time when the process may (it owns the file): the first
    read of a file written since it was last read would otherwise dirty
    its inode (relatime), ~2 µs of journal work for each of a replay's two
    files a partition. Nothing in arrowlog reads access times."""
    cdef int fd = c_openat(dir_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOATIME)
    if fd < 0 and errno == EPERM:  # another user's file
        fd = c_openat(dir_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
    return fd


cdef inline void _stat_fields(const struct_stat *st, int64_t *out) noexcept nogil:
    out[0] = <int64_t>st.st_dev
    out[1] = <int64_t>st.st_ino
    out[2] = <int64_t>st.st_size
    out[3] = <int64_t>st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec
    out[4] = <int64_t>st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec


cdef int _clean_state(int topic_fd, int64_t partition, int64_t *row) noexcept nogil:
    """One partition's clean_states() row; 0 when the state is clean and its
    segment mark was left with this very state, else -1 (the row's other
    fields are then meaningless). Whether the segment is still what the
    mark says is for its reader to check, with the fstat of the descriptor
    it reads it through (SmallReader._read_partition): three system calls
    here, no path walked twice."""
    cdef char path[RV_PATH]
    cdef uint8_t head[RV_HEAD]
    cdef int fd
    cdef ssize_t got
    cdef uint64_t digest
    # (paths relative to the topic's directory: a shorter walk for each)
    if _rv_path(path, partition, b"partition.state", 16) != 0:
        return -1
    fd = _open_to_read(topic_fd, path)
    if fd < 0:
        return -1
    got = c_pread(fd, head, RV_HEAD, 0)
    c_close(fd)
    if got != RV_HEAD:
        return -1
    # magic, version 1, clean; no publish half-done; a segment mark
    if _rv_memcmp(head, b"ARWLSTAT\x01\x00\x00\x00\x01\x00\x00\x00", 16) != 0 or load_i64(head + 16) & 1 \
            or _rv_memcmp(head + RV_SEG_MARK_AT, b"ARWLSEGM", 8) != 0:
        return -1
    cdef StatePayload payload
    memcpy(&payload, head + 24, sizeof(StatePayload))
    if _state_fault(&payload, True) != 0:   # statecheck.pxi
        return -1
    cdef int64_t log_start = payload.log_start_offset, nxt = payload.next_offset
    cdef int64_t active = payload.active_base_offset, position = payload.active_position
    memcpy(row + CS_DEV, head + RV_SEG_MARK_AT + 8, 40)
    digest = _mark_digest(RV_SEGMENT_SEED, head + 16, row + CS_DEV, 5)
    if _rv_memcmp(&digest, head + RV_SEG_MARK_AT + 48, 8) != 0 or row[CS_SIZE] < position:
        return -1
    row[CS_OK] = 1
    row[CS_LOG_START] = log_start
    row[CS_NEXT] = nxt
    row[CS_ACTIVE_BASE] = active
    row[CS_ACTIVE_POS] = position
    row[CS_GENERATION] = load_i64(head + 24 + 9 * 8)
    return 0


def clean_states(bytes topic_dir, const int64_t[::1] partitions, int64_t[:, ::1] out):
    """Fill ``out`` (one row of len(CLEAN_FIELDS) int64 per partition) with
    what each partition's partition.state publishes and what its segment
    mark says of the active segment, when the state is clean and the mark
    was left with it (``ok`` 1); ``ok`` 0 means: open it the general way.
    Takes no lock and keeps no descriptor."""
    cdef Py_ssize_t i, n = partitions.shape[0]
    if out.shape[0] < n or out.shape[1] != CS_FIELDS:
        raise ValueError("clean_states: out must have one row of CLEAN_FIELDS per partition")
    out[:, :] = 0
    cdef int fd = c_open(topic_dir, O_PATH | O_DIRECTORY | O_CLOEXEC)
    if fd < 0:
        return  # none is ok: the general way says what is wrong
    with nogil:
        for i in range(n):
            if _clean_state(fd, partitions[i], &out[i, 0]) != 0:
                out[i, CS_OK] = 0
        c_close(fd)


cdef inline bint _is_marked(const struct_stat *st, const int64_t *state) noexcept nogil:
    """Whether ``st`` is the active segment's .log as its segment mark says."""
    cdef int64_t now[5]
    _stat_fields(st, now)
    return _rv_memcmp(now, state + CS_DEV, 40) == 0


# -- read_small -------------------------------------------------------------------------

cdef inline void _put_bits(uint8_t *dst, int64_t at, const uint8_t *src, int64_t from_bit, int64_t n) noexcept nogil:
    """Copy ``n`` validity bits (all set when ``src`` is NULL) to bit ``at``
    of the zeroed bitmap ``dst``."""
    cdef int64_t i, j
    if src == NULL:
        i = 0
        while i < n and (at + i) & 7:
            dst[(at + i) >> 3] |= <uint8_t>(1 << ((at + i) & 7))
            i += 1
        if n - i >= 8:
            memset(dst + ((at + i) >> 3), 0xFF, <size_t>((n - i) >> 3))
            i += (n - i) & ~(<int64_t>7)
        while i < n:
            dst[(at + i) >> 3] |= <uint8_t>(1 << ((at + i) & 7))
            i += 1
        return
    for i in range(n):
        j = from_bit + i
        if (src[j >> 3] >> (j & 7)) & 1:
            dst[(at + i) >> 3] |= <uint8_t>(1 << ((at + i) & 7))


cdef struct BinaryOut:
    GrowBuf valid
    GrowBuf offsets
    GrowBuf data
    int64_t nulls


cdef int _put_binary(BinaryOut *out, int64_t rows_before, const EnvFrame *fc, int col, int64_t nulls,
                     int64_t r0, int64_t r1) noexcept nogil:
    """Append rows [r0, r1) of the binary column whose buffers start at
    ``col`` (validity, offsets, data: checked by _env_fits); -2 when the
    batch's column would outgrow int32 offsets (the caller goes the general
    way), -1 when memory runs out."""
    cdef const uint8_t *valid = fc.buf[col]
    cdef const int32_t *o = <const int32_t *>fc.buf[col + 1]
    cdef int64_t k = r1 - r0, i, start, stop, base
    cdef int32_t *dst
    if k <= 0:
        return 0
    start = o[r0]
    stop = o[r1]
    base = out.data.length
    if base + (stop - start) > 0x7FFFFFFF:
        return -2
    # the data last: the values may be moved down within the buffer they
    # were read into (the value column's: SmallReader._read_partition), over
    # the frame's bytes before them, its validity and offsets included
    if _rv_reserve(&out.valid, (rows_before + k + 7) // 8 + 1 - out.valid.length, True) != 0:
        return -1
    out.valid.length = (rows_before + k + 7) // 8
    if nulls:
        _put_bits(out.valid.data, rows_before, valid, r0, k)
        out.nulls += _null_count(valid, r0, k)
    else:
        _put_bits(out.valid.data, rows_before, NULL, 0, k)
    if _rv_reserve(&out.offsets, 4 * k) != 0:
        return -1
    dst = <int32_t *>(out.offsets.data + out.offsets.length)
    for i in range(k):
        dst[i] = <int32_t>(base + o[r0 + i + 1] - start)
    out.offsets.length += 4 * k
    if _rv_reserve(&out.data, stop - start) != 0:
        return -1
    memmove(out.data.data + out.data.length, fc.buf[col + 2] + start, <size_t>(stop - start))
    out.data.length += stop - start
    return 0


cdef void _free_binary(BinaryOut *out) noexcept:
    free(out.valid.data)
    free(out.offsets.data)
    free(out.data.data)


cdef int _reset_binary(BinaryOut *out) except -1:
    out.nulls = 0
    gb_reserve(&out.offsets, 4)
    memset(out.offsets.data, 0, 4)
    out.offsets.length = 4
    return 0


cdef void _undo_bits(GrowBuf *valid, int64_t rows) noexcept nogil:
    """Clear the bits of rows past ``rows`` (a partition's rows undone)."""
    valid.length = (rows + 7) // 8
    if valid.data != NULL and valid.capacity > valid.length:
        memset(valid.data + valid.length, 0, <size_t>(valid.capacity - valid.length))
    if valid.data != NULL and rows & 7:
        valid.data[rows >> 3] &= <uint8_t>((1 << (rows & 7)) - 1)


cdef void _clear(GrowBuf *b) noexcept:
    free(b.data)
    b.data = NULL
    b.length = b.capacity = 0


cdef object _take_binary(BinaryOut *out, int64_t n, ArenaBlock *blocks):
    """The binary column of ``n`` rows appended to ``out``; ``out`` starts
    afresh (``blocks``: its offsets' and data's, see _take_block)."""
    cdef int64_t nulls = out.nulls
    validity = take_buffer(&out.valid, (n + 7) // 8) if nulls else None
    if not nulls:
        free(out.valid.data)
        out.valid.data = NULL
        out.valid.length = out.valid.capacity = 0
    offsets = _take_block(&out.offsets, 4 * (n + 1), &blocks[0])
    return envelope_binary(n, validity, offsets, _take_block(&out.data, out.data.length, &blocks[1]), nulls)


cdef int64_t _row_at(const int64_t *offsets, int64_t n, int64_t count, int64_t base, int64_t offset) noexcept nogil:
    """The first row whose offset is at or after ``offset`` (reading.Frame.row_at)."""
    cdef int64_t lo = 0, hi = n, mid
    if n == count:
        return min(max(offset - base, 0), n)
    while lo < hi:
        mid = (lo + hi) >> 1
        if offsets[mid] < offset:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef enum:
    RB_PART = 0
    RB_OFFS = 1
    RB_TS = 2
    RB_KEY = 3      # the key's offsets and data
    RB_VALUE = 5    # the value's offsets and data
    RB_HVALUE = 7   # the header values' (never presized)
    RB_HOFFS = 9    # the headers' list offsets
    RB_BLOCKS = 10


cdef class SmallReader:
    """The column buffers read_small() appends many partitions' rows to."""
    cdef GrowBuf part, offs, ts
    cdef BinaryOut key, value
    # headers: the lists' validity and offsets, their entries' keys and values
    cdef GrowBuf hvalid, hoffsets
    cdef BinaryOut hkey, hvalue
    cdef int64_t lists, entries
    cdef public int64_t rows
    # the arena blocks _presize gave (in RB_* order), handed on by take()
    cdef ArenaBlock blocks[RB_BLOCKS]

    def __dealloc__(self):
        free(self.part.data)
        free(self.offs.data)
        free(self.ts.data)
        _free_binary(&self.key)
        _free_binary(&self.value)
        free(self.hvalid.data)
        free(self.hoffsets.data)
        _free_binary(&self.hkey)
        _free_binary(&self.hvalue)

    cdef int _reset(self) except -1:
        self.rows = 0
        _reset_binary(&self.key)
        _reset_binary(&self.value)
        _reset_binary(&self.hkey)
        _reset_binary(&self.hvalue)
        gb_reserve(&self.hoffsets, 4)
        memset(self.hoffsets.data, 0, 4)
        self.hoffsets.length = 4
        self.lists = self.entries = 0
        return 0

    cdef int _read_partition(self, int topic_fd, int64_t partition, const int64_t *state, int64_t lo,
                             int64_t hi, const uint8_t *schema, Py_ssize_t schema_len, bint check_crc,
                             int64_t limit) noexcept nogil:
        """Append partition's rows [lo, hi): 0, or 1 when it must go the
        general way (nothing appended then), -1 when memory runs out."""
        cdef char path[RV_PATH]
        cdef struct_stat st
        cdef int fd
        cdef int64_t end = state[CS_ACTIVE_POS]
        cdef int64_t got = 0, r
        if end > limit:
            return 1
        cdef char name[25]
        if _rv_segment_name(name, state[CS_ACTIVE_BASE]) != 0 or _rv_path(path, partition, name, 25) != 0:
            return 1
        # read, not mapped (a copy of a small file costs less than a mapping's
        # faults and its munmap), straight into the room past the values
        # appended so far: the frames' values are then moved down into place
        # (_put_binary), in cache, instead of copied out of a buffer of their
        # own. The room is reserved now: nothing appended to the values
        # while this partition is read moves the buffer (its values are at
        # most the segment's bytes, and they only move down).
        if _rv_reserve(&self.value.data, end + 8) != 0:
            return -1
        cdef uint8_t *seg = self.value.data.data + ((self.value.data.length + 7) & ~(<Py_ssize_t>7))
        cdef ArenaBlock *block = &self.blocks[RB_VALUE + 1]
        block.touched = max(block.touched, <Py_ssize_t>(seg - self.value.data.data) + end)
        fd = _open_to_read(topic_fd, path)
        if fd >= 0:
            # the file its segment mark vouches for, as the clean
            # close left it (clean_states checked the size covers the
            # published position)
            if c_fstat(fd, &st) == 0 and _is_marked(&st, state):
                while got < end:
                    r = c_pread(fd, seg + got, <size_t>(end - got), got)
                    if r <= 0:
                        break
                    got += r
            c_close(fd)
        if got != end:
            return 1
        return self._read_mapped(seg, partition, state, lo, hi, schema, schema_len, check_crc)

    cdef int _read_mapped(self, const uint8_t *seg, int64_t partition, const int64_t *state, int64_t lo,
                          int64_t hi, const uint8_t *schema, Py_ssize_t schema_len, bint check_crc) noexcept nogil:
        cdef int64_t end = state[CS_ACTIVE_POS], r, pos, header_size, covered
        cdef const uint8_t *f
        cdef uint32_t body, count
        cdef int64_t base, r0, r1, k, rows0 = self.rows, key_nulls, value_nulls
        cdef EnvFrame fc
        cdef Py_ssize_t marks[10]
        cdef int res = 0
        header_size = load_u32(seg + 8)
        if _rv_memcmp(seg, b"ARWLSEG1", 8) != 0 or header_size % 8 or header_size > end \
                or header_size < RV_SEG_FIXED + <int64_t>load_u32(seg + 32) \
                or arrowlog_crc32c(0, seg + 16, <size_t>(header_size - 16)) != load_u32(seg + 12) \
                or load_i64(seg + 16) != state[CS_ACTIVE_BASE] or load_u32(seg + 36) & 3 \
                or load_u32(seg + 32) != schema_len or _rv_memcmp(seg + RV_SEG_FIXED, schema, schema_len) != 0:
            return 1
        # where each column stood, to undo this partition's rows
        marks[0], marks[1], marks[2] = self.part.length, self.offs.length, self.ts.length
        marks[3], marks[4] = self.key.offsets.length, self.key.data.length
        marks[5], marks[6] = self.value.offsets.length, self.value.data.length
        marks[7], marks[8], marks[9] = self.hoffsets.length, self.lists, self.entries
        key_nulls, value_nulls = self.key.nulls, self.value.nulls
        cdef Py_ssize_t hmarks[5]
        hmarks[0], hmarks[1] = self.hkey.offsets.length, self.hkey.data.length
        hmarks[2], hmarks[3], hmarks[4] = self.hvalue.offsets.length, self.hvalue.data.length, self.hvalue.nulls
        cdef int64_t entries0 = self.entries
        pos = header_size
        covered = lo
        while pos < end and covered < hi:
            if pos + C_FRAME_HEADER > end:
                break
            f = seg + pos
            body = load_u32(f + 16)
            count = load_u32(f + 20)
            base = load_i64(f + 8)
            if load_u32(f + 4) != C_FRAME_MAGIC or body % 8 or count == 0 or pos + C_FRAME_HEADER + body > end:
                break
            pos += C_FRAME_HEADER + body
            if base + count <= lo:
                continue
            if base >= hi:
                break
            if check_crc and not frame_crc_ok(f, body):
                break
            if _env_parse(f + C_FRAME_HEADER, body, count, &fc) != 0 or _env_marker(&fc, count):
                break  # (the general way leaves a transaction marker out)
            r0 = _row_at(<const int64_t *>fc.buf[1], fc.length, count, base, lo)
            r1 = _row_at(<const int64_t *>fc.buf[1], fc.length, count, base, hi)
            k = r1 - r0
            if k > 0:
                if _rv_reserve(&self.part, 4 * k) != 0 or _rv_reserve(&self.offs, 8 * k) != 0 or \
                        _rv_reserve(&self.ts, 8 * k) != 0:
                    res = -1
                    break
                for r in range(k):
                    (<int32_t *>(self.part.data + self.part.length))[r] = <int32_t>partition
                self.part.length += 4 * k
                memcpy(self.offs.data + self.offs.length, fc.buf[1] + 8 * r0, <size_t>(8 * k))
                self.offs.length += 8 * k
                memcpy(self.ts.data + self.ts.length, fc.buf[3] + 8 * r0, <size_t>(8 * k))
                self.ts.length += 8 * k
                # the values last: moving them down may overwrite what the
                # frame held before them, whatever order its buffers are in
                res = _put_binary(&self.key, self.rows, &fc, 4, fc.node_nulls[2], r0, r1)
                if res == 0:
                    res = self._put_headers(&fc, r0, r1)
                if res == 0:
                    res = _put_binary(&self.value, self.rows, &fc, 7, fc.node_nulls[3], r0, r1)
                if res != 0:
                    break
                self.rows += k
            covered = base + count
        if covered < hi or res != 0:
            # not every offset of the range was found (or memory ran out):
            # undo, go the general way
            self.part.length, self.offs.length, self.ts.length = marks[0], marks[1], marks[2]
            self.key.offsets.length, self.key.data.length = marks[3], marks[4]
            self.value.offsets.length, self.value.data.length = marks[5], marks[6]
            self.key.nulls, self.value.nulls = key_nulls, value_nulls
            _undo_bits(&self.key.valid, rows0)
            _undo_bits(&self.value.valid, rows0)
            self.hoffsets.length, self.lists, self.entries = marks[7], marks[8], marks[9]
            self.hkey.offsets.length, self.hkey.data.length = hmarks[0], hmarks[1]
            self.hvalue.offsets.length, self.hvalue.data.length, self.hvalue.nulls = hmarks[2], hmarks[3], hmarks[4]
            _undo_bits(&self.hvalid, rows0)
            _undo_bits(&self.hkey.valid, entries0)
            _undo_bits(&self.hvalue.valid, entries0)
            self.rows = rows0
            return -1 if res == -1 else 1
        return 0

    cdef int _put_headers(self, EnvFrame *fc, int64_t r0, int64_t r1) noexcept nogil:
        """Append the headers of rows [r0, r1) (their offsets checked by
        _env_fits); -2 when the batch's entries would outgrow int32 offsets,
        -1 when memory runs out."""
        cdef int64_t k = r1 - r0, n = fc.length, i, e0, e1
        cdef const int32_t *ho = <const int32_t *>fc.buf[11]
        cdef int32_t *dst
        if _rv_reserve(&self.hvalid, (self.rows + k + 7) // 8 + 1 - self.hvalid.length, True) != 0 or \
                _rv_reserve(&self.hoffsets, 4 * k) != 0:
            return -1
        self.hvalid.length = (self.rows + k + 7) // 8
        dst = <int32_t *>(self.hoffsets.data + self.hoffsets.length)
        if fc.node_nulls[4] == n:  # no record of the frame has headers: null lists, bits left 0
            for i in range(k):
                dst[i] = <int32_t>self.entries
            self.hoffsets.length += 4 * k
            return 0
        e0 = ho[r0]
        e1 = ho[r1]
        if self.entries + (e1 - e0) > 0x7FFFFFFF:
            return -2
        cdef int res = _put_binary(&self.hkey, self.entries, fc, 13, 0, e0, e1)
        if res == 0:
            res = _put_binary(&self.hvalue, self.entries, fc, 16, fc.node_nulls[7], e0, e1)
        if res != 0:
            return res
        for i in range(k):
            dst[i] = <int32_t>(self.entries + ho[r0 + i + 1] - e0)
        self.hoffsets.length += 4 * k
        if fc.node_nulls[4]:
            _put_bits(self.hvalid.data, self.rows, fc.buf[10], r0, k)
            self.lists += k - _null_count(fc.buf[10], r0, k)
        else:
            _put_bits(self.hvalid.data, self.rows, NULL, 0, k)
            self.lists += k
        self.entries += e1 - e0
        return 0

    def read(self, bytes topic_dir, const int64_t[::1] partitions, const int64_t[:, ::1] states,
             const int64_t[::1] lo, const int64_t[::1] hi, Py_ssize_t start, bytes schema, bint check_crc,
             int64_t partition_limit, int64_t batch_limit):
        """Append the ranges [lo[i], hi[i]) of partitions[start:] until one
        must go the general way or the batch holds ``batch_limit`` bytes of
        keys and values. Returns the index of the first partition not
        appended (len(partitions) when all were) and whether it must go the
        general way."""
        cdef Py_ssize_t i, n = partitions.shape[0]
        cdef int64_t size = 0, rows = 0
        if self.rows == 0:
            for i in range(start, n):
                if lo[i] < hi[i] and states[i, CS_OK] == 1 and states[i, CS_ACTIVE_POS] <= partition_limit:
                    size += states[i, CS_ACTIVE_POS]
                    rows += hi[i] - lo[i]
                    if size > batch_limit:
                        break
            rows = min(rows, size // 16 + 1)  # a record takes 16 bytes at least (offset, timestamp)
            _presize(&self.part, 4 * rows, &self.blocks[RB_PART])
            _presize(&self.offs, 8 * rows, &self.blocks[RB_OFFS])
            _presize(&self.ts, 8 * rows, &self.blocks[RB_TS])
            _presize(&self.key.offsets, 4 * (rows + 1), &self.blocks[RB_KEY])
            _presize(&self.value.offsets, 4 * (rows + 1), &self.blocks[RB_VALUE])
            _presize(&self.key.data, size, &self.blocks[RB_KEY + 1], False)  # (keys are short, mostly)
            _presize(&self.value.data, size, &self.blocks[RB_VALUE + 1])
            _presize(&self.hoffsets, 4 * (rows + 1), &self.blocks[RB_HOFFS])
            self._reset()
        cdef const uint8_t *msg = <const uint8_t *>PyBytes_AS_STRING(schema)
        cdef Py_ssize_t msg_len = len(schema)
        cdef const char *dir_path = topic_dir
        cdef int res = 0, fd
        # without the GIL: a large replay reads two halves of its partitions
        # on two threads (clean_read.py)
        with nogil:
            fd = c_open(dir_path, O_PATH | O_DIRECTORY | O_CLOEXEC)
            i = start
            while i < n:
                if lo[i] < hi[i]:
                    if states[i, CS_OK] != 1 or fd < 0:
                        res = 1
                        break
                    if self.rows and self.key.data.length + self.value.data.length + states[i, CS_ACTIVE_POS] > \
                            batch_limit:
                        break
                    res = self._read_partition(fd, partitions[i], &states[i, 0], lo[i], hi[i], msg, msg_len,
                                               check_crc, partition_limit)
                    if res != 0:
                        break
                i += 1
            if fd >= 0:
                c_close(fd)
        if res == -1:
            raise MemoryError()
        return i, res == 1

    cdef object _take_headers(self, int64_t n, object headers_type):
        cdef int64_t e = self.entries
        cdef object out
        if self.lists == 0:
            out = _pa.nulls(n, headers_type)
        else:
            values = _take_binary(&self.hvalue, e, &self.blocks[RB_HVALUE])
            out = envelope_headers(n, take_buffer(&self.hvalid, (n + 7) // 8),
                                   _take_block(&self.hoffsets, 4 * (n + 1), &self.blocks[RB_HOFFS]),
                                   self.lists, e, take_buffer(&self.hkey.offsets, 4 * (e + 1)),
                                   take_buffer(&self.hkey.data, self.hkey.data.length),
                                   values.buffers()[0], values.buffers()[1], values.buffers()[2], values.null_count,
                                   False)
        # what was not handed over starts afresh
        _clear(&self.hvalid)
        _drop_block(&self.hoffsets, &self.blocks[RB_HOFFS])
        _clear(&self.hkey.valid)
        _clear(&self.hkey.offsets)
        _clear(&self.hkey.data)
        _clear(&self.hvalue.valid)
        _clear(&self.hvalue.offsets)
        _clear(&self.hvalue.data)
        self.hkey.nulls = self.hvalue.nulls = 0
        self.lists = self.entries = 0
        return out

    def take(self, schema, headers_type):
        """The rows appended so far as one RecordBatch of ``schema``
        (partition, offset, timestamp, key, value, headers; no record has
        headers), and a fresh start."""
        cdef int64_t n = self.rows
        if n == 0:
            self._reset()
        parts = _pa.Array.from_buffers(_pa.int32(), n, [None, _take_block(&self.part, 4 * n, &self.blocks[RB_PART])])
        offs = _pa.Array.from_buffers(_pa.int64(), n, [None, _take_block(&self.offs, 8 * n, &self.blocks[RB_OFFS])])
        ts = _pa.Array.from_buffers(schema.field("timestamp").type, n,
                                    [None, _take_block(&self.ts, 8 * n, &self.blocks[RB_TS])])
        cols = [parts, offs, ts, _take_binary(&self.key, n, &self.blocks[RB_KEY]),
                _take_binary(&self.value, n, &self.blocks[RB_VALUE]),
                self._take_headers(n, headers_type)]
        self.rows = 0
        return _pa.RecordBatch.from_arrays(cols, schema=schema)
