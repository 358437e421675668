"""``scan_polars(log, topic)``: a topic as a polars LazyFrame whose scan
receives the projection, the predicate, ``n_rows`` and the batch size (a
polars IO plugin over :class:`arrowlog.dataset.LogDataset`'s scan)."""

from __future__ import annotations

import json
from typing import Any, Iterator

from ._dataset_filters import Bounds, bounds_from_polars
from ._optional import require


def scan_polars(log: Any, topic: str, **dataset_options: Any):
    """``topic`` as a polars LazyFrame whose scan receives the projection,
    the predicate (what it can use prunes; polars' filter stays exact),
    ``n_rows`` and the batch size. ``log`` may also be a LogDataset."""
    pl = require("polars", "scan_polars()")
    register_io_source = require("polars.io.plugins", "scan_polars()").register_io_source
    from .dataset import LogDataset, dataset  # the dataset module imports this one

    ds = log if isinstance(log, LogDataset) else dataset(log, topic, **dataset_options)
    schema = pl.from_arrow(ds.schema.empty_table()).schema

    def source(with_columns: list[str] | None, predicate: Any, n_rows: int | None,
               batch_size: int | None) -> Iterator[Any]:
        names = ds._check_columns(with_columns)
        bounds = Bounds(ds._integral)
        needed = set(names)
        if predicate is not None:
            needed |= set(predicate.meta.root_names())
            try:
                bounds_from_polars(json.loads(predicate.meta.serialize(format="json")), bounds)
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
