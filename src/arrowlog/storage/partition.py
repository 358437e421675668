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

import errno
import fcntl
import os
import threading
import time

import numpy as np
import pyarrow as pa

from .._native import core
from ..errors import (
    CorruptRecordError,
    OffsetOutOfRangeError,
    PartitionFailedError,
    StorageError,
)
from .files import ExclusiveFlock, close_fds, fsync_dir, open_shared_file, storage_error
from .segment import (
    INDEX_BYTES,
    MAX_RELATIVE_OFFSET,
    MAX_SEGMENT_BYTES,
    Segment,
    parse_segment_name,
)

ENVELOPE_SCHEMA = core.ENVELOPE_SCHEMA
NO_TIMESTAMP = -(1 << 63)
# Below this size a batch is serialised into one buffer (a copy of a few KiB
# costs less than the ~20 Python-level writes of the zero-copy path).
SMALL_BATCH_BYTES = 64 << 10


class Frame:
    """One stored batch: offsets base_offset .. base_offset+record_count-1.
    ``batch`` is a zero-copy pa.RecordBatch over the mapped segment."""

    __slots__ = ("base_offset", "record_count", "min_timestamp", "max_timestamp", "size", "batch")

    def __init__(self, base_offset, record_count, min_timestamp, max_timestamp, size, batch):
        self.base_offset = base_offset
        self.record_count = record_count
        self.min_timestamp = min_timestamp
        self.max_timestamp = max_timestamp
        self.size = size
        self.batch = batch

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.record_count

    def __repr__(self) -> str:
        return f"<Frame {self.base_offset}..{self.next_offset - 1} size={self.size}>"


class PartitionLog:
    """See the module docstring for the contract."""

    def __init__(self, directory: str, topic: str, partition: int, config: dict, *, schema: pa.Schema = ENVELOPE_SCHEMA,
                 notifier: core.PartitionState | None = None):
        self.directory = directory
        self.notifier = notifier
        self.topic = topic
        self.partition = partition
        self.config = config
        self.schema = schema
        self.segment_bytes = min(int(config["segment.bytes"]), MAX_SEGMENT_BYTES)
        self.segment_ms = int(config["segment.ms"])
        self.index_interval = int(config["index.interval.bytes"])
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
        self._failed: BaseException | None = None
        self._closed = False
        self._hint: tuple[int, int, int] | None = None  # (offset, segment base, position)
        self._synced_bases: set[int] = set()
        self._dir_dirty = False
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            if exc.errno != errno.EROFS or not os.path.isdir(directory):
                raise
        self._state_fd, ro1 = open_shared_file(os.path.join(directory, "partition.state"))
        self._append_fd, ro2 = open_shared_file(os.path.join(directory, "append.lock"))
        self._open_fd, ro3 = open_shared_file(os.path.join(directory, "open.lock"))
        self.read_only = ro1 or ro2 or ro3
        try:
            if os.fstat(self._state_fd).st_size < core.STATE_FILE_SIZE:
                if self.read_only:
                    raise StorageError(errno.EROFS, f"{directory} was never written and the file system is read-only")
                with self._append_locked():
                    if os.fstat(self._state_fd).st_size < core.STATE_FILE_SIZE:
                        core.fallocate(self._state_fd, 0, core.STATE_FILE_SIZE)
            self.state = core.PartitionState(core.MappedFile(self._state_fd, core.STATE_FILE_SIZE, not self.read_only,
                                                             os.path.join(directory, "partition.state")))
            self._open_session()
        except BaseException:
            self._close_fds()
            raise

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
                if not self.state.is_initialised() or not self.state.clean or self.state.torn:
                    self.recover()
                else:
                    with self._append_locked():
                        self._check_indexes()
                # The "clean" mark stays until this session first changes the
                # log (_mark_dirty): a session that only reads costs no fsync.
            finally:
                fcntl.flock(self._open_fd, fcntl.LOCK_SH)
        else:
            # Blocks while a first opener is still recovering.
            fcntl.flock(self._open_fd, fcntl.LOCK_SH)
            if not self.state.is_initialised():
                self.recover()

    def _mark_dirty(self) -> None:
        """Before a session's first change to the log (caller holds the append
        lock): clear the "clean" mark, on disk before anything is
        acknowledged, so a crash or power loss before the next clean close
        makes the next opener recover (a stale mark would hide synced appends)."""
        if self.state.clean:
            self.state.clean = False
            os.fsync(self._state_fd)

    def recover(self) -> dict:
        """Check the log from the segment holding the recovery point onward:
        verify every frame's CRC and the offsets' continuity, truncate at
        the first bad frame, delete later segments, rebuild the indexes of
        what was scanned, and republish the state. Returns a report."""
        with self._lock, self._append_locked():
            return self._recover_locked()

    def _recover_locked(self) -> dict:
        report = {"segments_scanned": 0, "bytes_scanned": 0, "truncated_bytes": 0, "segments_deleted": 0,
                  "indexes_rebuilt": 0}
        self.state.repair_seq()
        old = self.state.snapshot() if self.state.is_initialised() else None
        self._drop_segments()
        bases = self._list_bases()
        if not bases:
            # closed at once: the scan below opens it again (keeping this one
            # leaked its three file descriptors)
            Segment.create(self.directory, 0, self.schema, self.compression, self._capacity(), self._now_ms()).close()
            bases = [0]
            fsync_dir(self.directory)
        recovery_point = old["recovery_point"] if old else 0
        start = 0
        for i, base in enumerate(bases):
            if base <= recovery_point:
                start = i
        next_offset = bases[start]
        log_start = old["log_start_offset"] if old else bases[0]
        log_start = max(min(log_start, bases[-1]), bases[0])
        # Segments before `start` are trusted (synced); check their indexes.
        for base in bases[:start]:
            seg = self._open_writer_segment(base)
            try:
                entries = seg.index_entries_on_disk()
                if not seg.index_is_sane(entries[0], entries[1], seg.file_size):
                    end, _, frames = core.scan_frames(seg.log, seg.header_size, seg.file_size, base, False)
                    oe, te, _, _ = seg.rebuild_indexes(frames, self.index_interval)
                    seg.trim(self._trusted_end(seg, end), oe, te)
                    report["indexes_rebuilt"] += 1
            finally:
                seg.close()
        active = None
        for i in range(start, len(bases)):
            base = bases[i]
            if base != next_offset and i > start:
                # a gap: everything from here on is unreachable
                for later in bases[i:]:
                    self._delete_segment_files(later)
                    report["segments_deleted"] += 1
                break
            try:
                seg = self._open_writer_segment(base)
            except (CorruptRecordError, OSError):
                for later in bases[i:]:
                    self._delete_segment_files(later)
                    report["segments_deleted"] += 1
                if active is None:
                    seg = Segment.create(self.directory, next_offset, self.schema, self.compression,
                                         self._capacity(), self._now_ms())
                    active = (seg, seg.header_size, [])
                break
            end, next_offset, frames = core.scan_frames(seg.log, seg.header_size, seg.file_size, base, True)
            report["segments_scanned"] += 1
            report["bytes_scanned"] += end - seg.header_size
            if active is not None:
                active[0].trim(active[1], *self._rebuild(active[0], active[2], report)[:2])
                active[0].close()
            active = (seg, end, frames)
            if end < seg.file_size and i + 1 < len(bases):
                # torn or corrupt inside a non-last segment: drop later segments
                tail = self._scan_tail_garbage(seg, end)
                if tail:
                    for later in bases[i + 1:]:
                        self._delete_segment_files(later)
                        report["segments_deleted"] += 1
                    break
        seg, end, frames = active
        if end < seg.file_size:
            report["truncated_bytes"] += self._garbage_bytes(seg, end)
            seg.trim(end, *seg.index_entries_on_disk())  # zero the tail: no stale frame survives
        oe, te, since, max_ts = self._rebuild(seg, frames, report)
        seg.ensure_allocated(end)
        self._writer = seg
        fsync_dir(self.directory)
        if log_start < bases[0] or log_start > next_offset:
            log_start = bases[0]
        fields = dict(
            log_start_offset=log_start, next_offset=next_offset, active_base_offset=seg.base_offset,
            active_position=end, active_max_timestamp=max_ts if frames else NO_TIMESTAMP,
            offset_index_entries=oe, time_index_entries=te, bytes_since_index=since,
            recovery_point=min(recovery_point, next_offset),
            generation=(old["generation"] + 1) if old else 1,
            segment_created_ms=seg.created_ms,
        )
        if old is None:
            self.state.initialise(**fields)
        else:
            self.state.publish(**fields)
        self._hint = None
        report["next_offset"] = next_offset
        return report

    def _rebuild(self, seg: Segment, frames: list, report: dict):
        result = seg.rebuild_indexes(frames, self.index_interval)
        report["indexes_rebuilt"] += 1
        return result

    @staticmethod
    def _garbage_bytes(seg: Segment, end: int) -> int:
        return max(0, seg.file_size - end) if seg.log.read(end, min(64, seg.file_size - end)).strip(b"\0") else 0

    @classmethod
    def _trusted_end(cls, seg: Segment, end: int) -> int:
        """Where to cut a closed segment whose frames end at ``end``: a
        zero tail is the preallocation of a trim at roll that a power loss
        undid (readers would fail on it); anything else is left for verify."""
        return end if end < seg.file_size and not cls._scan_tail_garbage(seg, end) else seg.file_size

    @staticmethod
    def _scan_tail_garbage(seg: Segment, end: int) -> bool:
        return bool(seg.log.read(end, min(4096, seg.file_size - end)).strip(b"\0"))

    def _check_indexes(self) -> None:
        """On a clean open, still refuse an index that cannot be right."""
        st = self.state.snapshot()
        for base in self._list_bases():
            if base < st["active_base_offset"]:
                try:
                    seg = self._open_writer_segment(base)
                except (CorruptRecordError, OSError):
                    continue
                try:
                    oe, te = seg.index_entries_on_disk()
                    if not seg.index_is_sane(oe, te, seg.file_size):
                        end, _, frames = core.scan_frames(seg.log, seg.header_size, seg.file_size, base, False)
                        oe, te, _, _ = seg.rebuild_indexes(frames, self.index_interval)
                        seg.trim(self._trusted_end(seg, end), oe, te)
                finally:
                    seg.close()
            elif base == st["active_base_offset"]:
                seg = self._open_writer_segment(base)
                try:
                    if not seg.index_is_sane(st["offset_index_entries"], st["time_index_entries"], st["active_position"]):
                        _, _, frames = core.scan_frames(seg.log, seg.header_size, st["active_position"], base, False)
                        oe, te, since, _ = seg.rebuild_indexes(frames, self.index_interval)
                        self.state.publish(offset_index_entries=oe, time_index_entries=te, bytes_since_index=since)
                finally:
                    seg.close()

    # -- helpers --------------------------------------------------------------

    def _capacity(self, at_least: int = 0) -> int:
        return max(self.segment_bytes, at_least)

    @staticmethod
    def _now_ms() -> int:
        return core.wall_clock_ms()

    def _append_locked(self):
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
        stem = os.path.join(self.directory, f"{base:020d}")
        for ext in (".log", ".index", ".timeindex"):
            try:
                os.unlink(stem + ext)
            except FileNotFoundError:
                pass

    def _drop_segments(self) -> None:
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()
        self._bases, self._bases_key = [], None
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

    def watermarks(self) -> tuple[int, int]:
        st = self._snapshot()
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
        with self._lock:
            if self._failed is not None:
                raise PartitionFailedError(errno.EIO, f"partition {self.topic}-{self.partition} failed after an "
                                           f"earlier I/O error ({self._failed}); reopen it to recover")
            if self._closed:
                raise StorageError(errno.EBADF, "partition log is closed")
            if self.read_only:
                raise StorageError(errno.EROFS, f"cannot append to {self.topic}-{self.partition}: the file system is "
                                   "read-only (reads keep working)")
            with self._append_locked():
                if self.state.torn:
                    self._recover_locked()
                self._mark_dirty()
                st = self.state.snapshot()
                base = st["next_offset"]
                offsets = pa.array(np.arange(base, base + n, dtype=np.int64))
                # An all-null column sliced from a larger array would be
                # serialised with its parent's offsets: write a fresh one.
                columns = [self._nulls(n, c.type) if c.null_count == n and c.offset else c for c in batch.columns]
                full = pa.RecordBatch.from_arrays([offsets, *columns], schema=self.schema)
                pieces = self._serialize(full)
                size = core.FRAME_HEADER_SIZE + sum(len(p) for p in pieces)
                seg = self._writer_for(st)
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
        writer = pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), self.schema, options=self._ipc_options)
        writer.write_batch(full)
        # the stream starts with its schema message: drop those pieces
        pieces = sink.pieces
        skip, i = self._schema_message_size, 0
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
        since = st["bytes_since_index"]
        oe, te = st["offset_index_entries"], st["time_index_entries"]
        fields = {}
        if oe == 0 or since >= self.index_interval:
            core.write_offset_entry(seg.index, oe, base - seg.base_offset, position)
            oe += 1
            since = 0
            running_max = max(st["active_max_timestamp"], max_ts)
            last_time = self._last_time_entry(seg, te)
            if running_max > last_time:
                core.write_time_entry(seg.time_index, te, running_max, base - seg.base_offset)
                te += 1
            fields.update(offset_index_entries=oe, time_index_entries=te)
        fields["bytes_since_index"] = since + size
        return fields

    @staticmethod
    def _last_time_entry(seg: Segment, entries: int) -> int:
        if entries == 0:
            return NO_TIMESTAMP
        raw = seg.time_index.read((entries - 1) * core.TIME_ENTRY_SIZE, 8)
        return int.from_bytes(raw, "little", signed=True)

    def _roll(self, st: dict, seg: Segment, position: int) -> None:
        """Close the active segment (final time index entry, trim) and start
        a new one at next_offset; caller holds the append lock."""
        te = st["time_index_entries"]
        if st["active_max_timestamp"] > self._last_time_entry(seg, te):
            # Kafka's rule: a closed segment's time index ends at its largest timestamp
            last = self._last_frame_base(seg, st)
            core.write_time_entry(seg.time_index, te, st["active_max_timestamp"], last - seg.base_offset)
            te += 1
        seg.trim(position, st["offset_index_entries"], te)
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

    # -- durability ----------------------------------------------------------------

    def flush(self, fsync: bool = False) -> None:
        """Appends are written when append() returns; ``fsync`` also makes
        them survive power loss and advances the recovery point."""
        if fsync:
            self.sync()

    def sync(self) -> None:
        """fdatasync every segment written since the recovery point, then
        publish the new recovery point. The append lock is held only to
        take a snapshot and to publish, not during the fdatasync itself, so
        a periodic background sync never stalls appends for a disk flush."""
        with self._lock:
            if self._failed is not None:
                raise PartitionFailedError(errno.EIO, f"partition {self.topic}-{self.partition} has failed")
            with self._append_locked():
                if self.state.torn:
                    self._recover_locked()
                st = self.state.snapshot()
                if st["recovery_point"] >= st["next_offset"]:
                    return
                seg = self._writer_for(st)
                fds = [os.dup(fd) for fd in (seg.log_fd, seg.index_fd, seg.time_index_fd) if fd >= 0]
                older = self._unsynced_closed_segments(st)
                dir_dirty = self._dir_dirty or not self._synced_bases
                self._dir_dirty = False
        try:
            for base in older:
                try:
                    fd = os.open(os.path.join(self.directory, f"{base:020d}.log"), os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:  # deleted by retention meanwhile
                    continue
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            for fd in fds:
                os.fdatasync(fd)
            if dir_dirty:
                fsync_dir(self.directory)
        except OSError as exc:
            self._failed = exc
            raise PartitionFailedError(exc.errno or errno.EIO,
                                       f"fsync of {self.topic}-{self.partition} failed ({exc.strerror}); the "
                                       "partition refuses writes until reopened") from exc
        finally:
            for fd in fds:
                os.close(fd)
        with self._lock, self._append_locked():
            self._synced_bases.update(older)
            cur = self.state.snapshot()
            # a recovery in between may have cut the log below what was synced
            if cur["generation"] == st["generation"] and cur["recovery_point"] < st["next_offset"]:
                self.state.publish(recovery_point=st["next_offset"])

    def _unsynced_closed_segments(self, st: dict) -> list[int]:
        """Closed segments that may hold data above the recovery point (rolled
        since the last sync, possibly by another process)."""
        out = []
        for base in self._list_bases():
            if base >= st["active_base_offset"]:
                break
            if base < st["recovery_point"] and base in self._synced_bases:
                continue
            nxt = self._next_base(base)
            if nxt is not None and nxt <= st["recovery_point"]:
                continue
            out.append(base)
        return out

    def _sync_locked(self, active: Segment, st: dict | None = None) -> None:
        """fdatasync under the append lock (durability=fsync appends)."""
        st = st or self.state.snapshot()
        try:
            for base in self._unsynced_closed_segments(st):
                fd = os.open(os.path.join(self.directory, f"{base:020d}.log"), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
                self._synced_bases.add(base)
            active.sync()
            if self._dir_dirty or not self._synced_bases:
                fsync_dir(self.directory)
                self._dir_dirty = False
        except OSError as exc:
            self._failed = exc
            raise PartitionFailedError(exc.errno or errno.EIO,
                                       f"fsync of {self.topic}-{self.partition} failed ({exc.strerror}); the "
                                       "partition refuses writes until reopened") from exc

    def _next_base(self, base: int) -> int | None:
        later = [b for b in self._list_bases() if b > base]
        return later[0] if later else None

    # -- retention --------------------------------------------------------------------

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete whole segments older than retention.ms or beyond
        retention.bytes (never the active one); returns how many."""
        with self._lock, self._append_locked():
            return self._enforce_retention_locked(now_ms)

    def _enforce_retention_locked(self, now_ms: int | None = None) -> int:
        retention_ms = int(self.config.get("retention.ms", -1))
        retention_bytes = int(self.config.get("retention.bytes", -1))
        if retention_ms < 0 and retention_bytes < 0:
            return 0
        now_ms = self._now_ms() if now_ms is None else now_ms
        st = self.state.snapshot()
        bases = [b for b in self._list_bases() if b < st["active_base_offset"]]
        sizes = {}
        total = st["active_position"]
        for b in bases:
            try:
                sizes[b] = os.stat(os.path.join(self.directory, f"{b:020d}.log")).st_size
            except FileNotFoundError:
                sizes[b] = 0
            total += sizes[b]
        deleted = 0
        for b in bases:
            expired = False
            if retention_ms >= 0:
                max_ts = self._segment_max_timestamp(b)
                expired = max_ts is not None and max_ts < now_ms - retention_ms
            if not expired and retention_bytes >= 0 and total - sizes[b] >= retention_bytes:
                expired = True
            if not expired:
                break
            self._mark_dirty()
            later = [x for x in self._list_bases() if x > b]
            new_start = later[0] if later else st["active_base_offset"]
            self.state.publish(log_start_offset=max(new_start, st["log_start_offset"]))
            self._delete_segment_files(b)
            total -= sizes[b]
            deleted += 1
        if deleted:
            self._hint = None
        return deleted

    def delete_records(self, before: int) -> int:
        """Kafka's DeleteRecords: move the log start offset up to ``before`` (-1: the
        high watermark), so records below it are no longer readable, and delete the
        closed segments that lie wholly below it. A ``before`` at or below the current
        log start changes nothing. Returns the log start offset afterwards."""
        with self._lock, self._append_locked():
            st = self.state.snapshot()
            end = st["next_offset"]
            target = end if before == -1 else before
            if not 0 <= target <= end:
                raise OffsetOutOfRangeError(
                    f"cannot delete records of {self.topic}-{self.partition} below offset {before}: "
                    f"it must be between 0 and the high watermark {end} (or -1 for the high watermark)")
            if target <= st["log_start_offset"]:
                return st["log_start_offset"]
            self._mark_dirty()
            self.state.publish(log_start_offset=target)
            closed = [b for b in self._list_bases() if b < st["active_base_offset"]]
            for i, b in enumerate(closed):
                following = closed[i + 1] if i + 1 < len(closed) else st["active_base_offset"]
                if following > target:
                    break
                self._delete_segment_files(b)
            self._hint = None
            return target

    def _segment_max_timestamp(self, base: int) -> int | None:
        """The largest timestamp of a closed segment (its last time index
        entry); cached, since closed segments never change."""
        cached = self._max_ts_cache.get(base)
        if cached is not None:
            return cached
        found = self._read_segment_max_timestamp(base)
        if found is not None:
            self._max_ts_cache[base] = found
        return found

    def _read_segment_max_timestamp(self, base: int) -> int | None:
        path = os.path.join(self.directory, f"{base:020d}.timeindex")
        try:
            size = os.stat(path).st_size
            if size < core.TIME_ENTRY_SIZE:
                return None
            with open(path, "rb") as f:
                f.seek(size - core.TIME_ENTRY_SIZE - size % core.TIME_ENTRY_SIZE)
                return int.from_bytes(f.read(8), "little", signed=True)
        except FileNotFoundError:
            return None

    # -- reading ------------------------------------------------------------------------

    def _segment(self, base: int, st: dict) -> Segment:
        seg = self._segments.get(base)
        active = base == st["active_base_offset"]
        end = st["active_position"] if active else None
        if seg is not None and (end is None or end <= seg.capacity) and (active or seg.file_size <= seg.capacity):
            if not active and seg.file_size == 0:
                pass
            return seg
        if seg is not None:
            seg.close()
        seg = Segment(self.directory, base, writable=False,
                      capacity=self._capacity(end or 0) if active else None)
        self._segments[base] = seg
        return seg

    def _locate(self, offset: int, st: dict) -> tuple[Segment, int]:
        """(segment, end position) of the segment holding ``offset``."""
        if offset >= st["active_base_offset"]:
            base = st["active_base_offset"]
        else:
            bases = self._known_bases(st)
            base = None
            for b in bases:
                if b <= offset:
                    base = b
                else:
                    break
            if base is None:
                raise OffsetOutOfRangeError(f"offset {offset} of {self.topic}-{self.partition} was deleted "
                                            f"(log start offset is {st['log_start_offset']})")
        seg = self._segment(base, st)
        if base == st["active_base_offset"]:
            end = st["active_position"]
        else:
            end = os.fstat(seg.log_fd).st_size if seg.log_fd >= 0 else seg.file_size
            seg.file_size = end
        return seg, end

    def read(self, offset: int, max_bytes: int = 1 << 20, *, check_crc: bool = False) -> list[Frame]:
        """Whole frames starting with the one containing ``offset``, up to
        about ``max_bytes`` (the first frame always, even if larger: Kafka's
        KIP-74 rule). [] when ``offset`` is at the high watermark."""
        for attempt in range(3):
            st = self._snapshot()
            if offset < st["log_start_offset"]:
                raise OffsetOutOfRangeError(
                    f"offset {offset} is below the log start offset {st['log_start_offset']} of "
                    f"{self.topic}-{self.partition} (deleted by retention); seek to the beginning")
            if offset > st["next_offset"]:
                raise OffsetOutOfRangeError(
                    f"offset {offset} is beyond the high watermark {st['next_offset']} of {self.topic}-{self.partition}")
            if offset == st["next_offset"]:
                return []
            try:
                return self._read(offset, max_bytes, st, check_crc)
            except FileNotFoundError:
                # retention removed the segment under us: look again
                self._bases_key = None
                self._segments.pop(self._locate_base_guess(offset), None)
                continue
        raise OffsetOutOfRangeError(f"offset {offset} of {self.topic}-{self.partition} was deleted")

    def _locate_base_guess(self, offset: int) -> int:
        return max((b for b in self._segments if b <= offset), default=-1)

    def _read(self, offset: int, max_bytes: int, st: dict, check_crc: bool) -> list[Frame]:
        frames: list[Frame] = []
        total = 0
        seg, end = self._locate(offset, st)
        hint = self._hint
        if hint is not None and hint[0] == offset and hint[1] == seg.base_offset:
            position = hint[2]
        else:
            entries = st["offset_index_entries"] if seg.base_offset == st["active_base_offset"] else \
                seg.index_entries_on_disk()[0]
            position = seg.frame_position(offset, entries, end)
        while True:
            while position < end:
                base, count, min_ts, max_ts, size, batch = seg.read_frame(position, end, check_crc)
                frames.append(Frame(base, count, min_ts, max_ts, size, batch))
                position += size
                total += size
                if total >= max_bytes:
                    self._hint = (base + count, seg.base_offset, position)
                    return frames
            nxt = frames[-1].next_offset if frames else offset
            if nxt >= st["next_offset"] or seg.base_offset == st["active_base_offset"]:
                self._hint = (nxt, seg.base_offset, position)
                return frames
            seg, end = self._locate(nxt, st)
            position = seg.header_size if seg.base_offset == nxt else seg.frame_position(nxt, 0, end)

    def offset_for_timestamp(self, timestamp: int) -> int | None:
        """The first offset whose timestamp is at or after ``timestamp`` (ms),
        or None if there is none (Kafka's ListOffsets by time)."""
        st = self._snapshot()
        bases = [b for b in self._known_bases(st) if b <= st["active_base_offset"]]
        start_idx = 0
        for i, b in enumerate(bases):
            if b >= st["log_start_offset"] or i + 1 < len(bases) and bases[i + 1] > st["log_start_offset"]:
                start_idx = i
                break
        for b in bases[start_idx:]:
            if b < st["active_base_offset"]:
                max_ts = self._segment_max_timestamp(b)
                if max_ts is not None and max_ts < timestamp:
                    continue
            try:
                seg, end = self._locate(max(b, st["log_start_offset"]), st)
            except (FileNotFoundError, OffsetOutOfRangeError):
                continue
            active = b == st["active_base_offset"]
            oe, te = (st["offset_index_entries"], st["time_index_entries"]) if active else seg.index_entries_on_disk()
            position = seg.time_scan_start(timestamp, te, oe, end)
            while position < end:
                base, count, body, min_ts, max_ts = core.read_frame_header(seg.log, position, end)
                if max_ts >= timestamp and base + count > st["log_start_offset"]:
                    if min_ts >= timestamp:
                        idx = 0
                    elif not self.compression:
                        key = (st["generation"], seg.base_offset, position)
                        idx, is_sorted = core.frame_first_row_at_or_after(
                            seg.log, position, end, timestamp, self._sorted_frames.get(key, -1))
                        if len(self._sorted_frames) > 65536:
                            self._sorted_frames.clear()
                        self._sorted_frames[key] = 1 if is_sorted else 0
                    else:
                        ts_col = seg.read_frame(position, end)[5].column(1)
                        ts = np.frombuffer(ts_col.buffers()[1], dtype=np.int64, count=count, offset=ts_col.offset * 8)
                        idx = int(np.argmax(ts >= timestamp))
                    return max(base + idx, st["log_start_offset"])
                position += core.FRAME_HEADER_SIZE + body
        return None

    def _known_bases(self, st: dict) -> list[int]:
        """Segment base offsets, listed again only when the published state
        says segments were added, deleted or recovered."""
        key = (st["active_base_offset"], st["log_start_offset"], st["generation"])
        if self._bases_key != key:
            self._bases = self._list_bases()
            self._bases_key = key
        return self._bases

    def segment_bases(self) -> list[int]:
        return self._list_bases()

    def size_bytes(self) -> int:
        st = self._snapshot()
        total = 0
        for b in self._list_bases():
            if b == st["active_base_offset"]:
                total += st["active_position"]
            else:
                try:
                    total += os.stat(os.path.join(self.directory, f"{b:020d}.log")).st_size
                except FileNotFoundError:
                    pass
        return total

    def verify(self) -> dict:
        """CRC-check every published frame; a report of what was found."""
        st = self._snapshot()
        report = {"segments": 0, "frames": 0, "records": 0, "bytes": 0, "errors": []}
        expected = None
        for b in self._list_bases():
            if b > st["active_base_offset"]:
                report["errors"].append(f"segment {b:020d} lies beyond the active segment (unpublished)")
                continue
            try:
                seg = self._segment(b, st)
            except (CorruptRecordError, OSError) as exc:
                report["errors"].append(f"segment {b:020d}: {exc}")
                continue
            end = st["active_position"] if b == st["active_base_offset"] else seg.file_size
            if expected is not None and b != expected:
                report["errors"].append(f"segment {b:020d} does not continue from offset {expected}")
            scan_end, nxt, frames = core.scan_frames(seg.log, seg.header_size, end, b, True)
            report["segments"] += 1
            report["frames"] += len(frames)
            report["records"] += nxt - b
            report["bytes"] += end
            if scan_end != end:
                report["errors"].append(f"segment {b:020d}: frame at position {scan_end} fails its checks "
                                        f"({end - scan_end} bytes after it unreadable)")
            expected = nxt
        return report

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Release this process's hold; the last process out syncs and marks
        the partition clean, so the next open skips recovery."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                fcntl.flock(self._open_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last = True
            except BlockingIOError:
                last = False
            if last and self._failed is None and not self.read_only and not self.state.clean:
                try:
                    with self._append_locked():
                        st = self.state.snapshot()
                        if not self.state.torn:
                            seg = self._writer_for(st)
                            self._sync_locked(seg, st)
                            seg.trim(st["active_position"], st["offset_index_entries"], st["time_index_entries"])
                            self.state.publish(recovery_point=st["next_offset"])
                            os.fsync(self._state_fd)
                            self.state.clean = True
                            os.fsync(self._state_fd)
                except (OSError, StorageError):
                    pass
            self._drop_segments()
            self._close_fds()

    def _close_fds(self) -> None:
        close_fds(self, "_state_fd", "_append_fd", "_open_fd")

    def __enter__(self) -> PartitionLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PartitionLog {self.topic}-{self.partition} at {self.directory}>"


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


__all__ = ["PartitionLog", "Frame", "ENVELOPE_SCHEMA", "time"]
