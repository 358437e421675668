"""Parsing registered schemas (Avro, JSON Schema), bounded, and their Arrow form.

A schema arrives as a string. It is refused (42201) when it is larger than
``MAX_SCHEMA_BYTES``, nested deeper than ``MAX_DEPTH``, not JSON, or not a
valid schema of its type. ``ParsedSchema`` keeps the parsed form, a
normalised string (what identical-schema lookups compare) and, when the
schema maps onto flat columns, the Arrow schema a typed topic stores.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa

from .errors import RegistryError, invalid_schema

MAX_SCHEMA_BYTES = 1 << 20
MAX_DEPTH = 64
# Columns of a typed topic decoded natively (arrowlog._native.avro); wider records stay bytes.
MAX_COLUMNS = 64
SCHEMA_TYPES = ("AVRO", "JSON")


def _check_depth(value: Any, what: str) -> None:
    """Refuse a parsed JSON value nested deeper than MAX_DEPTH (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise invalid_schema(f"{what} is nested deeper than {MAX_DEPTH} levels; flatten it")
        if isinstance(v, dict):
            stack.extend((c, depth + 1) for c in v.values())
        elif isinstance(v, list):
            stack.extend((c, depth + 1) for c in v)


def load_json(text: str, what: str) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:
        raise invalid_schema(f"{what} is nested too deeply (limit {MAX_DEPTH} levels)") from None
    except ValueError as exc:
        raise invalid_schema(f"{what} is not valid JSON: {exc}") from None
    _check_depth(value, what)
    return value


def normalise(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# Avro primitive -> Arrow type (a column of a typed topic).
_AVRO_ARROW = {
    "boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
    "double": pa.float64(), "string": pa.string(), "bytes": pa.binary(),
}
_AVRO_LOGICAL = {
    ("long", "timestamp-millis"): pa.timestamp("ms"),
    ("long", "timestamp-micros"): pa.timestamp("us"),
    ("int", "date"): pa.date32(),
}


class ParsedSchema:
    """One schema: ``schema_type``, ``text`` (as registered), ``value`` (parsed JSON),
    ``key`` (normalised text), ``arrow`` (pa.Schema of its columns, or None with
    ``arrow_reason`` saying why it has no flat column form)."""

    def __init__(self, text: str, schema_type: str | None = None):
        schema_type = (schema_type or "AVRO").upper()
        if schema_type not in SCHEMA_TYPES:
            raise invalid_schema(f"schemaType {schema_type!r} is not supported; use AVRO or JSON")
        if not isinstance(text, str) or not text:
            raise invalid_schema("the schema must be a non-empty string")
        if len(text.encode("utf-8", "surrogatepass")) > MAX_SCHEMA_BYTES:
            raise invalid_schema(f"the schema is larger than {MAX_SCHEMA_BYTES} bytes")
        self.schema_type = schema_type
        self.text = text
        self.value = load_json(text, "the schema")
        self.key = schema_type + ":" + normalise(self.value)
        self.arrow_reason: str | None = None
        if schema_type == "AVRO":
            self.parsed = _parse_avro(self.value)
            self.arrow = self._avro_arrow()
        else:
            _check_json_schema(self.value)
            self.parsed = self.value
            self.arrow = self._json_arrow()

    # --- Avro
    def _avro_arrow(self) -> pa.Schema | None:
        v = self.value
        if not (isinstance(v, dict) and v.get("type") == "record"):
            self.arrow_reason = "only a record schema maps onto columns"
            return None
        if len(v.get("fields", [])) > MAX_COLUMNS:
            self.arrow_reason = f"a record of more than {MAX_COLUMNS} fields is stored as bytes"
            return None
        fields = []
        for f in v.get("fields", []):
            t, nullable = f["type"], False
            if isinstance(t, list):
                branches = [b for b in t if b != "null"]
                if len(branches) != 1 or len(t) != 2 or t[0] != "null":
                    self.arrow_reason = (f"field {f['name']!r}: only the union ['null', T] maps onto a column")
                    return None
                t, nullable = branches[0], True
            arrow = _avro_field_type(t)
            if arrow is None:
                self.arrow_reason = (f"field {f['name']!r} of type {json.dumps(t)[:80]} has no flat column "
                                     "form (nested records, arrays, maps and fixed are stored as bytes)")
                return None
            fields.append(pa.field(f["name"], arrow, nullable))
        return pa.schema(fields)

    # --- JSON Schema
    def _json_arrow(self) -> pa.Schema | None:
        v = self.value
        if not isinstance(v, dict) or v.get("type") != "object" or not isinstance(v.get("properties"), dict):
            self.arrow_reason = "only an object schema with properties maps onto columns"
            return None
        required = set(v.get("required") or [])
        fields = []
        for name, prop in v["properties"].items():
            types = prop.get("type") if isinstance(prop, dict) else None
            types = [types] if isinstance(types, str) else list(types or [])
            nullable = "null" in types or name not in required
            types = [t for t in types if t != "null"]
            arrow = {"integer": pa.int64(), "number": pa.float64(), "string": pa.string(),
                     "boolean": pa.bool_()}.get(types[0]) if len(types) == 1 else None
            if arrow is None:
                self.arrow_reason = f"property {name!r} is not one of integer, number, string, boolean"
                return None
            fields.append(pa.field(name, arrow, nullable))
        return pa.schema(fields)


def _avro_field_type(t: Any) -> pa.DataType | None:
    if isinstance(t, str):
        return _AVRO_ARROW.get(t)
    if isinstance(t, dict):
        prim = t.get("type")
        if isinstance(prim, str) and t.get("logicalType") and (prim, t["logicalType"]) in _AVRO_LOGICAL:
            return _AVRO_LOGICAL[(prim, t["logicalType"])]
        if prim == "enum":
            return pa.string()
        if isinstance(prim, str) and set(t) <= {"type", "logicalType"} | {"doc"}:
            return _AVRO_ARROW.get(prim)
    return None


_AVRO_NEEDS: dict[str, tuple[str, type | tuple[type, ...]]] = {"record": ("fields", list), "error": ("fields", list), "enum": ("symbols", list),
               "fixed": ("size", int), "array": ("items", (str, dict, list)), "map": ("values", (str, dict, list))}


def _check_avro_shape(value: Any) -> None:
    """The attributes Avro requires of each complex type (fastavro lets some be missing)."""
    stack = [value]
    while stack:
        s = stack.pop()
        if isinstance(s, list):
            stack.extend(s)
        elif isinstance(s, dict):
            t = s.get("type")
            need = _AVRO_NEEDS.get(t) if isinstance(t, str) else None
            if need is not None and not isinstance(s.get(need[0]), need[1]):
                raise invalid_schema(f"invalid Avro schema: a {t} needs {need[0]!r}")
            if t in ("record", "error"):
                names = set()
                for f in s["fields"]:
                    if not (isinstance(f, dict) and isinstance(f.get("name"), str) and "type" in f):
                        raise invalid_schema("invalid Avro schema: each record field needs a name and a type")
                    if f["name"] in names:
                        raise invalid_schema(f"invalid Avro schema: field {f['name']!r} appears twice")
                    names.add(f["name"])
                    stack.append(f["type"])
            elif t == "array":
                stack.append(s["items"])
            elif t == "map":
                stack.append(s["values"])
            elif isinstance(t, (dict, list)):
                stack.append(t)


def _parse_avro(value: Any):
    import fastavro

    _check_avro_shape(value)

    try:
        return fastavro.parse_schema(value, _write_hint=False)
    except RecursionError:
        raise invalid_schema(f"the schema is nested too deeply (limit {MAX_DEPTH} levels)") from None
    except (fastavro.schema.SchemaParseException, fastavro.schema.UnknownType, KeyError, TypeError,
            ValueError, AttributeError) as exc:
        raise invalid_schema(f"invalid Avro schema: {exc}") from None


def _check_json_schema(value: Any) -> None:
    if not isinstance(value, (dict, bool)):
        raise invalid_schema("a JSON Schema must be an object or a boolean")
    try:
        import jsonschema
    except ImportError:
        return
    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        raise invalid_schema(f"invalid JSON Schema: {exc.message}") from None
    except RecursionError:
        raise invalid_schema(f"the schema is nested too deeply (limit {MAX_DEPTH} levels)") from None


def parse(text: str, schema_type: str | None = None, references: Any = None) -> ParsedSchema:
    if references:
        raise RegistryError(422, 42201, "schema references are not supported by this registry; inline "
                            "the referenced types")
    return ParsedSchema(text, schema_type)


_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def avro_for_arrow(topic: str, schema: pa.Schema) -> str:
    """The Avro record schema (text) whose column form is exactly ``schema``, for a topic
    typed by the library; ValueError says which column cannot map."""
    inverse: dict[str, str | dict[str, str]] = {str(t): name for (name, t) in (
        ("boolean", pa.bool_()), ("int", pa.int32()), ("long", pa.int64()), ("float", pa.float32()),
        ("double", pa.float64()), ("string", pa.string()), ("bytes", pa.binary()))}
    for (prim, logical), t in _AVRO_LOGICAL.items():
        inverse[str(t)] = {"type": prim, "logicalType": logical}
    fields = []
    for f in schema:
        if not _AVRO_NAME.fullmatch(f.name):
            raise ValueError(f"column {f.name!r} is not a valid Avro field name")
        avro = inverse.get(str(f.type))
        if avro is None:
            raise ValueError(f"column {f.name!r} of type {f.type} has no Avro form here (use bool, int32, int64, "
                             "float32, float64, string, binary, timestamp[ms|us] without a time zone or date32)")
        fields.append({"name": f.name, "type": ["null", avro], "default": None} if f.nullable
                      else {"name": f.name, "type": avro})
    name = re.sub(r"[^A-Za-z0-9_]", "_", topic)
    if not name or name[0].isdigit():
        name = "_" + name
    return json.dumps({"type": "record", "name": name, "namespace": "arrowlog", "fields": fields})
