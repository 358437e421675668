# The C-level contract of arrowlog._native.core: the extension types other
# Cython code may cimport, with their attributes and cdef methods.
#
# It sits in the package (beside the .pyi stub) so that Cython finds it for
# the module arrowlog._native.core (setup.py puts src/ on the include path)
# and other Cython code can cimport it.
#
# Cython reads this file before core.pyx: an attribute declared here must
# not be declared again in a .pxi (it would shadow this one and hide a
# `public` / `readonly` attribute from Python). The .pyi stub (src/arrowlog/
# _native/core.pyi) is the Python-level view of the same classes.
#
# RecordAccumulator and NativeBuffer (core/accumulator.pxi) and SmallReader
# (core/replayview.pxi: its columns are GrowBufs) are still
# declared where they are defined, so they are module-private here.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t


# The payload of partition.state, guarded by its seqlock (core/state.pxi has
# the file layout; the field order is STATE_FIELDS).
cdef struct StatePayload:
    int64_t log_start_offset
    int64_t next_offset            # the high watermark
    int64_t active_base_offset
    int64_t active_position        # bytes used in the active segment
    int64_t active_max_timestamp
    int64_t offset_index_entries
    int64_t time_index_entries
    int64_t bytes_since_index
    int64_t recovery_point         # offsets below are fsynced
    int64_t generation             # bumped when the log is truncated
    int64_t segment_created_ms     # age of the active segment, for segment.ms
    int64_t reserved

# (Whether a payload could be true: _state_fault in core/statecheck.pxi, the
# one bounds check of partition.state; module-private, so not declared here,
# which would export it as a C capsule.)


cdef class ByteView:
    """Raw memory owned by ``owner``, exposed through the buffer protocol."""
    cdef readonly object owner
    cdef uint8_t *ptr
    cdef Py_ssize_t size
    cdef bint writable


cdef class MappedFile:
    """A file mapped MAP_SHARED over ``capacity`` bytes (core/mapped.pxi)."""
    cdef uint8_t *base
    cdef readonly Py_ssize_t capacity
    cdef readonly bint writable
    cdef readonly str path

    cdef int _check(self, Py_ssize_t offset, Py_ssize_t length) except -1


cdef class PartitionState:
    """partition.state over its MappedFile (core/state.pxi)."""
    cdef MappedFile mapping
    cdef uint8_t *base
    cdef uint64_t *seq
    cdef StatePayload *payload
    cdef uint32_t *word
    cdef uint32_t *waiters
    cdef readonly bint writable

    cdef int _need_write(self) except -1
    cpdef int64_t next_offset(self) except? -1
    cpdef int64_t log_start_offset(self) except? -1


# A growable native buffer (core/accumulator.pxi has its functions, gb_*).
cdef struct GrowBuf:
    uint8_t *data
    Py_ssize_t length
    Py_ssize_t capacity


# One record staged by produce() for a topic of many partitions
# (core/stage.pxi): its key and value lie at ``at`` of the stage's data.
cdef struct StageEntry:
    int64_t timestamp
    int64_t at
    int32_t partition
    int32_t key_len       # -1: null
    int32_t value_len     # -1: null
    int32_t unused


cdef class RecordStage:
    """The records of a topic with many partitions, in arrival order, in two
    sequential buffers (core/stage.pxi): what a partition's accumulator would
    hold, until a flush writes each partition's frame from here."""
    cdef GrowBuf entries              # StageEntry, one per record
    cdef GrowBuf data                 # their keys and values
    cdef readonly int32_t partitions
    cdef int64_t *pending             # records and bytes staged, two per partition
    cdef double *created              # when each partition's first staged record came
    cdef readonly Py_ssize_t count    # records staged
    cdef readonly double oldest       # when the first of them came (monotonic seconds)

    cdef int add(self, int32_t partition, const char *key, Py_ssize_t key_len, const char *value,
                 Py_ssize_t value_len, int64_t timestamp) except -1
    cdef RecordStage take(self)
    cdef void give_back(self, RecordStage used) noexcept
    cdef int drain(self, list accumulators) except -1


cdef class TopicSlot:
    """A topic's accumulators inside one producer (core/producer.pxi)."""
    cdef public str name
    cdef public int32_t partitions
    cdef public list accumulators
    cdef public int32_t sticky
    cdef public object topic
    # checks every produce() makes before a record is queued, so a bad record
    # fails its own call and never its batch: the largest key + value, and
    # (typed topics) a callable that raises if the value does not fit
    cdef readonly Py_ssize_t max_record_bytes
    cdef readonly object validate
    cdef Py_ssize_t check_above     # a record larger than this takes the checks' slow path
    cdef public bint keyed_only     # a compacted topic: an unkeyed record is refused at produce()
    cdef public list logs           # each partition's PartitionLog once the producer opened it, else None
    cdef public list locks          # each partition's in-process lock (the producer's)
    cdef int64_t *sent              # records and bytes sent, two per partition (count_sent)
    # records without headers or a callback, of a partition whose accumulator
    # is empty, go here (None: every record goes to its accumulator)
    cdef public RecordStage stage
    cdef object scratch             # the RecordAccumulator a staged flush builds each frame in

    cpdef count_sent(self, int32_t partition, int64_t records, int64_t nbytes)
    cpdef next_sticky(self)


cdef class ProducerCore:
    """The produce() fast path (core/producer.pxi); arrowlog.Producer
    (backends/local/producer.py) extends it."""
    cdef public dict _slots
    cdef public Py_ssize_t _batch_bytes
    cdef public Py_ssize_t _batch_records
    cdef public Py_ssize_t _queued
    cdef public bint _closed
    cdef public object _default_delivery
    # produce() makes the _first_in_batch upcall only while one of these says
    # there is something to do: an error to raise, an idle linger thread to wake
    cdef public object _error
    cdef public bint _bg_idle
    # partitioner=murmur2: a record without a key goes where murmur2 puts an
    # empty key (librdkafka's murmur2); murmur2_random (default): sticky
    cdef public bint _hash_null_keys

    cdef int _check_record(self, TopicSlot slot, object value, Py_ssize_t size) except -1

    # The upcall contract: produce() handles the common case in C and calls
    # these on its rare paths. ProducerCore's own versions raise
    # NotImplementedError; the Python subclass overrides every one, and a
    # cpdef method dispatches to a Python override.
    cpdef _open_slot(self, topic)
    cpdef _raise_closed(self)
    cpdef _too_large(self, TopicSlot slot, Py_ssize_t size)
    cpdef _unkeyed(self, TopicSlot slot, str where=*)
    cpdef _bad_partition(self, TopicSlot slot, partition)
    cpdef _coerce_timestamp(self, timestamp)
    cpdef _batch_full(self, TopicSlot slot, int32_t partition)
    cpdef _first_in_batch(self, TopicSlot slot, int32_t partition)


cdef class Message


cdef class BatchView:
    """Pointers into one stored batch for record-at-a-time access
    (core/messages.pxi)."""
    cdef readonly object batch
    cdef readonly str topic
    cdef readonly int32_t partition
    cdef readonly int64_t base_offset
    cdef readonly Py_ssize_t num_rows
    cdef readonly int64_t next_offset  # after the last offset the frame spans (gaps: docs/FORMAT.md)
    cdef const int64_t *offs
    cdef const int64_t *ts
    cdef const int32_t *koff
    cdef const uint8_t *kdata
    cdef const uint8_t *kvalid
    cdef Py_ssize_t kbit
    cdef const int32_t *voff
    cdef const uint8_t *vdata
    cdef const uint8_t *vvalid
    cdef Py_ssize_t vbit
    cdef bint binary_values
    cdef object headers_col
    cdef object value_col
    # the headers column read in place (a view core/follow.pxi made; hoff NULL: headers_col says)
    cdef const int32_t *hoff       # row -> first entry, rows + 1
    cdef const uint8_t *hvalid     # NULL: every row has a list
    cdef const int32_t *hkoff      # entry keys (UTF-8, never null)
    cdef const uint8_t *hkdata
    cdef const int32_t *hvoff      # entry values (binary)
    cdef const uint8_t *hvdata
    cdef const uint8_t *hvvalid    # NULL: no null value

    cdef _bind_binary(self, arr, bint is_key)
    cdef object key_at(self, Py_ssize_t i)
    cdef object value_at(self, Py_ssize_t i)
    cdef Py_ssize_t value_len(self, Py_ssize_t i)
    cdef object headers_at(self, Py_ssize_t i)
    cdef object _native_headers(self, Py_ssize_t i)
    cdef Message message(self, Py_ssize_t i)


cdef class Message:
    """One record, shaped like confluent_kafka.Message (core/messages.pxi)."""
    cdef str _topic
    cdef int32_t _partition
    cdef int64_t _offset
    cdef int64_t _timestamp
    cdef int _ts_type
    cdef BatchView _view
    cdef Py_ssize_t _row
    cdef object _key
    cdef object _value
    cdef object _headers
    cdef object _error
    cdef bint _own

    cdef _materialise(self)


cdef class TimeView:
    """A partition's lookups by time in one native call (core/index.pxi)."""
    cdef readonly object segment
    cdef readonly int64_t generation
    cdef readonly int64_t active_base
    cdef readonly int64_t log_start
    cdef list closed
    cdef dict resolved
    cdef MappedFile log
    cdef MappedFile time_index
    cdef MappedFile offset_index
    cdef Py_ssize_t header_size
    cdef set verified
    cdef dict sorted_frames


cdef class FrameFollower:
    """The next frames of a partition's active segment (core/follow.pxi)."""
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


cdef class AppendTarget:
    """Where a producer's small batch goes: one partition's writable end (core/target.pxi)."""
    cdef readonly PartitionState state
    cdef readonly PartitionState notifier
    cdef readonly int lock_fd
    cdef readonly int log_fd
    cdef readonly int64_t segment_base
    cdef readonly int64_t generation
    cdef readonly int64_t file_size
    cdef readonly int64_t segment_bytes
    cdef readonly int64_t segment_ms
    cdef readonly int64_t index_interval
    cdef readonly int64_t index_bytes
    cdef readonly int64_t max_offset
    cdef readonly int64_t min_position
    cdef readonly int64_t max_position
    cdef readonly MappedFile index
    cdef readonly int64_t index_size
    cdef readonly MappedFile time_index
    cdef readonly int64_t time_index_size
    cdef public object stamp     # the owner's: what the target was built from (appending.py)
    cdef public object grow      # grow(end) -> the segment's allocated size, or None (core/target.pxi)


# An AppendTarget (core/target.pxi) as plain C (pointers into its mappings, its numbers), so
# that an append can run without the GIL: on the flush's helper thread
# (core/stage.pxi), and in append_at. The target (and so its mappings) must
# outlive the place.
cdef struct AppendPlace:
    uint64_t *seq                 # the partition's state: its seqlock,
    StatePayload *payload         # payload,
    uint8_t *state_base           # start (the clean mark at 12),
    uint32_t *word                # and futex word with its waiters
    uint32_t *waiters
    bint writable
    uint32_t *notifier_word       # the data directory's notifier (NULL: none, or read-only)
    uint32_t *notifier_waiters
    int lock_fd
    int log_fd
    int64_t segment_base
    int64_t generation
    int64_t file_size
    int64_t segment_bytes
    int64_t segment_ms
    int64_t index_interval
    int64_t index_bytes
    int64_t max_offset
    int64_t min_position
    int64_t max_position
    uint8_t *index                # NULL: none
    int64_t index_capacity
    int64_t index_size
    uint8_t *time_index           # NULL: none
    int64_t time_index_capacity
    int64_t time_index_size


# One buffer of a bulk frame's IPC body (core/bulkframe.pxi): bytes at src,
# or made from it (kind says how) as the frame is written.
cdef struct BulkPart:
    int kind
    const uint8_t *src
    Py_ssize_t length     # the buffer's recorded length (bytes)
    int64_t value
    int64_t count


cdef class BulkFrame:
    """One produce_batch frame, written by write_frame (core/bulkframe.pxi)."""
    cdef BulkPart parts[19]       # the envelope's 19 buffers (ENV_BUFFERS)
    cdef int64_t nulls[8]         # its 8 field nodes' null counts (ENV_NODES)
    cdef readonly Py_ssize_t count
    cdef Py_ssize_t message
    cdef int64_t min_ts, max_ts
    cdef object keep


cdef class StagePass:
    """A staged flush's partitions written by two threads at once (core/stage.pxi)."""
    cdef RecordStage stage
    cdef const int32_t *order          # the stage's entries by partition (_stage_order),
    cdef const Py_ssize_t *start       # partition p's from start[p] (the caller's arrays)
    cdef AppendPlace *places           # where each partition of the pass goes,
    cdef int32_t *parts                # which partition it is,
    cdef int64_t *bases                # and its frame's base offset once written (-1: not written)
    cdef int64_t *ends                 # or the end its segment must be allocated to first (0: no)
    cdef Py_ssize_t count
    cdef Py_ssize_t capacity
    cdef Py_ssize_t next               # the next index to take (atomic)
    cdef list targets                  # keeps each place's mappings alive
    cdef object scratch                # the helper thread's RecordAccumulator
    cdef readonly Py_ssize_t helped    # partitions the helper thread wrote


# A block of column memory kept for the next replay (core/arena.pxi).
cdef struct ArenaBlock:
    void *p               # NULL: none
    Py_ssize_t size
    Py_ssize_t touched    # how far its user wrote (0: see the buffer's length)


cdef class ArenaBuffer:
    """``size`` bytes of an arena block (written up to ``touched``), given
    back to the arena when the last Arrow buffer over it goes (core/arena.pxi)."""
    cdef void *block
    cdef Py_ssize_t block_size
    cdef Py_ssize_t size
    cdef Py_ssize_t touched
