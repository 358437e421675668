"""Confluent wire-format values <-> a typed topic's Arrow value columns.

A wire-format value is ``0x00``, the schema id as 4 big-endian bytes, then the
Avro binary or JSON body. ``Codec.decode`` turns a batch's value column into
the struct column the topic stores (Avro through the native decoder in
``arrowlog._native.avro``, one pass over the batch; JSON parsed, validated
against its JSON Schema and converted by pyarrow); ``Codec.encode`` writes the
struct column back as wire-format values with the same id (Avro by the native
encoder, in the canonical binary encoding every Avro library writes: byte-exact
for records produced canonically). Any value that does not decode or does not match raises
``InvalidRecordError`` naming the record.
"""

from __future__ import annotations

import io
import json
import re
import struct

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arrowlog.errors import InvalidRecordError

from .schemas import ParsedSchema

# Kinds understood by arrowlog._native.avro.decode_flat.
_KIND = {"boolean": 0, "int": 1, "long": 2, "float": 3, "double": 4, "string": 5, "bytes": 6, "enum": 7}


class OtherSchemaId(InvalidRecordError):
    """A record carries another schema id than the codec's (typed.py may evolve the topic for it)."""

    def __init__(self, message: str, schema_id: int):
        super().__init__(message)
        self.schema_id = schema_id


def wire_ids(values: pa.Array) -> np.ndarray:
    """The schema id of each wire-format value (-1 for a null value or one without the header)."""
    out = np.full(len(values), -1, np.int64)
    for i, v in enumerate(pc.binary_slice(values.cast(pa.binary()), 0, 5).to_pylist()):
        if v is not None and len(v) == 5 and v[0] == 0:
            out[i] = struct.unpack_from(">i", v, 1)[0]
    return out


def header(schema_id: int) -> bytes:
    return b"\x00" + struct.pack(">i", schema_id)


def _avro_prim(t) -> tuple[str, list | None]:
    """(kind, enum symbols) of a flat Avro field type (after its null branch is removed)."""
    if isinstance(t, dict):
        if t.get("type") == "enum":
            return "enum", list(t["symbols"])
        return t["type"], None
    return t, None


class Codec:
    """The codec of one registered schema (``schema_id``) with a flat column form."""

    def __init__(self, schema_id: int, schema: ParsedSchema):
        if schema.arrow is None:
            raise InvalidRecordError(f"schema {schema_id} has no column form: {schema.arrow_reason}")
        self.schema_id = schema_id
        self.schema = schema
        self.arrow = schema.arrow
        self.type = pa.struct(list(schema.arrow))
        self.prefix = header(schema_id)
        if schema.schema_type == "AVRO":
            kinds, nullable, enums = bytearray(), bytearray(), []
            for f in schema.value["fields"]:
                t = f["type"]
                nullable.append(isinstance(t, list))
                kind, symbols = _avro_prim([b for b in t if b != "null"][0] if isinstance(t, list) else t)
                kinds.append(_KIND[kind])
                enums.append(symbols)
            self._kinds, self._nullable, self._enums = bytes(kinds), bytes(nullable), enums
        else:
            import jsonschema

            self._validator = jsonschema.validators.validator_for(schema.value)(schema.value)
            self._json_fast = _json_fast_plan(schema.value)

    # ------------------------------------------------------------ decode
    def decode(self, values: pa.Array) -> pa.Array:
        """The struct column for a binary column of wire-format values."""
        if values.null_count:
            # a null value (a tombstone) stays a null record
            valid = values.is_valid()
            present = self.decode(values.filter(valid))
            idx = np.cumsum(np.asarray(valid.to_numpy(zero_copy_only=False), dtype=np.int64)) - 1
            idx = pa.array(idx, mask=~np.asarray(valid.to_numpy(zero_copy_only=False)))
            return present.take(idx)
        if self.schema.schema_type == "AVRO":
            return self._decode_avro(values.to_pylist())
        return self._decode_json_fast(values) or self._decode_json(values.to_pylist())

    def _decode_avro(self, values: list) -> pa.Array:
        from arrowlog._native.avro import decode_flat

        try:
            columns = decode_flat(values, self.schema_id, self._kinds, self._nullable,
                                  [len(s) if s else 0 for s in self._enums])
        except LookupError as exc:
            raise OtherSchemaId(f"a record carries schema id {exc.args[0]}, but this topic stores the "
                                f"columns of schema id {self.schema_id}", exc.args[0]) from None
        except ValueError as exc:
            raise InvalidRecordError(f"a record does not match Avro schema {self.schema_id}: {exc}") from None
        arrays = []
        for field, symbols, (data, valid) in zip(self.arrow, self._enums, columns):
            mask = None if valid.all() else valid == 0
            bitmap = None if mask is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
            n = len(valid)
            t = field.type
            if symbols is not None:
                arr = pa.array(symbols, pa.string()).take(pa.array(data, mask=valid == 0))
            elif pa.types.is_string(t) or pa.types.is_binary(t):
                offsets, blob = data
                arr = pa.Array.from_buffers(t, n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(blob)])
                if pa.types.is_string(t):
                    try:
                        arr.validate(full=True)
                    except pa.ArrowInvalid as exc:
                        raise InvalidRecordError(f"field {field.name!r} holds a string that is not UTF-8: "
                                                 f"{exc}") from None
            elif pa.types.is_boolean(t):
                arr = pa.array(data.view(np.bool_), mask=mask)
            elif pa.types.is_timestamp(t) or pa.types.is_date(t):
                arr = pa.array(data, mask=mask).cast(t)
            else:
                arr = pa.array(data, mask=mask)
            arrays.append(arr)
        return pa.StructArray.from_arrays(arrays, fields=list(self.arrow))

    def _decode_json_fast(self, values: pa.Array) -> pa.Array | None:
        """The batch parsed by pyarrow.json in one pass, when the schema says no more than
        the columns do (types, required, additionalProperties) and every record is plain;
        None sends the batch to the per-record path, which validates and names the culprit."""
        plan = self._json_fast
        if plan is None or len(values) == 0:
            return None
        from pyarrow import json as pj

        values = values.cast(pa.binary())
        heads = pc.binary_slice(values, 0, 5)
        if not pc.all(pc.equal(heads, pa.scalar(self.prefix, pa.binary()))).as_py():
            return None
        bodies = pc.binary_slice(values, 5, (1 << 31) - 1)
        if pc.any(pc.binary_length(bodies) == 0).as_py() or \
                pc.any(pc.match_substring(bodies.cast(pa.binary()), "\n")).as_py():
            return None
        strict, not_null = plan
        joined = b"\n".join(bodies.to_pylist())
        try:
            table = pj.read_json(io.BytesIO(joined), read_options=pj.ReadOptions(
                use_threads=False, block_size=max(1 << 20, len(joined) + 1)), parse_options=pj.ParseOptions(
                explicit_schema=pa.schema([f.with_nullable(True) for f in self.arrow]),
                unexpected_field_behavior="error" if strict else "ignore"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if table.num_rows != len(values):
            return None
        for name, required in not_null:
            if table.column(name).null_count and (required or pc.any(pc.match_substring_regex(
                    bodies, '"' + re.escape(name) + r'"\s*:\s*null')).as_py()):
                return None       # missing and required, or an explicit null the type refuses
        table = table.combine_chunks()
        return pa.StructArray.from_arrays([table.column(f.name).chunk(0) if table.column(f.name).num_chunks
                                           else pa.array([], f.type) for f in self.arrow], fields=list(self.arrow))

    def _decode_json(self, values: list) -> pa.Array:
        rows = []
        for i, v in enumerate(values):
            if len(v) < 5 or v[0] != 0:
                raise InvalidRecordError(f"record {i} is not in the Confluent wire format (magic byte 0x00, "
                                         "4-byte schema id, payload)")
            sid = struct.unpack_from(">i", v, 1)[0]
            if sid != self.schema_id:
                raise OtherSchemaId(f"record {i} carries schema id {sid}, but this topic stores the "
                                    f"columns of schema id {self.schema_id}", sid)
            try:
                doc = json.loads(v[5:])
            except (ValueError, RecursionError) as exc:
                raise InvalidRecordError(f"record {i} is not JSON: {exc}") from None
            error = next(iter(self._validator.iter_errors(doc)), None)
            if error is not None:
                raise InvalidRecordError(f"record {i} does not match JSON Schema {self.schema_id}: "
                                         f"{error.message}")
            rows.append(doc)
        try:
            return pa.array(rows, type=self.type)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise InvalidRecordError(f"a record does not fit the columns of schema {self.schema_id}: "
                                     f"{exc}") from None

    # ------------------------------------------------------------ encode
    def encode(self, column: pa.Array) -> pa.Array:
        """Wire-format values (binary) for a struct column of this schema (null records stay null)."""
        if self.schema.schema_type == "AVRO":
            return self._encode_avro(column)
        names = self.arrow.names
        fields = [column.field(n).to_pylist() for n in names]
        out = []
        for i, ok in enumerate(column.is_valid().to_pylist()):
            if not ok:
                out.append(None)
                continue
            row = {n: c[i] for n, c in zip(names, fields) if c[i] is not None}
            out.append(self.prefix + json.dumps(row).encode())
        return pa.array(out, pa.binary())

    def _encode_avro(self, column: pa.Array) -> pa.Array:
        from arrowlog._native.avro import encode_flat

        n = len(column)
        record_valid = _mask(column)
        columns, valids = [], []
        for field, symbols, child in zip(self.arrow, self._enums, column.flatten()):
            t = field.type
            valids.append(_mask(child))
            if symbols is not None:
                idx = pc.index_in(child, value_set=pa.array(symbols, pa.string()))
                if idx.null_count > child.null_count:
                    raise InvalidRecordError(f"column {field.name!r} holds a value that is not an enum symbol")
                columns.append(np.ascontiguousarray(idx.fill_null(0).to_numpy(), dtype=np.int32))
            elif pa.types.is_string(t) or pa.types.is_binary(t):
                if child.offset:
                    child = pa.concat_arrays([child])
                bufs = child.buffers()
                offsets = np.frombuffer(bufs[1], dtype=np.int32, count=n + 1)
                columns.append((offsets, bufs[2].to_pybytes() if bufs[2] is not None else b""))
            else:
                if pa.types.is_timestamp(t):
                    child = child.cast(pa.int64())
                elif pa.types.is_date(t):
                    child = child.cast(pa.int32())
                dtype = np.uint8 if pa.types.is_boolean(t) else None
                values = child.fill_null(False if pa.types.is_boolean(t) else 0).to_numpy(zero_copy_only=False)
                columns.append(np.ascontiguousarray(values, dtype=dtype))
        try:
            offsets, data = encode_flat(n, self.schema_id, self._kinds, self._nullable, columns, valids,
                                        record_valid)
        except ValueError as exc:
            raise InvalidRecordError(f"cannot encode stored records with schema {self.schema_id}: {exc}") from None
        bitmap = None if record_valid.all() else pa.py_buffer(np.packbits(record_valid, bitorder="little"))
        return pa.Array.from_buffers(pa.binary(), n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)])


def _mask(arr: pa.Array) -> np.ndarray:
    """1 where ``arr`` holds a value, 0 where it is null (uint8)."""
    return np.ascontiguousarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.uint8)


# JSON Schema keywords the column form checks by itself (anything else: per-record validation).
_JSON_TOP = {"type", "properties", "required", "additionalProperties", "title", "description", "$schema", "$id"}
_JSON_PROPERTY = {"type", "title", "description"}


def _json_fast_plan(schema) -> tuple[bool, list[tuple[str, bool]]] | None:
    """(additionalProperties is false, [(property, required)] of those that may not be
    null) when pyarrow.json
    with the column types decides validity alone, else None."""
    if not isinstance(schema, dict) or set(schema) - _JSON_TOP:
        return None
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        return None
    not_null = []
    required = set(schema.get("required") or [])
    for name, prop in schema["properties"].items():
        if not isinstance(prop, dict) or set(prop) - _JSON_PROPERTY:
            return None
        types = prop.get("type")
        if "null" not in ([types] if isinstance(types, str) else types):
            not_null.append((name, name in required))
    return (not extra, not_null)
