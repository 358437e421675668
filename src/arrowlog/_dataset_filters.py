"""What a dataset scan's filter allows, per column: the pushdown half of
:mod:`arrowlog.dataset`.

A pyarrow expression (``pc.Expression``, as DuckDB and ``ds.to_table(filter=)``
pass it) or a polars predicate is walked into :class:`Bounds`: per column an
inclusive [lo, hi] range and an allowed set, always a superset of what the
filter keeps (pruning only ever widens; the exact filter is re-applied on what
is read). Timestamps are compared as epoch milliseconds; a literal finer than
a millisecond is kept exact (a Fraction), and a bound on a column of whole
numbers is rounded to the whole numbers it admits.

:func:`exact_conjunction` tells when the bounds say all a filter says: then a
scan that cuts its rows to the bounds has applied the filter itself.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_UNIT_PER_MS = {"ms": 1, "us": 1000, "ns": 1_000_000}  # seconds: multiplied, not divided

# -- bounds: what a filter allows, as ranges and sets per column ----------------------

class Bounds:
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
        if column in self.integral and op != "isin":
            try:
                op, value = _whole(op, value)
            except (TypeError, ValueError, OverflowError):
                return  # NaN, an infinity, a string: no bound (the exact filter decides)
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

    def copy(self) -> Bounds:
        out = Bounds(self.integral)
        out.lo, out.hi = dict(self.lo), dict(self.hi)
        out.sets = {c: set(v) for c, v in self.sets.items()}
        return out

    @property
    def columns(self) -> set[str]:
        return set(self.lo) | set(self.hi) | set(self.sets)


def _whole(op: str, value: Any) -> tuple[str, int]:
    """``column op value`` for a column of whole numbers, as ``column op' n``
    with a whole ``n`` admitting exactly the same whole numbers (an equality
    no whole number meets becomes an empty range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise TypeError(value)
    if op == "gt":
        return "ge", math.floor(value) + 1
    if op == "lt":
        return "le", math.ceil(value) - 1
    if op == "ge":
        return "ge", math.ceil(value)
    if op == "le":
        return "le", math.floor(value)
    if op == "eq" and value != math.floor(value):
        return "ge", _NO_WHOLE  # nothing equals it: lo above every value
    return op, int(value)


_NO_WHOLE = 1 << 64  # above every int64 and every timestamp in ms


def _timestamp_ms(raw: int, unit: str) -> int | Fraction:
    """Epoch milliseconds, exactly (a Fraction when finer than a millisecond)."""
    if unit == "s":
        return raw * 1000
    per = _UNIT_PER_MS[unit]
    return raw // per if raw % per == 0 else Fraction(raw, per)


def _literal(scalar: pa.Scalar) -> Any:
    """A comparable Python value for a literal (timestamps as epoch ms)."""
    if not scalar.is_valid:
        return None
    t = scalar.type
    if pa.types.is_timestamp(t):
        return _timestamp_ms(scalar.value, t.unit)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t) or pa.types.is_binary(t) \
            or pa.types.is_boolean(t) or pa.types.is_large_string(t):
        return scalar.as_py()
    raise TypeError(t)


_FLIP = {"lt": "gt", "le": "ge", "gt": "lt", "ge": "le", "eq": "eq"}
_ARROW_OPS = {"equal": "eq", "less": "lt", "less_equal": "le", "greater": "gt", "greater_equal": "ge"}


_TREES: dict[str, list[tuple[pc.Expression, Any]]] = {}  # str(expr) -> (expr, its tree): engines send one filter again and again
_MAX_TREES = 256


def arrow_tree(expr: pc.Expression) -> tuple[Any, list[pa.Scalar], list[pa.Scalar]] | None:
    """Arrow's own serialisation of ``expr`` (an IPC file whose schema
    metadata lists the tree in prefix order) as nested tuples; None if it
    cannot be read. Trees are kept by the expression's text, checked with
    ``Expression.equals`` (the text alone does not tell an int8 literal
    from an int64 one): a repeated filter costs about 2 µs, not the 18 µs
    of serialising it."""
    try:
        text = str(expr)
    except Exception:
        return None
    for known, tree in _TREES.get(text, ()):
        if known.equals(expr):
            return tree
    try:
        buf = expr.__reduce__()[1][0]
    except Exception:
        return None
    tree = _read_tree(buf)
    same_text = _TREES.setdefault(text, [])
    if len(_TREES) > _MAX_TREES or len(same_text) >= 8:
        _TREES.clear()
        same_text = _TREES[text] = []
    same_text.append((expr, tree))
    return tree


def _read_tree(buf: Any) -> Any:
    try:
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


def arrow_field_refs(tree: Any) -> set[str]:
    if tree[0] == "field":
        return {tree[1]}
    if tree[0] == "call":
        return set().union(*(arrow_field_refs(a) for a in tree[2])) if tree[2] else set()
    return set()


def bounds_from_arrow(tree: Any, bounds: Bounds) -> None:
    """Add the conditions every row kept by ``tree`` satisfies."""
    if tree is None or tree[0] != "call":
        return
    _, name, args, options = tree
    if name in ("and", "and_kleene"):
        for a in args:
            bounds_from_arrow(a, bounds)
    elif name == "if_else" and len(args) == 3 and args[2][0] == "literal" and not args[2][1].is_valid:
        # DuckDB's IN: if_else(is_valid(x), is_in(x, ...), null): true only where the middle is
        bounds_from_arrow(args[1], bounds)
    elif name in _ARROW_OPS and len(args) == 2:
        op = _ARROW_OPS[name]
        a, b = args
        if a[0] == "literal" and b[0] == "field":
            a, b, op = b, a, _FLIP[op]
        if a[0] == "field" and b[0] == "literal":
            try:
                bounds.add(a[1], op, _literal(b[1]))
            except (TypeError, KeyError, pa.ArrowException):
                pass
    elif name == "is_in" and len(args) == 1 and args[0][0] == "field" and options is not None:
        try:
            values = options["value_set"]
            if isinstance(values, pa.ListScalar):
                values = values.values
            bounds.add(args[0][1], "isin", [_literal(v) for v in values])
        except (TypeError, KeyError, pa.ArrowException):
            pass


# polars: the predicate's JSON form (Expr.meta.serialize(format="json"))
_POLARS_OPS = {"Eq": "eq", "Lt": "lt", "LtEq": "le", "Gt": "gt", "GtEq": "ge"}
_POLARS_UNITS = {"Milliseconds": "ms", "Microseconds": "us", "Nanoseconds": "ns"}


def _polars_literal(node: Any) -> Any:
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
            return _timestamp_ms(int(value[0]), _POLARS_UNITS[value[1]])
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and dtype != "List":
            return value
        if dtype == "List" and isinstance(value, list):
            # the list is an Arrow IPC stream of one column
            series = pa.ipc.open_stream(bytes(value)).read_all().column(0).combine_chunks()
            if pa.types.is_list(series.type) or pa.types.is_large_list(series.type):
                series = series.flatten()
            return [_literal(v) for v in series]
    raise TypeError(node)


def bounds_from_polars(node: Any, bounds: Bounds) -> None:
    if not isinstance(node, dict):
        return
    if "BinaryExpr" in node:
        e = node["BinaryExpr"]
        op, a, b = e.get("op"), e.get("left"), e.get("right")
        if op in ("And", "LogicalAnd"):
            bounds_from_polars(a, bounds)
            bounds_from_polars(b, bounds)
            return
        if op not in _POLARS_OPS:
            return
        op = _POLARS_OPS[op]
        if isinstance(b, dict) and "Column" in b:
            a, b, op = b, a, _FLIP[op]
        if isinstance(a, dict) and isinstance(a.get("Column"), str):
            try:
                bounds.add(a["Column"], op, _polars_literal(b))
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
                bounds.add(column, "ge", _polars_literal(inputs[1]))
                bounds.add(column, "le", _polars_literal(inputs[2]))
            elif '"IsIn"' in function and len(inputs) == 2:
                values = _polars_literal(inputs[1])
                if isinstance(values, list):
                    bounds.add(column, "isin", values)
        except (TypeError, ValueError, IndexError, AttributeError, pa.ArrowException):
            pass


# -- frame statistics ------------------------------------------------------------------


# -- exactness: when the bounds are the whole filter ------------------------------------

_EXACT_INT = ("partition", "offset")  # envelope columns that are never null


def exact_conjunction(tree: Any) -> bool:
    """Whether ``tree`` (from :func:`arrow_tree`) is a conjunction of
    conditions that :class:`Bounds` holds exactly, so that the rows inside the
    bounds are the rows the filter keeps: ``partition`` or ``offset``
    compared with a whole number, ``timestamp`` compared with a time-zone-aware
    timestamp, and ``partition IN (...)`` (DuckDB's form too). These columns
    are never null. Anything else (value fields, keys, OR, NOT, floats, a
    naive timestamp Arrow would refuse) is not: the scan then leaves the
    filter to Arrow."""
    if tree is None or tree[0] != "call":
        return False
    _, name, args, options = tree
    if name in ("and", "and_kleene"):
        return bool(args) and all(exact_conjunction(a) for a in args)
    if name == "if_else" and len(args) == 3 and args[2][0] == "literal" and not args[2][1].is_valid \
            and args[0][:2] == ("call", "is_valid") and args[0][2] == [("field", "partition")]:
        return exact_conjunction(args[1])  # DuckDB's IN on a column that is never null
    if name in _ARROW_OPS and len(args) == 2:
        a, b = args
        if a[0] == "literal":
            a, b = b, a
        return a[0] == "field" and b[0] == "literal" and _exact_literal(a[1], b[1])
    if name == "is_in" and len(args) == 1 and args[0] == ("field", "partition") and options is not None:
        try:
            values = options["value_set"]
            if isinstance(values, pa.ListScalar):
                values = values.values
            return pa.types.is_integer(values.type)
        except (TypeError, KeyError, AttributeError, pa.ArrowException):
            return False
    return False


def _exact_literal(column: str, scalar: pa.Scalar) -> bool:
    if not scalar.is_valid:
        return False
    t = scalar.type
    if column in _EXACT_INT:
        return pa.types.is_integer(t) and -(1 << 63) <= scalar.as_py() < (1 << 63)
    return column == "timestamp" and pa.types.is_timestamp(t) and t.tz is not None
