"""Compatibility checks between schema versions, per Confluent's modes.

``can_read(reader, writer)`` says whether data written with ``writer`` can be
read with ``reader``: Avro's schema-resolution rules, and for JSON Schema
"every document the writer accepts, the reader accepts" on the structural
subset (types, properties, required, additionalProperties, items, enum).

Modes: BACKWARD (the new schema reads data of the latest), FORWARD (the latest
reads data of the new), FULL (both), their _TRANSITIVE forms (against every
earlier version, not only the latest) and NONE.
"""

from __future__ import annotations

from typing import Any

MODES = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE")
DEFAULT_MODE = "BACKWARD"

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}
_NAMED = ("record", "enum", "fixed", "error")
_PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")


class _Names:
    """Named Avro types of one schema, so references by name resolve."""

    def __init__(self, schema: Any):
        self.types: dict[str, dict] = {}
        stack: list[tuple[Any, str | None]] = [(schema, None)]
        while stack:
            s, ns = stack.pop()
            if isinstance(s, list):
                stack.extend((b, ns) for b in s)
            elif isinstance(s, dict):
                t = s.get("type")
                if t in _NAMED:
                    full = self.fullname(s, ns)
                    self.types.setdefault(full, s)
                    self.types.setdefault(full.rsplit(".", 1)[-1], s)
                    ns = full.rpartition(".")[0] or None
                    if t in ("record", "error"):
                        stack.extend((f.get("type"), ns) for f in s.get("fields", []))
                elif t == "array":
                    stack.append((s.get("items"), ns))
                elif t == "map":
                    stack.append((s.get("values"), ns))
                elif isinstance(t, (dict, list)):
                    stack.append((t, ns))

    @staticmethod
    def fullname(s: dict, ns: str | None) -> str:
        name = s.get("name", "")
        if "." in name:
            return name
        space = s.get("namespace", ns)
        return f"{space}.{name}" if space else name

    def resolve(self, s: Any) -> Any:
        while True:
            if isinstance(s, str) and s not in _PRIMITIVES:
                s = self.types.get(s, s)
            elif isinstance(s, dict) and isinstance(s.get("type"), (str, list, dict)) and \
                    s["type"] not in _NAMED + ("array", "map") and set(s) - {"logicalType", "doc"} == {"type"}:
                s = s["type"]          # {"type": "string"} is "string"
            else:
                return s


def _kind(s: Any) -> str | None:
    if isinstance(s, list):
        return "union"
    if isinstance(s, dict):
        return "record" if s.get("type") == "error" else s.get("type")
    return s


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def avro_can_read(reader: Any, writer: Any) -> bool:
    rn, wn = _Names(reader), _Names(writer)
    seen: set[tuple[int, int]] = set()
    # A reader union's branches by (kind, short name or alias) for named types, so a
    # writer branch of a named type is checked only against the branches that could
    # match it (check() refuses the others at once): trying all of them made a union of
    # n named records against another cost n * n checks. Keyed by the union's id.
    by_name: dict[int, tuple[dict[tuple[str, str], list], list]] = {}

    def branches(union: list, w: Any, kw: Any) -> list:
        """The branches of reader ``union`` that check() may accept for writer ``w``."""
        if kw not in ("record", "enum", "fixed"):
            return union
        if id(union) not in by_name:
            named: dict[tuple[str, str], list] = {}
            other = []
            for b in union:
                rb = rn.resolve(b)
                kb = _kind(rb)
                if kb in ("record", "enum", "fixed"):
                    for name in {_short(rb.get("name", "")), *(_short(a) for a in rb.get("aliases", []))}:
                        named.setdefault((kb, name), []).append(b)
                elif kb == "union":    # not valid Avro; checked as before
                    other.append(b)
            by_name[id(union)] = (named, other)
        named, other = by_name[id(union)]
        return named.get((kw, _short(w.get("name", ""))), []) + other

    def check(r: Any, w: Any) -> bool:
        r, w = rn.resolve(r), wn.resolve(w)
        kr, kw = _kind(r), _kind(w)
        if kw == "union":
            return all(check(r, b) for b in w)
        if kr == "union":
            return any(check(b, w) for b in branches(r, w, kw))
        if kr != kw:
            return isinstance(kw, str) and kr in _PROMOTIONS.get(kw, ())
        if kr in _PRIMITIVES:
            return True
        if kr == "array":
            return check(r.get("items"), w.get("items"))
        if kr == "map":
            return check(r.get("values"), w.get("values"))
        if _short(r.get("name", "")) != _short(w.get("name", "")) and \
                _short(w.get("name", "")) not in [_short(a) for a in r.get("aliases", [])]:
            return False
        if kr == "fixed":
            return r.get("size") == w.get("size")
        if kr == "enum":
            return "default" in r or set(w.get("symbols", [])) <= set(r.get("symbols", []))
        pair = (id(r), id(w))
        if pair in seen:             # a recursive type: assume what is being proven
            return True
        seen.add(pair)
        wfields = {}
        for f in w.get("fields", []):
            wfields[f["name"]] = f
        for f in r.get("fields", []):
            match = next((wfields[n] for n in [f["name"], *f.get("aliases", [])] if n in wfields), None)
            if match is None:
                if "default" not in f:
                    return False
            elif not check(f["type"], match["type"]):
                return False
        return True

    return check(reader, writer)


def _types(s: dict) -> set[str] | None:
    t = s.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else set(t)


def json_can_read(reader: Any, writer: Any) -> bool:
    """Does ``reader`` accept every document ``writer`` accepts (structural subset)?"""
    if reader is True or reader == {}:
        return True
    if writer is False:
        return True
    if reader is False or writer is True:
        return False
    rt, wt = _types(reader), _types(writer)
    if rt is not None:
        if wt is None:
            return False
        widened = rt | ({"integer"} if "number" in rt else set())
        if not wt <= widened:
            return False
    if "enum" in reader and not ("enum" in writer and set(map(repr, writer["enum"])) <=
                                 set(map(repr, reader["enum"]))):
        return False
    rprops, wprops = reader.get("properties") or {}, writer.get("properties") or {}
    if rprops or wprops or "required" in reader:
        if not set(reader.get("required") or []) <= set(writer.get("required") or []):
            return False
        w_open = writer.get("additionalProperties", True) is not False
        r_closed = reader.get("additionalProperties", True) is False
        for name, wp in wprops.items():
            if name in rprops:
                if not json_can_read(rprops[name], wp):
                    return False
            elif r_closed:
                return False
        if r_closed and w_open:
            return False
        for name, rp in rprops.items():
            if name not in wprops and w_open and not json_can_read(rp, True):
                # the writer allows any value under this name: the reader must too
                return False
    if "items" in reader and isinstance(reader["items"], (dict, bool)):
        if not json_can_read(reader["items"], writer.get("items", True)):
            return False
    return True


def can_read(schema_type: str, reader: Any, writer: Any) -> bool:
    if schema_type == "AVRO":
        return avro_can_read(reader, writer)
    return json_can_read(reader, writer)


def compatible(mode: str, schema_type: str, new: Any, earlier: list[Any]) -> list[str]:
    """Reasons ``new`` breaks ``mode`` against ``earlier`` (oldest first); empty when compatible."""
    if mode == "NONE" or not earlier:
        return []
    against = earlier if mode.endswith("_TRANSITIVE") else earlier[-1:]
    base = mode.replace("_TRANSITIVE", "")
    problems = []
    for i, old in enumerate(against):
        which = "the latest version" if len(against) == 1 else f"earlier version #{i + 1}"
        if base in ("BACKWARD", "FULL") and not can_read(schema_type, new, old):
            problems.append(f"the new schema cannot read data written with {which} ({base})")
        if base in ("FORWARD", "FULL") and not can_read(schema_type, old, new):
            problems.append(f"{which} cannot read data written with the new schema ({base})")
    return problems
