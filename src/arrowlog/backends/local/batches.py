"""produce_batch(): many records appended at once, as frames of about 8 MiB,
bypassing the per-record accumulators (the Producer's method calls it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..._native import core
from ...convert import binary_array, first_bad_row, shown, to_epoch_ms, typed_values
from ...errors import InvalidArgumentError, InvalidRecordError, MessageSizeTooLargeError
from ...schema import HEADERS_TYPE, PRODUCE_SCHEMA, TIMESTAMP_TYPE
from ...storage.appending import null_column

# produce_batch() appends frames of at least this many bytes of values: an
# append has fixed work (IPC framing, index, publish) that larger frames pay
# less often, and the segment's kernel copy runs in larger folios. Thread CPU
# time of a 1 M x 100 B produce_batch (median of 11, sizes interleaved in one
# process on a 2-core machine): 4 MiB frames 30.7 ms, 8 MiB 29.0, 16 MiB 27.3, 32 MiB 27.0.
BULK_FRAME_BYTES = 16 << 20


def _row_of(values: Any, i: int) -> Any:
    if isinstance(values, (pa.Table, pa.RecordBatch)):
        return values.slice(i, 1).to_pylist()[0]
    row = values[i]
    return row.as_py() if isinstance(row, pa.Scalar) else row




def _offsets(arr: pa.Array) -> np.ndarray | None:
    """A binary array's int32 offsets, without a copy (None when it has none: all null)."""
    if arr.buffers()[1] is None:
        return None
    return np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)


def _lengths(arr: pa.Array) -> np.ndarray | int:
    """Byte lengths of a binary array's entries (0 for nulls), as int32 (an
    entry is below 2 GiB): no int64 copy of a million-entry array."""
    offsets = _offsets(arr)
    return 0 if offsets is None else np.diff(offsets)


def _longest(arr: pa.Array) -> int:
    """Bytes of a binary array's longest entry (0 for nulls; no array of lengths is built)."""
    offsets = _offsets(arr)
    return 0 if offsets is None else core.max_entry_length(offsets)


def _total(arr: pa.Array) -> int:
    """Bytes of all a binary array's entries."""
    offsets = _offsets(arr)
    return 0 if offsets is None else int(offsets[-1]) - int(offsets[0])


def _header_lengths(headers: pa.ListArray) -> np.ndarray | int:
    """Bytes of each row's header keys and values (0 for none)."""
    if headers.null_count == len(headers):
        return 0
    flat = headers.flatten()
    per = pc.fill_null(pc.add(pc.fill_null(pc.binary_length(flat.field("key")), 0),
                              pc.fill_null(pc.binary_length(flat.field("value")), 0)), 0)
    cum = np.concatenate([[0], np.cumsum(per.to_numpy(zero_copy_only=False), dtype=np.int64)])
    offsets = headers.offsets.to_numpy()
    offsets = offsets - offsets[0]
    return cum[offsets[1:]] - cum[offsets[:-1]]




def _null_key_partition(producer: Any, slot: core.TopicSlot) -> int:
    """Where records without a key go: the sticky partition, or with
    partitioner=murmur2 the partition of an empty key (as produce())."""
    return core.murmur2_partition(b"", slot.partitions) if producer._hash_null_keys else slot.sticky


def produce_batch(producer: Any, topic: str, values: Any, keys: Any = None, timestamps: Any = None,
                  headers: Any = None, partition: int | None = None) -> int:
    """Producer.produce_batch (see its docstring) for ``producer``."""
    if producer._closed:
        producer._raise_closed()
    producer._raise_pending()
    slot = producer._slots.get(topic) or producer._open_slot(topic)
    value_schema = slot.topic.value_schema
    if isinstance(values, (pa.Table, pa.RecordBatch)):
        table = values
        names = table.schema.names
        if "value" in names:
            values = table.column("value")
        elif value_schema is not None:
            values = table  # the value schema's fields, as columns
        else:
            raise InvalidArgumentError("a table given to produce_batch needs a 'value' column")
        keys = table.column("key") if keys is None and "key" in names else keys
        timestamps = table.column("timestamp") if timestamps is None and "timestamp" in names else timestamps
        headers = table.column("headers") if headers is None and "headers" in names else headers
    if value_schema is None:
        values = binary_array(values, "values")
    else:
        try:
            values = typed_values(values, value_schema)
        except InvalidRecordError as exc:
            bad = first_bad_row(values, value_schema)
            if bad < 0:
                raise
            raise InvalidRecordError(f"topic {topic!r}: row {bad} of produce_batch ({shown(_row_of(values, bad))})"
                                     f" does not fit the value schema; nothing was appended: {exc}") from None
    n = len(values)
    if n == 0:
        return 0
    keys = binary_array(keys, "keys", n) if keys is not None else pa.nulls(n, pa.binary())
    if slot.keyed_only and keys.null_count:
        bad = int(np.argmax(np.asarray(keys.is_null())))
        producer._unkeyed(slot, f"row {bad} of produce_batch: nothing was appended: ")
    # records without timestamps all get this one: each frame gets a column of
    # it as it is written, and no frame scans its timestamps for their bounds
    now = core.wall_clock_ms() if timestamps is None else None
    ts = _timestamps(timestamps, n) if now is None else None
    # no headers: no column of n nulls either (its 4(n + 1) zeroed bytes were
    # new pages on every call: 260-690 page faults for 1 M records); a frame
    # that needs one takes a null column of its own rows
    hdrs = None if headers is None else _headers_array(headers, n)
    nbytes = _check_sizes(producer, slot, keys, values, hdrs)
    # what is already queued for these partitions goes first
    parts: dict[int, np.ndarray | None]  # partition: the indices of its rows (None: all of them)
    if partition is not None:
        if not isinstance(partition, int) or not 0 <= partition < slot.partitions:
            producer._bad_partition(slot, partition)
        parts = {partition: None}
    elif slot.partitions == 1:
        parts = {0: None}
    elif keys.null_count < n:
        assign = core.murmur2_partitions(keys, slot.partitions)
        if keys.null_count:
            assign[assign < 0] = _null_key_partition(producer, slot)
        counts = np.bincount(assign, minlength=slot.partitions)
        if (counts == n).any():
            parts = {int(np.argmax(counts)): None}
        else:
            order = np.argsort(assign, kind="stable")  # keeps each partition's records in order
            bounds = np.concatenate(([0], np.cumsum(counts)))
            parts = {p: order[bounds[p]:bounds[p + 1]] for p in range(slot.partitions) if counts[p]}
    else:
        parts = {_null_key_partition(producer, slot): None}
        if not producer._hash_null_keys:
            slot.next_sticky()
    columns = [keys, values] if hdrs is None else [keys, values, hdrs]
    batch = pa.RecordBatch.from_arrays(columns, names=PRODUCE_SCHEMA.names[1:len(columns) + 1])
    for p, rows in parts.items():
        part = batch if rows is None else batch.take(pa.array(rows))
        stamps: pa.Array | int
        if now is not None:
            stamps = now
        else:
            assert ts is not None
            stamps = ts if rows is None else ts.take(pa.array(rows))
        producer._send(slot, p)  # keep order with records produce()d earlier
        # statistics: a partition's share of the bytes, by its share of the records
        _append_chunks(producer, slot, p, part, stamps, nbytes if rows is None else nbytes * len(rows) // n)
    return n

def _check_sizes(producer: Any, slot: core.TopicSlot, keys: pa.Array, values: pa.Array,
                 headers: pa.Array | None) -> int:
    """produce_batch()'s message.max.bytes check (key, value and header
    bytes, as produce() counts; ``headers`` None: none), before anything is
    appended. Returns the bytes of all the records, as the accumulator
    counts them (statistics).

    The largest key, value and headers are checked first: when their sum
    fits, every record fits, and no per-record int64 sizes are built."""
    header_lengths = 0 if headers is None else _header_lengths(headers)
    binary = pa.types.is_binary(values.type)
    total = (_total(keys) + int(np.sum(header_lengths, dtype=np.int64)) + 24 * len(keys)
             + (_total(values) if binary else values.nbytes))
    largest = _longest(keys) + (int(np.max(header_lengths)) if np.ndim(header_lengths) and len(keys) else 0)
    if largest + (_longest(values) if binary else 0) <= slot.max_record_bytes:
        return total
    sizes = np.zeros(len(keys), dtype=np.int64)
    for x in (_lengths(keys), header_lengths, _lengths(values) if binary else 0):
        sizes += x  # int32 lengths added into int64: no overflow
    if sizes.max() > slot.max_record_bytes:
        row = int(np.argmax(sizes > slot.max_record_bytes))
        try:
            producer._too_large(slot, int(sizes[row]))
        except MessageSizeTooLargeError as exc:
            raise MessageSizeTooLargeError(f"row {row} of produce_batch: {exc}; nothing was appended") from None
    return total


def _append_chunks(producer: Any, slot: core.TopicSlot, partition: int, batch: pa.RecordBatch,
                   timestamps: pa.Array | int, nbytes: int) -> None:
    """Append ``batch`` (key and value columns, and a headers column
    unless no record has headers) with ``timestamps`` (a column, or every
    record's timestamp) as frames of about BULK_FRAME_BYTES (or
    batch.size, if larger)."""
    log = slot.topic.partition(partition)
    values = batch.column(1)
    if pa.types.is_binary(values.type):
        offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1, offset=values.offset * 4)
    else:  # typed values: split by an even share of the bytes
        per_row = max(1, batch.nbytes // max(1, batch.num_rows))
        offsets = np.arange(batch.num_rows + 1, dtype=np.int64) * per_row
    limit = max(producer._batch_bytes, BULK_FRAME_BYTES)
    start, n = 0, batch.num_rows
    stamps = None
    stamp_rows = 0
    # keys and values without headers: written natively (PartitionLog.append_bulk)
    headerless = batch.num_columns == 2
    bulk = pa.types.is_binary(values.type) and (headerless or batch.column(2).null_count == n)
    if isinstance(timestamps, pa.Array):  # never null: timestamp values as int64, without a copy
        ts_all = np.frombuffer(timestamps.buffers()[1], dtype=np.int64, count=n, offset=timestamps.offset * 8)
    with producer._locks[(slot.name, partition)]:
        while start < n:
            # rows whose values fit in the limit (at least one)
            end = int(np.searchsorted(offsets, offsets[start] + limit, side="right")) - 1
            end = min(max(end, start + 1), n, start + producer._batch_records)
            rows = batch.slice(start, end - start)
            if isinstance(timestamps, pa.Array):
                ts = ts_all[start:end]
                lo, hi, column = int(ts.min()), int(ts.max()), timestamps.slice(start, end - start)
            elif bulk:  # (the column the general path would slice, as long as its first frame)
                stamp_rows = max(stamp_rows, end - start)
                lo = hi = timestamps
            else:
                if stamps is None or len(stamps) < end - start:  # one column for every frame of the call
                    stamps = _timestamp_column(np.full(end - start, timestamps, dtype=np.int64))
                lo = hi = timestamps
                column = stamps.slice(0, end - start)
            if bulk:
                _append_bulk(producer, slot.name, partition, log, rows,
                             column if isinstance(timestamps, pa.Array) else timestamps, lo, hi, stamp_rows)
            else:
                hdrs = null_column(end - start, HEADERS_TYPE) if headerless else rows.column(2)
                chunk = pa.RecordBatch.from_arrays([column, rows.column(0), rows.column(1), hdrs],
                                                   names=PRODUCE_SCHEMA.names)
                producer._append(slot.name, partition, log, chunk, lo, hi)
            start = end
    producer._dirty.add(log)
    slot.count_sent(partition, n, nbytes)

def _append_bulk(producer: Any, topic: str, partition: int, log: Any, rows: pa.RecordBatch,
                 timestamps: pa.Array | int, lo: int, hi: int, timestamp_rows: int) -> int:
    """One frame of ``rows`` (key and value columns; no headers) through
    PartitionLog.append_bulk, inside the open transaction for a
    transactional producer (as Producer._append does for a batch)."""
    keys, values = rows.column(0), rows.column(1)

    def append() -> int:
        return log.append_bulk(keys, values, timestamps, fsync=producer._fsync, min_timestamp=lo, max_timestamp=hi,
                               timestamp_rows=timestamp_rows)
    return append() if producer._txn is None else producer._txn.append(topic, partition, log, rows.num_rows, append)


def _timestamp_column(values: np.ndarray) -> pa.Array:
    """int64 milliseconds as a timestamp column, without a copy."""
    return pa.Array.from_buffers(TIMESTAMP_TYPE, len(values), [None, pa.py_buffer(values)])


def _timestamps(timestamps: Any, n: int) -> pa.Array:
    if isinstance(timestamps, pa.ChunkedArray):
        timestamps = timestamps.combine_chunks()
    if isinstance(timestamps, pa.Array):
        if pa.types.is_timestamp(timestamps.type):
            arr = timestamps.cast(pa.timestamp("ms", tz=timestamps.type.tz)).cast(pa.int64())
        else:
            arr = timestamps.cast(pa.int64())
    elif isinstance(timestamps, np.ndarray) and timestamps.dtype.kind == "M":
        arr = pa.array(timestamps.astype("datetime64[ms]").astype(np.int64))
    else:
        arr = pa.array([to_epoch_ms(t) for t in timestamps], type=pa.int64())
    if len(arr) != n:
        raise InvalidArgumentError(f"timestamps has {len(arr)} entries; values has {n}")
    if arr.null_count:
        raise InvalidArgumentError("timestamps cannot be null")
    return arr.cast(TIMESTAMP_TYPE)

def _headers_array(headers: Any, n: int) -> pa.Array:
    if headers is None:
        return null_column(n, HEADERS_TYPE)
    if isinstance(headers, pa.ChunkedArray):
        headers = headers.combine_chunks()
    if isinstance(headers, pa.Array):
        arr = headers.cast(HEADERS_TYPE)
    else:
        rows: list[list[dict[str, Any]] | None] = []
        for h in headers:
            if h is None:
                rows.append(None)
            else:
                rows.append([{"key": k, "value": v} for k, v in core.normalize_headers(h)])
        arr = pa.array(rows, type=HEADERS_TYPE)
    if len(arr) != n:
        raise InvalidArgumentError(f"headers has {len(arr)} entries; values has {n}")
    return arr
