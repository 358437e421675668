# Where a producer's small batch goes: the writable end of one partition, as
# RecordAccumulator.append_at needs it (the common case of a small flush, in
# one native call). PartitionLog.append_target (storage/appending.py) builds
# one from its active segment and keeps it while that segment, its
# allocated size, its index files and the writer's generation are unchanged;
# append_at checks everything else against the published state itself.
# ``grow`` (optional) allocates more of the segment when a frame would end
# beyond ``file_size``: called by append_at under the append lock, once the
# rest of the append is known to hold, with the frame's end; it returns the
# segment's new allocated size (less than asked: append_at declines).


cdef class AppendTarget:
    """The arguments of RecordAccumulator.append_at for one partition's
    active segment (see RecordAccumulator.append_at for each one)."""

    def __init__(self, PartitionState state, PartitionState notifier, int lock_fd, int log_fd,
                 int64_t segment_base, int64_t generation, int64_t file_size, int64_t segment_bytes,
                 int64_t segment_ms, int64_t index_interval, int64_t index_bytes, int64_t max_offset,
                 int64_t min_position, int64_t max_position, MappedFile index=None, int64_t index_size=0,
                 MappedFile time_index=None, int64_t time_index_size=0, object stamp=None, object grow=None):
        if state is None:
            raise ValueError("an append target needs the partition's state")
        self.state = state
        self.notifier = notifier
        self.lock_fd = lock_fd
        self.log_fd = log_fd
        self.segment_base = segment_base
        self.generation = generation
        self.file_size = file_size
        self.segment_bytes = segment_bytes
        self.segment_ms = segment_ms
        self.index_interval = index_interval
        self.index_bytes = index_bytes
        self.max_offset = max_offset
        self.min_position = min_position
        self.max_position = max_position
        self.index = index
        self.index_size = index_size
        self.time_index = time_index
        self.time_index_size = time_index_size
        self.stamp = stamp
        self.grow = grow


# place_of: an AppendTarget as an AppendPlace (core.pxd), to append without the GIL.
cdef void place_of(AppendTarget t, AppendPlace *out) noexcept:
    """``out`` for ``t`` (see AppendPlace)."""
    cdef PartitionState state = t.state, notifier = t.notifier
    out.seq, out.payload, out.state_base = state.seq, state.payload, state.base
    out.word, out.waiters, out.writable = state.word, state.waiters, state.writable
    out.notifier_word = out.notifier_waiters = NULL
    if notifier is not None and notifier.writable:
        out.notifier_word, out.notifier_waiters = notifier.word, notifier.waiters
    out.lock_fd, out.log_fd = t.lock_fd, t.log_fd
    out.segment_base, out.generation, out.file_size = t.segment_base, t.generation, t.file_size
    out.segment_bytes, out.segment_ms, out.index_interval = t.segment_bytes, t.segment_ms, t.index_interval
    out.index_bytes, out.max_offset = t.index_bytes, t.max_offset
    out.min_position, out.max_position = t.min_position, t.max_position
    out.index, out.index_capacity, out.index_size = NULL, 0, t.index_size
    if t.index is not None:
        out.index, out.index_capacity = t.index.base, t.index.capacity
    out.time_index, out.time_index_capacity, out.time_index_size = NULL, 0, t.time_index_size
    if t.time_index is not None:
        out.time_index, out.time_index_capacity = t.time_index.base, t.time_index.capacity
