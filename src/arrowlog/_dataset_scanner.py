"""What :meth:`arrowlog.LogDataset.scanner` returns: one scan of a topic,
readable any number of times, with pyarrow Scanner's reading methods.

When the scan's own batches already hold exactly the rows the filter keeps
and only the projected columns (``exact``: the filter is one the bounds say
whole, :func:`arrowlog._dataset_filters.exact_conjunction`), ``to_reader()``
hands them to the caller directly: DuckDB pulls them from its own thread,
with no Arrow scan plan (threads, filter and projection nodes) between. Any
other filter goes through ``pyarrow.dataset.Scanner.from_batches``, which
applies it exactly to what the scan read.

``to_stream(ready_rows)`` is the stream DuckDB's source protocol takes: a
scan of at most ``ready_rows`` rows is read at once and handed over as a
Table, whose stream the consumer's threads pull in C++; a stream over the
Python generator makes every pull take the GIL, and DuckDB's two threads
then queue for it while the caller holds it (measured on the bench's window
query: 7.5–9.3 M instructions a query against 7.4 M, callgrind).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads


class LogScanner:
    """A snapshot scan of a LogDataset (``batches()`` starts a new read of it)."""

    def __init__(self, batches: Callable[[], Iterator[pa.RecordBatch]], read_schema: pa.Schema, columns: list[str],
                 filter: pc.Expression | None, *, exact: bool, dataset_schema: pa.Schema,
                 projected_schema: pa.Schema, batch_size: int | None = None):
        self._batches = batches
        self._read_schema = read_schema   # the columns the batches hold
        self._columns = columns
        self._filter = filter
        self._exact = exact               # the batches hold exactly the rows and the columns asked for
        self._batch_size = batch_size
        self.dataset_schema = dataset_schema
        self.projected_schema = projected_schema

    def _arrow(self) -> pads.Scanner:
        options: dict[str, Any] = {"batch_size": self._batch_size} if self._batch_size else {}
        if self._exact:
            return pads.Scanner.from_batches(self._sized(), schema=self.projected_schema, **options)
        return pads.Scanner.from_batches(self._batches(), schema=self._read_schema, columns=self._columns,
                                         filter=self._filter, **options)

    def _sized(self) -> Iterator[pa.RecordBatch]:
        step = self._batch_size
        for batch in self._batches():
            if not step or batch.num_rows <= step:
                yield batch
            else:
                for i in range(0, batch.num_rows, step):
                    yield batch.slice(i, step)

    def to_reader(self) -> pa.RecordBatchReader:
        if self._exact:
            return pa.RecordBatchReader.from_batches(self.projected_schema, self._sized())
        return self._arrow().to_reader()

    def to_stream(self, ready_rows: int) -> Any:
        """The scan as an Arrow C stream capsule. A scan that holds at most
        ``ready_rows`` rows is read now and handed over as a Table (pulled
        without Python); a larger one hands the batches read so far, then
        the rest as they are pulled, so a consumer that stops early (LIMIT)
        has read about ``ready_rows`` rows more than it took, not the scan."""
        if not self._exact:
            return self.to_reader().__arrow_c_stream__()
        batches = self._sized()
        taken, rows = [], 0
        for batch in batches:
            taken.append(batch)
            rows += batch.num_rows
            if rows > ready_rows:
                rest = itertools.chain(taken, batches)
                return pa.RecordBatchReader.from_batches(self.projected_schema, rest).__arrow_c_stream__()
        return pa.Table.from_batches(taken, schema=self.projected_schema).__arrow_c_stream__()

    def to_batches(self) -> Iterator[pa.RecordBatch]:
        return iter(self.to_reader())

    def to_table(self) -> pa.Table:
        return self.to_reader().read_all()

    def count_rows(self) -> int:
        return sum(batch.num_rows for batch in self.to_reader())

    def head(self, num_rows: int) -> pa.Table:
        """The first ``num_rows`` rows; reading stops once they are there."""
        taken, left = [], num_rows
        reader = self.to_reader()
        for batch in reader:
            if left <= 0:
                break
            taken.append(batch.slice(0, left))
            left -= taken[-1].num_rows
        reader.close()
        return pa.Table.from_batches(taken, schema=self.projected_schema)

    def take(self, indices: Any) -> pa.Table:
        return self.to_table().take(indices)

    def scan_batches(self) -> Iterator[Any]:
        return self._arrow().scan_batches()

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.to_reader().__arrow_c_stream__(requested_schema)

    def __repr__(self) -> str:
        how = "exact" if self._exact else "filtered by Arrow"
        return f"<arrowlog.LogScanner columns={self._columns} ({how})>"
