"""A topic as a ``pyarrow.dataset.Dataset`` that DuckDB and polars push into.

``dataset(log, topic)`` returns a :class:`LogDataset`. Engines that scan a
pyarrow dataset (DuckDB's replacement scan, ``pl.scan_pyarrow_dataset``,
``ds.to_table(filter=...)``) call its ``scanner(columns=..., filter=...)``;
the scanner turns the filter's conditions on ``partition``, ``offset``,
``timestamp`` and typed value fields into

* the partitions to read (equality, ``isin``),
* an offset range per partition (the offset index finds its first frame),
* frames skipped by their min/max timestamp and offset range, and by
  per-frame min/max of value fields (computed when a filter on the field
  first reads the frame, then kept for the dataset's later scans),

reads only the columns the query projects or filters on, and re-applies the
exact filter on what it read, so conditions it cannot use still give the
right answer. ``scan_polars(log, topic)`` does the same for a polars
LazyFrame (``with_columns``, the predicate, ``n_rows`` and the batch size).

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

import bisect
import json
import os
import threading
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from ._json import parse_json_values
from ._location import is_kafka, local_path
from ._native.core import murmur2_partition
from ._optional import require
from .errors import ArrowlogError, ConfigError, OffsetOutOfRangeError
from .replay import READ_BYTES, VALUE_FORMATS, Replay, _JsonValues
from .storage import LogDir

_ENVELOPE = ("offset", "timestamp", "key")  # batch columns 0..2; value is 3, headers 4
_UNIT_PER_MS = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}


class DatasetError(ArrowlogError):
    """A dataset scan was asked for something the topic does not have."""


# -- bounds: what a filter allows, as ranges and sets per column ----------------------

class _Bounds:
    """Per column, an inclusive [lo, hi] range and an allowed set that every
    row the filter keeps lies in (a superset: pruning only ever widens)."""

    def __init__(self, integral: frozenset = frozenset()) -> None:
        self.integral = integral  # columns of whole numbers (and timestamps, in ms): x < 5 means x <= 4
        self.lo: dict[str, Any] = {}
        self.hi: dict[str, Any] = {}
        self.sets: dict[str, set] = {}

    def add(self, column: str, op: str, value: Any) -> None:
        if value is None:
            return
        if column in self.integral and isinstance(value, int) and not isinstance(value, bool):
            if op == "gt":
                op, value = "ge", value + 1
            elif op == "lt":
                op, value = "le", value - 1
        if op in ("eq", "ge", "gt"):
            self.lo[column] = value if column not in self.lo else max(self.lo[column], value)
        if op in ("eq", "le", "lt"):
            self.hi[column] = value if column not in self.hi else min(self.hi[column], value)
        if op == "isin":
            values = {v for v in value if v is not None}
            self.sets[column] = values if column not in self.sets else self.sets[column] & values

    def range(self, column: str) -> tuple[Any, Any]:
        lo, hi = self.lo.get(column), self.hi.get(column)
        allowed = self.sets.get(column)
        if allowed is not None:
            try:
                inside = [v for v in allowed if (lo is None or v >= lo) and (hi is None or v <= hi)]
                if not inside:
                    return 1, 0  # nothing can match
                lo = min(inside)
                hi = max(inside)
            except TypeError:
                pass
        return lo, hi

    def admits(self, column: str, low: Any, high: Any) -> bool:
        """Can a frame whose ``column`` lies within [low, high] hold a match?"""
        if low is None or high is None:
            return True
        lo, hi = self.range(column)
        try:
            return not (lo is not None and high < lo or hi is not None and low > hi)
        except TypeError:
            return True

    @property
    def columns(self) -> set[str]:
        return set(self.lo) | set(self.hi) | set(self.sets)


def _timestamp_ms(raw: int, unit: str, round_up: bool) -> int:
    if unit == "s":
        return raw * 1000
    per = _UNIT_PER_MS[unit]
    return -((-raw) // per) if round_up else raw // per


def _literal(scalar: pa.Scalar, round_up: bool) -> Any:
    """A comparable Python value for a literal (timestamps as epoch ms)."""
    if not scalar.is_valid:
        return None
    t = scalar.type
    if pa.types.is_timestamp(t):
        return _timestamp_ms(scalar.cast(pa.int64()).as_py(), t.unit, round_up)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t) or pa.types.is_binary(t) \
            or pa.types.is_boolean(t) or pa.types.is_large_string(t):
        return scalar.as_py()
    raise TypeError(t)


_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq"}
_ARROW_OPS = {"equal": "eq", "less": "lt", "less_equal": "le", "greater": "gt", "greater_equal": "ge"}


def _arrow_tree(expr: pc.Expression) -> tuple[Any, list[pa.Scalar], list[pa.Scalar]] | None:
    """Arrow's own serialisation of ``expr`` (an IPC file whose schema
    metadata lists the tree in prefix order) as nested tuples; None if it
    cannot be read."""
    try:
        buf = expr.__reduce__()[1][0]
        reader = pa.ipc.open_file(buf)
        table = reader.read_all()
        text = reader.schema.to_string(show_schema_metadata=True, truncate_metadata=False)
    except Exception:
        return None
    marker = "-- schema metadata --\n"
    if marker not in text:
        return None
    tokens = []
    for line in text.split(marker, 1)[1].splitlines():
        key, sep, value = line.partition(": ")
        if not sep or len(value) < 2 or value[0] != "'" or value[-1] != "'":
            return None
        tokens.append((key, value[1:-1]))
    literals = [table.column(i)[0] for i in range(table.num_columns)]
    pos = 0

    def node():
        nonlocal pos
        key, value = tokens[pos]
        pos += 1
        if key == "field_ref":
            return ("field", value)
        if key == "literal":
            return ("literal", literals[int(value)])
        if key != "call":
            raise ValueError(key)
        args, options = [], None
        while tokens[pos][0] != "end":
            if tokens[pos][0] == "options":
                options = literals[int(tokens[pos][1])]
                pos += 1
            else:
                args.append(node())
        pos += 1
        return ("call", value, args, options)

    try:
        return node()
    except (IndexError, ValueError):
        return None


def _arrow_field_refs(tree: Any) -> set[str]:
    if tree[0] == "field":
        return {tree[1]}
    if tree[0] == "call":
        return set().union(*(_arrow_field_refs(a) for a in tree[2])) if tree[2] else set()
    return set()


def _bounds_from_arrow(tree: Any, bounds: _Bounds) -> None:
    """Add the conditions every row kept by ``tree`` satisfies."""
    if tree is None or tree[0] != "call":
        return
    _, name, args, options = tree
    if name in ("and", "and_kleene"):
        for a in args:
            _bounds_from_arrow(a, bounds)
    elif name == "if_else" and len(args) == 3 and args[2][0] == "literal" and not args[2][1].is_valid:
        # DuckDB's IN: if_else(is_valid(x), is_in(x, ...), null): true only where the middle is
        _bounds_from_arrow(args[1], bounds)
    elif name in _ARROW_OPS and len(args) == 2:
        op = _ARROW_OPS[name]
        a, b = args
        if a[0] == "literal" and b[0] == "field":
            a, b, op = b, a, _FLIP[op]
        if a[0] == "field" and b[0] == "literal":
            try:
                bounds.add(a[1], op, _literal(b[1], round_up=op in ("lt", "le")))
            except (TypeError, KeyError, pa.ArrowException):
                pass
    elif name == "is_in" and len(args) == 1 and args[0][0] == "field" and options is not None:
        try:
            values = options["value_set"]
            if isinstance(values, pa.ListScalar):
                values = values.values
            bounds.add(args[0][1], "isin", [_literal(v, False) for v in values])
        except (TypeError, KeyError, pa.ArrowException):
            pass


# polars: the predicate's JSON form (Expr.meta.serialize(format="json"))
_POLARS_OPS = {"Eq": "eq", "Lt": "lt", "LtEq": "le", "Gt": "gt", "GtEq": "ge"}
_POLARS_UNITS = {"Milliseconds": "ms", "Microseconds": "us", "Nanoseconds": "ns"}


def _polars_literal(node: Any, round_up: bool) -> Any:
    lit = node.get("Literal") if isinstance(node, dict) else None
    if not isinstance(lit, dict) or len(lit) != 1:
        raise TypeError(node)
    (kind, body), = lit.items()
    if kind == "Dyn" and isinstance(body, dict) and len(body) == 1:
        value = next(iter(body.values()))
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return value
    if kind == "Scalar" and isinstance(body, dict) and len(body) == 1:
        (dtype, value), = body.items()
        if dtype == "Datetime" and isinstance(value, list) and value[1] in _POLARS_UNITS:
            return _timestamp_ms(int(value[0]), _POLARS_UNITS[value[1]], round_up)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and dtype != "List":
            return value
        if dtype == "List" and isinstance(value, list):
            # the list is an Arrow IPC stream of one column
            series = pa.ipc.open_stream(bytes(value)).read_all().column(0).combine_chunks()
            if pa.types.is_list(series.type) or pa.types.is_large_list(series.type):
                series = series.flatten()
            return [_literal(v, False) for v in series]
    raise TypeError(node)


def _bounds_from_polars(node: Any, bounds: _Bounds) -> None:
    if not isinstance(node, dict):
        return
    if "BinaryExpr" in node:
        e = node["BinaryExpr"]
        op, a, b = e.get("op"), e.get("left"), e.get("right")
        if op in ("And", "LogicalAnd"):
            _bounds_from_polars(a, bounds)
            _bounds_from_polars(b, bounds)
            return
        if op not in _POLARS_OPS:
            return
        op = _POLARS_OPS[op]
        if isinstance(b, dict) and "Column" in b:
            a, b, op = b, a, _FLIP[op]
        if isinstance(a, dict) and isinstance(a.get("Column"), str):
            try:
                bounds.add(a["Column"], op, _polars_literal(b, round_up=op in ("lt", "le")))
            except (TypeError, ValueError, IndexError, pa.ArrowException):
                pass
    elif "Function" in node:
        f = node["Function"]
        inputs, function = f.get("input") or [], json.dumps(f.get("function"))
        if not inputs or not isinstance(inputs[0], dict) or not isinstance(inputs[0].get("Column"), str):
            return
        column = inputs[0]["Column"]
        try:
            if '"IsBetween"' in function and len(inputs) == 3:
                bounds.add(column, "ge", _polars_literal(inputs[1], False))
                bounds.add(column, "le", _polars_literal(inputs[2], True))
            elif '"IsIn"' in function and len(inputs) == 2:
                values = _polars_literal(inputs[1], False)
                if isinstance(values, list):
                    bounds.add(column, "isin", values)
        except (TypeError, ValueError, IndexError, AttributeError, pa.ArrowException):
            pass


# -- frame statistics ------------------------------------------------------------------

class _FrameStat:
    __slots__ = ("base", "next", "size", "min_ts", "max_ts", "fields")

    def __init__(self, base: int, next_offset: int, size: int, min_ts: int, max_ts: int):
        self.base = base
        self.next = next_offset
        self.size = size
        self.min_ts = min_ts
        self.max_ts = max_ts
        self.fields: dict[str, tuple[Any, Any]] = {}


class _PartitionStats:
    """The frames of one partition seen so far, by base offset."""

    def __init__(self) -> None:
        self.bases: list[int] = []
        self.frames: dict[int, _FrameStat] = {}
        self.lock = threading.Lock()  # engines may run two scans of one dataset at once
        self.version = 0
        self._arrays: tuple | None = None  # (version, bases, max_ts, min_ts, run end offsets per frame)

    def find(self, offset: int) -> _FrameStat | None:
        with self.lock:
            i = bisect.bisect_right(self.bases, offset) - 1
            st = self.frames[self.bases[i]] if i >= 0 else None
        return st if st is not None and st.base <= offset < st.next else None

    def following(self, st: _FrameStat) -> _FrameStat | None:
        with self.lock:
            i = bisect.bisect_right(self.bases, st.base)
            return self.frames[self.bases[i]] if i < len(self.bases) else None

    def add(self, st: _FrameStat) -> _FrameStat:
        with self.lock:
            known = self.frames.get(st.base)
            if known is not None and known.next == st.next:
                return known
            if known is None:
                bisect.insort(self.bases, st.base)
            self.frames[st.base] = st
            self.version += 1
            return st

    def forget_from(self, offset: int) -> None:
        """The log was cut back (recovery after a crash): drop what lay beyond."""
        with self.lock:
            keep = bisect.bisect_left(self.bases, offset)
            for base in self.bases[keep:]:
                del self.frames[base]
            del self.bases[keep:]
            if self.bases and self.frames[self.bases[-1]].next > offset:
                del self.frames[self.bases.pop()]
            self.version += 1

    def time_skipper(self, tlo: int | None, thi: int | None):
        """A function from a known frame that the time range excludes to the
        next offset worth looking at: the next known frame whose time range
        meets [tlo, thi], or the end of the run of known frames (where the
        unknown begins). Vectorised, so a narrow window over many known
        frames costs a binary search, not a walk."""
        with self.lock:
            if self._arrays is None or self._arrays[0] != self.version:
                bases = np.fromiter(self.bases, np.int64, len(self.bases))
                frames = [self.frames[b] for b in self.bases]
                nexts = np.fromiter((f.next for f in frames), np.int64, len(frames))
                min_ts = np.fromiter((f.min_ts for f in frames), np.int64, len(frames))
                max_ts = np.fromiter((f.max_ts for f in frames), np.int64, len(frames))
                # frames i..j form a run when each starts where the one before ends
                breaks = np.flatnonzero(bases[1:] != nexts[:-1])
                run_last = np.full(len(bases), len(bases) - 1, np.int64)
                starts = np.concatenate(([0], breaks + 1))
                ends = np.concatenate((breaks, [len(bases) - 1]))
                for a, b in zip(starts, ends):
                    run_last[a:b + 1] = b
                self._arrays = (self.version, bases, nexts, min_ts, max_ts, run_last)
            _, bases, nexts, min_ts, max_ts, run_last = self._arrays
        keep = np.ones(len(bases), bool)
        if tlo is not None:
            keep &= max_ts >= tlo
        if thi is not None:
            keep &= min_ts <= thi
        admitted = np.flatnonzero(keep)

        def skip(st: _FrameStat) -> int:
            i = int(np.searchsorted(bases, st.base))
            if i >= len(bases) or bases[i] != st.base:
                return st.next
            j = int(np.searchsorted(admitted, i, side="right"))
            last = int(run_last[i])
            if j < len(admitted) and admitted[j] <= last:
                return int(bases[admitted[j]])
            return int(nexts[last])

        return skip


def _field_range(array: pa.Array) -> tuple[Any, Any]:
    try:
        mm = pc.min_max(array)
        return mm["min"].as_py(), mm["max"].as_py()
    except (pa.ArrowException, TypeError):
        return None, None


# -- the dataset -----------------------------------------------------------------------

class LogDataset(pads.Dataset):
    """A topic as a pyarrow Dataset; see the module docstring."""

    def __init__(self, logdir: LogDir, topic: str, *, owns_log: bool = False, value_format: str = "binary",
                 value_schema: pa.Schema | None = None, keys_by_murmur2: bool = False):
        self._keys_by_murmur2 = bool(keys_by_murmur2)
        self._logdir = logdir
        self._owns_log = owns_log
        self.topic = topic
        self._topic = logdir.topic(topic)
        shape = Replay(logdir, topic, "end", "end")
        self._schema = shape.schema
        self._value_fields = [f.name for f in self._topic.value_schema] if self._topic.value_schema is not None \
            else None
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
        self._stats: dict[int, _PartitionStats] = {}
        self._integral = frozenset(f.name for f in self._schema
                                   if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type))
        self._pcols = shape  # Replay caches the partition column arrays
        self.stats = {"scans": 0, "frames_read": 0, "frames_scanned": 0, "rows_scanned": 0, "bytes_scanned": 0}

    def _infer_json_schema(self) -> pa.Schema:
        """The JSON fields of the first frame of every partition (later
        values are read with these types: pass value_schema to fix them)."""
        found = []
        for log in self._topic.partitions():
            low, high = log.watermarks()
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
                batch_size: int | None = None, **kwargs: Any) -> pads.Scanner:
        """A scanner reading only what ``columns`` and ``filter`` need.
        Other pyarrow scan options (threads, readahead) do not apply here."""
        if isinstance(columns, dict):
            raise DatasetError("computed columns (a dict for columns=) are not supported; pass column names")
        names = self._check_columns(columns)
        bounds = _Bounds(self._integral)
        needed = set(names)
        if filter is not None:
            if not isinstance(filter, pc.Expression):
                raise DatasetError(f"filter must be a pyarrow.compute.Expression, not {type(filter).__name__}")
            tree = _arrow_tree(filter)
            if tree is None:
                needed = set(self._schema.names)
            else:
                refs = _arrow_field_refs(tree)
                unknown = sorted(r for r in refs - set(self._schema.names) if not r.startswith("."))
                if unknown:
                    raise DatasetError(f"the filter names column(s) {unknown} that topic {self.topic!r} does not "
                                       f"have; its columns are {self._schema.names}")
                _bounds_from_arrow(tree, bounds)
                needed |= refs & set(self._schema.names)
        scan_schema = self._scan_schema(needed)
        batches = self._scan(scan_schema, bounds)
        options = {"batch_size": batch_size} if batch_size else {}
        return pads.Scanner.from_batches(batches, schema=scan_schema, columns=names, filter=filter, **options)

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

    def __arrow_c_stream__(self, requested_schema: Any = None):
        return self.to_reader().__arrow_c_stream__(requested_schema)

    def _scan_schema(self, needed: set[str]) -> pa.Schema:
        """The columns a scan reads: ``needed``, or the offsets alone when
        nothing is (a count still needs rows, and batches without columns
        have none)."""
        return pa.schema([f for f in self._schema if f.name in (needed or {"offset"})])

    def _check_columns(self, columns: list[str] | None) -> list[str]:
        if columns is None:
            return list(self._schema.names)
        missing = [c for c in columns if c not in self._schema.names]
        if missing:
            raise DatasetError(f"topic {self.topic!r} has no column(s) {missing}; its columns are {self._schema.names}")
        return list(columns)

    # -- reading ----------------------------------------------------------------

    def _scan(self, schema: pa.Schema, bounds: _Bounds) -> Iterator[pa.RecordBatch]:
        """Batches of ``schema``'s columns holding every row ``bounds`` admits.
        The watermarks are taken now: the scan is a snapshot."""
        self.stats["scans"] += 1
        t = self._topic
        if self._keys_by_murmur2:
            self._route_keys(bounds)
        plo, phi = bounds.range("partition")
        partitions = [p for p in range(t.num_partitions)
                      if (plo is None or p >= plo) and (phi is None or p <= phi)
                      and ("partition" not in bounds.sets or p in bounds.sets["partition"])]
        ranges = {p: t.partition(p).watermarks() for p in partitions}
        return self._batches(schema, bounds, ranges)

    def _route_keys(self, bounds: _Bounds) -> None:
        """Key equality (or ``in``) names the partitions the default
        partitioner put those keys in: only those are read."""
        keys = bounds.sets.get("key")
        lo, hi = bounds.lo.get("key"), bounds.hi.get("key")
        if keys is None and lo is not None and lo == hi:
            keys = {lo}
        if keys is not None and all(isinstance(k, bytes) for k in keys):
            bounds.add("partition", "isin", [murmur2_partition(k, self._topic.num_partitions) for k in keys])

    def _batches(self, schema: pa.Schema, bounds: _Bounds, ranges: dict) -> Iterator[pa.RecordBatch]:
        olo, ohi = bounds.range("offset")
        tlo, thi = bounds.range("timestamp")
        field_bounds = [c for c in bounds.columns if self._value_fields and c in self._value_fields]
        for p, (low, high) in ranges.items():
            log = self._topic.partition(p)
            pstats = self._stats.setdefault(p, _PartitionStats())
            if pstats.bases and pstats.frames[pstats.bases[-1]].next > high:
                pstats.forget_from(high)
            start = low if olo is None else max(low, int(olo))
            end = high if ohi is None else min(high, int(ohi) + 1)
            # The time index (offset_for_timestamp) is not used for the start:
            # after a clean reopen a closed segment's index can lack its final
            # entry, and the lookup then skips a segment holding the time.
            # Frames are skipped by their own min/max timestamps instead.
            pos = start
            budget = 1
            skip = None
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
                    want = min(want, budget)
                else:
                    want = budget  # unknown frames: learn their ranges (metadata only, zero-copy)
                try:
                    frames = log.read(pos, want)
                except OffsetOutOfRangeError:
                    low = log.watermarks()[0]
                    if low >= end or low <= pos:
                        break
                    pos = low
                    continue
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
                    st = pstats.add(_FrameStat(fr.base_offset, fr.next_offset, fr.size, fr.min_timestamp,
                                               fr.max_timestamp))
                    pos = fr.next_offset
                    first = max(start - fr.base_offset, 0)
                    last = min(end - fr.base_offset, fr.record_count)
                    if first < last and self._admits(st, bounds, tlo, thi, field_bounds):
                        picked.append((st, fr, first, last))
                shaped = self._shape_all([fr.batch for _, fr, _, _ in picked], p, schema)
                for (st, fr, first, last), out in zip(picked, shaped):
                    missing = [c for c in field_bounds if c not in st.fields and c in schema.names]
                    if missing:
                        for c in missing:
                            st.fields[c] = _field_range(out.column(c))
                        if not self._admits(st, bounds, tlo, thi, field_bounds):
                            continue
                    if first or last < fr.record_count:
                        out = out.slice(first, last - first)
                    self.stats["frames_scanned"] += 1
                    self.stats["rows_scanned"] += out.num_rows
                    self.stats["bytes_scanned"] += out.nbytes
                    yield out

    @staticmethod
    def _admits(st: _FrameStat, bounds: _Bounds, tlo: Any, thi: Any, field_bounds: list[str]) -> bool:
        if tlo is not None and st.max_ts < tlo or thi is not None and st.min_ts > thi:
            return False
        if not bounds.admits("offset", st.base, st.next - 1):
            return False
        for c in field_bounds:
            known = st.fields.get(c)
            if known is not None and not bounds.admits(c, *known):
                return False
        return True

    def _shape_all(self, batches: list[pa.RecordBatch], partition: int, schema: pa.Schema) -> list[pa.RecordBatch]:
        """``batches`` (stored frames) with ``schema``'s columns. JSON values
        are parsed in one pass over all of them, building only the fields
        ``schema`` asks for."""
        wanted = [self._json[f.name] for f in schema if f.name in self._json] if self._json is not None else []
        if not wanted or not batches:
            return [self._shape(b, partition, schema) for b in batches]
        parsed = parse_json_values(pa.chunked_array([b.column(3) for b in batches], pa.binary()),
                                   pa.schema(wanted), f"topic {self.topic!r}")
        out, position = [], 0
        for b in batches:
            out.append(self._shape(b, partition, schema, parsed.slice(position, b.num_rows)))
            position += b.num_rows
        return out

    def _shape(self, batch: pa.RecordBatch, partition: int, schema: pa.Schema,
               parsed: pa.Table | None = None) -> pa.RecordBatch:
        arrays = []
        for f in schema:
            name = f.name
            if name == "partition":
                arrays.append(self._pcols._partition_column(partition, batch.num_rows))
            elif name in _ENVELOPE:
                arrays.append(batch.column(_ENVELOPE.index(name)))
            elif name == "headers":
                arrays.append(batch.column(4))
            elif name == "value" and self._value_fields is None:
                arrays.append(batch.column(3))
            elif parsed is not None:
                arrays.append(parsed.column(self._json[name].name).combine_chunks())
            else:
                arrays.append(pc.struct_field(batch.column(3), [self._value_fields.index(name)]))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def reset_stats(self) -> None:
        for k in self.stats:
            self.stats[k] = 0

    # -- lifetime -----------------------------------------------------------------

    def close(self) -> None:
        if self._owns_log:
            self._owns_log = False
            self._logdir.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> LogDataset:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<arrowlog.LogDataset {self.topic} partitions={self._topic.num_partitions}>"


def _open(log: Any) -> tuple[LogDir, bool]:
    if isinstance(log, LogDir):
        return log, False
    if is_kafka(os.fspath(log)):
        raise ConfigError(f"arrowlog.dataset reads a local data directory, not {os.fspath(log)!r}: its pushdown "
                          "uses the log's own frames; for a Kafka cluster use arrowlog.replay(url, topic)")
    path = local_path(os.fspath(log))
    if not os.path.isdir(os.path.join(path, "topics")):
        raise ConfigError(f"{path} is not an arrowlog data directory")
    return LogDir(path, create=False), True


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
        return LogDataset(logdir, topic, owns_log=owns, value_format=value_format, value_schema=value_schema,
                          keys_by_murmur2=keys_by_murmur2)
    except BaseException:
        if owns:
            logdir.close()
        raise


def scan_polars(log: Any, topic: str, **dataset_options: Any):
    """``topic`` as a polars LazyFrame whose scan receives the projection,
    the predicate (what it can use prunes; polars' filter stays exact),
    ``n_rows`` and the batch size. ``log`` may also be a LogDataset."""
    pl = require("polars", "scan_polars()")
    register_io_source = require("polars.io.plugins", "scan_polars()").register_io_source
    ds = log if isinstance(log, LogDataset) else dataset(log, topic, **dataset_options)
    schema = pl.from_arrow(ds.schema.empty_table()).schema

    def source(with_columns: list[str] | None, predicate: Any, n_rows: int | None,
               batch_size: int | None) -> Iterator[Any]:
        names = ds._check_columns(with_columns)
        bounds = _Bounds(ds._integral)
        needed = set(names)
        if predicate is not None:
            needed |= set(predicate.meta.root_names())
            try:
                _bounds_from_polars(json.loads(predicate.meta.serialize(format="json")), bounds)
            except Exception:
                pass  # unreadable: no pruning, polars' filter below stays exact
        scan_schema = ds._scan_schema(needed)
        left = n_rows
        for batch in ds._scan(scan_schema, bounds):
            df = pl.from_arrow(batch, rechunk=False)
            if predicate is not None:
                df = df.filter(predicate)
            df = df.select(names)
            if left is not None:
                df = df.head(left)
                left -= df.height
            step = batch_size or max(df.height, 1)
            for i in range(0, df.height, step):
                yield df.slice(i, step)
            if left is not None and left <= 0:
                return

    return register_io_source(source, schema=schema, explain_name="arrowlog",
                              explain_detail=f"topic {topic!r}: partition/offset/timestamp/value-field pushdown")


__all__ = ["dataset", "scan_polars", "LogDataset", "DatasetError"]
