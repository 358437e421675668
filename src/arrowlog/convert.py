"""Conversions between Python values, Arrow arrays and Kafka records,
shared by the local and ``kafka://`` clients, the mirror and the CLI.

Nothing here touches storage or a network: it imports only pyarrow, numpy,
``arrowlog.errors`` and ``arrowlog.schema``, so every layer may use it.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pa_json

from .errors import InvalidArgumentError, InvalidRecordError
from .schema import HEADERS_TYPE, PRODUCE_SCHEMA, TIMESTAMP_TYPE


def to_epoch_ms(value: Any) -> int:
    """A timestamp given as epoch ms, a datetime (naive = UTC) or a date."""
    if isinstance(value, bool):
        raise InvalidArgumentError("timestamp must be epoch milliseconds or a datetime")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float):
        return int(value)
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, _dt.date):
        return int(_dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp() * 1000)
    raise InvalidArgumentError(f"timestamp must be epoch milliseconds or a datetime, not {type(value).__name__}")


def binary_array(values: Any, what: str, length: int | None = None) -> pa.Array:
    """Keys or values as a pa.BinaryArray, without copying Arrow input."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        arr = values
    elif isinstance(values, np.ndarray) and values.dtype.kind in ("S", "U", "O"):
        arr = pa.array(values.tolist() if values.dtype.kind == "O" else values, type=pa.binary())
    else:
        try:
            arr = pa.array([v.encode() if isinstance(v, str) else v for v in values], type=pa.binary())
        except (TypeError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidArgumentError(f"{what} must be bytes-like or str: {exc}") from None
    if arr.type != pa.binary():
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type) \
                or pa.types.is_binary_view(arr.type) or pa.types.is_string_view(arr.type) or pa.types.is_null(arr.type):
            arr = arr.cast(pa.binary())
        else:
            raise InvalidArgumentError(f"{what} must be binary or string, not Arrow type {arr.type}")
    if length is not None and len(arr) != length:
        raise InvalidArgumentError(f"{what} has {len(arr)} entries; values has {length}")
    return arr


def typed_values(values: Any, schema: pa.Schema) -> pa.StructArray:
    """Values for a topic with a value schema, as a struct array of it:
    from a table or record batch with its fields as columns, a struct array,
    a list of dicts, or JSON-encoded bytes (what produce() receives)."""
    struct = pa.struct(list(schema))
    try:
        if isinstance(values, (pa.Table, pa.RecordBatch)):
            missing = [f.name for f in schema if f.name not in values.schema.names]
            if missing:
                raise InvalidRecordError(f"the table lacks the value schema's field(s) {missing}")
            cols = [values.column(f.name) for f in schema]
            cols = [c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c for c in cols]
            return pa.StructArray.from_arrays([c.cast(f.type) for c, f in zip(cols, schema)], fields=list(schema))
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if isinstance(values, (list, tuple)) and values and isinstance(values[0], (bytes, str)):
            try:
                values = pa.array(values, type=pa.binary())
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass   # a mixed list: one row at a time below
        if isinstance(values, pa.Array):
            if pa.types.is_struct(values.type):
                return values.cast(struct)
            if pa.types.is_binary(values.type) or pa.types.is_string(values.type):
                decoded = json_lines(values, schema)
                if decoded is not None:
                    return decoded
                values = [None if v is None else json.loads(v) for v in values.to_pylist()]
        rows = [json.loads(v) if isinstance(v, (bytes, str)) else v for v in values]
        for row in rows:
            refuse_fraction(row, schema)
        return pa.array(rows, type=struct)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, KeyError, TypeError, OverflowError) as exc:
        raise InvalidRecordError(f"values do not fit the topic's value schema ({schema_fields(schema)}): {exc}") from None


def json_lines(values: pa.Array, schema: pa.Schema) -> pa.StructArray | None:
    """JSON values decoded by pyarrow.json, vectorised (produce_batch of
    200,000 four-field records: 0.43 s of CPU with json.loads per record,
    0.10 s this way); None when that path cannot be used (null
    values, a value spanning lines, or anything pyarrow.json refuses) and
    the caller decodes row by row, whose result and errors are the
    reference that produce()'s record_validator() checks against."""
    n = len(values)
    if n == 0 or values.null_count:
        return None
    if not pa.types.is_binary(values.type):
        values = values.cast(pa.binary())
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=n + 1, offset=values.offset * 4)
    data = values.buffers()[2]
    if data is None:
        return None
    body = np.frombuffer(data, dtype=np.uint8)[offsets[0]:offsets[-1]]
    if (body == 0x0A).any():
        return None
    text = b"\n".join(values.to_pylist())
    try:
        table = pa_json.read_json(
            io.BytesIO(text), read_options=pa_json.ReadOptions(block_size=min(len(text) + 1, (1 << 31) - 1)),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != n:
        return None
    cols = [c.combine_chunks() for c in table.columns]
    return pa.StructArray.from_arrays(cols, fields=list(schema))


def schema_fields(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


def shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def refuse_fraction(row: Any, schema: pa.Schema) -> None:
    """A ValueError if ``row`` gives an integer field a number with a
    fraction: pa.array would truncate it (2.7 stored as 2) where
    pyarrow.json refuses it. A whole float (2.0) converts exactly."""
    if type(row) is not dict:
        return
    for f in schema:
        v = row.get(f.name)
        if type(v) is float and pa.types.is_integer(f.type) and not v.is_integer():
            raise ValueError(f"field {f.name!r} is {f.type} but the value {v!r} has a fraction")


def record_validator(topic: str, schema: pa.Schema):
    """produce()'s check for a topic with a value schema: the value must be
    JSON (or None) that converts to the schema exactly as typed_values()
    converts its batch, so a record that passes never fails its batch."""
    struct = pa.struct(list(schema))
    loads, to_arrow = json.loads, pa.array
    checks = [(f.name, _surely_fits(f.type)) for f in schema]
    exact_only = any(check is None for _, check in checks)

    def validate(value: Any) -> None:
        if value is None:
            return
        try:
            row = loads(value)
            if not exact_only and type(row) is dict:
                for name, check in checks:
                    v = row.get(name)
                    if v is not None and not check(v):
                        break
                else:
                    return  # every field surely converts: the common case, no Arrow call
            refuse_fraction(row, schema)
            to_arrow([row], type=struct)
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, KeyError, TypeError, OverflowError) as exc:
            raise InvalidRecordError(f"topic {topic!r}: value {shown(value)} does not fit the value schema "
                                     f"({schema_fields(schema)}): {exc}; the record was not queued") from None
    return validate


def _surely_fits(t: pa.DataType) -> Any:
    """A quick test that a JSON-decoded value surely converts to ``t`` (as
    pa.array would), or None for types only Arrow can judge. A value the
    test does not accept is judged by Arrow, so it never refuses a good one."""
    if pa.types.is_integer(t):
        lo, hi = (-(1 << (t.bit_width - 1)), (1 << (t.bit_width - 1)) - 1) if pa.types.is_signed_integer(t) \
            else (0, (1 << t.bit_width) - 1)
        return lambda v: type(v) is int and lo <= v <= hi
    if pa.types.is_floating(t) and t.bit_width == 64:
        return lambda v: type(v) is float or (type(v) is int and -(1 << 53) <= v <= 1 << 53)
    if pa.types.is_boolean(t):
        return lambda v: type(v) is bool
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        # ASCII surely encodes; other text may hold a lone surrogate ("\\ud800"), which Arrow refuses
        return lambda v: type(v) is str and v.isascii()
    return None


def first_bad_row(values: Any, schema: pa.Schema) -> int:
    """The index of the first row of ``values`` typed_values() refuses
    (called once it refused the whole), or -1."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array) and (pa.types.is_binary(values.type) or pa.types.is_string(values.type)):
        values = values.to_pylist()
    if isinstance(values, (list, tuple)) and all(v is None or isinstance(v, (bytes, str)) for v in values):
        check = record_validator("", schema)   # JSON: produce()'s per-record check, a few µs a row
        for i, v in enumerate(values):
            try:
                check(v)
            except InvalidRecordError:
                return i
        return -1
    n = values.num_rows if isinstance(values, (pa.Table, pa.RecordBatch)) else len(values)
    for i in range(n):
        row = values.slice(i, 1) if hasattr(values, "slice") else values[i:i + 1]
        try:
            typed_values(row, schema)
        except InvalidRecordError:
            return i
    return -1


def headers_array(rows: list) -> pa.Array:
    """confluent-kafka headers (None or [(key, value)] per record) as Arrow."""
    if not any(rows):
        return pa.nulls(len(rows), HEADERS_TYPE)
    return pa.array([None if h is None else [{"key": k, "value": v} for k, v in h] for h in rows],
                    type=HEADERS_TYPE)


def kafka_columns(msgs: list, names: Any) -> dict[str, pa.Array]:
    """The ``names`` columns (among offset, timestamp, key, value, headers)
    of confluent-kafka messages, as Arrow arrays in the envelope's types."""
    cols: dict[str, pa.Array] = {}
    if "offset" in names:
        cols["offset"] = pa.array([m.offset() for m in msgs], type=pa.int64())
    if "timestamp" in names:
        cols["timestamp"] = pa.array([m.timestamp()[1] for m in msgs], type=pa.int64()).cast(TIMESTAMP_TYPE)
    if "key" in names:
        cols["key"] = pa.array([m.key() for m in msgs], type=pa.binary())
    if "value" in names:
        cols["value"] = pa.array([m.value() for m in msgs], type=pa.binary())
    if "headers" in names:
        cols["headers"] = headers_array([m.headers() for m in msgs])
    return cols


def kafka_batch(msgs: list) -> pa.RecordBatch:
    """confluent-kafka messages as one batch of PRODUCE_SCHEMA (what a log appends)."""
    cols = kafka_columns(msgs, PRODUCE_SCHEMA.names)
    return pa.RecordBatch.from_arrays([cols[name] for name in PRODUCE_SCHEMA.names], schema=PRODUCE_SCHEMA)


__all__ = ["to_epoch_ms", "binary_array", "typed_values", "json_lines", "record_validator", "first_bad_row",
           "schema_fields", "shown", "headers_array", "kafka_columns", "kafka_batch"]
