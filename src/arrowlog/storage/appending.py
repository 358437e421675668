"""Appending to a PartitionLog: a batch becomes one frame at the end of the
active segment, indexed by the one rule in index.py; a full segment rolls
(see partition.py for the contract)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from .._native import core
from ..errors import InvalidRecordError, PartitionFailedError, StorageError
from ..schema import ENVELOPE_SCHEMA, HEADERS_TYPE, PRODUCE_SCHEMA, TIMESTAMP_TYPE
from .evolution import conform_value, follow_generation, same_file
from .files import storage_error
from .index import NO_TIMESTAMP, Indexer
from .layout import MAX_ACTIVE_POSITION, MAX_OFFSET, damaged, reads_problem
from .logbase import LogBase
from .segment import INDEX_BYTES, MAX_RELATIVE_OFFSET, SEGMENT_FIXED_HEADER, Segment

# Below this size a batch is serialised into one buffer (a copy of a few KiB
# costs less than the ~20 Python-level writes of the zero-copy path). A
# producer's accumulator is written by the native core at any size.
SMALL_BATCH_BYTES = 64 << 10


def null_column(n: int, type_: pa.DataType) -> pa.Array:
    """``n`` nulls of ``type_``, as pa.nulls() but with the empty child of a
    list type holding no offsets: pa.nulls(n, HEADERS_TYPE) gives the header
    key and value columns n + 1 offsets each, 8 bytes a record that the IPC
    writer stores although no header exists."""
    if not pa.types.is_list(type_):
        return pa.nulls(n, type_)
    validity = pa.py_buffer(np.zeros((n + 7) // 8, dtype=np.uint8))
    offsets = pa.py_buffer(np.zeros(n + 1, dtype=np.int32))
    return pa.Array.from_buffers(type_, n, [validity, offsets], null_count=n,
                                 children=[pa.array([], type=type_.value_type)])


class AppendMixin(LogBase):
    """PartitionLog's append() and roll."""

    # (active segment, schema, whether that schema is the plain envelope) whose
    # schemas were last found equal: checked again only when either changes
    _checked_writer: tuple = (None, None, False)
    _target: core.AppendTarget | None = None  # append_target's, kept while its stamp holds

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
        return self._append_frame(n, min_ts, max_ts, fsync, lambda base: self._batch_pieces(batch, base))

    def append_bulk(self, keys: pa.Array, values: pa.Array, timestamps: pa.Array | int, *, fsync: bool = False,
                    min_timestamp: int, max_timestamp: int, timestamp_rows: int = 0) -> int:
        """Append ``keys`` and ``values`` (binary columns of equal length)
        with ``timestamps`` (a timestamp column, or every record's: the first
        rows of a column of ``timestamp_rows`` such values) and no headers as
        one frame, as append() of that batch would, byte for byte;
        returns its base offset. Into an uncompressed topic of the plain
        envelope, the common case of produce_batch, the frame is written by
        core.bulk_frame (no pyarrow batch, no IPC writer; see
        _native/core/bulkframe.pxi); anything else by append()."""
        n = len(values)

        def batch() -> pa.RecordBatch:
            stamps = (timestamps if isinstance(timestamps, pa.Array)
                      else _constant_timestamps(max(n, timestamp_rows), timestamps).slice(0, n))
            return pa.RecordBatch.from_arrays([stamps, keys, values, null_column(n, HEADERS_TYPE)],
                                              schema=PRODUCE_SCHEMA)

        if self.compacted or self.compression or n == 0 or not _bulk_layout():
            return self.append(batch(), fsync=fsync, min_timestamp=min_timestamp, max_timestamp=max_timestamp)
        with self._lock:
            # all-null columns as _batch_pieces stores them (the same cached columns)
            key_col = self._nulls(n, keys.type) if keys.null_count == n else keys
            value_col = self._nulls(n, values.type) if values.null_count == n else values
            frame = core.bulk_frame(n, min_timestamp, max_timestamp, timestamps, key_col, value_col,
                                    self._nulls(n, HEADERS_TYPE), timestamp_rows)
            if frame is None:
                return self.append(batch(), fsync=fsync, min_timestamp=min_timestamp, max_timestamp=max_timestamp)
            return self._append_frame(n, min_timestamp, max_timestamp, fsync,
                                      lambda base: self._batch_pieces(batch(), base), frame)

    def append_records(self, acc: core.RecordAccumulator, *, fsync: bool = False) -> int:
        """Append a (detached, non-empty) producer accumulator's records as
        one frame, as append(acc.to_batch()) would; returns its base offset.
        Into an uncompressed topic of bytes values, the common case
        (docs/CLIENTS.md#latency) is one native call, RecordAccumulator
        .append_at: lock, frame (header, CRC and IPC message, no pyarrow
        batch), one pwrite (gathered from the accumulator's buffers above a
        few KiB), index entries, publish. The rest goes through
        _append_frame, the frame still written natively; a compacted or
        compressed topic's through pyarrow's writer."""
        if acc.count == 0:
            raise ValueError("cannot append an empty batch")
        if self.compacted or self.compression:
            min_ts, max_ts = acc.min_timestamp, acc.max_timestamp  # (to_batch() empties acc)
            return self.append(acc.to_batch(), fsync=fsync, min_timestamp=min_ts, max_timestamp=max_ts)
        if not fsync:
            with self._lock:
                target = self.append_target()
                if target is not None:
                    base = self._append_at(acc, target)
                    if base >= 0:
                        return base
        return self._append_frame(acc.count, acc.min_timestamp, acc.max_timestamp, fsync,
                                  lambda base: self._batch_pieces(acc.to_batch(), base), acc)

    def append_target(self) -> core.AppendTarget | None:
        """Where append_records' one native call writes (caller holds the
        in-process lock): the active segment's end as a core.AppendTarget,
        kept while that segment, its allocated size, its index files and the
        writer's generation are unchanged; None when the common case does
        not hold here (no writer yet, a schema not yet checked or not the
        plain envelope, a failed, closed, read-only or damaged log, a
        compacted or compressed topic): the general path then decides."""
        seg, state, checked = self._writer, self._state, self._checked_writer
        if (seg is None or state is None or self._failed is not None or self._closed or self.read_only
                or self._damage is not None or checked[0] is not seg or checked[1] is not self.schema
                or not checked[2] or self.compacted or self.compression):
            return None
        generation = -1 if self._writer_generation is None else self._writer_generation
        stamp = (seg, state, generation, seg.file_size, seg.index, seg.index_file_size, seg.time_index,
                 seg.time_index_file_size)
        target = self._target
        if target is None or target.stamp != stamp:
            target = self._target = core.AppendTarget(
                state, self.notifier, self._append_fd, seg.log_fd, seg.base_offset, generation, seg.file_size,
                self.segment_bytes, self.segment_ms, self.index_interval, INDEX_BYTES, MAX_OFFSET,
                SEGMENT_FIXED_HEADER, MAX_ACTIVE_POSITION, seg.index, seg.index_file_size, seg.time_index,
                seg.time_index_file_size, stamp, _grower(seg))
        self._used = True
        return target

    def _append_at(self, acc: core.RecordAccumulator, target: core.AppendTarget) -> int:
        """acc.append_at(target): the frame's base offset, or -1 (nothing written)."""
        try:
            return acc.append_at(target, core.wall_clock_ms())
        except StorageError:
            raise  # (the segment's growth: says what it could not grow)
        except OSError as exc:
            raise storage_error(exc, f"cannot append to {target.stamp[0].log_path}") from exc

    def _append_frame(self, n: int, min_ts: int, max_ts: int, fsync: bool, make_pieces: Callable[[int], list],
                      acc: core.RecordAccumulator | core.BulkFrame | None = None) -> int:
        """Append one frame of ``n`` records whose IPC message is
        ``make_pieces(base_offset)`` (called under the append lock), or, for
        an accumulator or bulk frame ``acc`` while the log's schema is the
        plain envelope, written by ``acc.write_frame`` (make_pieces is then
        the fallback for a schema another process evolved)."""
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
                state = self.state
                if state.torn:
                    self._recover_locked()
                st = state.snapshot()
                problem = reads_problem(st)
                if problem is not None:
                    raise damaged(f"partition {self.topic}-{self.partition} ({self.directory})", problem)
                self._mark_dirty()
                seg = self._writer_for(st)
                checked = self._checked_writer
                if checked[0] is not seg or checked[1] is not self.schema:
                    if not seg.schema.equals(self.schema, check_metadata=True):
                        seg, st = follow_generation(self, st, seg)  # the value schema evolved (evolution.py)
                    self._checked_writer = (seg, self.schema, self.schema.equals(ENVELOPE_SCHEMA))
                    checked = self._checked_writer
                base = st["next_offset"]
                if acc is not None and checked[2]:
                    pieces = None
                    size = acc.frame_size()
                else:
                    pieces = make_pieces(base)
                    size = core.FRAME_HEADER_SIZE + sum(len(p) for p in pieces)
                position = st["active_position"]
                if self._should_roll(st, seg, position, size, n, base):
                    self._roll(st, seg, position)
                    st = state.snapshot()
                    seg = self._writer_for(st, at_least=size + 4096)
                    position = st["active_position"]
                if position + size > seg.capacity:
                    # a batch larger than segment.bytes in an empty segment: map more of it
                    seg = self._writer_for(st, at_least=position + size)
                seg.ensure_allocated(position + size)
                try:
                    if pieces is None:
                        acc.write_frame(seg.log_fd, position, base)  # type: ignore[union-attr]
                    else:
                        core.write_frame_pieces(seg.log_fd, position, base, n, min_ts, max_ts, pieces)
                except OSError as exc:
                    raise storage_error(exc, f"cannot append to {seg.log_path}") from exc
                fields = self._index_frame(st, seg, position, base, size, max_ts)
                fields.update(next_offset=base + n, active_position=position + size,
                              active_max_timestamp=max(st["active_max_timestamp"], max_ts))
                if fsync:
                    self._sync_locked(seg)
                    fields["recovery_point"] = base + n
                state.publish(**fields)
                if self.notifier is not None:
                    self.notifier.bump()
                return base

    def _batch_pieces(self, batch: pa.RecordBatch, base: int) -> list:
        """The IPC message pieces of ``batch`` (PRODUCE_SCHEMA columns) with
        offsets from ``base``, in the log's envelope schema."""
        n = batch.num_rows
        offsets = pa.array(np.arange(base, base + n, dtype=np.int64))
        # An all-null column is written as a fresh one: sliced from a larger
        # array it would be serialised with its parent's offsets, and one from
        # pa.nulls() of a list type would carry child offsets sized for all its rows.
        columns = [self._nulls(n, c.type) if c.null_count == n else c for c in batch.columns]
        if columns[2].type != self.schema.field(3).type and pa.types.is_struct(columns[2].type):
            columns[2] = conform_value(columns[2], self.schema.field(3).type)
        return self._serialize(pa.RecordBatch.from_arrays([offsets, *columns], schema=self.schema))

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
            cached = self._null_columns[type_] = null_column(max(n, 1 << 16), type_)
        return cached.slice(0, n)

    def _serialize(self, full: pa.RecordBatch) -> list:
        """The IPC record batch message of ``full`` as the pieces pyarrow's
        writer emits (metadata bytes, padding, and the batch's own buffers,
        uncopied), for write_frame_pieces."""
        # get_total_buffer_size: 0.3 µs where nbytes walks the buffers for ~10 (pyarrow 26); a
        # slice counts its parents' whole buffers, which only sends it down the zero-copy path
        if full.get_total_buffer_size() < SMALL_BATCH_BYTES and not self.compression:
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
            # an orphan from a writer that died mid-roll starts at or past the
            # published log end; a later segment holding published offsets means
            # the state is damaged: refused, never deleted
            later = [b for b in self._list_bases() if b > base]
            where = f"partition.state of {self.topic}-{self.partition}"
            if later and later[0] < st["next_offset"]:
                raise damaged(where, f"it says the active segment starts at offset {base}, and segment "
                              f"{later[0]} after it holds offsets below the log end {st['next_offset']}")
            try:
                seg = Segment(self.directory, base, writable=True, capacity=self._capacity(at_least))
            except FileNotFoundError as exc:
                raise damaged(where, f"it says the active segment starts at offset {base}, and there is no "
                              "such segment file") from exc
            self._writer = seg
            for orphan in later:
                self._delete_segment_files(orphan)
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
        """The state fields that change when a frame of ``size`` bytes is
        stored at ``position``: the index entries the rule (index.py) writes
        for it, or, when none is due, only the bytes since the last one."""
        since = st["bytes_since_index"]
        if st["offset_index_entries"] and since < self.index_interval:
            return {"bytes_since_index": since + size}  # as Indexer.add, without building one
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
        """The base offset of the active segment's last frame, walked by
        its headers from the last index entry. A header damaged since the
        open (one that cannot be a frame there, or a base offset outside
        the segment's) is a CorruptRecordError naming where; nothing is
        changed. So are entry counts the index files do not hold (the
        lookup here and the time index's seal would read past their ends:
        a SIGBUS)."""
        where = f"segment {seg.log_path} of partition {self.topic}-{self.partition}"
        oe = st["offset_index_entries"]
        for name, fd, entry in (("offset_index_entries", seg.index_fd, core.OFFSET_ENTRY_SIZE),
                                ("time_index_entries", seg.time_index_fd, core.TIME_ENTRY_SIZE)):
            held = os.fstat(fd).st_size // entry if fd >= 0 else 0
            if not 0 <= st[name] <= held:
                raise damaged(where, f"partition.state says {name}={st[name]}, and its index file holds {held}")
        pos = seg.header_size
        if oe and seg.index is not None:
            hit = core.offset_index_lookup(seg.index, oe, MAX_RELATIVE_OFFSET)
            if hit is not None:
                pos = hit[1]
        end = st["active_position"]
        last = seg.base_offset
        try:
            while pos < end:
                base, _count, body, _, _ = core.read_frame_header(seg.log, pos, end)
                if not seg.base_offset <= base < st["next_offset"]:
                    raise core.CorruptFrame(f"the frame at position {pos} says its base offset is {base}, outside "
                                            f"the segment's offsets {seg.base_offset}..{st['next_offset'] - 1}")
                last = base
                pos += core.FRAME_HEADER_SIZE + body
        except core.CorruptFrame as exc:
            raise damaged(where, str(exc)) from None
        return last


def _grower(seg: Segment) -> Callable[[int], int]:
    """An append target's ``grow`` (core/target.pxi): back ``seg`` up to
    a frame's end as the general path does (Segment.ensure_allocated, its
    steps and its errors), so that a steady producer's appends stay native
    when the segment grows; -1 beyond the mapped capacity (the general path
    maps more)."""
    def grow(end: int) -> int:
        if end > seg.capacity:
            return -1
        seg.ensure_allocated(end)
        return seg.file_size
    return grow


def _constant_timestamps(n: int, ts: int) -> pa.Array:
    """``n`` records' timestamp column, every one ``ts``."""
    return pa.Array.from_buffers(TIMESTAMP_TYPE, n, [None, pa.py_buffer(np.full(n, ts, dtype=np.int64))])


_BULK_LAYOUT: list[bool] = []


def _bulk_layout() -> bool:
    """Whether bulk frames can be written natively: pyarrow's IPC message of
    an envelope batch, captured once per process, has the layout
    core.bulk_frame patches (else every bulk frame goes through pyarrow)."""
    if not _BULK_LAYOUT:
        sample = pa.RecordBatch.from_arrays(
            [pa.array([0], pa.int64()), pa.array([0], TIMESTAMP_TYPE), pa.array([b"k"]), pa.array([b"v"]),
             null_column(1, HEADERS_TYPE)], schema=ENVELOPE_SCHEMA)
        try:
            core.bulk_template(sample.serialize())
            _BULK_LAYOUT.append(True)
        except ValueError:
            _BULK_LAYOUT.append(False)
    return _BULK_LAYOUT[0]


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
