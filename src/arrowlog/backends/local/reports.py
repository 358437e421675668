"""Delivery reports of the local producer's appended batches, and the
timestamp bounds of a batch rebuilt after bad rows were dropped."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..._native import core


def timestamp_bounds(batch: pa.RecordBatch) -> tuple[int, int]:
    ts = batch.column(0).cast(pa.int64())
    return int(pc.min(ts).as_py()), int(pc.max(ts).as_py())


def report_view(topic: str, partition: int, batch: pa.RecordBatch, base: int) -> core.BatchView:
    """Delivery reports read from the batch just appended: no Python
    object per record until a report's key() or value() is called."""
    n = batch.num_rows
    offsets = pa.array(np.arange(base, base + n, dtype=np.int64))
    full = pa.RecordBatch.from_arrays([offsets, *batch.columns], names=["offset", *batch.schema.names])
    return core.BatchView(full, topic, partition, base)


def report_message(topic: str, partition: int, batch: pa.RecordBatch, index: int, offset: int) -> core.Message:
    """The delivery report of record ``index`` of ``batch`` (a failed one: offset -1001)."""
    row = batch.slice(index, 1)
    headers = row.column(3)[0].as_py()
    return core.Message(topic, row.column(2)[0].as_py(), row.column(1)[0].as_py(),
                        [(h["key"], h["value"]) for h in headers] if headers is not None else None, None,
                        (core.TIMESTAMP_CREATE_TIME, row.column(0).cast(pa.int64())[0].as_py()), partition, offset)
