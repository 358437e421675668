"""PartitionLog: one partition's ordered, durable, append-only log.

A partition is a directory holding its segments (see segment.py) and:

    partition.state   the published state, shared by every process through
                      a mapping (see _native/core/state.pxi)
    append.lock       flock()ed exclusively around every append, roll,
                      retention and recovery: appends from many processes
                      interleave as whole batches
    open.lock         flock()ed shared by every process that has the
                      partition open; the first opener (who can take it
                      exclusively) recovers the log if the last session did
                      not close it cleanly

Contract
--------
Thread-safety: every method may be called from any thread; appends are
serialised in-process by a threading lock and across processes by
append.lock. Readers never take a lock: they read the published state under
a seqlock and only look at data below the published position.

Durability states of a record: *written* (in the mapped segment, visible to
readers in every process once published; survives the writer's crash,
since the page cache belongs to the kernel) → *synced* (fdatasync returned;
survives power loss). ``recovery_point`` is the offset below which the log
is synced. After a power loss, recovery re-checks every frame from the
segment holding the recovery point, truncates at the first bad one and
rebuilds the indexes of what it scanned.

An fsync failure marks the partition failed: the kernel may have dropped
the dirty pages, so nothing more is acknowledged until it is reopened and
recovered (the "fsyncgate" lesson).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import threading
import time

import numpy as np
import pyarrow as pa

from .._native import core
from ..config import is_compacted
from ..errors import (
    ArrowlogError,
    InvalidRecordError,
    PartitionFailedError,
    StorageError,
)
from ..schema import ENVELOPE_SCHEMA
from .cleaner import finish_swaps
from .evolution import conform_value, follow_generation, same_file
from .files import ExclusiveFlock, close_fds, open_shared_file, storage_error, too_many_open_files
from .handles import BUDGET
from .index import Indexer
from .layout import (
    damaged,
    header_problem,
    reads_problem,
)
from .reading import Frame, ReadMixin
from .recovery import RecoveryMixin
from .retention import RetentionMixin
from .segment import (
    INDEX_BYTES,
    LOG_INITIAL_BYTES,
    MAX_RELATIVE_OFFSET,
    MAX_SEGMENT_BYTES,
    Segment,
    delete_segment_files,
    parse_segment_name,
)
from .sync import SyncMixin

NO_TIMESTAMP = -(1 << 63)
# Below this size a batch is serialised into one buffer (a copy of a few KiB
# costs less than the ~20 Python-level writes of the zero-copy path).
SMALL_BATCH_BYTES = 64 << 10


class PartitionLog(RecoveryMixin, SyncMixin, RetentionMixin, ReadMixin):
    """See the module docstring for the contract."""

    def __init__(self, directory: str, topic: str, partition: int, config: dict, *, schema: pa.Schema = ENVELOPE_SCHEMA,
                 notifier: core.PartitionState | None = None, check_crcs: bool = True):
        self.directory = directory
        # read() checks each frame's CRC-32C before first handing it out
        # unless told otherwise (Kafka's check.crcs; docs/DURABILITY.md)
        self.check_crcs = check_crcs
        self._read_generation = -1
        self.notifier = notifier
        self.topic = topic
        self.partition = partition
        self.config = config
        self.schema = schema  # the envelope new frames are written with (use_schema changes it)
        self.segment_bytes = min(int(config["segment.bytes"]), MAX_SEGMENT_BYTES)
        self.segment_ms = int(config["segment.ms"])
        self.index_interval = int(config["index.interval.bytes"])
        self.compacted = is_compacted(config)
        self._gaps_key: int | None = None  # generation at which _gaps_possible was looked up (reading.py)
        self._gaps_possible = self.compacted
        self.compression = config.get("compression.type") or None
        if self.compression == "none":
            self.compression = None
        self._ipc_options = pa.ipc.IpcWriteOptions(compression=self.compression, use_threads=False)
        self._schema_message_size = self.schema.serialize().size
        self._lock = threading.RLock()
        self._segments: dict[int, Segment] = {}   # read views, by base offset
        self._bases: list[int] = []
        self._bases_key: tuple | None = None
        self._max_ts_cache: dict[int, int] = {}
        self._null_columns: dict = {}
        self._sorted_frames: dict[tuple, int] = {}  # (generation, segment, position) -> timestamps ascend?
        self._writer: Segment | None = None       # writable view of the active segment
        self._writer_generation: int | None = None  # the published generation _writer was last checked at
        self._failed: BaseException | None = None
        self._damage: str | None = None  # why the layout cannot be right (see layout.py)
        self._closed = False
        self._hint: tuple[int, int, int] | None = None  # (offset, segment base, position)
        self._synced_bases: set[int] = set()
        self._dir_dirty = False
        self._state_fd = self._append_fd = self._open_fd = -1
        self._state: core.PartitionState | None = None
        # parked: descriptors released by the handle budget (handles.py);
        # the next use reopens. _used: touched since the budget last looked.
        self._parked = False
        self._parked_generation: int | None = None  # the generation it was parked at
        self._used = True
        with self._lock:  # never parked by another thread half-way through its opening
            self._open()

    def _open(self) -> None:
        """Open the files and join the session, counted in the process's
        descriptor budget; an EMFILE parks other partitions and retries once."""
        BUDGET.admit(self)
        for attempt in (0, 1):
            try:
                self._open_files(self.directory)
                self._open_session()
                return
            except OSError as exc:
                # a full disk (or quota, or I/O error) while a partition is
                # first opened or created: a StorageError, never a raw OSError
                self._close_fds()
                if too_many_open_files(exc) and attempt == 0 and BUDGET.shrink(exclude=self):
                    continue
                BUDGET.forget(self)
                if isinstance(exc, StorageError):
                    raise
                raise storage_error(exc, f"cannot open partition {self.topic}-{self.partition} in "
                                    f"{self.directory}") from exc
            except BaseException:
                self._close_fds()
                BUDGET.forget(self)
                raise

    @property
    def state(self) -> core.PartitionState:
        """The published state's mapping; reopens a parked partition."""
        self._used = True
        st = self._state
        if st is None:
            self._wake()
            st = self._state
            if st is None:
                raise StorageError(errno.EBADF, f"partition log {self.topic}-{self.partition} is closed")
        return st

    def _wake(self) -> None:
        with self._lock:
            if self._parked and not self._closed:
                self._open()
                self._parked = False
                self._parked_generation = None

    def _try_park(self) -> bool:
        """Release this partition's descriptors and its shared open.lock but
        keep the object usable (no sync, no clean mark: close() does those);
        False if it is busy in another thread, failed or already parked."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._closed or self._parked or self._failed is not None or self._state is None:
                return False
            self._release(park=True)
            self._parked = True
            self._state = None
            return True
        finally:
            self._lock.release()

    def _open_files(self, directory: str) -> None:
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            if exc.errno != errno.EROFS or not os.path.isdir(directory):
                raise
        self._state_fd, ro1 = open_shared_file(os.path.join(directory, "partition.state"))
        self._append_fd, ro2 = open_shared_file(os.path.join(directory, "append.lock"))
        self._open_fd, ro3 = open_shared_file(os.path.join(directory, "open.lock"))
        self.read_only = ro1 or ro2 or ro3
        if os.fstat(self._state_fd).st_size < core.STATE_FILE_SIZE:
            if self.read_only:
                raise StorageError(errno.EROFS, f"{directory} was never written and the file system is read-only")
            with self._append_locked():
                if os.fstat(self._state_fd).st_size < core.STATE_FILE_SIZE:
                    try:
                        core.fallocate(self._state_fd, 0, core.STATE_FILE_SIZE)
                    except OSError as exc:
                        raise storage_error(exc, f"cannot allocate {directory}/partition.state") from exc
        self._state = core.PartitionState(core.MappedFile(self._state_fd, core.STATE_FILE_SIZE, not self.read_only,
                                                         os.path.join(directory, "partition.state")))

    # -- sessions and recovery ---------------------------------------------

    def _open_session(self) -> None:
        if self.read_only:
            # Nothing can be written or recovered: serve what was published.
            fcntl.flock(self._open_fd, fcntl.LOCK_SH)
            if not self.state.is_initialised():
                raise StorageError(errno.EROFS, f"{self.directory} has no published state and the file system is "
                                   "read-only: mount it read-write once to recover it")
            return
        try:
            fcntl.flock(self._open_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            first = True
        except BlockingIOError:
            first = False
        if first:
            try:
                with self._append_locked():
                    finish_swaps(self.directory)  # a cleaner that died mid-swap
                self._damage = header_problem(self._state_fd)
                if self._damage is not None:
                    pass  # never rewritten behind the user's back: readers and verify report it
                elif self._resumable():
                    pass  # this process parked it and nobody changed it since: nothing to recover or check
                elif not self.state.is_initialised() and not self._list_bases():
                    self._create_fresh()
                elif not self.state.is_initialised() or not self.state.clean or self.state.torn:
                    self.recover()
                else:
                    with self._append_locked():
                        self._check_layout()
                # The "clean" mark stays until this session first changes the
                # log (_mark_dirty): a session that only reads costs no fsync.
            finally:
                fcntl.flock(self._open_fd, fcntl.LOCK_SH)
        else:
            # Blocks while a first opener is still recovering.
            fcntl.flock(self._open_fd, fcntl.LOCK_SH)
            if not self.state.is_initialised():
                self.recover()

    def _create_fresh(self) -> None:
        """A new partition (no state, no segment): its empty first segment
        and state, without the recovery scan or an fsync. Nothing is
        acknowledged as synced before sync() fsyncs the directory (it does
        on its first call), and a power loss before that leaves a state that
        is not clean or no state at all: the next opener recovers."""
        with self._append_locked():
            seg = Segment.create(self.directory, 0, self.schema, self.compression, self._capacity(), self._now_ms())
            self._writer = seg
            self._dir_dirty = True
            self.state.initialise(
                log_start_offset=0, next_offset=0, active_base_offset=0, active_position=seg.header_size,
                active_max_timestamp=NO_TIMESTAMP, offset_index_entries=0, time_index_entries=0,
                bytes_since_index=0, recovery_point=0, generation=1, segment_created_ms=seg.created_ms)

    def _resumable(self) -> bool:
        """Whether a parked partition reopens as this process left it: the
        recovery a not-clean open runs guards against a crash or power loss
        since the last session, and this process was alive all along, so it
        is skipped unless another session ran meanwhile (a recovery bumps the
        generation) or a writer died half-way through a publish (torn)."""
        gen = self._parked_generation
        if gen is None or self.state.torn or not self.state.is_initialised():
            return False
        try:
            return self.state.snapshot()["generation"] == gen
        except BlockingIOError:
            return False

    def _mark_dirty(self) -> None:
        """Before a session's first change to the log (caller holds the append
        lock): clear the "clean" mark, on disk before anything is
        acknowledged, so a crash or power loss before the next clean close
        makes the next opener recover (a stale mark would hide synced appends)."""
        if self.state.clean:
            self.state.clean = False
            os.fsync(self._state_fd)

    # -- helpers --------------------------------------------------------------

    def _capacity(self, at_least: int = 0) -> int:
        return max(self.segment_bytes, at_least)

    @staticmethod
    def _now_ms() -> int:
        return core.wall_clock_ms()

    def _append_locked(self):
        if self._state is None:
            self._wake()
        return ExclusiveFlock(self._append_fd)

    def _list_bases(self) -> list[int]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(b for b in (parse_segment_name(n) for n in names) if b is not None)

    def _open_writer_segment(self, base: int) -> Segment:
        return Segment(self.directory, base, writable=True, capacity=self._capacity())

    def _delete_segment_files(self, base: int) -> None:
        seg = self._segments.pop(base, None)
        if seg is not None:
            seg.close()
        delete_segment_files(self.directory, base)

    def _forget_read_views(self) -> None:
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()
        self._bases, self._bases_key = [], None

    def _drop_segments(self) -> None:
        self._forget_read_views()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- published state -------------------------------------------------------

    @property
    def high_watermark(self) -> int:
        """The next offset to be written; records below it are readable."""
        return self._published(self.state.next_offset, "next_offset")

    @property
    def log_start_offset(self) -> int:
        return self._published(self.state.log_start_offset, "log_start_offset")

    def _published(self, read, field: str) -> int:
        """One published field, read cheaply; through _snapshot (which
        repairs a half-published state) only when that fails."""
        try:
            return read()
        except BlockingIOError:
            return self._snapshot()[field]

    def _snapshot(self) -> dict:
        """The published state; if a writer died between the two halves of a
        publish (the seqlock stays odd), repair it first."""
        try:
            return self.state.snapshot()
        except BlockingIOError:
            self._repair_torn()
            return self.state.snapshot()

    def _repair_torn(self) -> None:
        """The dead writer's append lock is free again: recover under it, so
        readers in every process see a consistent state again."""
        if self.read_only:
            raise StorageError(errno.EROFS, f"the state of {self.topic}-{self.partition} was left half-published "
                               "and the file system is read-only: mount it read-write to recover it")
        with self._lock, self._append_locked():
            if self.state.torn:
                self._recover_locked()

    def watermarks(self, *, check: bool = False) -> tuple[int, int]:
        """(log start offset, high watermark). ``check``: a damaged
        partition raises CorruptRecordError, as read() does (a reader that
        trusts an impossible log start would read nothing and say nothing)."""
        if check:
            self._raise_if_damaged()
        st = self._snapshot()
        problem = reads_problem(st) if check else None
        if problem is not None:
            raise damaged(f"partition {self.topic}-{self.partition} ({self.directory})", problem)
        return st["log_start_offset"], st["next_offset"]

    def wait(self, offset: int, timeout: float) -> bool:
        """Block until the high watermark passes ``offset`` (the record at
        ``offset`` is readable), at most ``timeout`` seconds (negative: no
        limit). Returns whether it did. Costs no CPU while idle (futex)."""
        return self.state.wait_beyond(offset, timeout)

    # -- appending ---------------------------------------------------------------

    def append(self, batch: pa.RecordBatch, *, fsync: bool = False, min_timestamp: int | None = None,
               max_timestamp: int | None = None) -> int:
        """Append ``batch`` (columns timestamp, key, value, headers, as
        PRODUCE_SCHEMA) as one frame; returns its base offset. With
        ``fsync`` the frame is synced (survives power loss) before this
        returns; otherwise it is written (survives a process crash)."""
        n = batch.num_rows
        if n == 0:
            raise ValueError("cannot append an empty batch")
        if min_timestamp is None or max_timestamp is None:
            ts = batch.column(0)
            if ts.null_count:
                raise ValueError("record timestamps cannot be null")
            values = ts.cast(pa.int64()).to_numpy()
            min_timestamp, max_timestamp = int(values.min()), int(values.max())
        min_ts, max_ts = min_timestamp, max_timestamp
        if self.compacted and batch.column(1).null_count:
            raise InvalidRecordError(f"topic {self.topic!r} is compacted (cleanup.policy={self.config['cleanup.policy']})"
                                     ": every record needs a key; give each record a key or use a topic with "
                                     "cleanup.policy=delete")
        with self._lock:
            if self._failed is not None:
                raise PartitionFailedError(errno.EIO, f"partition {self.topic}-{self.partition} failed after an "
                                           f"earlier I/O error ({self._failed}); reopen it to recover")
            if self._closed:
                raise StorageError(errno.EBADF, "partition log is closed")
            if self.read_only:
                raise StorageError(errno.EROFS, f"cannot append to {self.topic}-{self.partition}: the file system is "
                                   "read-only (reads keep working)")
            self._raise_if_damaged()
            with self._append_locked():
                if self.state.torn:
                    self._recover_locked()
                st = self.state.snapshot()
                problem = reads_problem(st)
                if problem is not None:
                    raise damaged(f"partition {self.topic}-{self.partition} ({self.directory})", problem)
                self._mark_dirty()
                seg = self._writer_for(st)
                if not seg.schema.equals(self.schema, check_metadata=True):
                    seg, st = follow_generation(self, st, seg)  # the value schema evolved (evolution.py)
                base = st["next_offset"]
                offsets = pa.array(np.arange(base, base + n, dtype=np.int64))
                # An all-null column sliced from a larger array would be
                # serialised with its parent's offsets: write a fresh one.
                columns = [self._nulls(n, c.type) if c.null_count == n and c.offset else c for c in batch.columns]
                if columns[2].type != self.schema.field(3).type and pa.types.is_struct(columns[2].type):
                    columns[2] = conform_value(columns[2], self.schema.field(3).type)
                full = pa.RecordBatch.from_arrays([offsets, *columns], schema=self.schema)
                pieces = self._serialize(full)
                size = core.FRAME_HEADER_SIZE + sum(len(p) for p in pieces)
                position = st["active_position"]
                if self._should_roll(st, seg, position, size, n, base):
                    self._roll(st, seg, position)
                    st = self.state.snapshot()
                    seg = self._writer_for(st, at_least=size + 4096)
                    position = st["active_position"]
                if position + size > seg.capacity:
                    # a batch larger than segment.bytes in an empty segment: map more of it
                    seg = self._writer_for(st, at_least=position + size)
                seg.ensure_allocated(position + size)
                try:
                    core.write_frame_pieces(seg.log_fd, position, base, n, min_ts, max_ts, pieces)
                except OSError as exc:
                    raise storage_error(exc, f"cannot append to {seg.log_path}") from exc
                fields = self._index_frame(st, seg, position, base, size, max_ts)
                fields.update(next_offset=base + n, active_position=position + size,
                              active_max_timestamp=max(st["active_max_timestamp"], max_ts))
                if fsync:
                    self._sync_locked(seg)
                    fields["recovery_point"] = base + n
                self.state.publish(**fields)
                if self.notifier is not None:
                    self.notifier.bump()
                return base

    def use_schema(self, schema: pa.Schema) -> None:
        """Write new frames with envelope ``schema`` (the topic's value schema
        evolved: storage/evolution.py); the next append starts a segment for it."""
        with self._lock:
            self.schema = schema
            self._schema_message_size = schema.serialize().size

    def _nulls(self, n: int, type_: pa.DataType) -> pa.Array:
        """An all-null column of ``n`` rows starting at offset 0, sliced from
        a cached one (bulk appends need one per frame)."""
        cached = self._null_columns.get(type_)
        if cached is None or len(cached) < n:
            cached = self._null_columns[type_] = pa.nulls(max(n, 1 << 16), type_)
        return cached.slice(0, n)

    def _serialize(self, full: pa.RecordBatch) -> list:
        """The IPC record batch message of ``full`` as the pieces pyarrow's
        writer emits (metadata bytes, padding, and the batch's own buffers,
        uncopied), for write_frame_pieces."""
        if full.nbytes < SMALL_BATCH_BYTES and not self.compression:
            return [full.serialize()]
        sink = _PieceSink()
        writer = pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), full.schema, options=self._ipc_options)
        writer.write_batch(full)
        # the stream starts with its schema message: drop those pieces
        pieces = sink.pieces
        # (the cleaner rewrites frames of older value schemas: storage/evolution.py)
        same = full.schema.equals(self.schema, check_metadata=True)
        skip = self._schema_message_size if same else full.schema.serialize().size
        i = 0
        while skip > 0:
            piece = pieces[i]
            skip -= piece.size if isinstance(piece, pa.Buffer) else len(piece)
            i += 1
        if skip != 0:
            raise AssertionError("IPC writer split the schema message unexpectedly")
        return pieces[i:]

    def _writer_for(self, st: dict, at_least: int = 0) -> Segment:
        base = st["active_base_offset"]
        seg = self._writer
        if seg is not None and st["generation"] != self._writer_generation:
            # another process may have re-created the empty active segment (a new value
            # schema: evolution.py) or recovered the log: write to the file that is there now
            self._writer_generation = st["generation"]
            if not same_file(seg.log_fd, seg.log_path):
                seg.close()
                seg = self._writer = None
        if seg is None or seg.base_offset != base or seg.capacity < at_least:
            if seg is not None:
                seg.close()
            self._writer = None
            seg = Segment(self.directory, base, writable=True, capacity=self._capacity(at_least))
            self._writer = seg
            # an orphan from a writer that died mid-roll
            for later in self._list_bases():
                if later > base:
                    self._delete_segment_files(later)
        return seg

    def _should_roll(self, st: dict, seg: Segment, position: int, size: int, n: int, base: int) -> bool:
        if st["next_offset"] == seg.base_offset:  # empty segment: never roll
            return False
        return (position + size > self.segment_bytes
                or base + n - seg.base_offset > MAX_RELATIVE_OFFSET
                or (st["offset_index_entries"] + 1) * core.OFFSET_ENTRY_SIZE > INDEX_BYTES
                or (st["time_index_entries"] + 1) * core.TIME_ENTRY_SIZE > INDEX_BYTES
                or self._now_ms() - st["segment_created_ms"] >= self.segment_ms)

    def _index_frame(self, st: dict, seg: Segment, position: int, base: int, size: int, max_ts: int) -> dict:
        indexer = self._indexer(st, seg)
        indexer.add(position, base, size, max_ts)
        return dict(offset_index_entries=indexer.offset_entries, time_index_entries=indexer.time_entries,
                    bytes_since_index=indexer.since)

    def _indexer(self, st: dict, seg: Segment) -> Indexer:
        """The indexing rule where the published state says the active
        segment's indexes stand."""
        return Indexer(seg, self.index_interval, st["offset_index_entries"], st["time_index_entries"],
                       st["bytes_since_index"], st["active_max_timestamp"])

    def _roll(self, st: dict, seg: Segment, position: int) -> None:
        """Close the active segment (its time index sealed, files trimmed)
        and start a new one at next_offset; caller holds the append lock."""
        indexer = self._indexer(st, seg)
        indexer.seal(self._last_frame_base(seg, st))
        seg.trim(position, indexer.offset_entries, indexer.time_entries)
        new_base = st["next_offset"]
        new = Segment.create(self.directory, new_base, self.schema, self.compression, self._capacity(),
                             self._now_ms())
        self._dir_dirty = True
        seg.close()
        self._writer = new
        self.state.publish(active_base_offset=new_base, active_position=new.header_size,
                           offset_index_entries=0, time_index_entries=0, bytes_since_index=0,
                           active_max_timestamp=NO_TIMESTAMP, segment_created_ms=new.created_ms)
        self._enforce_retention_locked()

    def _last_frame_base(self, seg: Segment, st: dict) -> int:
        oe = st["offset_index_entries"]
        pos = seg.header_size
        if oe:
            hit = core.offset_index_lookup(seg.index, oe, MAX_RELATIVE_OFFSET)
            pos = hit[1]
        end = st["active_position"]
        last = seg.base_offset
        while pos < end:
            base, _count, body, _, _ = core.read_frame_header(seg.log, pos, end)
            last = base
            pos += core.FRAME_HEADER_SIZE + body
        return last

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Release this process's hold; the last process out syncs and marks
        the partition clean, so the next open skips recovery."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._parked and not self._state_clean_on_disk():
                # parked with changes since the last clean mark: reopen so the
                # last process out still syncs and marks it clean
                self._closed = False
                self._wake()
                self._closed = True
            BUDGET.forget(self)
            if not self._parked:
                self._release()

    def _release(self, park: bool = False) -> None:
        """close() without forgetting the log (caller holds self._lock).
        Parking closes the read views' descriptors but leaves their
        mappings to any reader still using them (readers take no lock)."""
        last = False
        if not park:
            try:
                fcntl.flock(self._open_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last = True
            except BlockingIOError:
                pass
        if park:
            # parking is no session end: the "clean" mark (and the fsync it
            # needs) waits for close(); _resumable() makes the reopen cheap
            try:
                self._parked_generation = self.state.snapshot()["generation"]
            except BlockingIOError:
                self._parked_generation = None
        elif last and self._failed is None and not self.read_only and not self.state.clean:
            try:
                with self._append_locked():
                    st = self.state.snapshot()
                    if not self.state.torn:
                        seg = self._writer_for(st)
                        self._sync_locked(seg, st)
                        if seg.file_size - st["active_position"] > LOG_INITIAL_BYTES:
                            # an ftruncate costs a journal commit: only worth
                            # it to give back more than a new segment's start
                            seg.trim(st["active_position"], st["offset_index_entries"],
                                     st["time_index_entries"])
                        self.state.publish(recovery_point=st["next_offset"])
                        os.fsync(self._state_fd)
                        self.state.clean = True
                        os.fsync(self._state_fd)
            except (OSError, StorageError):
                pass
        if park:
            views, self._segments = self._segments, {}
            self._bases, self._bases_key = [], None
            self._read_generation = -1
            self._hint = None
            for seg in views.values():
                close_fds(seg, "log_fd", "index_fd", "time_index_fd")
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        else:
            self._drop_segments()
        self._close_fds()

    def _state_clean_on_disk(self) -> bool:
        """A parked partition's "clean" mark, read without reopening it."""
        try:
            with open(os.path.join(self.directory, "partition.state"), "rb") as f:
                fd = f.fileno()
                st = core.PartitionState(core.MappedFile(fd, core.STATE_FILE_SIZE, False,
                                                         os.path.join(self.directory, "partition.state")))
            return bool(st.clean)
        except (OSError, ValueError):
            return False

    def _close_fds(self) -> None:
        close_fds(self, "_state_fd", "_append_fd", "_open_fd")

    def _begin_close(self) -> dict | None:
        """First half of close_many() (caller holds self._lock): the
        snapshot to publish as the recovery point when this process is the
        last one out of a partition it changed (the append lock then stays
        held until _end_close), else None."""
        if self._parked and not self._state_clean_on_disk():
            self._closed = False
            self._wake()
        self._closed = True
        BUDGET.forget(self)
        if self._parked:
            return None
        try:
            fcntl.flock(self._open_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if self._failed is not None or self.read_only or self.state.clean:
            return None
        fcntl.flock(self._append_fd, fcntl.LOCK_EX)
        st = self.state.snapshot()
        if self.state.torn:
            fcntl.flock(self._append_fd, fcntl.LOCK_UN)
            return None
        seg = self._writer
        if seg is not None and seg.base_offset == st["active_base_offset"] and \
                seg.file_size - st["active_position"] > LOG_INITIAL_BYTES:
            try:
                seg.trim(st["active_position"], st["offset_index_entries"], st["time_index_entries"])
            except StorageError:
                pass
        return st

    def _end_close(self) -> None:
        if not self._parked:
            self._drop_segments()
            self._close_fds()  # releases the flocks with the descriptors

    def __enter__(self) -> PartitionLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PartitionLog {self.topic}-{self.partition} at {self.directory}>"


def _syncfs(fd: int) -> bool:
    """syncfs(2): one flush of the whole file system (data, inodes and
    directory entries) instead of an fsync per file; False if unavailable
    or it failed."""
    global _LIBC
    if _LIBC is None:
        try:
            # before Linux 5.8 syncfs returned 0 even when writeback failed
            # (the error would be lost): use it only where it reports them
            major, minor = (int(x) for x in os.uname().release.split(".")[:2])
            if os.uname().sysname != "Linux" or (major, minor) < (5, 8):
                raise OSError("syncfs does not report writeback errors here")
            _LIBC = ctypes.CDLL(None, use_errno=True)
            _LIBC.syncfs  # noqa: B018 - raises AttributeError where missing
        except (OSError, AttributeError, ValueError):
            _LIBC = False
    return bool(_LIBC) and _LIBC.syncfs(fd) == 0


_LIBC = None


def _syncfs_at(directory: str) -> bool:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return _syncfs(fd)
    finally:
        os.close(fd)


def sync_many(logs) -> list[tuple[PartitionLog, BaseException]]:
    """sync() of many partitions with one file-system sync for all (a
    Producer's periodic fsync over 1,024 partitions: one syncfs, not four
    fsyncs each): the recovery point of each advances to what was appended
    when its snapshot was taken. Where syncfs is unavailable or fails, each
    log syncs on its own (so an fsync error fails that partition, as
    sync() does). Returns the (log, error) pairs that failed."""
    todo = []
    for log in logs:
        try:
            with log._lock:
                if log._failed is not None or log._closed:
                    todo.append((log, None, None))  # sync() raises what is wrong
                    continue
                with log._append_locked():
                    if log.state.torn:
                        log._recover_locked()
                    st = log.state.snapshot()
                    if st["recovery_point"] < st["next_offset"]:
                        todo.append((log, st, log._unsynced_closed_segments(st)))
        except (OSError, ArrowlogError) as exc:
            todo.append((log, None, exc))
    failed: list[tuple[PartitionLog, BaseException]] = []
    synced = bool(todo) and _syncfs_at(todo[0][0].directory)
    for log, st, older in todo:
        try:
            if isinstance(older, BaseException):
                raise older
            if st is None or not synced:
                log.sync()
                continue
            with log._lock, log._append_locked():
                log._synced_bases.update(older)
                log._dir_dirty = False
                cur = log.state.snapshot()
                if cur["generation"] == st["generation"] and cur["recovery_point"] < st["next_offset"]:
                    log.state.publish(recovery_point=st["next_offset"])
        except (OSError, ArrowlogError) as exc:
            failed.append((log, exc))
    return failed


def close_many(logs: list) -> None:
    """Close many partitions with two file-system syncs in all instead of
    six fsyncs each (1,024 partitions: tens of ms, not seconds): the data
    and directories of every partition this process is the last one out of
    are synced, then their recovery points and "clean" marks are published
    and synced. Where syncfs is unavailable or fails, each partition closes
    on its own (an fsync failure there leaves it not clean: the next opener
    recovers it)."""
    # the open ones in one batch; parked ones reopen a budget's half at a time
    batches = [[log for log in logs if not log._parked]]
    parked = [log for log in logs if log._parked]
    step = max(1, BUDGET.limit // 2)
    batches += [parked[i:i + step] for i in range(0, len(parked), step)]
    for batch in batches:
        held, pending = [], []
        try:
            for log in batch:
                log._lock.acquire()
                held.append(log)
                if log._closed:
                    continue
                st = log._begin_close()
                if st is not None:
                    pending.append((log, st))
            if pending and _syncfs(pending[0][0]._state_fd):
                for log, st in pending:
                    log.state.publish(recovery_point=st["next_offset"])
                    log.state.clean = True
                _syncfs(pending[0][0]._state_fd)
            elif pending:
                for log, st in pending:
                    log._closed = False
                    fcntl.flock(log._append_fd, fcntl.LOCK_UN)
                    log._release()
                    log._closed = True
        finally:
            for log in held:
                try:
                    log._end_close()
                finally:
                    log._lock.release()


class _PieceSink:
    """A write-only file for pyarrow's IPC writer that keeps what it is given
    (small bytes and zero-copy Arrow buffers) instead of copying it."""

    __slots__ = ("pieces", "size", "closed")

    def __init__(self):
        self.pieces: list = []
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        n = data.size if isinstance(data, pa.Buffer) else len(data)
        self.pieces.append(data)
        self.size += n
        return n

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


__all__ = ["PartitionLog", "Frame", "time"]
