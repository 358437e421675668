"""Kafka records of several versions of a typed topic's subject: decoding them into
the topic's columns, and evolving the columns when a newer version arrives.

The topic's columns are its value schema's current *generation*
(storage/evolution.py), written with one schema id. A Produce whose records all
carry that id is the fast path (typed.py). Otherwise ``decode_versions`` looks at
every record's id:

- an id that is not a version of the topic's subject refuses the request
  (INVALID_RECORD, as before evolution existed);
- the newest version among them, if newer than the current one, evolves the
  topic: its column form must widen the stored columns (new fields nullable,
  wider numbers: ``widen``), or the request is refused naming the field, and
  nothing is stored. The registry already answered 409 to a registration its
  compatibility mode refuses, so this is only reached by compatible changes or
  by mode NONE;
- records of an older version are decoded with their own schema and stored in
  the current columns: fields they lack take the current schema's Avro
  default, or null (a field without default that may not be null refuses them).
  Fetch returns them with the current id, which a deserializer reads as that
  version.

Every record of the request is decoded before the topic evolves, so a refused
request changes nothing; the evolution itself (topic.json rewritten atomically)
happens before the records are appended.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from arrowlog.errors import ConfigError, InvalidRecordError
from arrowlog.storage.evolution import conform_value, same_columns, widen

from .codec import Codec, wire_ids


def _with_defaults(column: pa.Array, older: Codec, current: Codec) -> pa.Array:
    """``column`` (decoded with ``older``) with the fields only ``current`` has, filled
    with current's Avro default; InvalidRecordError if one may not be null and has none."""
    if current.schema.schema_type != "AVRO":
        return column
    have = set(older.arrow.names)
    arrays, fields = [column.field(i) for i in range(column.type.num_fields)], list(column.type)
    for f, spec in zip(current.arrow, current.schema.value["fields"]):
        if f.name in have:
            continue
        default = spec.get("default")
        if default is None:
            if not f.nullable:
                raise InvalidRecordError(f"records of schema {older.schema_id} lack field {f.name!r}, which schema "
                                         f"{current.schema_id} requires without a default: produce them with "
                                         f"schema {current.schema_id}")
            continue
        try:
            arrays.append(pa.array([default] * len(column)).cast(f.type))
        except (pa.ArrowException, TypeError, ValueError):
            raise InvalidRecordError(f"the default of field {f.name!r} in schema {current.schema_id} does not fit "
                                     f"its column {f.type}") from None
        fields.append(f)
    mask = column.is_null() if column.null_count else None
    return pa.StructArray.from_arrays(arrays, fields=fields, mask=mask)


class VersionedBatches:
    """The decoding of one Produce request's batches for ``decode_versions``."""

    def __init__(self, typed, topic: str, subject: str, current: Codec, value_schema: pa.Schema):
        self.typed = typed
        self.topic = topic
        self.subject = subject
        self.current = current
        self.value_schema = value_schema

    def _version(self, sid: int) -> int | None:
        return self.typed.registry.version_number(self.subject, sid)

    def decode(self, columns: list[pa.Array]) -> tuple[list[pa.Array], Codec | None]:
        """(the struct columns of ``columns``, the codec to evolve the topic to or None)."""
        ids = [wire_ids(c) for c in columns]
        seen = set().union(*(set(i[i >= 0].tolist()) for i in ids)) - {self.current.schema_id}
        for sid in sorted(seen):
            if self._version(sid) is None:
                raise InvalidRecordError(f"a record carries schema id {sid}, which is not a version of subject "
                                         f"{self.subject!r} whose columns topic {self.topic!r} stores (schema id "
                                         f"{self.current.schema_id})")
        now = self._version(self.current.schema_id) or 0
        newest = max(seen, key=lambda s: self._version(s) or 0, default=None)
        target_codec, evolve_to = self.current, None
        stored = self.value_schema
        if newest is not None and (self._version(newest) or 0) > now:
            target_codec = evolve_to = self.typed.codec(newest)
            try:
                stored = widen(stored, evolve_to.arrow)
            except ConfigError as exc:
                raise InvalidRecordError(f"records of schema {newest} (version {self._version(newest)} of "
                                         f"{self.subject!r}) cannot be stored in topic {self.topic!r}: {exc}; "
                                         "nothing was stored") from None
        target = pa.struct(list(stored))
        out = [self._decode_one(c, i, target_codec, stored, target) for c, i in zip(columns, ids)]
        return out, evolve_to

    def _decode_one(self, column: pa.Array, ids: np.ndarray, current: Codec, stored: pa.Schema,
                    target: pa.StructType) -> pa.Array:
        ids = np.where(ids < 0, current.schema_id, ids)   # nulls, and values the current codec will name
        parts, order = [], []
        for sid in np.unique(ids).tolist():
            rows = np.flatnonzero(ids == sid)
            codec = current if sid == current.schema_id else self.typed.codec(sid)
            part = column.take(pa.array(rows)) if len(rows) != len(column) else column
            decoded = codec.decode(part)
            if codec is not current:
                if not same_columns(widen(stored, codec.arrow), stored):
                    raise InvalidRecordError(f"records of schema {sid} (version {self._version(sid)} of "
                                             f"{self.subject!r}) do not fit the columns of topic {self.topic!r}, "
                                             f"which stores schema {current.schema_id}: produce them with it")
                decoded = _with_defaults(decoded, codec, current)
            parts.append(conform_value(decoded, target))
            order.append(rows)
        if len(parts) == 1:
            return parts[0]
        merged = pa.concat_arrays(parts)
        inverse = np.empty(len(column), np.int64)
        inverse[np.concatenate(order)] = np.arange(len(column))
        return merged.take(pa.array(inverse))
