"""DuckDB's own scan protocol for a :class:`~arrowlog.dataset.LogDataset`.

DuckDB (2.x) reads a Python object through a *source* (``duckdb._sources``):
for a pyarrow Dataset it wraps the object anew on every query, translates each
pushed predicate into a pyarrow expression twice (once to decide whether to
push it, once to scan), and calls ``scanner(columns=, filter=)``; the dataset
then reads the expression back out of Arrow's serialised tree. An object
that *is* a source is used as it is: DuckDB asks it ``accepts(predicate)``
and ``stream(columns, filters)`` with its own predicate tree (``Binary``,
``In``, ``Col``, ``Lit``).

:func:`dataset_class` gives the LogDataset class that is also such a source,
when the installed DuckDB has the protocol (else LogDataset itself: DuckDB
then scans it as the pyarrow Dataset it is). The predicates whose rows the
scan cuts exactly itself (:func:`exact_bounds`: ``partition`` and ``offset``
compared with whole numbers, ``timestamp`` with a TIMESTAMPTZ, ``partition IN
(...)``, conjunctions of them) go straight into the scan's bounds, no pyarrow
expression built. Any other predicate is accepted exactly when DuckDB's own
rule for a pyarrow Dataset accepts it, and is then handed to
:meth:`LogDataset.scanner` as DuckDB's own pyarrow translation, as before.
"""

from __future__ import annotations

import threading
from fractions import Fraction
from typing import Any

from ._dataset_filters import Bounds

_OPS = {"=": "eq", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
_INTEGERS = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"})
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

# Rows a DuckDB scan reads before handing them over (LogScanner.to_stream):
# the bench's one-hour window is 155,648 rows (2.4 MB of two int64 columns);
# a LIMIT over a larger scan reads at most this many rows past what it takes.
READY_ROWS = 1 << 18

_made: list[type] = []
_lock = threading.Lock()


def dataset_class(base: type) -> type:
    """``base`` (LogDataset) made a DuckDB source, built once; ``base``
    itself when DuckDB is not installed or has no source protocol."""
    if _made:
        return _made[0]
    with _lock:
        if not _made:
            _made.append(_build(base))
    return _made[0]


def _build(base: type) -> type:
    try:
        import duckdb
        if int(duckdb.__version__.split(".")[0]) != 2:  # a private protocol: used only by the major version tested
            return base
        from duckdb._sources import ArrowScanSource, nodes
        from duckdb._sources.to_arrow import nan_may_satisfy, to_arrow
        Binary, Col, In, Lit, Untranslatable = nodes.Binary, nodes.Col, nodes.In, nodes.Lit, nodes.Untranslatable
    except Exception:  # no DuckDB, or one without this protocol: the pyarrow Dataset path
        return base
    kinds = (Binary, Col, In, Lit)

    class DuckDBLogDataset(base, ArrowScanSource):
        """A LogDataset that DuckDB scans through its source protocol."""

        schema_is_stable = True   # a dataset's columns are fixed when it opens
        pull_under_gil = False
        one_shot = False

        @property
        def obj(self) -> Any:
            return self

        def rows(self) -> int | None:
            return None

        def __arrow_c_schema__(self) -> Any:
            return self._schema.__arrow_c_schema__()

        def accepts(self, predicate: Any) -> bool:
            if exact_bounds(predicate, self._exact_columns, Bounds(self._integral), kinds):
                return True
            try:  # DuckDB's own rule for a pyarrow Dataset
                to_arrow(predicate, self._schema)
            except Untranslatable:
                return False
            return not nan_may_satisfy(predicate, self._schema)

        def stream(self, columns: Any, filters: Any) -> tuple[Any, bool]:
            names = list(self._names) if columns is None else [self._names[i] for i in columns]
            bounds = Bounds(self._integral)
            if all(exact_bounds(f, self._exact_columns, bounds, kinds) for f in filters):
                scan = self._exact_scanner(names, bounds)
            else:
                mask = None
                for f in filters:
                    term = to_arrow(f, self._schema)
                    mask = term if mask is None else mask & term
                scan = self.scanner(columns=names, filter=mask)
            return scan.to_stream(READY_ROWS), columns is not None

    DuckDBLogDataset.__name__ = DuckDBLogDataset.__qualname__ = base.__name__
    DuckDBLogDataset.__module__ = base.__module__
    return DuckDBLogDataset


def exact_bounds(node: Any, columns: dict[str, str], bounds: Bounds, kinds: tuple) -> bool:
    """Add to ``bounds`` what DuckDB's predicate ``node`` says, and tell
    whether that is all it says: ``columns`` maps each column such a
    predicate may name (never null) to ``"int"`` or ``"timestamptz"``. On
    False, ``bounds`` may hold part of it (the caller drops them)."""
    Binary, Col, In, Lit = kinds
    kind = type(node)
    if kind is Binary:
        if node.op == "AND":
            return exact_bounds(node.left, columns, bounds, kinds) and exact_bounds(node.right, columns, bounds, kinds)
        op = _OPS.get(node.op)
        if op is None or type(node.left) is not Col or type(node.right) is not Lit or len(node.left.parts) != 1:
            return False
        name = node.left.parts[0]
        value = _value(columns.get(name), node.right)
        if value is None:
            return False
        bounds.add(name, op, value)
        return True
    if kind is In:
        operand = node.operand
        if type(operand) is not Col or operand.parts != ("partition",) or not node.values:
            return False
        values = []
        for lit in node.values:
            if type(lit) is not Lit:
                return False
            v = _value("int", lit)
            if v is None:
                return False
            values.append(v)
        bounds.add("partition", "isin", values)
        return True
    return False


def _value(column: str | None, lit: Any) -> int | Fraction | None:
    """The literal as the scan's bounds compare it (timestamps: epoch
    milliseconds, exact), or None when the scan cannot cut by it exactly."""
    value = lit.value
    if type(value) is not int:  # bool is not an int here
        return None
    if column == "int" and lit.type in _INTEGERS and _INT64_MIN <= value <= _INT64_MAX:
        return value
    if column == "timestamptz" and lit.type == "TIMESTAMP WITH TIME ZONE":  # microseconds since the epoch
        return value // 1000 if value % 1000 == 0 else Fraction(value, 1000)
    return None
