"""Delivery reports of the local producer's appended batches, the
timestamp bounds of a batch rebuilt after bad rows were dropped, and the
producer's statistics."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..._native import core
from ...convert import typed_values
from ...errors import InvalidRecordError, KafkaError


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


def fail_bad_rows(producer: Any, slot: core.TopicSlot, partition: int, batch: pa.RecordBatch,
                  callbacks: list) -> tuple[pa.RecordBatch, list]:
    """A safety net behind produce()'s per-record check: when a typed
    batch does not convert, the records that do not convert on their own
    fail, each through its own delivery report, and the batch is
    appended without them. Returns (batch, callbacks) for the rest."""
    schema = slot.topic.value_schema
    bad: dict[int, InvalidRecordError] = {}
    for i, value in enumerate(batch.column(2).to_pylist()):
        try:
            typed_values([value], schema)
        except InvalidRecordError as exc:
            bad[i] = exc
    keep = [i for i in range(batch.num_rows) if i not in bad]
    new_index = {old: new for new, old in enumerate(keep)}
    kept = []
    for index, cb in callbacks:
        if index in bad:
            err = KafkaError(KafkaError.INVALID_RECORD, f"topic {slot.name!r}: {bad[index]}")
            producer._reports.append((cb, err, report_message(slot.name, partition, batch, index, -1001)))
        else:
            kept.append((new_index[index], cb))
    return batch.take(pa.array(keep, type=pa.int64())), kept


def producer_statistics(producer: Any) -> tuple[dict, dict]:
    """librdkafka's statistics of a producer (see _callbacks.py), records
    still staged (core.RecordStage) counted as queued."""
    topics: dict = {}
    queued_bytes = 0
    sent_records = sent_bytes = 0
    for slot in list(producer._slots.values()):
        parts = topics[slot.name] = {}
        for p in range(slot.partitions):
            acc = slot.accumulators[p]
            count, nbytes = slot.stage.pending_of(p) if slot.stage is not None else (0, 0)
            count += acc.count
            nbytes += acc.nbytes
            low, high = slot.topic.partition(p).watermarks()
            sent = slot.sent_counts(p)
            sent_records += sent[0]
            sent_bytes += sent[1]
            queued_bytes += nbytes
            parts[p] = {"leader": 0, "msgq_cnt": count, "msgq_bytes": nbytes, "msgs": count + sent[0],
                        "txmsgs": sent[0], "txbytes": sent[1], "lo_offset": low, "hi_offset": high,
                        "ls_offset": high, "next_offset": high}
    totals = {"msg_cnt": producer._queued, "msg_size": queued_bytes, "msg_max": producer._max_queued,
              "msg_size_max": producer._batch_bytes,
              "txmsgs": sent_records, "txmsg_bytes": sent_bytes, "replyq": len(producer._reports)}
    return topics, totals
