# The published state of a partition, shared by every process through a
# mapped 4 KiB file (`partition.state`).
#
#   offset  size  field
#        0     8  magic "ARWLSTAT"
#        8     4  version (1)
#       12     4  clean: 1 after the last process closed the partition cleanly
#       16     8  seq: seqlock counter, odd while the writer is publishing
#       24    96  payload (StatePayload in core.pxd), guarded by seq
#      128     4  futex word, incremented after every publish
#      132     4  number of readers waiting on the futex word
#
# Writers publish under the partition's append lock; readers copy the payload
# under the seqlock and never block a writer. The file is a cache of what the
# segments say: after an unclean shutdown it is rebuilt by recovery.

STATE_FILE_SIZE = 4096
STATE_FIELDS = (
    "log_start_offset", "next_offset", "active_base_offset", "active_position",
    "active_max_timestamp", "offset_index_entries", "time_index_entries", "bytes_since_index",
    "recovery_point", "generation", "segment_created_ms",
)
# StatePayload is a run of int64 fields in STATE_FIELDS order.
STATE_SLOT = {name: i for i, name in enumerate(STATE_FIELDS)}
cdef bytes STATE_MAGIC = b"ARWLSTAT"


cdef class PartitionState:
    """The shared state of one partition over a MappedFile of STATE_FILE_SIZE."""

    def __cinit__(self, MappedFile mapping):
        if mapping.capacity < 4096:
            raise ValueError("state mapping too small")
        self.mapping = mapping
        self.base = mapping.base
        self.seq = <uint64_t *>(self.base + 16)
        self.payload = <StatePayload *>(self.base + 24)
        self.word = <uint32_t *>(self.base + 128)
        self.waiters = <uint32_t *>(self.base + 132)
        self.writable = mapping.writable

    cdef int _need_write(self) except -1:
        if not self.writable:
            raise PermissionError(30, "the partition state is mapped read-only (read-only file system)")
        return 0

    def is_initialised(self):
        return PyBytes_FromStringAndSize(<char *>self.base, 8) == STATE_MAGIC and load_u32(self.base + 8) == 1

    def initialise(self, **fields):
        """Write a fresh state (caller holds the append lock)."""
        self._need_write()
        memcpy(self.base, PyBytes_AS_STRING(STATE_MAGIC), 8)
        store_u32(self.base + 8, 1)
        store_u32(self.base + 12, 0)
        arrowlog_store_u64(self.seq, 0)
        memset(self.payload, 0, sizeof(StatePayload))
        self.publish(**fields)

    @property
    def clean(self):
        return bool(arrowlog_load_u32(<uint32_t *>(self.base + 12)))

    @clean.setter
    def clean(self, value):
        self._need_write()
        arrowlog_store_u32(<uint32_t *>(self.base + 12), 1 if value else 0)

    @property
    def torn(self):
        """True when a writer died between beginning and ending a publish."""
        return bool(arrowlog_load_u64(self.seq) & 1)

    def snapshot(self):
        """The payload as a dict, consistent under the seqlock. Raises
        BlockingIOError if a writer died mid-publish (seq stays odd)."""
        cdef StatePayload p
        if not arrowlog_seq_read(self.seq, &p, self.payload, sizeof(StatePayload)):
            raise BlockingIOError("partition state is being published by a writer that died")
        cdef int64_t *slots = <int64_t *>&p
        return {name: slots[i] for i, name in enumerate(STATE_FIELDS)}

    cpdef int64_t next_offset(self) except? -1:
        cdef StatePayload p
        if not arrowlog_seq_read(self.seq, &p, self.payload, sizeof(StatePayload)):
            raise BlockingIOError("partition state is being published by a writer that died")
        return p.next_offset

    cpdef int64_t log_start_offset(self) except? -1:
        cdef StatePayload p
        if not arrowlog_seq_read(self.seq, &p, self.payload, sizeof(StatePayload)):
            raise BlockingIOError("partition state is being published by a writer that died")
        return p.log_start_offset

    def publish(self, **fields):
        """Publish changed fields (caller holds the append lock), then wake
        waiting readers."""
        self._need_write()
        cdef StatePayload p
        cdef int64_t *slots = <int64_t *>&p
        memcpy(&p, self.payload, sizeof(StatePayload))
        for name, value in fields.items():
            slots[<Py_ssize_t>STATE_SLOT[name]] = value
        arrowlog_seq_begin(self.seq)
        memcpy(self.payload, &p, sizeof(StatePayload))
        arrowlog_seq_end(self.seq)
        arrowlog_add_u32(self.word, 1)
        if arrowlog_load_u32(self.waiters) != 0:
            arrowlog_futex_wake(self.word)

    def current_word(self):
        """The change counter; pass it to wait_word after checking for data."""
        return arrowlog_load_u32(self.word)

    def bump(self):
        """Announce a change to whoever waits on this word (a data
        directory's notifier: any partition got data)."""
        if not self.writable:
            return
        arrowlog_add_u32(self.word, 1)
        if arrowlog_load_u32(self.waiters) != 0:
            arrowlog_futex_wake(self.word)

    def wait_word(self, uint32_t seen, double timeout):
        """Block while the change counter still equals ``seen``, at most
        ``timeout`` seconds; returns True if it changed."""
        cdef double deadline = monotonic_s() + timeout
        cdef double left
        cdef int rc
        cdef timespec pause
        if not self.writable:
            left = deadline - monotonic_s()
            if left > 0:
                pause.tv_sec = <time_t>left
                pause.tv_nsec = <long>((left - <double>pause.tv_sec) * 1e9)
                with nogil:
                    nanosleep(&pause, NULL)
            return arrowlog_load_u32(self.word) != seen
        while True:
            arrowlog_add_u32(self.waiters, 1)
            if arrowlog_load_u32(self.word) != seen:
                arrowlog_sub_u32(self.waiters, 1)
                return True
            left = (deadline - monotonic_s()) * 1000.0
            if left <= 0:
                arrowlog_sub_u32(self.waiters, 1)
                return False
            if left > 200.0:
                left = 200.0
            with nogil:
                rc = arrowlog_futex_wait(self.word, seen, left)
            arrowlog_sub_u32(self.waiters, 1)
            PyErr_CheckSignals()

    def repair_seq(self):
        """Make an odd seq (writer died mid-publish) even again; the caller
        holds the append lock and republishes after recovery."""
        self._need_write()
        cdef uint64_t s = arrowlog_load_u64(self.seq)
        if s & 1:
            arrowlog_store_u64(self.seq, s + 1)

    def wait_beyond(self, int64_t offset, double timeout):
        """Block until next_offset > offset or ``timeout`` seconds pass
        (negative: no limit). Returns True when data is there. The GIL is
        released while waiting; an idle wait costs no CPU (futex). On a
        read-only mapping nobody can append, so it only re-checks now and then."""
        cdef double deadline = monotonic_s() + timeout
        cdef double left
        cdef uint32_t w
        cdef StatePayload p
        cdef int rc
        cdef timespec pause
        if not self.writable:
            while True:
                arrowlog_seq_read(self.seq, &p, self.payload, sizeof(StatePayload))
                if p.next_offset > offset:
                    return True
                left = deadline - monotonic_s() if timeout >= 0 else 0.05
                if left <= 0:
                    return False
                pause.tv_sec = 0
                pause.tv_nsec = <long>(min(left, 0.05) * 1e9)
                with nogil:
                    nanosleep(&pause, NULL)
                PyErr_CheckSignals()
        while True:
            w = arrowlog_load_u32(self.word)
            arrowlog_add_u32(self.waiters, 1)
            arrowlog_seq_read(self.seq, &p, self.payload, sizeof(StatePayload))
            if p.next_offset > offset:
                arrowlog_sub_u32(self.waiters, 1)
                return True
            if timeout < 0:
                left = 200.0  # wake now and then so signals are handled
            else:
                left = (deadline - monotonic_s()) * 1000.0
                if left <= 0:
                    arrowlog_sub_u32(self.waiters, 1)
                    return False
                if left > 200.0:
                    left = 200.0
            with nogil:
                rc = arrowlog_futex_wait(self.word, w, left)
            arrowlog_sub_u32(self.waiters, 1)
            PyErr_CheckSignals()  # let Ctrl-C interrupt a long wait
