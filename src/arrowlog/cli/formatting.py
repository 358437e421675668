"""How ``consume`` writes records, and how ``produce --json`` reads them back.

A record here is a plain tuple-like :class:`Record` built from a stored
batch; formatters turn it into the bytes written to stdout.

JSON lines (the default when stdout is not a terminal), one object a line::

    {"topic": "orders", "partition": 0, "offset": 7, "timestamp": 1714557600000,
     "key": "k1", "value": "hello", "headers": [{"key": "h", "value": "v"}]}

``key``, ``value`` and header values are text when they are valid UTF-8 and
null when absent; other bytes are written base64-encoded under
``key_base64`` / ``value_base64`` instead, so every record survives the trip.

Templates (kcat/rpk style), e.g. ``'%k %v %o %T\\n'``::

    %t topic      %p partition   %o offset      %T timestamp (epoch ms)
    %d timestamp (RFC 3339)      %k key         %v or %s value
    %K key length %V value length               %h headers (k=v,k=v)
    %H number of headers         %[ log start offset   %] high watermark
    %i records written so far    %% a percent sign
    \\n \\t \\r \\\\ \\xNN escapes
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .offsets import format_ms

__all__ = [
    "FormatError",
    "Record",
    "Formatter",
    "compile_template",
    "make_formatter",
    "parse_json_record",
    "record_to_json",
    "unescape",
]


class FormatError(ValueError):
    """A bad ``--format`` template or a bad ``produce --json`` line."""


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int  # epoch ms
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    log_start: int = 0
    high_watermark: int = 0


Formatter = Callable[[Record, int], bytes]


def _text_or_b64(obj: dict, name: str, data: bytes | None) -> None:
    if data is None:
        obj[name] = None
        return
    try:
        obj[name] = data.decode("utf-8")
    except UnicodeDecodeError:
        obj[name + "_base64"] = base64.b64encode(data).decode("ascii")


def record_to_json(rec: Record) -> dict:
    obj: dict = {
        "topic": rec.topic,
        "partition": rec.partition,
        "offset": rec.offset,
        "timestamp": rec.timestamp,
    }
    _text_or_b64(obj, "key", rec.key)
    _text_or_b64(obj, "value", rec.value)
    headers = []
    for k, v in rec.headers:
        h: dict = {"key": k}
        _text_or_b64(h, "value", v)
        headers.append(h)
    obj["headers"] = headers
    return obj


_quote = json.encoder.encode_basestring  # the C string encoder json.dumps itself uses


def _json_bytes_field(name: str, data: bytes | None) -> str:
    if data is None:
        return f'"{name}":null'
    try:
        return f'"{name}":{_quote(data.decode("utf-8"))}'
    except UnicodeDecodeError:
        return f'"{name}_base64":"{base64.b64encode(data).decode("ascii")}"'


def _json_formatter(rec: Record, count: int) -> bytes:
    """``json.dumps(record_to_json(rec))``, compact, written out by hand: 3x faster."""
    if rec.headers:
        hs = ",".join(f'{{"key":{_quote(k)},{_json_bytes_field("value", v)}}}' for k, v in rec.headers)
    else:
        hs = ""
    return (
        f'{{"topic":{_quote(rec.topic)},"partition":{rec.partition},"offset":{rec.offset},'
        f'"timestamp":{rec.timestamp},{_json_bytes_field("key", rec.key)},'
        f'{_json_bytes_field("value", rec.value)},"headers":[{hs}]}}\n'
    ).encode()


def _text_formatter(rec: Record, count: int) -> bytes:
    return (rec.value or b"") + b"\n"


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "0": "\0"}


def unescape(text: str) -> str:
    """Backslash escapes as typed on a command line: ``\\n \\t \\r \\\\ \\xNN``."""
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "x":
            digits = text[i + 2 : i + 4]
            try:
                out.append(chr(int(digits, 16)))
            except ValueError:
                raise FormatError(f"bad escape \\x{digits!s}: expected two hex digits") from None
            if len(digits) != 2:
                raise FormatError(f"bad escape \\x{digits!s}: expected two hex digits")
            i += 4
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _headers_text(rec: Record) -> bytes:
    return b",".join(k.encode() + b"=" + (v or b"") for k, v in rec.headers)


_TOKENS: dict[str, Callable[[Record, int], bytes]] = {
    "t": lambda r, i: r.topic.encode(),
    "p": lambda r, i: str(r.partition).encode(),
    "o": lambda r, i: str(r.offset).encode(),
    "T": lambda r, i: str(r.timestamp).encode(),
    "d": lambda r, i: format_ms(r.timestamp).encode(),
    "k": lambda r, i: r.key or b"",
    "v": lambda r, i: r.value or b"",
    "s": lambda r, i: r.value or b"",
    "K": lambda r, i: str(-1 if r.key is None else len(r.key)).encode(),
    "V": lambda r, i: str(-1 if r.value is None else len(r.value)).encode(),
    "S": lambda r, i: str(-1 if r.value is None else len(r.value)).encode(),
    "h": lambda r, i: _headers_text(r),
    "H": lambda r, i: str(len(r.headers)).encode(),
    "[": lambda r, i: str(r.log_start).encode(),
    "]": lambda r, i: str(r.high_watermark).encode(),
    "i": lambda r, i: str(i).encode(),
}


def compile_template(template: str) -> Formatter:
    """Compile a ``%k %v\\n`` template into a formatter; unknown tokens are errors."""
    text = unescape(template)
    parts: list[bytes | Callable[[Record, int], bytes]] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "%":
            literal.append(ch)
            i += 1
            continue
        if i + 1 == len(text):
            raise FormatError("bad format: it ends with a lone '%' (write %% for a percent sign)")
        tok = text[i + 1]
        i += 2
        if tok == "%":
            literal.append("%")
            continue
        fn = _TOKENS.get(tok)
        if fn is None:
            known = " ".join("%" + t for t in _TOKENS)
            shown = "%" + tok if tok.isprintable() else repr("%" + tok)
            raise FormatError(f"bad format: unknown token {shown} (known: {known} %%)")
        if literal:
            parts.append("".join(literal).encode())
            literal = []
        parts.append(fn)
    if literal:
        parts.append("".join(literal).encode())

    def fmt(rec: Record, count: int) -> bytes:
        return b"".join(p if isinstance(p, bytes) else p(rec, count) for p in parts)

    return fmt


def make_formatter(fmt: str) -> Formatter:
    """``json`` (JSON lines), ``text`` (the value, one a line) or a template."""
    name = fmt.strip().lower()
    if name in ("json", "jsonl"):
        return _json_formatter
    if name == "text":
        return _text_formatter
    if "%" not in fmt:
        raise FormatError(f"bad format {fmt!r}: expected json, text or a template such as '%k %v\\n'")
    return compile_template(fmt)


# ---------------------------------------------------------------- produce --json


def _bytes_field(obj: dict, name: str, line_no: int) -> bytes | None:
    b64 = obj.get(name + "_base64")
    if b64 is not None:
        try:
            return base64.b64decode(b64, validate=True)
        except (ValueError, TypeError):
            raise FormatError(f"line {line_no}: {name}_base64 is not valid base64") from None
    v = obj.get(name)
    if v is None:
        return None
    if isinstance(v, str):
        return v.encode("utf-8")
    # Any other JSON value is stored as its compact JSON text.
    return json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _headers_field(raw: object, line_no: int) -> list[tuple[str, bytes | None]]:
    if raw is None:
        return []
    items: Iterable
    if isinstance(raw, dict):
        items = ({"key": k, "value": v} for k, v in raw.items())
    elif isinstance(raw, list):
        items = raw
    else:
        raise FormatError(f"line {line_no}: headers must be an object or a list of {{key, value}}")
    out = []
    for h in items:
        if not isinstance(h, dict) or not isinstance(h.get("key"), str):
            raise FormatError(f"line {line_no}: each header needs a string 'key'")
        out.append((h["key"], _bytes_field(h, "value", line_no)))
    return out


@dataclass
class ProduceRecord:
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    partition: int | None = None
    timestamp: int | None = None


def parse_json_record(line: bytes | str, line_no: int = 1) -> ProduceRecord:
    """One ``produce --json`` line: the same object ``consume`` writes
    (``key``, ``value``, ``headers``, optional ``partition`` and ``timestamp``)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise FormatError(f"line {line_no}: not JSON ({e.msg})") from None
    except UnicodeDecodeError as e:
        raise FormatError(f"line {line_no}: not UTF-8 ({e.reason} at byte {e.start})") from None
    if not isinstance(obj, dict):
        raise FormatError(f"line {line_no}: expected a JSON object with key/value/headers")
    partition = obj.get("partition")
    if partition is not None and (not isinstance(partition, int) or partition < 0):
        raise FormatError(f"line {line_no}: partition must be a non-negative integer")
    ts = obj.get("timestamp")
    if ts is not None and not isinstance(ts, int):
        raise FormatError(f"line {line_no}: timestamp must be epoch milliseconds")
    return ProduceRecord(
        value=_bytes_field(obj, "value", line_no),
        key=_bytes_field(obj, "key", line_no),
        headers=_headers_field(obj.get("headers"), line_no),
        partition=partition,
        timestamp=ts,
    )
