# The stage: produce()'s records for a topic of many partitions, kept in
# arrival order in two sequential buffers instead of each partition's
# accumulator, and sorted into per-partition frames when they are written.
#
# Over a thousand partitions the accumulators' pending records are tens of
# megabytes in thousands of buffers, written a record at a time in an order
# no prefetcher follows: produce() then waits on memory more than it works
# (docs/SCALING.md, steady produce). Appending to one buffer is a stream of
# stores; the flush gathers each partition's records (a counting sort of
# the entries, then one partition at a time) into a scratch accumulator that
# stays in the cache while its frame is checksummed and written.
#
# The invariant that keeps each partition's records in order: a partition's
# records are either staged or in its accumulator, never both. produce()
# stages a record only while the partition's accumulator is empty, and
# drains the stage into the accumulators before it appends a record there
# (a record with headers or a delivery callback).

from libc.stdlib cimport calloc

cdef extern from *:
    void __builtin_prefetch(const void *addr) noexcept nogil

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **p, size_t alignment, size_t size)

cdef extern from "<sys/mman.h>" nogil:
    int STAGE_MADV_HUGEPAGE "MADV_HUGEPAGE"

cdef enum:
    STAGE_HUGE = 2 << 20


cdef int _stage_reserve(GrowBuf *b, Py_ssize_t extra) except -1:
    """gb_reserve for the stage's buffers: above 2 MiB, 2 MiB-aligned and
    advised into huge pages. The flush reads a partition's records ~100 KB
    apart over the whole stage; with 4 KiB pages each of them was a TLB miss
    as well as a cache miss (docs/SCALING.md, round three)."""
    cdef Py_ssize_t need = b.length + extra, cap
    cdef void *p = NULL
    if need <= b.capacity:
        return 0
    cap = max(b.capacity * 2, need)
    if cap < STAGE_HUGE:
        return gb_reserve(b, extra)
    cap = (cap + STAGE_HUGE - 1) & ~(<Py_ssize_t>STAGE_HUGE - 1)
    if posix_memalign(&p, STAGE_HUGE, <size_t>cap) != 0:
        raise MemoryError()
    madvise(p, <size_t>cap, STAGE_MADV_HUGEPAGE)
    if b.length:
        memcpy(p, b.data, <size_t>b.length)
    free(b.data)
    b.data = <uint8_t *>p
    b.capacity = cap
    return 0


cdef class RecordStage:
    """Records of one topic's partitions in arrival order (see above); not
    thread-safe on its own: produce() and the flush use it under the GIL."""

    def __cinit__(self, int32_t partitions):
        if partitions <= 0:
            raise ValueError("a stage needs at least one partition")
        self.partitions = partitions
        self.pending = <int64_t *>calloc(2 * <size_t>partitions, sizeof(int64_t))
        self.created = <double *>calloc(<size_t>partitions, sizeof(double))
        if self.pending == NULL or self.created == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.pending)
        free(self.created)
        free(self.entries.data)
        free(self.data.data)

    cdef int add(self, int32_t partition, const char *key, Py_ssize_t key_len, const char *value,
                 Py_ssize_t value_len, int64_t timestamp) except -1:
        """Stage one record of ``partition`` (a negative length: null)."""
        cdef StageEntry *e
        cdef Py_ssize_t k = key_len if key_len > 0 else 0, v = value_len if value_len > 0 else 0
        if self.pending[2 * partition + 1] + k + v > 0x7fffffff:
            raise OverflowError("a partition's staged keys and values exceed 2 GiB")
        if self.entries.length + <Py_ssize_t>sizeof(StageEntry) > self.entries.capacity:
            _stage_reserve(&self.entries, sizeof(StageEntry))
        if self.data.length + k + v > self.data.capacity:
            _stage_reserve(&self.data, k + v)
        e = <StageEntry *>(self.entries.data + self.entries.length)
        e.timestamp = timestamp
        e.at = self.data.length
        e.partition = partition
        e.key_len = <int32_t>key_len
        e.value_len = <int32_t>value_len
        self.entries.length += sizeof(StageEntry)
        if k:
            memcpy(self.data.data + self.data.length, key, <size_t>k)
        if v:
            memcpy(self.data.data + self.data.length + k, value, <size_t>v)
        self.data.length += k + v
        if self.pending[2 * partition] == 0:
            self.created[partition] = monotonic_s()
            if self.count == 0:
                self.oldest = self.created[partition]
        self.pending[2 * partition] += 1
        self.pending[2 * partition + 1] += k + v + 24   # as RecordAccumulator.nbytes counts
        self.count += 1
        return 0

    def pending_of(self, int32_t partition):
        """(records, bytes) staged for ``partition`` (bytes as an
        accumulator's ``nbytes`` counts them)."""
        if not 0 <= partition < self.partitions:
            raise IndexError(f"no partition {partition}")
        return self.pending[2 * partition], self.pending[2 * partition + 1]

    cdef RecordStage take(self):
        """Move every staged record into a new stage and leave this one empty
        (its buffers keep the memory of the last stage given back)."""
        cdef RecordStage out = RecordStage.__new__(RecordStage, self.partitions)
        out.entries, self.entries = self.entries, out.entries
        out.data, self.data = self.data, out.data
        out.pending, self.pending = self.pending, out.pending
        out.created, self.created = self.created, out.created
        out.count, out.oldest = self.count, self.oldest
        self.count = 0
        self.oldest = 0.0
        return out

    cdef void give_back(self, RecordStage used) noexcept:
        """Keep the buffers of ``used`` (taken from this stage and written)
        for the next records, if nothing was staged meanwhile: a steady
        producer does not fault in its stage's memory again every flush."""
        if self.count == 0 and self.entries.data == NULL and self.data.data == NULL:
            self.entries, used.entries = used.entries, self.entries
            self.data, used.data = used.data, self.data
            self.entries.length = self.data.length = 0

    def drain_into(self, list accumulators):
        """drain() for Python (tests, statistics)."""
        self.drain(accumulators)

    cdef int drain(self, list accumulators) except -1:
        """Append every staged record to its partition's accumulator (in
        order; each accumulator's batch keeps its first staged record's
        creation time) and leave the stage empty."""
        cdef RecordStage s
        cdef Py_ssize_t i, p
        cdef RecordAccumulator acc
        cdef const StageEntry *e
        if self.count == 0:
            return 0
        if len(accumulators) != self.partitions:
            raise ValueError(f"{len(accumulators)} accumulators for a stage of {self.partitions} partitions")
        s = self.take()
        try:
            for i in range(s.count):
                e = (<StageEntry *>s.entries.data) + i
                acc = <RecordAccumulator>accumulators[e.partition]
                _stage_append(acc, s, e)
        finally:
            for p in range(s.partitions):
                if s.pending[2 * p]:
                    (<RecordAccumulator>accumulators[p]).created = s.created[p]
            self.give_back(s)
        return 0


cdef inline int _stage_append(RecordAccumulator acc, RecordStage s, const StageEntry *e) except -1:
    cdef const char *key = <const char *>s.data.data + e.at
    cdef Py_ssize_t k = e.key_len if e.key_len > 0 else 0
    return acc.append(key if e.key_len >= 0 else NULL, e.key_len, key + k if e.value_len >= 0 else NULL,
                      e.value_len, e.timestamp)


cdef int _stage_fill(RecordAccumulator acc, RecordStage s, const int32_t *order, Py_ssize_t lo,
                     Py_ssize_t hi) except -1:
    """Append the staged records ``order[lo:hi]`` (one partition's, in
    arrival order) to ``acc``, which then holds what the partition's own
    accumulator would, with that batch's creation time: _stage_copy, and
    RecordAccumulator.append for what it leaves (a null key or value, an
    accumulator that already holds records)."""
    cdef Py_ssize_t j, copied
    cdef const StageEntry *entries = <const StageEntry *>s.entries.data
    if hi <= lo:
        return 0
    copied = _stage_copy(acc, s, order, lo, hi)
    if copied < 0:
        raise MemoryError()
    for j in range(lo + copied, hi):
        _stage_append(acc, s, entries + order[j])
    acc.created = s.created[entries[order[lo]].partition]   # (append set it to now)
    return 0


cdef Py_ssize_t _stage_copy(RecordAccumulator acc, RecordStage s, const int32_t *order, Py_ssize_t lo,
                            Py_ssize_t hi) noexcept nogil:
    """The common case of _stage_fill, without the GIL: into an empty
    ``acc``, the records ``order[lo:hi]`` with a key and a value, up to the
    first that has neither, copied by one loop into buffers reserved once,
    their entries and bytes prefetched a few records ahead (they are
    scattered over the stage). Sets ``acc``'s batch creation time; returns
    how many records it copied (-1: out of memory, ``acc`` unchanged)."""
    cdef const StageEntry *entries = <const StageEntry *>s.entries.data
    cdef const StageEntry *e
    cdef const uint8_t *src
    cdef Py_ssize_t j = lo, i = 0, n = hi - lo, k = 0, v = 0, total
    cdef int64_t lo_ts, hi_ts
    cdef int32_t *koff
    cdef int32_t *voff
    cdef int64_t *ts
    if n <= 0:
        return 0
    acc.created = s.created[entries[order[lo]].partition]
    if acc.count != 0 or acc.key_nulls != 0 or acc.value_nulls != 0 or acc.header_lists != 0:
        return 0
    total = s.pending[2 * entries[order[lo]].partition + 1]   # keys, values and 24 a record: room for either
    if (gb_grow(&acc.ts, 8 * n) or gb_grow(&acc.koff, 4 * n) or gb_grow(&acc.voff, 4 * n)
            or gb_grow(&acc.kdata, total) or gb_grow(&acc.vdata, total)):
        return -1
    ts = <int64_t *>acc.ts.data
    koff = <int32_t *>acc.koff.data   # koff[0] == voff[0] == 0 already
    voff = <int32_t *>acc.voff.data
    lo_ts, hi_ts = acc.min_timestamp, acc.max_timestamp
    while j < hi:
        if j + 32 < hi:
            __builtin_prefetch(entries + order[j + 32])
        if j + 16 < hi:
            src = s.data.data + entries[order[j + 16]].at
            __builtin_prefetch(src)
            __builtin_prefetch(src + 64)
            __builtin_prefetch(src + 127)
        e = entries + order[j]
        if e.key_len < 0 or e.value_len < 0:
            break
        src = s.data.data + e.at
        memcpy(acc.kdata.data + k, src, <size_t>e.key_len)
        memcpy(acc.vdata.data + v, src + e.key_len, <size_t>e.value_len)
        k += e.key_len
        v += e.value_len
        koff[i + 1] = <int32_t>k
        voff[i + 1] = <int32_t>v
        ts[i] = e.timestamp
        if e.timestamp < lo_ts:
            lo_ts = e.timestamp
        if e.timestamp > hi_ts:
            hi_ts = e.timestamp
        i += 1
        j += 1
    acc.ts.length = 8 * i
    acc.koff.length = 4 * (i + 1)
    acc.voff.length = 4 * (i + 1)
    acc.kdata.length = k
    acc.vdata.length = v
    acc.count = i
    acc.nbytes = k + v + 24 * i
    acc.min_timestamp, acc.max_timestamp = lo_ts, hi_ts
    return i


cdef int32_t *_stage_order(RecordStage s, Py_ssize_t *start) except NULL:
    """A counting sort of the stage's entries by partition: returns their
    indices grouped by partition, each group in arrival order, partition
    p's from ``start[p]`` to ``start[p + 1]`` (the caller frees it)."""
    cdef Py_ssize_t i, p, n = s.count
    cdef const StageEntry *entries = <const StageEntry *>s.entries.data
    cdef int32_t *order
    if n > 0x7fffffff:
        raise OverflowError("more than 2**31 staged records")
    order = <int32_t *>malloc(<size_t>max(n, 1) * sizeof(int32_t))
    if order == NULL:
        raise MemoryError()
    start[0] = 0
    for p in range(s.partitions):
        start[p + 1] = start[p] + s.pending[2 * p]
    for i in range(n):
        p = entries[i].partition
        order[start[p]] = <int32_t>i
        start[p] += 1
    # each start[p] is now the end of p's group, that is start[p + 1] before: shift back
    for p in range(s.partitions, 0, -1):
        start[p] = start[p - 1]
    start[0] = 0
    return order


cdef extern from *:
    """
    static inline Py_ssize_t arrowlog_claim(Py_ssize_t *next) {
        return __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);
    }
    """
    Py_ssize_t arrowlog_claim(Py_ssize_t *next) noexcept nogil


cdef class StagePass:
    """A staged flush's partitions written by two threads at once
    (ProducerCore._append_staged): the caller's and the process's helper
    thread (storage/helper.py). Each thread takes the next partition no one
    took (one atomic counter), gathers its records into its own scratch
    accumulator and appends them without the GIL
    (RecordAccumulator._append_nogil), until none is left: a helper that
    starts late, or never, leaves the caller the whole work. A partition
    is either written here, whole, or left with nothing of it published
    (``bases`` -1) for the caller's one-thread loop. Calling the object is
    the helper's share (_pass_run the caller's); the caller holds every
    partition's locks, and keeps the stage and the order arrays, until both
    have ended. Attributes: core.pxd."""

    def __cinit__(self, RecordStage stage not None, RecordAccumulator scratch not None, Py_ssize_t capacity):
        self.stage = stage
        self.scratch = scratch
        self.targets = []
        self.capacity = capacity
        self.places = <AppendPlace *>malloc(<size_t>max(capacity, 1) * sizeof(AppendPlace))
        self.parts = <int32_t *>malloc(<size_t>max(capacity, 1) * sizeof(int32_t))
        self.bases = <int64_t *>malloc(<size_t>max(capacity, 1) * sizeof(int64_t))
        self.ends = <int64_t *>malloc(<size_t>max(capacity, 1) * sizeof(int64_t))
        if self.places == NULL or self.parts == NULL or self.bases == NULL or self.ends == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.places)
        free(self.parts)
        free(self.bases)
        free(self.ends)

    def __call__(self):
        self.helped = _pass_run(self, <RecordAccumulator>self.scratch)


cdef int _pass_add(StagePass two, int32_t partition, AppendTarget target) except -1:
    """Write ``partition`` in the pass, at ``target`` (its log's append_target())."""
    if two.count >= two.capacity:
        raise IndexError("more partitions than the pass was made for")
    place_of(target, &two.places[two.count])
    two.parts[two.count] = partition
    two.bases[two.count] = -1
    two.ends[two.count] = 0
    two.targets.append(target)
    two.count += 1
    return 0


cdef Py_ssize_t _pass_run(StagePass two, RecordAccumulator scratch) noexcept:
    """One thread's share of the pass (the GIL released meanwhile): take
    partitions until none is left; returns how many this thread wrote."""
    cdef RecordStage stage = two.stage
    with nogil:
        return _pass_take(two, scratch, stage)


cdef Py_ssize_t _pass_take(StagePass two, RecordAccumulator scratch, RecordStage stage) noexcept nogil:
    cdef Py_ssize_t k, lo, hi, done = 0
    cdef int32_t p
    while True:
        k = arrowlog_claim(&two.next)
        if k >= two.count:
            return done
        p = two.parts[k]
        lo, hi = two.start[p], two.start[p + 1]
        if _stage_copy(scratch, stage, two.order, lo, hi) == hi - lo:
            two.bases[k] = scratch._append_nogil(&two.places[k], now_ms(), &two.ends[k])
            done += two.bases[k] >= 0
        scratch._empty_buffers()
        scratch._zero_counts()


cdef StagePass _pass_grown(StagePass two):
    """The partitions ``two`` left because their segment must grow first,
    grown now as append_at grows a segment (its target's ``grow`` under the
    append lock, while the segment is still the active one), in a new pass
    for the two threads; None when none grew. A growth that fails leaves
    its partition to the caller's one-thread loop, which raises what is
    wrong."""
    cdef StagePass again = None
    cdef StatePayload p
    cdef AppendTarget t
    cdef Py_ssize_t k
    cdef int64_t grown
    cdef int rc
    for k in range(two.count):
        if two.bases[k] >= 0 or two.ends[k] <= 0:
            continue
        t = <AppendTarget>two.targets[k]
        if t.grow is None:
            continue
        with nogil:
            rc = _flock_retry(t.lock_fd, LOCK_EX)
        if rc != 0:
            continue
        grown = -1
        try:
            if (arrowlog_seq_read(t.state.seq, &p, t.state.payload, sizeof(StatePayload))
                    and p.generation == t.generation and p.active_base_offset == t.segment_base):
                grown = t.grow(two.ends[k])
                t.file_size = max(t.file_size, grown)
        except Exception:
            grown = -1  # (the one-thread loop grows it again, and raises what is wrong)
        finally:
            _flock_retry(t.lock_fd, LOCK_UN)
        if grown >= two.ends[k]:
            if again is None:
                again = StagePass(two.stage, <RecordAccumulator>two.scratch, two.count)
                again.order, again.start = two.order, two.start
            _pass_add(again, two.parts[k], t)
    return again
