"""The Arrow shape of a record, defined once.

Every stored frame is one Arrow record batch in the *envelope* schema::

    offset     int64 (not null)             assigned by the log
    timestamp  timestamp[ms, UTC] (not null)
    key        binary
    value      binary (or a struct of the topic's value.schema fields)
    headers    list<struct<key: string, value: binary>>

What a producer hands the log (``PartitionLog.append``, the native record
accumulator, the Kafka record-batch decoder) is the same less ``offset``: the
*produce* schema. A replay adds a leading ``partition`` column. This module
imports only pyarrow, so every layer (the native core included) can use it.
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP_TYPE = pa.timestamp("ms", tz="UTC")
HEADER_TYPE = pa.struct([("key", pa.string()), ("value", pa.binary())])
HEADERS_TYPE = pa.list_(HEADER_TYPE)

ENVELOPE_SCHEMA = pa.schema([
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("timestamp", TIMESTAMP_TYPE, nullable=False),
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary()),
    pa.field("headers", HEADERS_TYPE),
])
PRODUCE_SCHEMA = pa.schema([ENVELOPE_SCHEMA.field(i) for i in range(1, 5)])
PARTITION_FIELD = pa.field("partition", pa.int32(), nullable=False)
REPLAY_SCHEMA = pa.schema([PARTITION_FIELD, *ENVELOPE_SCHEMA])


def envelope_schema(value_schema: pa.Schema | None) -> pa.Schema:
    """The stored schema of a topic: ``value`` is binary, or a struct of the
    topic's ``value.schema`` fields."""
    if value_schema is None:
        return ENVELOPE_SCHEMA
    return pa.schema([ENVELOPE_SCHEMA.field(i) for i in range(3)]
                     + [pa.field("value", pa.struct(list(value_schema))), ENVELOPE_SCHEMA.field(4)])


__all__ = ["TIMESTAMP_TYPE", "HEADER_TYPE", "HEADERS_TYPE", "ENVELOPE_SCHEMA", "PRODUCE_SCHEMA", "PARTITION_FIELD",
           "REPLAY_SCHEMA", "envelope_schema"]
