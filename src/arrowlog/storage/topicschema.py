"""A topic's value schema as topic.json keeps it, and the envelope its
segments store (used by logdir.py)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from ..errors import ConfigError
from ..schema import envelope_schema


def value_schema_from_config(spec: Any) -> pa.Schema | None:
    """A topic's value schema: a pa.Schema, or its JSON form
    {"fields": [{"name": ..., "type": "int64"}, ...]}."""
    if spec is None:
        return None
    if isinstance(spec, pa.Schema):
        return spec
    if isinstance(spec, dict) and "fields" in spec:
        try:
            # metadata: the generation (and schema registry id) of an evolved schema (evolution.py)
            md = spec.get("metadata") or None
            return pa.schema([(f["name"], _field_type(f), f.get("nullable", True))
                              for f in spec["fields"]], metadata={str(k): str(v) for k, v in md.items()} if md else None)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"invalid value.schema: {exc}") from None
    raise ConfigError("value.schema must be a pyarrow.Schema or {'fields': [{'name':..., 'type':...}]}")


def _field_type(field: dict) -> pa.DataType:
    try:
        return pa.type_for_alias(field["type"])
    except ValueError:
        raise ValueError(f"field {field['name']!r} has the unknown type {field['type']!r} (types are pyarrow's "
                         "names: int8..int64, uint8..uint64, float32, float64, bool, string, binary, "
                         "timestamp[ms], date32, ...)") from None


def schema_to_json(schema: pa.Schema | None) -> Any:
    if schema is None:
        return None
    out: dict[str, Any] = {"fields": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]}
    md = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items() if k.startswith(b"arrowlog.")}
    if md:
        out["metadata"] = md
    return out


def topic_envelope(value_schema: pa.Schema | None) -> pa.Schema:
    """A topic's envelope schema, with its value schema's generation in the metadata
    (the segment header keeps it: evolution.py)."""
    schema = envelope_schema(value_schema)
    return schema.with_metadata(value_schema.metadata) if value_schema is not None and value_schema.metadata else schema
