# The record envelope's Arrow layout, written once for the whole native core.
#
# Included by both extensions: core (produce()'s record accumulator,
# core/accumulator.pxi) and kafka (the record batch v2 decoder behind a
# Produce request, kafka/decode.pxi). Each fills plain native buffers its own
# way (the accumulator grows them record by record, the decoder sizes them
# for the worst case and parses without the GIL); this file is the one place
# that turns those buffers into the columns of arrowlog.schema.PRODUCE_SCHEMA:
#
#   timestamp  timestamp[ms, UTC]  n int64 values, no validity (never null)
#   key        binary              validity bitmap (only when a key is null),
#                                  n + 1 int32 offsets, the bytes
#   value      binary              the same
#   headers    list<struct<key: string, value: binary>>
#                                  validity bitmap (a record without headers
#                                  is null), n + 1 int32 offsets into the
#                                  entries; the entries' keys (no nulls) and
#                                  values (validity only when one is null)
#
# Every buffer argument is a pyarrow Buffer (pa.py_buffer of the caller's
# memory, no copy). A bitmap is only read when its column has a null.

import pyarrow as _env_pa

# the envelope's types are defined once, in arrowlog/schema.py
from arrowlog.schema import (
    HEADER_TYPE as _ENV_HEADER_TYPE, HEADERS_TYPE as _ENV_HEADERS_TYPE, PRODUCE_SCHEMA as _ENV_PRODUCE_SCHEMA,
    TIMESTAMP_TYPE as _ENV_TIMESTAMP_TYPE,
)

_ENV_BINARY = _env_pa.binary()
_ENV_STRING = _env_pa.string()
_ENV_HEADER_FIELDS = list(_ENV_HEADER_TYPE)


cdef object envelope_binary(Py_ssize_t n, object validity, object offsets, object data, Py_ssize_t nulls):
    """A binary column of ``n`` entries (``validity`` is ignored when no entry is null)."""
    return _env_pa.Array.from_buffers(_ENV_BINARY, n, [validity if nulls else None, offsets, data],
                                      null_count=nulls)


cdef object envelope_headers(Py_ssize_t n, object list_validity, object list_offsets, Py_ssize_t lists,
                             Py_ssize_t entries, object key_offsets, object key_data,
                             object value_validity, object value_offsets, object value_data,
                             Py_ssize_t value_nulls, bint check_keys):
    """The headers column of ``n`` records, ``lists`` of which have headers
    (``entries`` headers in all). ``check_keys`` validates that every key is
    UTF-8 (bytes from the wire); it raises pa.ArrowInvalid when one is not."""
    keys = _env_pa.Array.from_buffers(_ENV_STRING, entries, [None, key_offsets, key_data])
    if check_keys:
        keys.validate(full=True)
    values = envelope_binary(entries, value_validity, value_offsets, value_data, value_nulls)
    pairs = _env_pa.StructArray.from_arrays([keys, values], fields=_ENV_HEADER_FIELDS)
    return _env_pa.Array.from_buffers(_ENV_HEADERS_TYPE, n, [list_validity, list_offsets],
                                      null_count=n - lists, children=[pairs])


cdef object envelope_batch(Py_ssize_t n, object timestamps, object keys, object values, object headers):
    """One record batch in PRODUCE_SCHEMA from ``n`` int64 ``timestamps`` (a
    Buffer), the ``keys`` and ``values`` columns (envelope_binary) and the
    ``headers`` column (envelope_headers, or None when no record has one)."""
    ts = _env_pa.Array.from_buffers(_ENV_TIMESTAMP_TYPE, n, [None, timestamps])
    if headers is None:
        headers = _env_pa.nulls(n, _ENV_HEADERS_TYPE)
    return _env_pa.RecordBatch.from_arrays([ts, keys, values, headers], schema=_ENV_PRODUCE_SCHEMA)
