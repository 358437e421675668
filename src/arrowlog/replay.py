"""Columnar replay: a topic (or a time or offset range of it) as Arrow.

``replay(log, topic, start, end)`` returns a lazy Replay. Nothing is read
until it is consumed through ``to_arrow()``, ``to_reader()``,
``to_pandas()``, ``to_polars()``, iteration, or the Arrow PyCapsule stream
protocol (``pa.table(r)``, ``polars.DataFrame(r)``, ``duckdb.sql("from r")``).
Every consumption is a fresh, independent stream over the same range.

For uncompressed topics the record batches are zero-copy: their key, value,
offset and timestamp buffers point into the memory-mapped segments, which
stay mapped as long as any of those buffers is alive (retention may delete
the files meanwhile; the data stays readable through the mapping).

Columns: ``partition`` (int32), ``offset`` (int64), ``timestamp``
(timestamp[ms, UTC]), ``key`` (binary), ``value`` (binary), ``headers``
(list<struct<key: string, value: binary>>). A topic with a value schema
yields the value's fields as top-level columns instead of ``value``.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from ._location import is_kafka, local_path
from .errors import ConfigError, OffsetOutOfRangeError
from .producer import to_epoch_ms
from .storage import LogDir

# Bytes asked of a partition per read: many frames per call keeps the Python
# overhead per frame small; the frames themselves are zero-copy views.
READ_BYTES = 64 << 20


def timestamp_ms(ms: int) -> _dt.datetime:
    """An epoch-milliseconds timestamp as a UTC datetime, for start/end."""
    return _dt.datetime.fromtimestamp(ms / 1000.0, tz=_dt.timezone.utc)


def _as_time(value: Any) -> int | None:
    """Epoch ms if ``value`` names a point in time, else None."""
    if isinstance(value, (_dt.datetime, _dt.date)):
        return to_epoch_ms(value)
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[ms]").astype(np.int64))
    if isinstance(value, _dt.timedelta):
        return to_epoch_ms(_dt.datetime.now(_dt.timezone.utc) + value)
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("@"):
            try:
                return int(s[1:])
            except ValueError:
                raise ConfigError(f"bad time {value!r}: '@' must be followed by epoch milliseconds") from None
        try:
            return to_epoch_ms(_dt.datetime.fromisoformat(s.replace("Z", "+00:00")))
        except ValueError:
            raise ConfigError(f"cannot read {value!r} as an offset, 'beginning', 'end', '@<epoch ms>' or an "
                              "ISO 8601 time") from None
    return None


def resolve_position(log: Any, value: Any, *, is_end: bool) -> int:
    """An offset in ``log`` for a start or end given as an offset, a time,
    'beginning' or 'end'. Times resolve to the first offset at or after them."""
    low, high = log.watermarks()
    if value is None:
        return high if is_end else low
    if isinstance(value, str) and value.lower() in ("beginning", "earliest", "start", "first"):
        return low
    if isinstance(value, str) and value.lower() in ("end", "latest", "last"):
        return high
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        offset = int(value)
        if offset < 0:
            raise ConfigError(f"offset {offset} is negative; use 'end' or a time for relative positions")
        return min(max(offset, low), high)
    ts = _as_time(value)
    if ts is None:
        raise ConfigError(f"start/end must be an offset, a datetime, '@<epoch ms>', 'beginning' or 'end', "
                          f"not {type(value).__name__}")
    found = log.offset_for_timestamp(ts)
    return high if found is None else found


class Replay:
    """A range of a topic, readable as Arrow any number of times."""

    def __init__(self, logdir: LogDir, topic: str, start: Any = "beginning", end: Any = "end",
                 partitions: list[int] | None = None, columns: list[str] | None = None, *, owns_log: bool = False):
        self._logdir = logdir
        self._owns_log = owns_log
        self.topic = topic
        t = logdir.topic(topic)
        self._topic = t
        self.partitions = list(range(t.num_partitions)) if partitions is None else [int(p) for p in partitions]
        for p in self.partitions:
            t.partition(p)  # validates
        # Resolve the range now, so every stream over this Replay is the same.
        self.ranges: dict[int, tuple[int, int]] = {}
        for p in self.partitions:
            log = t.partition(p)
            lo = resolve_position(log, start, is_end=False)
            hi = resolve_position(log, end, is_end=True)
            self.ranges[p] = (lo, max(lo, hi))
        self._typed = t.value_schema is not None
        base = [pa.field("partition", pa.int32(), False)] + [f for f in t.schema if f.name != "value"]
        if self._typed:
            fields = base[:4] + list(t.value_schema) + base[4:]
        else:
            fields = base[:4] + [t.schema.field("value")] + base[4:]
        full = pa.schema(fields)
        if columns is not None:
            missing = [c for c in columns if c not in full.names]
            if missing:
                raise ConfigError(f"unknown replay column(s) {missing}; available: {full.names}")
            full = pa.schema([full.field(c) for c in columns])
        self.schema = full
        self.columns = columns
        self._pcols: dict[int, pa.Array] = {}

    @property
    def num_records(self) -> int:
        """Records in the range (offsets; retention may have removed some)."""
        return sum(hi - lo for lo, hi in self.ranges.values())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        for p in self.partitions:
            lo, hi = self.ranges[p]
            log = self._topic.partition(p)
            position = lo
            while position < hi:
                try:
                    frames = log.read(position, READ_BYTES)
                except OffsetOutOfRangeError:
                    low, _ = log.watermarks()
                    if low >= hi:
                        break
                    position = max(position, low)
                    continue
                if not frames:
                    break
                for fr in frames:
                    batch = fr.batch
                    first = max(position - fr.base_offset, 0)
                    last = min(hi - fr.base_offset, fr.record_count)
                    if first >= last:
                        continue
                    if first or last < fr.record_count:
                        batch = batch.slice(first, last - first)
                    yield self._shape(batch, self._partition_column(p, batch.num_rows))
                    position = fr.base_offset + last
                    if position >= hi:
                        break

    def _partition_column(self, partition: int, n: int) -> pa.Array:
        """``n`` copies of ``partition``, sliced from one cached array."""
        col = self._pcols.get(partition)
        if col is None or len(col) < n:
            col = self._pcols[partition] = pa.array(np.full(max(n, 1 << 16), partition, dtype=np.int32))
        return col.slice(0, n)

    def _shape(self, batch: pa.RecordBatch, pcol: pa.Array) -> pa.RecordBatch:
        if not self._typed and self.columns is None:
            return batch.add_column(0, self.schema.field(0), pcol)
        cols = batch.columns
        if self._typed:
            value = cols[3]
            arrays = [pcol, cols[0], cols[1], cols[2], *value.flatten(), cols[4]]
        else:
            arrays = [pcol, *cols]
        if self.columns is None:
            return pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        names = ["partition", "offset", "timestamp", "key"] + (
            [f.name for f in self._topic.value_schema] if self._typed else ["value"]) + ["headers"]
        by_name = dict(zip(names, arrays))
        return pa.RecordBatch.from_arrays([by_name[c] for c in self.columns], schema=self.schema)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self._batches()

    def to_reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self._batches())

    def to_arrow(self) -> pa.Table:
        return pa.Table.from_batches(list(self._batches()), schema=self.schema)

    def to_pandas(self, **kwargs: Any):
        """A pandas DataFrame (pyarrow's to_pandas keywords apply; pass
        ``types_mapper=pd.ArrowDtype`` to keep Arrow memory)."""
        return self.to_arrow().to_pandas(**kwargs)

    def to_polars(self):
        try:
            import polars as pl
        except ImportError:
            raise ImportError("to_polars() needs polars: pip install polars") from None
        return pl.from_arrow(self.to_arrow())

    def __arrow_c_stream__(self, requested_schema: Any = None):
        return self.to_reader().__arrow_c_stream__(requested_schema)

    def __arrow_c_schema__(self):
        return self.schema.__arrow_c_schema__()

    def close(self) -> None:
        if self._owns_log:
            self._owns_log = False
            self._logdir.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> Replay:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Replay {self.topic} partitions={self.partitions} records={self.num_records}>"


def replay(log: Any, topic: str, start: Any = "beginning", end: Any = "end", partitions: list[int] | None = None,
           columns: list[str] | None = None, **kafka_config: Any) -> Replay:
    """Read ``topic`` from ``start`` to ``end`` (exclusive) as Arrow.

    ``log`` is a data directory (path, ``file://`` URL or LogDir) or a
    ``kafka://host:port`` URL. ``start``/``end`` take an offset (int), a
    datetime/date, an ISO 8601 string, ``"@<epoch ms>"``, ``"beginning"``
    or ``"end"``; a time means the first record at or after it.
    """
    if isinstance(log, LogDir):
        return Replay(log, topic, start, end, partitions, columns)
    where = os.fspath(log)
    if is_kafka(where):
        from .kafka_backend import kafka_replay
        return kafka_replay(where, topic, start, end, partitions, columns, **kafka_config)
    if kafka_config:
        raise ConfigError(f"unexpected keyword(s) {sorted(kafka_config)} for an embedded log")
    path = local_path(where)
    if not os.path.isdir(os.path.join(path, "topics")):
        raise ConfigError(f"{path} is not an arrowlog data directory")
    return Replay(LogDir(path, create=False), topic, start, end, partitions, columns, owns_log=True)


__all__ = ["replay", "Replay", "timestamp_ms", "resolve_position"]
