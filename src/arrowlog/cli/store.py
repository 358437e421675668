"""The CLI's narrow view of the storage layer.

Every command reaches the log through these few functions, so the rest of
the CLI does not depend on storage details: opening a data directory
without creating it by accident, finding a topic, reading records in an
offset range, and the size of a partition on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click
import pyarrow as pa

from arrowlog.errors import StorageError
from arrowlog.storage.reader import RangeReader

from .common import CliError, NotFound, existing_data_dir, resolve_data_dir
from .formatting import Record
from .offsets import OffsetRange, OffsetSpec, resolve_range

READ_CHUNK_BYTES = 1 << 20  # one read() returns at least one whole stored batch


def open_logdir(path: str, *, create: bool = False) -> Any:
    """Open a data directory for the running command, closed when it ends
    (the last process out marks partitions clean, so the next open skips
    recovery). Only ``create`` commands may make a new directory."""
    from arrowlog.storage import LogDir

    if not create:
        existing_data_dir(path)
    try:
        logdir = LogDir(path, create=create)
    except StorageError as e:
        if not create and e.errno == 2:
            raise NotFound(f"{path} is not an arrowlog data directory (use --data DIR)") from None
        raise
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(logdir.close)
    return logdir


def complete_topics(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion of topic names (``_ARROWLOG_COMPLETE=bash_source arrowlog``)."""
    from arrowlog.storage import LogDir

    path = resolve_data_dir(ctx.params.get("data"))
    try:
        with LogDir(path, create=False) as logdir:
            return [t for t in logdir.list_topics() if t.startswith(incomplete)]
    except Exception:  # completion must never fail loudly
        return []


def get_topic(logdir: Any, name: str) -> Any:
    """The topic, or exit 3 with the topics that do exist."""
    if name not in logdir.list_topics():
        known = ", ".join(sorted(logdir.list_topics())) or "none"
        raise NotFound(f"unknown topic {name!r} (topics: {known})")
    return logdir.topic(name)


def pick_partitions(topic: Any, requested: tuple[int, ...] | list[int] | None) -> list[int]:
    if not requested:
        return list(range(topic.num_partitions))
    for p in requested:
        if not 0 <= p < topic.num_partitions:
            raise NotFound(
                f"topic {topic.name!r} has no partition {p} (partitions 0-{topic.num_partitions - 1})"
            )
    return sorted(set(requested))


def parse_partitions(values: tuple[str, ...]) -> list[int]:
    """``-p 0 -p 2`` or ``-p 0,2`` or ``-p 0-3``."""
    out: list[int] = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part:
                    lo, hi = part.split("-", 1)
                    out.extend(range(int(lo), int(hi) + 1))
                else:
                    out.append(int(part))
            except ValueError:
                raise CliError(f"bad partition {part!r}: expected N, N,M or N-M", 2) from None
    return out


def resolve_partition_range(pl: Any, spec: OffsetSpec, *, stop_at_end: bool) -> OffsetRange:
    return resolve_range(
        spec,
        pl.log_start_offset,
        pl.high_watermark,
        pl.offset_for_timestamp,
        stop_at_end=stop_at_end,
    )


def _column(batch: pa.RecordBatch, name: str) -> pa.Array | None:
    idx = batch.schema.get_field_index(name)
    return None if idx < 0 else batch.column(idx)


def read_batches(pl: Any, start: int, end: int | None, max_bytes: int = READ_CHUNK_BYTES) -> tuple[list[pa.RecordBatch], int]:
    """One read from ``start``: the batches of ``[start, end)`` and the next
    offset to read (past a range retention deleted meanwhile).

    Returns ``([], start)`` when nothing is there yet.
    """
    if start >= pl.high_watermark:
        return [], start
    reader = RangeReader(pl, start, end)
    return [f.batch for f in reader.read(max_bytes)], reader.position


def batch_records(batch: pa.RecordBatch, topic: str, partition: int, log_start: int = 0, hwm: int = 0) -> Iterator[Record]:
    """The rows of a stored batch as :class:`Record` objects."""
    n = batch.num_rows
    offsets = batch.column(batch.schema.get_field_index("offset")).to_pylist()
    ts_col = _column(batch, "timestamp")
    if ts_col is not None:
        if pa.types.is_timestamp(ts_col.type):
            ts_col = ts_col.cast(pa.int64())
        timestamps = ts_col.to_pylist()
    else:
        timestamps = [0] * n
    keys_col = _column(batch, "key")
    keys = keys_col.to_pylist() if keys_col is not None else [None] * n
    values_col = _column(batch, "value")
    values: list[bytes | None]
    if values_col is None:
        values = [None] * n
    elif pa.types.is_struct(values_col.type):
        # A topic with a value schema stores typed columns: show each value as JSON.
        values = [None if v is None else json.dumps(v, default=str, separators=(",", ":")).encode()
                  for v in values_col.to_pylist()]
    else:
        values = values_col.to_pylist()
    headers_col = _column(batch, "headers")
    headers = headers_col.to_pylist() if headers_col is not None else [None] * n
    for i in range(n):
        hs = headers[i]
        yield Record(
            topic,
            partition,
            offsets[i],
            timestamps[i] or 0,
            keys[i],
            values[i],
            [(h["key"], h["value"]) for h in hs] if hs else [],
            log_start,
            hwm,
        )


@dataclass
class PartitionUsage:
    size_bytes: int
    segments: int


def partition_usage(pl: Any) -> PartitionUsage:
    """Bytes of segment data on disk and the number of segments of a partition."""
    return PartitionUsage(int(pl.size_bytes()), len(pl.segment_bases()))
