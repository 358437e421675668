"""The CLI's narrow view of the storage layer.

Every command reaches the log through these few functions, so the rest of
the CLI does not depend on storage details: opening a data directory
without creating it by accident, finding a topic, reading records in an
offset range, and the size of a partition on disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .common import CliError, NotFound
from .formatting import Record
from .offsets import OffsetRange, OffsetSpec, resolve_range

READ_CHUNK_BYTES = 1 << 20  # one read() returns at least one whole stored batch


def open_logdir(path: str, *, create: bool = False) -> Any:
    """Open a data directory; only ``create`` commands may make a new one."""
    if not create and not os.path.isdir(path):
        raise NotFound(f"no data directory at {path} (use --data DIR, or create a topic first)")
    if create:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(path) and not os.access(parent, os.W_OK):
            raise CliError(f"cannot create data directory {path}: {parent} is not writable")
        if os.path.isdir(path) and not os.access(path, os.W_OK):
            raise CliError(f"data directory {path} is not writable")
    from arrowlog.storage import LogDir

    return LogDir(path)


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


def slice_batch(batch: pa.RecordBatch, start: int, end: int | None) -> pa.RecordBatch:
    """The rows of a stored batch with ``start <= offset < end``.

    Offsets inside a stored batch ascend, so this is one zero-copy slice.
    """
    offsets = _column(batch, "offset")
    n = batch.num_rows
    if offsets is None or n == 0:
        return batch
    first = offsets[0].as_py()
    last = offsets[n - 1].as_py()
    if first >= start and (end is None or last < end):
        return batch
    import pyarrow.compute as pc

    lo = 0 if first >= start else int(pc.sum(pc.less(offsets, start)).as_py() or 0)
    hi = n if end is None or last < end else int(pc.sum(pc.less(offsets, end)).as_py() or 0)
    return batch.slice(lo, max(0, hi - lo))


def read_batches(pl: Any, start: int, end: int | None, max_bytes: int = READ_CHUNK_BYTES) -> tuple[list[pa.RecordBatch], int]:
    """One read from ``start``: the sliced batches and the next offset to read.

    Returns ``([], start)`` when nothing is there yet.
    """
    frames = pl.read(start, max_bytes)
    batches = []
    nxt = start
    for f in frames:
        if end is not None and f.base_offset >= end:
            break
        b = slice_batch(f.batch, start, end)
        if b.num_rows:
            batches.append(b)
        nxt = max(nxt, f.base_offset + f.record_count)
    if end is not None:
        nxt = min(nxt, end)
    return batches, nxt


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
    values = values_col.to_pylist() if values_col is not None else [None] * n
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
    size_bytes: int | None
    segments: int | None


def partition_usage(logdir_path: str, topic: Any, partition: int) -> PartitionUsage:
    """Bytes on disk and segment count of a partition.

    Uses the storage's own numbers when it offers them (``size_bytes``,
    ``segments``); otherwise it looks for the partition's directory and counts
    the ``*.log`` segment files in it.
    """
    pl = topic.partition(partition)
    size = getattr(pl, "size_bytes", None)
    segs = getattr(pl, "segments", None)
    if callable(size):
        size = size()
    if callable(segs):
        segs = segs()
    if segs is not None and not isinstance(segs, int):
        try:
            segs = len(segs)
        except TypeError:
            segs = None
    if size is not None and segs is not None:
        return PartitionUsage(int(size), int(segs))
    pdir = _partition_dir(logdir_path, topic.name, partition, pl)
    if pdir is None:
        return PartitionUsage(size, segs)
    total = 0
    count = 0
    for entry in os.scandir(pdir):
        if entry.is_file():
            total += entry.stat().st_size
            if entry.name.endswith(".log"):
                count += 1
    return PartitionUsage(size if size is not None else total, segs if segs is not None else count)


def _partition_dir(root: str, topic: str, partition: int, pl: Any) -> str | None:
    for attr in ("path", "dir", "directory"):
        p = getattr(pl, attr, None)
        if isinstance(p, (str, os.PathLike)) and os.path.isdir(p):
            return os.fspath(p)
    for candidate in (
        os.path.join(root, topic, str(partition)),
        os.path.join(root, topic, f"{partition:05d}"),
        os.path.join(root, f"{topic}-{partition}"),
        os.path.join(root, topic, f"partition-{partition}"),
    ):
        if os.path.isdir(candidate):
            return candidate
    return None
