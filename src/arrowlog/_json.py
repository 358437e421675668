"""JSON values as Arrow columns, vectorised: one ``pyarrow.json`` pass over
many values, no ``json.loads`` per record.

Used by ``replay(..., value_format="json")``; anything that turns a column
of JSON-object values into typed columns (a typed topic's values given as
JSON bytes, say) can use :func:`parse_json_values` the same way.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from .errors import InvalidRecordError

# pyarrow.json parses blocks of this size in parallel (types found in later
# blocks widen the ones found earlier).
JSON_BLOCK_BYTES = 8 << 20


def parse_json_values(values: pa.Array | pa.ChunkedArray, schema: pa.Schema | None = None,
                      what: str = "values", *, unexpected: str = "ignore") -> pa.Table:
    """A binary column of JSON objects as a table of typed columns, in one
    ``pyarrow.json`` pass: the values are joined with newlines by Arrow
    compute (no Python per record) and parsed once. ``schema`` fixes the
    types (fields not in it are ignored, or refused with
    ``unexpected="error"``); without it they are inferred. Empty and null
    values become rows of nulls; anything but one JSON object per value is
    an InvalidRecordError."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    n = len(values)
    if n == 0:
        return (schema or pa.schema([])).empty_table()
    values = values.cast(pa.large_binary())  # int64 offsets: the joined text may pass 2 GiB
    empty = pc.fill_null(pc.equal(pc.binary_length(values), 0), True)
    values = pc.if_else(empty, pa.scalar(b"{}", pa.large_binary()), values)
    joined = pc.binary_join_element_wise(values, pa.scalar(b"", pa.large_binary()), pa.scalar(b"\n", pa.large_binary()))
    ends = np.frombuffer(joined.buffers()[1], dtype=np.int64, count=n + 1, offset=8 * joined.offset)
    text = joined.buffers()[2][int(ends[0]):int(ends[-1])]
    # a value may hold newlines itself (pretty-printed JSON): only then the slower parser
    multiline = int(np.count_nonzero(np.frombuffer(text, dtype=np.uint8) == 0x0A)) > n
    parse = pj.ParseOptions(explicit_schema=schema, newlines_in_values=multiline,
                            unexpected_field_behavior=unexpected if schema is not None else "infer")
    try:
        table = pj.read_json(pa.BufferReader(text), read_options=pj.ReadOptions(block_size=JSON_BLOCK_BYTES),
                             parse_options=parse)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidRecordError(f"{what}: every value must be one JSON object (or empty): {exc}") from None
    if table.num_rows != n:
        raise InvalidRecordError(f"{what}: {n} values gave {table.num_rows} JSON objects; every value must be "
                                 "exactly one JSON object")
    if schema is not None and table.schema != schema:
        table = table.select(schema.names).cast(schema)
    return table


__all__ = ["parse_json_values", "JSON_BLOCK_BYTES"]
