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

cdef struct _CloseRow:
    uint8_t *base            # the state's mapping (its PartitionState kept alive by the caller's rows)
    uint64_t *seq
    StatePayload *payload
    uint32_t *word
    uint32_t *waiters
    const char *directory
    int fds[3]               # the active segment's .log, .index, .timeindex
    int64_t recovery_point   # published when above the state's
    int ok                   # 1: marked here; 0: left to layout_mark.write_mark


cdef int _close_mark(_CloseRow *row, const int64_t *limits) noexcept nogil:
    """Publish the row's recovery point, set the clean word and leave the
    layout mark (the format of storage/layout_mark.py; the digest of the
    replay's check, _mark_digest). 0 when the mark was left, -1 when its
    rules need more than this (the state looks impossible, the log starts
    below its active segment, the directory has a subdirectory, a stat
    fails): write_mark decides for that one."""
    cdef uint8_t *base = row.base
    cdef StatePayload *p = row.payload
    cdef _closing_stat st
    cdef int64_t stats[20]
    cdef uint64_t digest
    cdef int k
    if p.recovery_point < row.recovery_point:
        arrowlog_seq_begin(row.seq)
        p.recovery_point = row.recovery_point
        arrowlog_seq_end(row.seq)
        arrowlog_add_u32(row.word, 1)
        if arrowlog_load_u32(row.waiters) != 0:
            arrowlog_futex_wake(row.word)
    arrowlog_store_u32(<uint32_t *>(base + 12), 1)
    # layout.state_problem's bounds (``limits``: max offset, segment header,
    # max active position, offset and time index entries), and a log that
    # starts in its active segment
    if not (0 <= p.next_offset < limits[0] and 0 <= p.log_start_offset <= p.next_offset
            and 0 <= p.active_base_offset <= p.log_start_offset
            and limits[1] <= p.active_position <= limits[2] and p.active_position % 8 == 0
            and 0 <= p.offset_index_entries <= limits[3] and 0 <= p.time_index_entries <= limits[4]
            and 0 <= p.bytes_since_index <= limits[2] and 0 <= p.recovery_point <= p.next_offset):
        return -1
    if row.fds[0] < 0 or row.fds[1] < 0 or row.fds[2] < 0:
        return -1
    # a directory with a subdirectory may hold a cleaner's swap: write_mark looks
    if _closing_stat_path(row.directory, &st) != 0 or st.st_nlink != 2:
        return -1
    _stat_fields(<const struct_stat *>&st, stats)
    for k in range(3):
        if _closing_fstat(row.fds[k], &st) != 0:
            return -1
        _stat_fields(<const struct_stat *>&st, stats + 5 * (k + 1))
    digest = _mark_digest(base + 16, stats)
    memcpy(base + RV_MARK_AT, b"ARWLMARK", 8)
    memcpy(base + RV_MARK_AT + 8, &digest, 8)
    return 0


def close_marks(rows, limits):
    """The clean close of many partitions after their data was synced
    (storage/partition.py, close_many; the caller holds each one's append
    lock). ``rows``: (PartitionState, directory as bytes, the active
    segment's three descriptors or -1, the recovery point to publish);
    ``limits``: the bounds of layout.state_problem. For each, in one pass
    without the GIL: the recovery point published, the clean word set and
    the layout mark left in the state's mapping (the kernel's writeback
    takes them to disk). Returns the indexes of the rows whose mark it left
    to layout_mark.write_mark (their recovery point and clean word are set)."""
    cdef Py_ssize_t n = len(rows), i
    cdef int64_t lim[5]
    cdef PartitionState state
    for i in range(5):
        lim[i] = limits[i]
    if n == 0:
        return []
    cdef _CloseRow *buf = <_CloseRow *>malloc(n * sizeof(_CloseRow))
    if buf == NULL:
        raise MemoryError()
    keep = []  # the directories' bytes, alive while the pass reads them
    try:
        for i in range(n):
            state, directory, log_fd, index_fd, time_fd, rp = rows[i]
            state._need_write()
            if not isinstance(directory, bytes):
                raise TypeError("close_marks takes each directory as bytes")
            keep.append(directory)
            buf[i].base, buf[i].seq, buf[i].payload = state.base, state.seq, state.payload
            buf[i].word, buf[i].waiters = state.word, state.waiters
            buf[i].directory = <const char *>directory
            buf[i].fds[0], buf[i].fds[1], buf[i].fds[2] = log_fd, index_fd, time_fd
            buf[i].recovery_point = rp
        with nogil:
            for i in range(n):
                buf[i].ok = _close_mark(&buf[i], lim) == 0
        return [i for i in range(n) if not buf[i].ok]
    finally:
        free(buf)
