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
