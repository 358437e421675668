"""A small declarative schema engine for Kafka messages.

A message is a tuple of ``Field``s; a field says its name, its type, the
versions it exists in and the versions it may be null in, the way Kafka's
JSON message definitions do. Types are primitive names ("int32", "string",
"records", ...), a tuple of fields (an array of structs) or a one-element
list holding a primitive name (an array of primitives). ``decode`` turns a
request body into a dict; ``encode`` writes a dict (missing keys take the
field's default) as a response body. Tagged fields are read and skipped on
decode and never written: every tagged field this server would send is at
its default, which the protocol says to omit.
"""

from __future__ import annotations

from typing import overload

from .wire import ProtocolError, Reader, Writer

_INF = 1 << 15


@overload
def parse_versions(spec: str) -> tuple[int, int]: ...
@overload
def parse_versions(spec: None) -> None: ...
def parse_versions(spec: str | None) -> tuple[int, int] | None:
    """'3+' -> (3, inf); '0-2' -> (0, 2); '5' -> (5, 5); None -> None."""
    if spec is None:
        return None
    if spec.endswith("+"):
        return int(spec[:-1]), _INF
    if "-" in spec:
        lo, hi = spec.split("-")
        return int(lo), int(hi)
    return int(spec), int(spec)


class Field:
    __slots__ = ("name", "type", "lo", "hi", "nullable", "default")

    def __init__(self, name, type, versions="0+", nullable=None, default=None):
        self.name = name
        self.type = type
        self.lo, self.hi = parse_versions(versions)
        self.nullable = parse_versions(nullable)
        self.default = default

    def present(self, v: int) -> bool:
        return self.lo <= v <= self.hi

    def is_nullable(self, v: int) -> bool:
        return self.nullable is not None and self.nullable[0] <= v <= self.nullable[1]

    def default_value(self, v: int):
        if self.default is not None:
            return self.default
        if self.is_nullable(v):
            return None
        t = self.type
        if isinstance(t, (tuple, list)):
            return []
        if t == "string":
            return ""
        if t in ("bytes", "records"):
            return b""
        if t == "bool":
            return False
        if t == "uuid":
            return bytes(16)
        return 0


F = Field

_READ_FIXED = {
    "int8": Reader.int8, "int16": Reader.int16, "int32": Reader.int32, "int64": Reader.int64,
    "uint32": Reader.uint32, "float64": Reader.float64, "bool": Reader.bool, "uuid": Reader.uuid,
}
_WRITE_FIXED = {
    "int8": Writer.int8, "int16": Writer.int16, "int32": Writer.int32, "int64": Writer.int64,
    "uint32": Writer.uint32, "float64": Writer.float64, "bool": Writer.bool, "uuid": Writer.uuid,
}


def _read_value(t, r: Reader, v: int, flex: bool):
    fixed = _READ_FIXED.get(t) if isinstance(t, str) else None
    if fixed is not None:
        return fixed(r)
    if t == "string":
        return r.string(flex)
    if t in ("bytes", "records"):
        return r.bytes(flex)
    n = r.array_length(flex)
    if n < 0:
        return None
    if isinstance(t, tuple):
        return [decode(t, r, v, flex) for _ in range(n)]
    items = [_read_value(t[0], r, v, flex) for _ in range(n)]
    if t[0] in ("string", "bytes") and None in items:  # Kafka's arrays of strings hold no null
        raise ProtocolError(f"a null {t[0]} in an array of {t[0]}s")
    return items


def _write_value(t, value, w: Writer, v: int, flex: bool):
    fixed = _WRITE_FIXED.get(t) if isinstance(t, str) else None
    if fixed is not None:
        fixed(w, value)
    elif t == "string":
        w.string(value, flex)
    elif t == "bytes":
        w.bytes(value, flex)
    elif t == "records":
        w.records(value, flex)
    elif value is None:
        w.length(-1, flex, True)
    else:
        w.length(len(value), flex, True)
        if isinstance(t, tuple):
            for item in value:
                encode(t, item, w, v, flex)
        else:
            for item in value:
                _write_value(t[0], item, w, v, flex)


def decode(fields, r: Reader, v: int, flex: bool) -> dict:
    out = {}
    for f in fields:
        if f.lo <= v <= f.hi:
            value = _read_value(f.type, r, v, flex)
            if value is None and not f.is_nullable(v):
                raise ProtocolError(f"field {f.name} is null")
            out[f.name] = value
        else:
            out[f.name] = f.default_value(v)
    if flex:
        r.skip_tags()
    return out


def encode(fields, obj: dict, w: Writer, v: int, flex: bool) -> None:
    for f in fields:
        if f.lo <= v <= f.hi:
            value = obj.get(f.name, _MISSING)
            if value is _MISSING:
                value = f.default_value(v)
            _write_value(f.type, value, w, v, flex)
    if flex:
        w.empty_tags()


_MISSING = object()


class Api:
    """One Kafka API: its key, the versions we serve, the first flexible version,
    and the request and response schemas."""

    __slots__ = ("key", "name", "min_version", "max_version", "flex_since", "request", "response")

    def __init__(self, key, name, versions, flex_since, request, response):
        self.key = key
        self.name = name
        self.min_version, self.max_version = versions
        self.flex_since = flex_since
        self.request = request
        self.response = response

    def is_flexible(self, v: int) -> bool:
        return self.flex_since is not None and v >= self.flex_since

    def decode_request(self, r: Reader, v: int) -> dict:
        return decode(self.request, r, v, self.is_flexible(v))

    def encode_response(self, obj: dict, w: Writer, v: int) -> None:
        encode(self.response, obj, w, v, self.is_flexible(v))

    # Test-side helpers (a client's view): encode requests, decode responses.
    def encode_request(self, obj: dict, w: Writer, v: int) -> None:
        encode(self.request, obj, w, v, self.is_flexible(v))

    def decode_response(self, r: Reader, v: int) -> dict:
        return decode(self.response, r, v, self.is_flexible(v))
