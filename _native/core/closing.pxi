# Closing many partitions at once (storage/partition.py, close_many): the
# descriptors of every partition closed are released in one pass, without
# the GIL, instead of six os.close() calls (and their Python) a partition.

cdef extern from "<unistd.h>" nogil:
    int _closing_close "close"(int fd)


def close_fds(fds):
    """Close every descriptor in ``fds`` (a list of ints; negative ones are
    skipped) with the GIL released. A failed close is not retried (Linux
    frees the descriptor either way) nor raised, as files.close_fds does:
    the data was synced before. Returns how many closes failed."""
    cdef Py_ssize_t n = len(fds), i
    cdef int failed = 0
    if n == 0:
        return 0
    cdef int *buf = <int *>malloc(n * sizeof(int))
    if buf == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            buf[i] = <int>fds[i]
        with nogil:
            for i in range(n):
                if buf[i] >= 0 and _closing_close(buf[i]) != 0:
                    failed += 1
    finally:
        free(buf)
    return failed


cdef extern from "<sys/stat.h>" nogil:
    ctypedef struct _closing_stat "struct stat":
        unsigned long st_nlink
    int _closing_fstat "fstat"(int fd, _closing_stat *buf)
    int _closing_stat_path "stat"(const char *path, _closing_stat *buf)

# a row of close_stats(): ok (1, or 0: left to write_mark), then the four
# (dev, ino, size, mtime ns, ctime ns) of the mark's digest
cdef enum:
    CLOSE_STAT_ROW = 21


cdef int _close_stat(const char *directory, const int *fds, int64_t *out) noexcept nogil:
    """The stats a partition's layout mark digests: its directory and its
    active segment's three files (through their descriptors). -1 when the
    mark's rules need more than this (no writer descriptors, a stat fails,
    the directory has a subdirectory, which may hold a cleaner's swap)."""
    cdef _closing_stat st
    cdef int k
    if fds[0] < 0 or fds[1] < 0 or fds[2] < 0:
        return -1
    if _closing_stat_path(directory, &st) != 0 or st.st_nlink != 2:
        return -1
    _stat_fields(<const struct_stat *>&st, out)
    for k in range(3):
        if _closing_fstat(fds[k], &st) != 0:
            return -1
        _stat_fields(<const struct_stat *>&st, out + 5 * (k + 1))
    return 0


def close_stats(rows):
    """Before a clean close's flush ends (storage/partition.py, close_many;
    nothing changes the files meanwhile: the caller holds each partition's
    locks): for each (directory as bytes, the active segment's .log, .index
    and .timeindex descriptors or -1) the stats its layout mark digests,
    taken without the GIL; then those three descriptors are closed (-1s
    are skipped). Returns the rows for close_marks."""
    cdef Py_ssize_t n = len(rows), i
    cdef int *fds = <int *>malloc((3 * n + 1) * sizeof(int))
    cdef const char **dirs = <const char **>malloc((n + 1) * sizeof(char *))
    out = PyBytes_FromStringAndSize(NULL, (n * CLOSE_STAT_ROW + 1) * sizeof(int64_t))
    cdef int64_t *o = <int64_t *>PyBytes_AS_STRING(out)
    if fds == NULL or dirs == NULL:
        free(fds)
        free(dirs)
        raise MemoryError()
    try:
        for i in range(n):
            directory, fds[3 * i], fds[3 * i + 1], fds[3 * i + 2] = rows[i]
            if not isinstance(directory, bytes):
                raise TypeError("close_stats takes each directory as bytes")
            dirs[i] = <const char *>directory  # (alive in ``rows`` meanwhile)
        with nogil:
            for i in range(n):
                o[i * CLOSE_STAT_ROW] = _close_stat(dirs[i], fds + 3 * i, o + i * CLOSE_STAT_ROW + 1) == 0
            for i in range(3 * n):
                if fds[i] >= 0:
                    _closing_close(fds[i])
    finally:
        free(fds)
        free(dirs)
    return out


cdef struct _CloseRow:
    uint8_t *base            # the state's mapping (its PartitionState kept alive by the caller's rows)
    uint64_t *seq
    StatePayload *payload
    uint32_t *word
    uint32_t *waiters
    int64_t recovery_point   # published when above the state's
    int64_t *stats           # its close_stats() row
    int ok                   # 1: marked here; 0: left to layout_mark.write_mark


cdef int _close_mark(_CloseRow *row) noexcept nogil:
    """Publish the row's recovery point, set the clean word and leave the
    layout and segment marks (the format of storage/layout_mark.py; the
    digests of the replay's checks, _mark_digest). 0 when the mark was left, -1 when its
    rules need more than this (close_stats could not take the stats, the
    state looks impossible, the log starts below its active segment):
    write_mark decides for that one."""
    cdef uint8_t *base = row.base
    cdef StatePayload *p = row.payload
    cdef uint64_t digest
    if p.recovery_point < row.recovery_point:
        arrowlog_seq_begin(row.seq)
        p.recovery_point = row.recovery_point
        arrowlog_seq_end(row.seq)
        arrowlog_add_u32(row.word, 1)
        if arrowlog_load_u32(row.waiters) != 0:
            arrowlog_futex_wake(row.word)
    arrowlog_store_u32(<uint32_t *>(base + 12), 1)
    if row.stats[0] != 1:
        return -1
    # a state that could be true (statecheck.pxi), whose log starts in its
    # active segment (layout_mark.py's rules)
    if _state_fault(p, True) != 0:
        return -1
    digest = _mark_digest(RV_LAYOUT_SEED, base + 16, row.stats + 1, 20)
    memcpy(base + RV_MARK_AT, b"ARWLMARK", 8)
    memcpy(base + RV_MARK_AT + 8, &digest, 8)
    # the segment mark replay's clean_states reads (layout_mark.py): the
    # active .log's five facts (the second stat of the row) and their digest
    digest = _mark_digest(RV_SEGMENT_SEED, base + 16, row.stats + 6, 5)
    memcpy(base + RV_SEG_MARK_AT, b"ARWLSEGM", 8)
    memcpy(base + RV_SEG_MARK_AT + 8, row.stats + 6, 40)
    memcpy(base + RV_SEG_MARK_AT + 48, &digest, 8)
    return 0


def close_marks(rows, stats):
    """The clean close of many partitions once their data was synced
    (storage/partition.py, close_many; the caller holds each one's append
    lock). ``rows``: (PartitionState, the recovery point to publish);
    ``stats``: what close_stats returned for the same partitions. For
    each, in one pass without the GIL: the recovery point published, the
    clean word set and the layout mark left in the state's mapping (the
    kernel's writeback takes them to disk). Returns the indexes of the rows
    whose mark it left to layout_mark.write_mark (their recovery point and
    clean word are set)."""
    cdef Py_ssize_t n = len(rows), i
    cdef PartitionState state
    if not isinstance(stats, bytes) or len(stats) < <Py_ssize_t>(n * CLOSE_STAT_ROW * sizeof(int64_t)):
        raise ValueError("close_marks takes the bytes close_stats returned for the same rows")
    cdef int64_t *st = <int64_t *>PyBytes_AS_STRING(stats)
    if n == 0:
        return []
    cdef _CloseRow *buf = <_CloseRow *>malloc(n * sizeof(_CloseRow))
    if buf == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            state, rp = rows[i]
            state._need_write()
            buf[i].base, buf[i].seq, buf[i].payload = state.base, state.seq, state.payload
            buf[i].word, buf[i].waiters = state.word, state.waiters
            buf[i].recovery_point = rp
            buf[i].stats = st + i * CLOSE_STAT_ROW
        with nogil:
            for i in range(n):
                buf[i].ok = _close_mark(&buf[i]) == 0
        return [i for i in range(n) if not buf[i].ok]
    finally:
        free(buf)
