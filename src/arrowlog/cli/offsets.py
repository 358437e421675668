"""rpk's offset grammar for ``consume -o`` and ``export --start/--end``.

Pure functions: parsing never touches the log, and resolution takes the
partition's watermarks and a timestamp lookup as arguments, so every case is
unit-tested without a data directory.

Grammar (``-o EXPR``)::

    start | beginning | earliest | oldest   from the log start offset
    end | latest | newest                   from the high watermark (new records only)
    :end                                   from the start up to the current end
    N | N:                                 from offset N
    :N                                     from the start up to offset N (exclusive)
    N:M                                    offsets N (inclusive) to M (exclusive)
    +N                                     N records after the log start offset
    -N                                     the last N records
    @T | @T:                               from the first record with timestamp >= T
    @:T                                    from the start up to timestamp T
    @T1:T2                                 timestamps T1 (inclusive) to T2 (exclusive)

TIME (``T``)::

    1714557600000          13-digit epoch milliseconds
    1714557600             9- or 10-digit epoch seconds
    2024-05-01             a date (midnight UTC)
    2024-05-01T10:00:00Z   RFC 3339 (a missing zone means UTC)
    -1h, -90s, -1h30m      a duration before now (units ms s m h d w)
    +10m                   as T2 only: that long after T1
    now, end               the current time (``end`` as T2 only)
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Bound",
    "OffsetRange",
    "OffsetSpec",
    "OffsetSyntaxError",
    "format_ms",
    "now_ms",
    "parse_duration_ms",
    "parse_offset_spec",
    "parse_time_ms",
    "resolve_bound",
    "resolve_range",
]

# Bound kinds.
START = "start"  # log start offset
END = "end"  # high watermark, read when the range is resolved
OFFSET = "offset"  # an exact offset
AFTER_START = "after_start"  # +N
BEFORE_END = "before_end"  # -N
TIME = "time"  # epoch ms, resolved through the time index

_START_WORDS = {"start", "beginning", "earliest", "oldest", "first"}
_END_WORDS = {"end", "latest", "newest", "last"}

_DURATION_UNITS_MS = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 7 * 86_400_000,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT = re.compile(r"^\d+$")
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write


class OffsetSyntaxError(ValueError):
    """An offset or time expression that does not parse; the message names the problem."""


@dataclass(frozen=True)
class Bound:
    """One end of an offset range, before it is resolved against a partition."""

    kind: str
    value: int = 0

    def describe(self) -> str:
        if self.kind == TIME:
            return "@" + format_ms(self.value)
        if self.kind == AFTER_START:
            return f"+{self.value}"
        if self.kind == BEFORE_END:
            return f"-{self.value}"
        if self.kind == OFFSET:
            return str(self.value)
        return self.kind


@dataclass(frozen=True)
class OffsetSpec:
    """A parsed ``-o`` expression: where to start and (optionally) where to stop.

    ``end`` is None for an open range: the reader stops at the high watermark
    it sees (``-e``) or keeps waiting for new records (``-f``).
    """

    start: Bound
    end: Bound | None = None


@dataclass(frozen=True)
class OffsetRange:
    """A spec resolved against one partition: read offsets ``start <= o < end``.

    ``end`` None means open ended. ``clamped`` says the requested start was
    below the log start offset (retention removed it) and was moved up.
    """

    start: int
    end: int | None
    clamped: bool = False


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_ms(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with millisecond precision."""
    t = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_duration_ms(text: str) -> int:
    """``1h30m`` → 5_400_000. Unsigned; the caller applies the sign."""
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS_MS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise OffsetSyntaxError(f"bad duration {text!r}: expected e.g. 90s, 15m, 1h30m, 2d")
    return int(total)


def parse_time_ms(text: str, *, now: int | None = None, base: int | None = None, end: bool = False) -> int:
    """Parse one TIME of the grammar to epoch milliseconds, kept within
    1970-01-01 .. 9999-12-31 (times outside mean "before/after every record").

    ``now`` is the current time (ms) for durations; ``base`` is T1, against
    which a ``+duration`` T2 is measured; ``end`` allows the word ``end``.
    """
    return min(max(_parse_time_ms(text, now, base, end), 0), MAX_TIME_MS)


def _parse_time_ms(text: str, now: int | None, base: int | None, end: bool) -> int:
    s = text.strip()
    if not s:
        raise OffsetSyntaxError("empty time")
    current = now_ms() if now is None else now
    low = s.lower()
    if low == "now" or (end and low == "end"):
        return current
    if _INT.match(s):
        if len(s) == 13:
            return int(s)
        if len(s) in (9, 10):
            return int(s) * 1000
        raise OffsetSyntaxError(
            f"ambiguous epoch time {s!r}: use 13 digits for milliseconds or 9-10 digits for seconds"
        )
    if s[0] in "+-" and s[1:2].isdigit() and not _DATE.match(s[1:]):
        amount = parse_duration_ms(s[1:])
        if s[0] == "-":
            return current - amount
        return (current if base is None else base) + amount
    if _DATE.match(s):
        try:
            d = _dt.datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=_dt.timezone.utc)
        except ValueError:
            raise OffsetSyntaxError(f"bad date {s!r}: expected YYYY-MM-DD") from None
        return int(d.timestamp()) * 1000
    try:
        t = _dt.datetime.fromisoformat(s.replace("z", "Z"))
    except ValueError:
        raise OffsetSyntaxError(
            f"bad time {s!r}: expected epoch ms, a date (2024-05-01), RFC 3339 "
            "(2024-05-01T10:00:00Z) or a duration (-1h)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return round(t.timestamp() * 1000)


def _parse_offset(text: str, expr: str) -> int:
    if not _INT.match(text):
        raise OffsetSyntaxError(f"bad offset expression {expr!r}: {text!r} is not an offset")
    return int(text)


def _split_times(body: str, expr: str, now: int) -> OffsetSpec:
    """``T``, ``T:``, ``:T`` or ``T1:T2``; RFC 3339 times contain colons too,
    so try the whole text first, then every colon until both sides parse."""
    try:
        return OffsetSpec(Bound(TIME, parse_time_ms(body, now=now)))
    except OffsetSyntaxError as e:
        first_error = e
    for i, ch in enumerate(body):
        if ch != ":":
            continue
        left, right = body[:i], body[i + 1 :]
        try:
            start = Bound(START) if left == "" else Bound(TIME, parse_time_ms(left, now=now))
            if right == "":
                end = None
            elif right.lower() == "end":
                end = Bound(END)
            else:
                base = start.value if start.kind == TIME else None
                end = Bound(TIME, parse_time_ms(right, now=now, base=base))
        except OffsetSyntaxError:
            continue
        if left == "" and end is None:
            break
        return OffsetSpec(start, end)
    raise OffsetSyntaxError(f"bad offset expression {expr!r}: {first_error}")


def parse_offset_spec(expr: str, *, now: int | None = None) -> OffsetSpec:
    """Parse an ``-o`` expression (see the module docstring)."""
    s = expr.strip()
    if not s:
        raise OffsetSyntaxError("empty offset expression")
    current = now_ms() if now is None else now
    low = s.lower()
    if low in _START_WORDS:
        return OffsetSpec(Bound(START))
    if low in _END_WORDS:
        return OffsetSpec(Bound(END))
    if s.startswith("@"):
        return _split_times(s[1:], expr, current)
    if s[0] == "+":
        return OffsetSpec(Bound(AFTER_START, _parse_offset(s[1:], expr)))
    if s[0] == "-":
        return OffsetSpec(Bound(BEFORE_END, _parse_offset(s[1:], expr)))
    if ":" in s:
        left, _, right = s.partition(":")
        start = Bound(START) if left == "" or left.lower() in _START_WORDS else Bound(
            OFFSET, _parse_offset(left, expr)
        )
        if right == "":
            end = None
        elif right.lower() in _END_WORDS:
            end = Bound(END)
        else:
            end = Bound(OFFSET, _parse_offset(right, expr))
        if start.kind == OFFSET and end is not None and end.kind == OFFSET and end.value < start.value:
            raise OffsetSyntaxError(f"bad offset expression {expr!r}: end {end.value} is before start {start.value}")
        return OffsetSpec(start, end)
    if _INT.match(s):
        return OffsetSpec(Bound(OFFSET, int(s)))
    raise OffsetSyntaxError(
        f"bad offset expression {expr!r}: expected start, end, N, -N, +N, N:M, @TIME or @T1:T2"
    )


def resolve_bound(
    bound: Bound,
    log_start: int,
    high_watermark: int,
    offset_for_time: Callable[[int], int | None],
) -> int:
    """One bound as an offset of a partition with these watermarks.

    ``offset_for_time(ms)`` is the first offset whose timestamp is >= ms, or
    None when there is none (then the high watermark is used).
    """
    kind = bound.kind
    if kind == START:
        return log_start
    if kind == END:
        return high_watermark
    if kind == OFFSET:
        return bound.value
    if kind == AFTER_START:
        return log_start + bound.value
    if kind == BEFORE_END:
        return max(log_start, high_watermark - bound.value)
    if kind == TIME:
        found = offset_for_time(bound.value)
        return high_watermark if found is None else max(found, log_start)
    raise ValueError(f"unknown bound kind {kind!r}")


def resolve_range(
    spec: OffsetSpec,
    log_start: int,
    high_watermark: int,
    offset_for_time: Callable[[int], int | None],
    *,
    stop_at_end: bool = False,
) -> OffsetRange:
    """Resolve a spec against one partition.

    ``stop_at_end`` closes an open range at the current high watermark (``-e``).
    """
    start = resolve_bound(spec.start, log_start, high_watermark, offset_for_time)
    clamped = start < log_start
    if clamped:
        start = log_start
    if spec.end is not None:
        end: int | None = resolve_bound(spec.end, log_start, high_watermark, offset_for_time)
    elif stop_at_end:
        end = high_watermark
    else:
        end = None
    if end is not None and end < start:
        end = start
    return OffsetRange(start, end, clamped)
