"""Segment schemas decoded once per process: every segment of a topic
carries one of a few serialised envelope schemas in its header, and decoding
one costs more than opening the segment's files (a replay over 1,024
partitions opens 1,024 segments)."""

from __future__ import annotations

import pyarrow as pa

# Decoded schemas by their serialised bytes; cleared when full (a process
# rarely sees more than a few).
_SCHEMAS: dict[bytes, pa.Schema] = {}
MAX_SCHEMAS_CACHED = 256


def schema_of(message: bytes) -> pa.Schema:
    """The schema an IPC schema message holds (the segment header's CRC
    has been checked by the caller)."""
    schema = _SCHEMAS.get(message)
    if schema is None:
        schema = pa.ipc.read_schema(pa.py_buffer(message))
        if len(_SCHEMAS) >= MAX_SCHEMAS_CACHED:
            _SCHEMAS.clear()
        _SCHEMAS[message] = schema
    return schema
