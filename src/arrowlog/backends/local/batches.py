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

# produce_batch() appends frames of at least this many bytes of values: an
# append costs ~0.3 ms of fixed work (IPC framing, index, publish), which
# 1 MB frames pay 100 times per 100 MB and 8 MiB frames 12 times (measured
# with `python -m bench --only produce`: 1.2 GB/s with 1 MB frames, 1.5-1.7
# with 8 MiB on these 2-core machines).
BULK_FRAME_BYTES = 8 << 20


def _row_of(values: Any, i: int) -> Any:
    if isinstance(values, (pa.Table, pa.RecordBatch)):
        return values.slice(i, 1).to_pylist()[0]
    row = values[i]
    return row.as_py() if isinstance(row, pa.Scalar) else row




def _lengths(arr: pa.Array) -> np.ndarray:
    """Byte lengths of a binary array's entries (0 for nulls), from its offsets."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4) \
        if arr.buffers()[1] is not None else np.zeros(len(arr) + 1, dtype=np.int32)
    return np.diff(offsets).astype(np.int64)


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
    ts = _timestamps(timestamps, n)
    hdrs = _headers_array(headers, n)
    _check_sizes(producer, slot, keys, values, hdrs)
    # what is already queued for these partitions goes first
    if partition is not None:
        if not isinstance(partition, int) or not 0 <= partition < slot.partitions:
            producer._bad_partition(slot, partition)
        parts = {partition: None}
    elif slot.partitions == 1:
        parts = {0: None}
    elif keys.null_count < n:
        assign = core.murmur2_partitions(keys, slot.partitions)
        if keys.null_count:
            assign[assign < 0] = slot.sticky
        counts = np.bincount(assign, minlength=slot.partitions)
        if (counts == n).any():
            parts = {int(np.argmax(counts)): None}
        else:
            order = np.argsort(assign, kind="stable")  # keeps each partition's records in order
            bounds = np.concatenate(([0], np.cumsum(counts)))
            parts = {p: order[bounds[p]:bounds[p + 1]] for p in range(slot.partitions) if counts[p]}
    else:
        parts = {slot.sticky: None}
        slot.next_sticky()
    batch = pa.RecordBatch.from_arrays([ts, keys, values, hdrs], names=PRODUCE_SCHEMA.names)
    for p, rows in parts.items():
        part = batch if rows is None else batch.take(pa.array(rows))
        producer._send(slot, p)  # keep order with records produce()d earlier
        _append_chunks(producer, slot, p, part)
    return n

def _check_sizes(producer: Any, slot: core.TopicSlot, keys: pa.Array, values: pa.Array, headers: pa.Array) -> None:
    """produce_batch()'s message.max.bytes check (key, value and header
    bytes, as produce() counts), before anything is appended."""
    sizes = _lengths(keys) + _header_lengths(headers)
    if pa.types.is_binary(values.type):
        sizes = sizes + _lengths(values)
    if len(sizes) and sizes.max() > slot.max_record_bytes:
        row = int(np.argmax(sizes > slot.max_record_bytes))
        try:
            producer._too_large(slot, int(sizes[row]))
        except MessageSizeTooLargeError as exc:
            raise MessageSizeTooLargeError(f"row {row} of produce_batch: {exc}; nothing was appended") from None

def _append_chunks(producer: Any, slot: core.TopicSlot, partition: int, batch: pa.RecordBatch) -> None:
    """Append ``batch`` as frames of about BULK_FRAME_BYTES (or
    batch.size, if larger)."""
    log = slot.topic.partition(partition)
    values = batch.column(2)
    if pa.types.is_binary(values.type):
        offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1, offset=values.offset * 4)
    else:  # typed values: split by an even share of the bytes
        per_row = max(1, batch.nbytes // max(1, batch.num_rows))
        offsets = np.arange(batch.num_rows + 1, dtype=np.int64) * per_row
    limit = max(producer._batch_bytes, BULK_FRAME_BYTES)
    start, n = 0, batch.num_rows
    ts_col = batch.column(0)  # never null: timestamp values as int64, without a copy
    ts_all = np.frombuffer(ts_col.buffers()[1], dtype=np.int64, count=len(ts_col), offset=ts_col.offset * 8)
    with producer._locks[(slot.name, partition)]:
        while start < n:
            # rows whose values fit in the limit (at least one)
            end = int(np.searchsorted(offsets, offsets[start] + limit, side="right")) - 1
            end = min(max(end, start + 1), n, start + producer._batch_records)
            chunk = batch.slice(start, end - start)
            ts = ts_all[start:end]
            producer._append(slot.name, partition, log, chunk, int(ts.min()), int(ts.max()))
            start = end
    producer._dirty.add(log)
    producer._count_sent(slot.name, partition, n, batch)

def _timestamps(timestamps: Any, n: int) -> pa.Array:
    if timestamps is None:
        now = np.full(n, core.wall_clock_ms(), dtype=np.int64)
        return pa.Array.from_buffers(TIMESTAMP_TYPE, n, [None, pa.py_buffer(now)])
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
        return pa.nulls(n, HEADERS_TYPE)
    if isinstance(headers, pa.ChunkedArray):
        headers = headers.combine_chunks()
    if isinstance(headers, pa.Array):
        arr = headers.cast(HEADERS_TYPE)
    else:
        rows = []
        for h in headers:
            if h is None:
                rows.append(None)
            else:
                rows.append([{"key": k, "value": v} for k, v in core.normalize_headers(h)])
        arr = pa.array(rows, type=HEADERS_TYPE)
    if len(arr) != n:
        raise InvalidArgumentError(f"headers has {len(arr)} entries; values has {n}")
    return arr
