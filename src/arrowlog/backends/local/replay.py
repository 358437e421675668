"""Columnar replay: a topic (or a time or offset range of it) as Arrow.

``replay(log, topic, start, end)`` returns a lazy Replay. Nothing is read
until it is consumed through ``to_arrow()``, ``to_reader()``,
``to_pandas()``, ``to_polars()``, iteration, or the Arrow PyCapsule stream
protocol (``pa.table(r)``, ``polars.DataFrame(r)``, ``duckdb.sql("from r")``).
Every consumption is a fresh, independent stream over the same range.

For uncompressed topics the record batches are zero-copy: their key, value,
offset and timestamp buffers point into the memory-mapped segments, which
stay mapped as long as any of those buffers is alive (retention may delete
the files meanwhile; the data stays readable through the mapping). The
exception: ``to_arrow()`` copies the rows of small cleanly closed
partitions (an active segment of at most 1 MiB), many partitions into one
batch, which costs less than opening each (clean_read.py).

Columns: ``partition`` (int32), ``offset`` (int64), ``timestamp``
(timestamp[ms, UTC]), ``key`` (binary), ``value`` (binary), ``headers``
(list<struct<key: string, value: binary>>). A topic with a value schema
yields the value's fields as top-level columns instead of ``value``.

``value_format="json"`` does the same for values that are JSON objects: the
values are joined with newlines and parsed by ``pyarrow.json`` in one
vectorised pass (no per-record Python), and each JSON field becomes a typed
column in place of ``value`` (a field named like a record column, e.g.
``offset``, becomes ``value_offset``). With ``value_schema`` (a
``pa.Schema``) the types are given and batches stream one by one; without
it the whole range is parsed once, on first use, so that one schema is
inferred from all of it, and the parsed columns are kept for later streams.
An empty or null value becomes a row of nulls; a value that is not a JSON
object raises InvalidRecordError.
"""

from __future__ import annotations

import datetime as _dt
import functools
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from ..._json import parse_json_values
from ..._location import is_kafka, log_location, open_data_dir
from ..._optional import require
from ..._owned_log import OwnedLog
from ...convert import to_epoch_ms
from ...errors import ConfigError
from ...storage import LogDir
from ...storage.cleaner import survivors
from ...storage.evolution import conform
from ...storage.reader import RangeReader
from ...txn import is_control_frame
from .clean_read import CleanStates

# Bytes asked of a partition per read: many frames per call keeps the Python
# overhead per frame small; the frames themselves are zero-copy views.
READ_BYTES = 64 << 20
VALUE_FORMATS = ("binary", "json")
# The record's own columns: a JSON field of the same name gets this prefix.
RECORD_COLUMNS = ("partition", "offset", "timestamp", "key", "headers")
JSON_FIELD_PREFIX = "value_"


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


_BEGINNING = ("beginning", "earliest", "start", "first")
_END = ("end", "latest", "last")


def _plain_position(value: Any, low: Any, high: Any, *, is_end: bool) -> Any:
    """The position ``value`` names between ``low`` and ``high`` (ints, or
    numpy arrays of many partitions' watermarks) when it needs no time
    lookup: None, 'beginning', 'end' or an offset; else None."""
    if value is None:
        return high if is_end else low
    if isinstance(value, str):
        word = value.lower()
        return low if word in _BEGINNING else high if word in _END else None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        offset = int(value)
        if offset < 0:
            raise ConfigError(f"offset {offset} is negative; use 'end' or a time for relative positions")
        return np.minimum(np.maximum(offset, low), high)
    return None


def resolve_position(log: Any, value: Any, *, is_end: bool) -> int:
    """An offset in ``log`` for a start or end given as an offset, a time,
    'beginning' or 'end'. Times resolve to the first offset at or after them."""
    low, high = log.watermarks(check=True)
    plain = _plain_position(value, low, high, is_end=is_end)
    if plain is not None:
        return int(plain)
    ts = _as_time(value)
    if ts is None:
        raise ConfigError(f"start/end must be an offset, a datetime, '@<epoch ms>', 'beginning' or 'end', "
                          f"not {type(value).__name__}")
    found = log.offset_for_timestamp(ts)
    return high if found is None else found


def _json_field_name(name: str) -> str:
    return JSON_FIELD_PREFIX + name if name in RECORD_COLUMNS else name


class _JsonValues:
    """Turns the ``value`` column of a replay's batches into JSON fields."""

    def __init__(self, schema: pa.Schema | None, what: str):
        if schema is not None and not isinstance(schema, pa.Schema):
            raise ConfigError(f"value_schema must be a pyarrow.Schema, not {type(schema).__name__}")
        self.value_schema = schema
        self.inferred: pa.Schema | None = None
        self.what = what
        self.cached: list[pa.RecordBatch] | None = None

    def fields(self, value_schema: pa.Schema) -> list[pa.Field]:
        return [f.with_name(_json_field_name(f.name)) for f in value_schema]

    def output_schema(self, raw: pa.Schema, value_schema: pa.Schema) -> pa.Schema:
        out: list[pa.Field] = []
        for f in raw:
            out.extend(self.fields(value_schema) if f.name == "value" else [f])
        return pa.schema(out)

    def shape(self, batch: pa.RecordBatch, values: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
        arrays: list[Any] = []
        for name, col in zip(batch.schema.names, batch.columns):
            if name == "value":
                arrays.extend(c.combine_chunks() for c in values.columns)
            else:
                arrays.append(col)
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


class Replay(OwnedLog):
    """A range of a topic, readable as Arrow any number of times (``close()``, a
    ``with`` block or garbage collection close a LogDir it opened itself)."""

    _json: _JsonValues | None = None
    _json_columns: list[str] | None = None
    _clean: CleanStates | None = None  # set by __init__ (a subclass that makes its batches otherwise has none)

    def __init__(self, logdir: LogDir, topic: str, start: Any = "beginning", end: Any = "end",
                 partitions: list[int] | None = None, columns: list[str] | None = None, *, owns_log: bool = False,
                 value_format: str = "binary", value_schema: pa.Schema | None = None, latest_per_key: bool = False,
                 isolation: str = "read_committed"):
        self._hold_log(logdir, owns_log)
        self.latest_per_key = bool(latest_per_key)
        self.topic = topic
        t = logdir.topic(topic)
        t.refresh()   # an evolved value schema (storage/evolution.py), before the range is resolved
        self._topic = t
        self._envelope = t.schema   # every frame is read in it (older generations with nulls)
        columns = self._value_format(value_format, value_schema, columns, typed=t.value_schema is not None)
        self.partitions = list(range(t.num_partitions)) if partitions is None else [int(p) for p in partitions]
        for p in self.partitions:
            if not 0 <= p < t.num_partitions:
                t.partition(p)  # raises UnknownPartitionError
        # small clean partitions are read natively, without opening them (clean_read.py)
        self._clean = CleanStates(t, self.partitions) if t.value_schema is None else None
        # Resolve the range now, so every stream over this Replay is the same. Transactions
        # (written through arrowlog serve, arrowlog.txn): markers are always left out;
        # read_committed also leaves out aborted records and ends at an open transaction.
        from ...txn import TransactionView
        self._txns = TransactionView(logdir.path)
        self._committed_only = isolation == "read_committed"
        if isolation not in ("read_committed", "read_uncommitted"):
            raise ConfigError(f"isolation must be 'read_committed' or 'read_uncommitted', got {isolation!r}")
        # the clean partitions' at once when no time is to be looked up
        clean = {} if self._clean is None else self._clean.plain_ranges(start, end, _plain_position)
        self.ranges: dict[int, tuple[int, int]] = {}
        for p in self.partitions:
            if p in clean:
                self.ranges[p] = clean[p]
                continue
            log: Any = self._clean and self._clean.partition(p, functools.partial(t.partition, p))
            if log is None:
                log = t.partition(p)
            lo = resolve_position(log, start, is_end=False)
            self.ranges[p] = (lo, max(lo, resolve_position(log, end, is_end=True)))
        # looked up once, after every high watermark was read: while no
        # transaction was ever begun, none of the range's records is in one
        self._in_txns = self._txns.begun()
        if self._in_txns:
            for p, (lo, hi) in self.ranges.items():
                hi = min(hi, self._txns.readable_end(topic, p, t.partition(p).high_watermark, self._committed_only))
                self.ranges[p] = (lo, max(lo, hi))
            self._clean = None  # the transaction state is looked up frame by frame
        self._typed = t.value_schema is not None
        # a typed topic's value fields are columns of their own
        self._value_names = ["value"] if t.value_schema is None else [f.name for f in t.value_schema]
        base = [pa.field("partition", pa.int32(), False)] + [f for f in t.schema if f.name != "value"]
        value_fields = [t.schema.field("value")] if t.value_schema is None else list(t.value_schema)
        fields = base[:4] + value_fields + base[4:]
        full = pa.schema(fields)
        if columns is not None:
            missing = [c for c in columns if c not in full.names]
            if missing:
                raise ConfigError(f"unknown replay column(s) {missing}; available: {full.names}")
            full = pa.schema([full.field(c) for c in columns])
        self.schema = full
        self.columns = columns
        self._pcols: dict[int, pa.Array] = {}
        self._check_columns()

    @property
    def num_records(self) -> int:
        """Records in the range (offsets; retention may have removed some)."""
        return sum(hi - lo for lo, hi in self.ranges.values())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        for p in self.partitions:
            if not self.latest_per_key:
                for batch in self._partition_batches(p):
                    yield self._shape(batch, self._partition_column(p, batch.num_rows))
                continue
            raw = list(self._partition_batches(p))
            keep = survivors(raw, None)
            start = 0
            for batch in raw:
                mask = keep[start:start + batch.num_rows]
                start += batch.num_rows
                if not mask.all():
                    batch = batch.filter(pa.array(mask))
                if batch.num_rows:
                    yield self._shape(batch, self._partition_column(p, batch.num_rows))

    def _partition_batches(self, p: int) -> Iterator[pa.RecordBatch]:
        """Partition ``p``'s stored batches (all columns) inside the range,
        without transaction markers and (read_committed) aborted batches."""
        lo, hi = self.ranges[p]
        log = self._topic.partition(p)
        reader = RangeReader(log, lo, hi)
        while not reader.done:
            frames = reader.read(READ_BYTES)
            if not frames:
                break
            for fr in frames:
                if self._in_txns:
                    if self._txns.skipped(self.topic, p, fr, self._committed_only):
                        continue
                elif is_control_frame(fr):
                    continue
                yield conform(fr.batch, self._envelope)

    def _partition_column(self, partition: int, n: int) -> pa.Array:
        """``n`` copies of ``partition``, sliced from one cached array per
        partition that grows to the largest batch seen (a fixed minimum size
        would cost each of 1,024 small partitions a large allocation)."""
        col = self._pcols.get(partition)
        if col is None or len(col) < n:
            size = n if col is None else max(n, 2 * len(col))
            col = self._pcols[partition] = pa.array(np.full(size, partition, dtype=np.int32))
        return col.slice(0, n)

    def _shape(self, batch: pa.RecordBatch, pcol: pa.Array) -> pa.RecordBatch:
        if not self._typed and self.columns is None:
            return batch.add_column(0, self._raw_schema.field(0), pcol)
        cols = batch.columns
        if self._typed:
            value = cols[3]
            arrays = [pcol, cols[0], cols[1], cols[2], *value.flatten(), cols[4]]
        else:
            arrays = [pcol, *cols]
        if self.columns is None:
            return pa.RecordBatch.from_arrays(arrays, schema=self._raw_schema)
        names = ["partition", "offset", "timestamp", "key", *self._value_names, "headers"]
        by_name = dict(zip(names, arrays))
        return pa.RecordBatch.from_arrays([by_name[c] for c in self.columns], schema=self._raw_schema)

    # -- value_format="json" ------------------------------------------------------------

    def _value_format(self, value_format: str, value_schema: pa.Schema | None, columns: list[str] | None, *,
                      typed: bool) -> list[str] | None:
        """Check the value format; returns the columns to read raw (all of
        them for JSON: ``columns`` then picks among the decoded ones)."""
        if value_format not in VALUE_FORMATS:
            raise ConfigError(f"value_format must be one of {', '.join(VALUE_FORMATS)}, not {value_format!r}")
        if value_format == "binary":
            if value_schema is not None:
                raise ConfigError("value_schema applies to value_format='json' only")
            return columns
        if typed:
            raise ConfigError(f"topic {self.topic!r} stores typed values (value.schema): they are columns "
                              "already; value_format='json' is for JSON bytes")
        self._json = _JsonValues(value_schema, f"topic {self.topic!r} with value_format='json'")
        self._json_columns = None if columns is None else list(columns)
        return None

    def _check_columns(self) -> None:
        """With a value_schema, unknown ``columns`` are refused when the
        replay is made (without one, on first use: the fields are unknown)."""
        if self._json is not None and self._json.value_schema is not None:
            self._select(self._json.output_schema(self._raw_schema, self._json.value_schema))

    def _select(self, full: pa.Schema) -> pa.Schema:
        if self._json_columns is None:
            return full
        missing = [c for c in self._json_columns if c not in full.names]
        if missing:
            raise ConfigError(f"unknown replay column(s) {missing}; available: {full.names}")
        return pa.schema([full.field(c) for c in self._json_columns])

    @property
    def schema(self) -> pa.Schema:
        """The columns every stream yields (with value_format='json' and no
        value_schema, finding them parses the range: see the module doc)."""
        j = self._json
        if j is None:
            return self._raw_schema
        if j.value_schema is None:
            self._parse_all()
        return self._select(j.output_schema(self._raw_schema, j.value_schema or j.inferred))

    @schema.setter
    def schema(self, value: pa.Schema) -> None:
        self._raw_schema = value

    def _parse_all(self) -> list[pa.RecordBatch]:
        """Parse every value of the range in one pass (one inferred schema),
        then cut the parsed columns back into the record batches."""
        j = self._json
        assert j is not None
        if j.cached is None:
            raw = list(self._batches())
            values = pa.chunked_array([b.column(b.schema.get_field_index("value")) for b in raw], pa.binary())
            table = parse_json_values(values, None, j.what)
            j.inferred = table.schema
            schema = j.output_schema(self._raw_schema, table.schema)
            out, position = [], 0
            for b in raw:
                out.append(j.shape(b, table.slice(position, b.num_rows), schema))
                position += b.num_rows
            j.cached = out
        return j.cached

    def _stream(self) -> Iterator[pa.RecordBatch]:
        """The batches of one consumption, values decoded as asked."""
        j = self._json
        if j is None:
            yield from self._batches()
            return
        schema = self.schema
        if j.value_schema is None:
            batches: Any = self._parse_all()
        else:
            full = j.output_schema(self._raw_schema, j.value_schema)
            batches = (j.shape(b, parse_json_values(b.column(b.schema.get_field_index("value")), j.value_schema,
                                                    j.what), full) for b in self._batches())
        for b in batches:
            if self._json_columns is not None:
                b = pa.RecordBatch.from_arrays([b.column(b.schema.get_field_index(c)) for c in schema.names],
                                               schema=schema)
            yield b

    # -- consumption --------------------------------------------------------------------

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self._stream()

    def to_reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self.schema, self._stream())

    def to_arrow(self) -> pa.Table:
        # the stored batches of a local log as they are (a subclass that
        # makes its batches otherwise, as kafka:// does, takes the stream)
        if type(self)._batches is Replay._batches and self._json is None and not self._typed \
                and self.columns is None and not self.latest_per_key:
            return self._plain_table()
        return pa.Table.from_batches(list(self._stream()), schema=self.schema)

    def _plain_table(self) -> pa.Table:
        """Every column of a binary-valued range: small clean partitions
        read natively, many to a batch (clean_read.py), the others as
        _stored_table makes them."""
        if self._clean is None:
            return self._stored_table(self.partitions)
        return self._clean.table(self.ranges, self._raw_schema, self._logdir.check_crcs, self._stored_table)

    def _stored_table(self, partitions: list[int]) -> pa.Table:
        """The range of ``partitions`` as a table of the stored batches as
        they are (zero-copy), with the ``partition`` column made once for
        all of them rather than a batch per frame: over 1,024 small
        partitions a batch per frame was a third of the replay."""
        batches: list[pa.RecordBatch] = []
        parts: list[int] = []
        counts: list[int] = []
        for p in partitions:
            n = 0
            for batch in self._partition_batches(p):
                batches.append(batch)
                n += batch.num_rows
            parts.append(p)
            counts.append(n)
        stored = pa.Table.from_batches(batches, schema=self._envelope)
        pcol = pa.array(np.repeat(np.array(parts, dtype=np.int32), counts), pa.int32())
        return pa.Table.from_arrays([pa.chunked_array([pcol]), *stored.columns], schema=self.schema)

    def to_pandas(self, **kwargs: Any):
        """A pandas DataFrame (pyarrow's to_pandas keywords apply; pass
        ``types_mapper=pd.ArrowDtype`` to keep Arrow memory)."""
        require("pandas", "to_pandas()")
        return self.to_arrow().to_pandas(**kwargs)

    def to_polars(self):
        pl = require("polars", "to_polars()")
        return pl.from_arrow(self.to_arrow())

    def __arrow_c_stream__(self, requested_schema: Any = None):
        return self.to_reader().__arrow_c_stream__(requested_schema)

    def __arrow_c_schema__(self):
        return self.schema.__arrow_c_schema__()

    def __repr__(self) -> str:
        return f"<Replay {self.topic} partitions={self.partitions} records={self.num_records}>"


def replay(log: Any, topic: str, start: Any = "beginning", end: Any = "end", partitions: list[int] | None = None,
           columns: list[str] | None = None, *, value_format: str = "binary", value_schema: pa.Schema | None = None,
           latest_per_key: bool = False, isolation: str = "read_committed", **kafka_config: Any) -> Replay:
    """Read ``topic`` from ``start`` to ``end`` (exclusive) as Arrow.

    ``log`` is a data directory (path, ``file://`` URL or LogDir) or a
    ``kafka://host:port`` URL. ``start``/``end`` take an offset (int), a
    datetime/date, an ISO 8601 string, ``"@<epoch ms>"``, ``"beginning"``
    or ``"end"``; a time means the first record at or after it.
    ``value_format="json"`` returns the fields of JSON-object values as typed
    columns (parsed by pyarrow.json in one pass; ``value_schema`` fixes their
    types), so ``duckdb.sql("select item, sum(total) from r group by item")``
    needs no decode().

    ``latest_per_key=True`` is the table view of the range: per partition,
    the newest record of each key, tombstones (null values) removed, in
    offset order (unkeyed records are kept, as the cleaner keeps them). It is
    computed over the Arrow batches in one native hash-table pass, on
    any topic, compacted or not.

    Records of Kafka transactions (written through ``arrowlog serve``): by
    default (``isolation="read_committed"``) the records of aborted
    transactions are left out and the range ends at the first open
    transaction; ``"read_uncommitted"`` returns them all. Transaction markers
    are never returned.
    """
    if isinstance(log, LogDir):
        return Replay(log, topic, start, end, partitions, columns, isolation=isolation, value_format=value_format,
                      value_schema=value_schema, latest_per_key=latest_per_key)
    where = log_location(log, "replay()")
    if is_kafka(where):
        if latest_per_key:
            raise ConfigError("latest_per_key is for an embedded log (a data directory), not kafka://")
        from ..kafka.replay import kafka_replay  # the kafka:// implementation
        if isolation != "read_committed":   # a Kafka consumer's own setting
            kafka_config.setdefault("isolation.level", isolation)
        return kafka_replay(where, topic, start, end, partitions, columns, value_format=value_format,
                            value_schema=value_schema, **kafka_config)
    if kafka_config:
        raise ConfigError(f"unexpected keyword(s) {sorted(kafka_config)} for an embedded log")
    logdir = open_data_dir(where, create=False)
    try:
        return Replay(logdir, topic, start, end, partitions, columns, owns_log=True, isolation=isolation,
                      value_format=value_format, value_schema=value_schema, latest_per_key=latest_per_key)
    except BaseException:
        logdir.close()
        raise


__all__ = ["replay", "Replay", "timestamp_ms", "resolve_position", "parse_json_values"]
