"""A topic as a ``pyarrow.dataset.Dataset`` that DuckDB and polars push into.

``dataset(log, topic)`` returns a :class:`LogDataset`. Engines that scan a
pyarrow dataset (DuckDB's replacement scan, ``pl.scan_pyarrow_dataset``,
``ds.to_table(filter=...)``) call its ``scanner(columns=..., filter=...)``;
the scanner turns the filter's conditions on ``partition``, ``offset``,
``timestamp`` and typed value fields into

* the partitions to read (equality, ``isin``),
* an offset range per partition (the offset index finds its first frame;
  a lower time bound starts it at the time index's first offset at or after
  that time),
* frames skipped by their min/max timestamp and offset range, and by
  per-frame min/max of value fields (computed when a filter on the field
  first reads the frame, then kept for the dataset's later scans; a frame
  whose field is all null, such as one written before an evolution added
  the field, matches no comparison and is skipped),

reads only the columns the query projects or filters on, and re-applies the
exact filter on what it read, so conditions it cannot use still give the
right answer. ``scan_polars(log, topic)`` does the same for a polars
LazyFrame (``with_columns``, the predicate, ``n_rows`` and the batch size).
With DuckDB 2 the dataset is also a DuckDB source (``_dataset_duckdb.py``):
DuckDB hands it its own predicate tree, and conditions the scan cuts exactly
go into its bounds without a pyarrow expression.

Columns are those of :func:`arrowlog.replay`: ``partition``, ``offset``,
``timestamp``, ``key``, then ``value`` (or, for a typed topic, the value's
fields as top-level columns), then ``headers``.

Live view: every scan reads each partition up to the high watermark it saw
when the scan started, so a dataset sees later appends on its next scan and
a scan never sees half of a concurrent append.

Frame statistics are kept per dataset: the first scan reads the frames of
its offset range once (their Arrow metadata, zero-copy: no column data is
touched) and learns their time ranges; later scans skip frames without
reading them. ``stats`` counts what scans read: ``frames_read`` (frames
whose metadata was decoded), ``frames_scanned``, ``rows_scanned`` and
``bytes_scanned`` (what was handed to the engine).
"""

from __future__ import annotations

from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from ._dataset_duckdb import dataset_class
from ._dataset_filters import (
    Bounds,
    arrow_field_refs,
    arrow_tree,
    bounds_from_arrow,
    exact_conjunction,
)
from ._dataset_polars import scan_polars
from ._dataset_scanner import LogScanner
from ._dataset_shape import FrameShaper
from ._dataset_stats import (
    ONLY_NULLS,
    FrameStat,
    PartitionStats,
    field_range,
    handed_bytes,
    time_rows,
)
from ._json import parse_json_values
from ._location import is_kafka, log_location, open_data_dir
from ._native.core import murmur2_partition
from ._owned_log import OwnedLog
from .backends.local.replay import READ_BYTES, VALUE_FORMATS, Replay, _JsonValues
from .errors import ArrowlogError, ConfigError
from .storage import LogDir
from .storage.evolution import conform
from .storage.reader import RangeReader
from .txn import TransactionView, is_control_frame

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class DatasetError(ArrowlogError):
    """A dataset scan was asked for something the topic does not have."""



class LogDataset(OwnedLog, pads.Dataset):
    """A topic as a pyarrow Dataset; see the module docstring."""

    def __init__(self, logdir: LogDir, topic: str, *, owns_log: bool = False, value_format: str = "binary",
                 value_schema: pa.Schema | None = None, keys_by_murmur2: bool = False):
        self._keys_by_murmur2 = bool(keys_by_murmur2)
        self._hold_log(logdir, owns_log)
        self.topic = topic
        self._topic = logdir.topic(topic)
        shape = Replay(logdir, topic, "end", "end")
        self._schema = shape.schema
        self._envelope = shape._envelope   # frames of older value schemas read in it (storage/evolution.py)
        stored = self._topic.value_schema
        # a typed topic's value fields, in the stored value struct's order
        self._stored_fields: list[str] = [f.name for f in stored] if stored is not None else []
        # the value's fields as columns (typed or JSON); None: the value is one binary column
        self._value_fields: list[str] | None = list(self._stored_fields) if stored is not None else None
        self._json: dict[str, pa.Field] | None = None  # column name -> JSON field, with value_format="json"
        if value_format not in VALUE_FORMATS:
            raise ConfigError(f"value_format must be one of {', '.join(VALUE_FORMATS)}, not {value_format!r}")
        if value_format == "json":
            if self._value_fields is not None:
                raise ConfigError(f"topic {topic!r} stores typed values (value.schema): they are columns already; "
                                  "value_format='json' is for JSON bytes")
            decoder = _JsonValues(value_schema, f"topic {topic!r} with value_format='json'")
            value_schema = value_schema if value_schema is not None else self._infer_json_schema()
            fields = decoder.fields(value_schema)
            self._json = {f.name: raw for f, raw in zip(fields, value_schema)}
            self._value_fields = [f.name for f in fields]
            self._schema = decoder.output_schema(self._schema, value_schema)
        elif value_schema is not None:
            raise ConfigError("value_schema applies to value_format='json' only")
        self._names: list[str] = self._schema.names
        self._name_set = frozenset(self._names)
        self._filters: dict[int, tuple[Any, tuple[set[str], bool, Bounds]]] = {}  # id(tree) -> (tree, reading)
        self._stats: dict[int, PartitionStats] = {}
        self._projections: dict[tuple[str, ...], pa.Schema] = {}
        self._integral = frozenset(f.name for f in self._schema
                                   if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type))
        # the never-null envelope columns a scan cuts exactly by (the DuckDB source's fast path)
        self._exact_columns = {"partition": "int", "offset": "int"}
        if self._schema.field("timestamp").type.tz is not None:
            self._exact_columns["timestamp"] = "timestamptz"
        self._shaper = FrameShaper(self._envelope, self._stored_fields, self._value_fields, self._json, shape,
                                   f"topic {topic!r}")
        self._txns = TransactionView(logdir.path)
        self._in_txns = False  # a transaction was ever begun in the directory (looked up per scan until then)
        self.stats = {"scans": 0, "frames_read": 0, "frames_scanned": 0, "rows_scanned": 0, "bytes_scanned": 0}

    def _infer_json_schema(self) -> pa.Schema:
        """The JSON fields of the first frame of every partition (later
        values are read with these types: pass value_schema to fix them)."""
        found = []
        for log in self._topic.partitions():
            low, high = log.watermarks(check=True)
            if low < high:
                frames = log.read(low, 1)
                if frames:
                    found.append(parse_json_values(frames[0].batch.column(3), None, f"topic {self.topic!r}").schema)
        if not found:
            raise DatasetError(f"topic {self.topic!r} is empty, so its JSON fields cannot be inferred: pass "
                               "value_schema=pa.schema([...])")
        try:
            return pa.unify_schemas(found, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DatasetError(f"the JSON fields of topic {self.topic!r} differ between partitions ({exc}): pass "
                               "value_schema=pa.schema([...])") from None

    # -- what engines look at -----------------------------------------------------

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def scanner(self, columns: list[str] | None = None, filter: pc.Expression | None = None,
                batch_size: int | None = None, **kwargs: Any) -> LogScanner:
        """A scan reading only what ``columns`` and ``filter`` need (a
        :class:`~arrowlog._dataset_scanner.LogScanner`, with pyarrow
        Scanner's reading methods). Other pyarrow scan options (threads,
        readahead) do not apply here."""
        if isinstance(columns, dict):
            raise DatasetError("computed columns (a dict for columns=) are not supported; pass column names")
        names = self._check_columns(columns)
        bounds = Bounds(self._integral)
        needed = set(names)
        exact = filter is None
        if filter is not None:
            if not isinstance(filter, pc.Expression):
                raise DatasetError(f"filter must be a pyarrow.compute.Expression, not {type(filter).__name__}")
            reading = self._read_filter(filter)
            if reading is None:
                needed = set(self._names)
            else:
                refs, exact, known = reading
                bounds = known.copy()  # the scan may add to it (keys routed to partitions)
                needed |= refs
        if exact:  # the scan cuts its rows to the bounds itself, and reads the projected columns alone
            return self._exact_scanner(names, bounds, filter, batch_size)
        read_schema = self._scan_schema(needed)
        ranges = self._snapshot(bounds)
        return LogScanner(lambda: self._batches(read_schema, bounds, ranges, False), read_schema, names, filter,
                          exact=False, dataset_schema=self._schema, projected_schema=self._projected(tuple(names)),
                          batch_size=batch_size)

    def _exact_scanner(self, names: list[str], bounds: Bounds, filter: pc.Expression | None = None,
                       batch_size: int | None = None) -> LogScanner:
        """The scan of ``names`` whose rows are exactly those ``bounds`` admit."""
        projected = self._projected(tuple(names))
        ranges = self._snapshot(bounds)
        return LogScanner(lambda: self._batches(projected, bounds, ranges, True), projected, names, filter,
                          exact=True, dataset_schema=self._schema, projected_schema=projected,
                          batch_size=batch_size)

    def _read_filter(self, filter: pc.Expression) -> tuple[set[str], bool, Bounds] | None:
        """What ``filter`` says, read from Arrow's expression tree: the columns
        it names, whether its bounds say all it says (``exact_conjunction``)
        and the bounds; None when the tree cannot be read. Kept per tree:
        engines send the same filter again and again."""
        tree = arrow_tree(filter)
        if tree is None:
            return None
        hit = self._filters.get(id(tree))
        if hit is not None and hit[0] is tree:
            return hit[1]
        refs = arrow_field_refs(tree)
        unknown = sorted(r for r in refs - self._name_set if not r.startswith("."))
        if unknown:
            raise DatasetError(f"the filter names column(s) {unknown} that topic {self.topic!r} does not "
                               f"have; its columns are {self._names}")
        bounds = Bounds(self._integral)
        bounds_from_arrow(tree, bounds)
        reading = (refs & self._name_set, exact_conjunction(tree), bounds)
        if len(self._filters) >= 256:
            self._filters.clear()
        self._filters[id(tree)] = (tree, reading)  # the entry keeps the tree, so its id is not reused
        return reading

    def _projected(self, names: tuple[str, ...]) -> pa.Schema:
        """The schema of ``names`` (kept: engines ask for the same columns again and again)."""
        schema = self._projections.get(names)
        if schema is None:
            if len(self._projections) >= 256:
                self._projections.clear()
            by_name = {f.name: f for f in self._schema}
            schema = self._projections[names] = pa.schema([by_name[c] for c in names])
        return schema

    def to_table(self, columns: list[str] | None = None, filter: pc.Expression | None = None, **kwargs: Any) -> pa.Table:
        return self.scanner(columns=columns, filter=filter, **kwargs).to_table()

    def to_batches(self, columns: list[str] | None = None, filter: pc.Expression | None = None,
                   **kwargs: Any) -> Iterator[pa.RecordBatch]:
        return self.scanner(columns=columns, filter=filter, **kwargs).to_batches()

    def to_reader(self, columns: list[str] | None = None, filter: pc.Expression | None = None,
                  **kwargs: Any) -> pa.RecordBatchReader:
        return self.scanner(columns=columns, filter=filter, **kwargs).to_reader()

    def count_rows(self, filter: pc.Expression | None = None, **kwargs: Any) -> int:
        return self.scanner(columns=[], filter=filter, **kwargs).count_rows()

    def head(self, num_rows: int, columns: list[str] | None = None, filter: pc.Expression | None = None,
             **kwargs: Any) -> pa.Table:
        return self.scanner(columns=columns, filter=filter, **kwargs).head(num_rows)

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.to_reader().__arrow_c_stream__(requested_schema)

    # pyarrow's Dataset methods below would reach a C++ dataset this class
    # does not have (a segmentation fault): they read the topic instead.

    @property
    def partition_expression(self) -> pc.Expression:
        return pc.scalar(True)

    def filter(self, expression: pc.Expression) -> pads.Dataset:
        """The rows ``expression`` keeps, read now (pushed down), as an in-memory Dataset."""
        return pads.dataset(self.to_table(filter=expression))

    def sort_by(self, sorting: Any, **kwargs: Any) -> pads.Dataset:
        """pyarrow's ``Dataset.sort_by`` over the whole topic, read into memory."""
        return pads.dataset(self.to_table()).sort_by(sorting, **kwargs)

    def join(self, right_dataset: Any, *args: Any, **kwargs: Any) -> pads.Dataset:
        """pyarrow's ``Dataset.join`` over the whole topic, read into memory."""
        return pads.dataset(self.to_table()).join(_in_memory(right_dataset), *args, **kwargs)

    def join_asof(self, right_dataset: Any, *args: Any, **kwargs: Any) -> pads.Dataset:
        """pyarrow's ``Dataset.join_asof`` over the whole topic, read into memory."""
        return pads.dataset(self.to_table()).join_asof(_in_memory(right_dataset), *args, **kwargs)

    def get_fragments(self, filter: pc.Expression | None = None) -> Iterator[Any]:
        raise DatasetError(f"topic {self.topic!r} is not made of pyarrow fragments (files): scan it with "
                           "scanner(columns=..., filter=...), to_table() or to_batches()")

    def replace_schema(self, schema: pa.Schema) -> pads.Dataset:
        raise DatasetError(f"the schema of topic {self.topic!r} is its envelope and value schema; it cannot be "
                           "replaced: cast what a scan returns (table.cast(schema))")

    def _scan_schema(self, needed: set[str]) -> pa.Schema:
        """The columns a scan reads: ``needed``, or the offsets alone when
        nothing is (a count still needs rows, and batches without columns
        have none)."""
        return pa.schema([f for f in self._schema if f.name in (needed or {"offset"})])

    def _check_columns(self, columns: list[str] | None) -> list[str]:
        if columns is None:
            return list(self._names)
        missing = [c for c in columns if c not in self._name_set]
        if missing:
            raise DatasetError(f"topic {self.topic!r} has no column(s) {missing}; its columns are {self._names}")
        return list(columns)

    # -- reading ----------------------------------------------------------------

    def _scan(self, schema: pa.Schema, bounds: Bounds) -> Iterator[pa.RecordBatch]:
        """Batches of ``schema``'s columns holding every row ``bounds`` admits
        (and more: the caller filters exactly)."""
        return self._batches(schema, bounds, self._snapshot(bounds), exact=False)

    def _snapshot(self, bounds: Bounds) -> dict[int, tuple[int, int]]:
        """The offset range to read of every partition ``bounds`` admit, taken
        now: the scan is a snapshot. Like replay (read_committed), it ends at
        a transaction still open."""
        self.stats["scans"] += 1
        t = self._topic
        if self._keys_by_murmur2:
            self._route_keys(bounds)
        plo, phi = bounds.range("partition")
        partitions = [p for p in range(t.num_partitions)
                      if (plo is None or p >= plo) and (phi is None or p <= phi)
                      and ("partition" not in bounds.sets or p in bounds.sets["partition"])]
        ranges = {p: t.partition(p).watermarks(check=True) for p in partitions}
        self._in_txns = self._in_txns or self._txns.begun()
        if self._in_txns:
            for p, (low, high) in ranges.items():
                ranges[p] = (low, max(low, self._txns.readable_end(self.topic, p, high, True)))
        return ranges

    def _route_keys(self, bounds: Bounds) -> None:
        """Key equality (or ``in``) names the partitions the default
        partitioner put those keys in: only those are read."""
        keys = bounds.sets.get("key")
        lo, hi = bounds.lo.get("key"), bounds.hi.get("key")
        if keys is None and lo is not None and lo == hi:
            keys = {lo}
        if keys is not None and all(isinstance(k, bytes) for k in keys):
            bounds.add("partition", "isin", [murmur2_partition(k, self._topic.num_partitions) for k in keys])

    def _batches(self, schema: pa.Schema, bounds: Bounds, ranges: dict, exact: bool) -> Iterator[pa.RecordBatch]:
        """The frames of ``ranges`` that ``bounds`` admit, with ``schema``'s
        columns. ``exact``: the bounds are the whole filter, and each batch is
        cut to the rows inside them (zero-copy slices where the frame's
        timestamps are in order), so nothing needs filtering afterwards."""
        olo, ohi = bounds.range("offset")
        tlo, thi = bounds.range("timestamp")
        field_bounds = [c for c in bounds.columns if self._value_fields and c in self._value_fields]
        for p, (low, high) in ranges.items():
            log = self._topic.partition(p)
            pstats = self._stats.setdefault(p, PartitionStats())
            if pstats.bases and pstats.frames[pstats.bases[-1]].next > high:
                pstats.forget_from(high)
            start = low if olo is None else max(low, int(olo))
            end = high if ohi is None else min(high, int(ohi) + 1)
            if isinstance(tlo, int) and _INT64_MIN < tlo <= _INT64_MAX and start < end:
                # The time index: every record before the first one at or after
                # tlo (out-of-order timestamps included) is earlier than tlo.
                first = log.offset_for_timestamp(tlo)
                if first is None:
                    continue  # nothing at or after tlo, then or now
                start = max(start, first)
            pos = start
            budget = 1
            skip = None
            reader = RangeReader(log, start, end, whole_frames=True)
            while pos < end:
                st = pstats.find(pos)
                if st is not None:
                    if not self._admits(st, bounds, tlo, thi, field_bounds):
                        if skip is None:
                            skip = pstats.time_skipper(tlo, thi) if tlo is not None or thi is not None else None
                        pos = skip(st) if skip is not None else st.next
                        continue
                    want, nxt = st.size, pstats.following(st)
                    while nxt is not None and want < READ_BYTES and nxt.base < end \
                            and self._admits(nxt, bounds, tlo, thi, field_bounds):
                        want, nxt = want + nxt.size, pstats.following(nxt)
                    if not exact:  # a head() may stop early; known frames were read (and checked) before
                        want = min(want, budget)
                else:
                    want = budget  # unknown frames: learn their ranges (metadata only, zero-copy)
                reader.position = pos
                frames = reader.read(want)   # past a range retention deleted meanwhile, too
                if not frames:
                    break
                # one frame first, then twice as much each time: a head() stops early
                budget = min(READ_BYTES, 2 * sum(fr.size for fr in frames))
                self.stats["frames_read"] += sum(1 for fr in frames if fr.base_offset < end)
                picked = []
                for fr in frames:
                    if fr.base_offset >= end:
                        pos = end
                        break
                    st = pstats.add(FrameStat(fr.base_offset, fr.next_offset, fr.size, fr.min_timestamp,
                                               fr.max_timestamp))
                    pos = fr.next_offset
                    if self._in_txns and self._txns.skipped(self.topic, p, fr, True) or \
                            not self._in_txns and is_control_frame(fr):
                        continue  # a transaction's marker, or an aborted transaction's records
                    first, last = fr.row_at(start), fr.row_at(end)  # rows: compacted frames have gaps
                    if first < last and self._admits(st, bounds, tlo, thi, field_bounds):
                        picked.append((st, fr, first, last))
                if exact:
                    yield from self._cut_all(picked, p, schema, tlo, thi)
                    continue
                shaped = self._shaper.shape_all([conform(fr.batch, self._envelope) for _, fr, _, _ in picked], p, schema)
                for (st, fr, first, last), out in zip(picked, shaped):
                    missing = [c for c in field_bounds if c not in st.fields and c in schema.names]
                    if missing:
                        for c in missing:
                            st.fields[c] = field_range(out.column(c))
                        if not self._admits(st, bounds, tlo, thi, field_bounds):
                            continue
                    if first or last < fr.rows:
                        out = out.slice(first, last - first)
                    yield self._counted(out, schema)

    def _counted(self, out: pa.RecordBatch, schema: pa.Schema, fixed: list[int] | None = None) -> pa.RecordBatch:
        """``out``, counted in the stats; ``fixed``: its columns' bytes per
        row where fixed-width without a validity bitmap, else 0 (known for a
        shaped frame: no buffer asked for again)."""
        self.stats["frames_scanned"] += 1
        self.stats["rows_scanned"] += out.num_rows
        if fixed is None:
            self.stats["bytes_scanned"] += handed_bytes(out, self._shaper.plan(schema)[1])
        else:
            self.stats["bytes_scanned"] += sum(out.num_rows * w if w else out.column(i).nbytes
                                               for i, w in enumerate(fixed))
        return out

    def _cut_all(self, picked: list, partition: int, schema: pa.Schema, tlo: Any, thi: Any) -> Iterator[pa.RecordBatch]:
        """The rows of the ``picked`` frames (rows ``first``..``last`` of
        each: the offset bounds) whose timestamps lie in [tlo, thi], with
        ``schema``'s columns. A frame inside the window is taken whole; at an
        edge, timestamps in order give a slice (binary search), out of order
        a mask (a copy of the projected columns only)."""
        cuts, raw = [], []
        parsed = self._json is not None and any(name in self._json for name in schema.names)
        for st, fr, first, last in picked:
            mask = None
            if tlo is not None and st.min_ts < tlo or thi is not None and st.max_ts > thi:
                first, last, mask = time_rows(st, fr.batch.column(1), first, last, tlo, thi)
                if first >= last:
                    continue
            if not parsed:  # the frame shaped whole (kept), then cut: zero-copy
                out, fixed = self._shaper.shaped_frame(fr.batch, partition, schema)
                out = out.slice(first, last - first) if first or last < out.num_rows else out
                yield self._counted(out if mask is None else out.filter(mask), schema, fixed)
                continue
            batch = conform(fr.batch, self._envelope)
            raw.append(batch.slice(first, last - first) if first or last < batch.num_rows else batch)
            cuts.append(mask)
        for out, mask in zip(self._shaper.shape_all(raw, partition, schema), cuts):
            yield self._counted(out if mask is None else out.filter(mask), schema)

    @staticmethod
    def _admits(st: FrameStat, bounds: Bounds, tlo: Any, thi: Any, field_bounds: list[str]) -> bool:
        if tlo is not None and st.max_ts < tlo or thi is not None and st.min_ts > thi:
            return False
        if not bounds.admits("offset", st.base, st.next - 1):
            return False
        for c in field_bounds:
            known = st.fields.get(c)
            if known is ONLY_NULLS:
                return False
            if known is not None and not bounds.admits(c, *known):
                return False
        return True

    def reset_stats(self) -> None:
        for k in self.stats:
            self.stats[k] = 0

    def __repr__(self) -> str:
        return f"<arrowlog.LogDataset {self.topic} partitions={self._topic.num_partitions}>"


def _in_memory(data: Any) -> Any:
    return pads.dataset(data.to_table()) if isinstance(data, LogDataset) else data


def _open(log: Any) -> tuple[LogDir, bool]:
    if isinstance(log, LogDir):
        return log, False
    where = log_location(log, "dataset()", kafka=False)
    if is_kafka(where):
        raise ConfigError(f"arrowlog.dataset reads a local data directory, not {where!r}: its pushdown "
                          "uses the log's own frames; for a Kafka cluster use arrowlog.replay(url, topic)")
    return open_data_dir(where, create=False), True


def dataset(log: Any, topic: str, *, value_format: str = "binary", value_schema: pa.Schema | None = None,
            keys_by_murmur2: bool = False) -> LogDataset:
    """``topic`` of the data directory ``log`` (a path, ``file://`` URL or
    LogDir) as a pyarrow Dataset that engines push filters and projections
    into. A dataset opened from a path owns its LogDir: close() it.

    ``value_format="json"`` makes the fields of JSON-object values columns
    (as ``replay`` does; only the fields a scan needs are built), typed by
    ``value_schema`` or else by the first frame of each partition.

    ``keys_by_murmur2=True`` says every keyed record went to the partition
    Kafka's default partitioner gives its key (no explicit partitions, no
    partitions added since): a filter ``key = ...`` then reads only that
    key's partition. Records placed otherwise would be missed."""
    logdir, owns = _open(log)
    try:
        return dataset_class(LogDataset)(logdir, topic, owns_log=owns, value_format=value_format,
                                         value_schema=value_schema, keys_by_murmur2=keys_by_murmur2)
    except BaseException:
        if owns:
            logdir.close()
        raise


__all__ = ["dataset", "scan_polars", "LogDataset", "LogScanner", "DatasetError"]
