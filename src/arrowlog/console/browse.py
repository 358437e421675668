"""What the console shows, read from a data directory: topics, records, groups.

Everything here returns plain values (strings, ints, lists); the templates
escape them. Seeking goes through the indexes, never a bounded scan:

- by offset: ``PartitionLog.read`` finds the frame through the offset index;
- by time: ``PartitionLog.offset_for_timestamp`` through the time index;
- by key: the key is routed to its partition with murmur2 (Kafka's default
  partitioner, as the Producer does), and that one partition is scanned with
  Arrow compute from a given offset; a scan that runs out of its time budget
  says where it stopped, so the next page goes on from there and no record is
  skipped (the pitfall of consoles whose search scans only the last N).

The produce-rate chart needs no sampling either: the records written in a
minute are the difference of the time index's offsets at its two ends.
"""

from __future__ import annotations

import codecs
import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from struct import error as struct_error
from typing import Any, overload

import pyarrow as pa
import pyarrow.compute as pc

from .._native import core
from ..errors import ArrowlogError, ConfigError
from ..groups.admin import GroupAdmin, GroupDescription, MemberDescription, PartitionLag
from ..groups.store import UnknownGroupError
from ..metrics import lag_seconds, server_groups
from ..storage.reader import RangeReader

# Rows on one page of the message browser, and the most a request may ask for.
PAGE_ROWS = 20
MAX_PAGE_ROWS = 500
# Bytes read per call while paging or scanning (whole frames; the first may be larger).
READ_BYTES = 1 << 20
# Seconds one key-search request may scan before it returns a "continue from" offset.
KEY_SCAN_BUDGET_S = 2.0
# Minutes of the produce-rate chart.
RATE_MINUTES = 15
# A value longer than this is cut when shown (the full length is shown next to it).
SHOW_BYTES = 4096
# Headers shown per record, at most (the rest are counted).
MAX_HEADERS = 32
# Topics and partitions decoded from one member's subscription or assignment, at most.
MAX_DECODED = 100_000


@dataclass
class Shown:
    """A key, value or header value as it is shown: its kind (null, json, text,
    binary, typed) and its text."""
    kind: str
    text: str
    size: int = 0


@dataclass
class Row:
    partition: int
    offset: int
    timestamp: str
    key: Shown
    value: Shown
    headers: list[tuple[str, Shown]] = field(default_factory=list)


@dataclass
class Page:
    topic: str
    partition: int
    rows: list[Row]
    log_start_offset: int
    high_watermark: int
    start: int                    # the offset the page was read from
    prev: int | None              # offset of the previous page, None at the start
    next: int | None              # offset of the next page, None at the end
    note: str = ""


def show_bytes(data: bytes | None, size: int | None = None) -> Shown:
    """Decode for display: JSON (pretty), UTF-8 text, or hex for anything else.
    ``data`` may be the first SHOW_BYTES of a longer value of ``size`` bytes."""
    if data is None:
        return Shown("null", "null")
    size = len(data) if size is None else size
    head = data[:SHOW_BYTES]
    try:  # a character cut by SHOW_BYTES is left out, not taken for binary
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=size <= len(head))
    except UnicodeDecodeError:
        return Shown("binary", head.hex(" "), size)
    if size <= SHOW_BYTES:
        try:
            return Shown("json", json.dumps(json.loads(text), indent=2, ensure_ascii=False), size)
        except ValueError:
            pass
    return Shown("text", text, size)


def show_typed(value: Any) -> Shown:
    return Shown("typed", json.dumps(value, default=str, indent=2, ensure_ascii=False))


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MS = _dt.timedelta(milliseconds=1)


def iso_ms(ms: int) -> str:
    """``ms`` as ISO 8601 UTC; as the number itself outside years 1..9999 (a producer may
    stamp a record with any int64: such a record is shown, not a 500)."""
    try:
        return (_EPOCH + ms * _MS).isoformat(timespec="milliseconds")   # exact: no float seconds
    except OverflowError:
        return f"{ms} ms (outside years 1..9999)"


# 9999-12-31T23:59:59.999Z, the last instant a datetime (iso_ms) can show: a later time was a 500
MAX_TIME_MS = 253_402_300_799_999


def parse_time(text: str) -> int:
    """Epoch ms from ``2026-12-06T14:00:00`` (UTC unless an offset is given), or from digits (ms),
    in 1970..9999; ConfigError otherwise."""
    text = (text or "").strip()
    want = f"time {text[:64]!r}: want ISO 8601 (2026-12-06T14:00:00, UTC) or epoch milliseconds"
    if text.isascii() and text.isdigit():   # ("²".isdigit(), but int() refuses it)
        ms = int(text) if len(text) <= 16 else MAX_TIME_MS + 1   # (int() refuses 4,301 digits)
    else:
        try:
            t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if t.tzinfo is None:
                t = t.replace(tzinfo=_dt.timezone.utc)
            ms = (t - _EPOCH) // _MS
        except (ValueError, OverflowError):   # not a time, or one whose offset leaves year 1..9999
            raise ConfigError(want) from None
    if not 0 <= ms <= MAX_TIME_MS:
        raise ConfigError(f"{want}, from 1970 to 9999")
    return ms


@overload
def parse_int(text: Any, what: str, default: int) -> int: ...
@overload
def parse_int(text: Any, what: str, default: None = None) -> int | None: ...
def parse_int(text: Any, what: str, default: int | None = None) -> int | None:
    if text is None or str(text).strip() == "":
        return default
    try:
        return int(str(text).strip())
    except ValueError:
        raise ConfigError(f"{what} {text!r} is not an integer") from None


def _heads(column: pa.Array) -> tuple[list, list]:
    """(the first SHOW_BYTES of each binary value, each full length): only the
    shown part is copied out of the mapped segment, however large the values."""
    return (pc.binary_slice(column, 0, SHOW_BYTES).to_pylist(), pc.binary_length(column).to_pylist())


def _rows(topic: str, partition: int, batch: pa.RecordBatch, indices: Any = None) -> list[Row]:
    if indices is not None:
        batch = batch.take(indices)
    typed = pa.types.is_struct(batch.schema.field("value").type)
    keys, key_sizes = _heads(batch.column("key"))
    if typed:
        values, value_sizes = batch.column("value").to_pylist(), [None] * batch.num_rows
    else:
        values, value_sizes = _heads(batch.column("value"))
    headers = pc.list_slice(batch.column("headers"), 0, MAX_HEADERS).to_pylist()
    header_counts = pc.list_value_length(batch.column("headers")).to_pylist()
    offsets = batch.column("offset").to_pylist()
    stamps = batch.column("timestamp").cast(pa.int64()).to_pylist()
    out = []
    for i in range(batch.num_rows):
        shown = [(str(h["key"])[:SHOW_BYTES], show_bytes(h["value"])) for h in (headers[i] or [])]
        if (header_counts[i] or 0) > MAX_HEADERS:
            shown.append(("…", Shown("text", f"{header_counts[i] - MAX_HEADERS} more headers")))
        out.append(Row(partition, offsets[i], "" if stamps[i] is None else iso_ms(stamps[i]),
                       show_bytes(keys[i], key_sizes[i]),
                       show_typed(values[i]) if typed else show_bytes(values[i], value_sizes[i]), shown))
    return out


def decode_subscription(metadata: bytes) -> list[str]:
    """The topics of a Kafka consumer-protocol subscription (``version i16,
    topics [string], ...``); [] when it is not one (another protocol, or damaged)."""
    from ..server.wire import ProtocolError, Reader

    try:
        r = Reader(metadata, max_elements=MAX_DECODED)
        r.int16()
        return [t for t in (r.string(False) for _ in range(r.array_length(False))) if t]
    except (ProtocolError, ValueError, IndexError, struct_error):
        return []


def decode_assignment(data: bytes) -> list[tuple[str, int]]:
    """The partitions of a consumer-protocol assignment (``version i16,
    [topic string, [partition i32]], user_data``); [] when it is not one."""
    from ..server.wire import ProtocolError, Reader

    try:
        r = Reader(data, max_elements=MAX_DECODED)
        r.int16()
        out: list[tuple[str, int]] = []
        for _ in range(r.array_length(False)):
            topic = r.string(False) or ""
            out.extend((topic, r.int32()) for _ in range(r.array_length(False)))
        return sorted(out)
    except (ProtocolError, ValueError, IndexError, struct_error):
        return []


class Browser:
    """Read-only views of one data directory for the console; ``coordinator``:
    the Kafka server's GroupCoordinator, whose members live only in its memory."""

    def __init__(self, logdir: Any, coordinator: Any = None):
        self.logdir = logdir
        self.admin = GroupAdmin(logdir)
        self.coordinator = coordinator

    # -- topics -------------------------------------------------------------------

    def topics(self, now_ms: int | None = None) -> list[dict]:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        out = []
        for name in self.logdir.list_topics():
            try:
                t = self.logdir.topic(name)
                parts = t.partitions()
            except (ArrowlogError, OSError):
                continue
            records = size = 0
            for pl in parts:
                low, high = pl.watermarks()
                records += high - low
                size += pl.size_bytes()
            out.append({"name": name, "partitions": len(parts), "records": records, "bytes": size,
                        "retention_ms": t.config.get("retention.ms"),
                        "retention_bytes": t.config.get("retention.bytes"),
                        "cleanup_policy": t.config.get("cleanup.policy", "delete"),
                        "rate": self.produce_rate(parts, now_ms)})
        return out

    @staticmethod
    def produce_rate(parts: list, now_ms: int, minutes: int = RATE_MINUTES) -> list[int]:
        """Records produced in each of the last ``minutes`` minutes (oldest first),
        from the time index: offset at the minute's end minus offset at its start."""
        edges = [now_ms - (minutes - i) * 60_000 for i in range(minutes + 1)]
        totals = [0] * len(edges)
        for pl in parts:
            high = pl.high_watermark
            for i, ts in enumerate(edges):
                found = pl.offset_for_timestamp(ts)
                totals[i] += high if found is None else found
        return [max(0, b - a) for a, b in zip(totals, totals[1:])]

    # -- records ------------------------------------------------------------------

    def partition(self, topic: str, partition: int):
        return self.logdir.topic(topic).partition(partition)

    def page(self, topic: str, partition: int, start: int | None, rows: int = PAGE_ROWS) -> Page:
        """``rows`` records from offset ``start`` (clamped into the log; None: the newest page)."""
        pl = self.partition(topic, partition)
        low, high = pl.watermarks()
        if start is None:
            start = high - rows
        start = min(max(start, low), high)
        found: list[Row] = []
        reader = RangeReader(pl, start, high)  # offsets may have gaps (compaction): read until the page is full
        while not reader.done and len(found) < rows:
            frames = reader.read(READ_BYTES)
            if not frames:
                break
            for fr in frames:  # each starts at the cursor: sliced by the reader
                take = min(fr.rows, rows - len(found))
                found.extend(_rows(topic, partition, fr.batch.slice(0, take)))
                if len(found) >= rows:
                    break
        nxt = found[-1].offset + 1 if found else start
        return Page(topic, partition, found, low, high, start,
                    prev=max(low, start - rows) if start > low else None,
                    next=nxt if nxt < high else None)

    def seek_time(self, topic: str, partition: int, ts_ms: int, rows: int = PAGE_ROWS) -> Page:
        """The page starting at the first record at or after ``ts_ms`` (time index)."""
        pl = self.partition(topic, partition)
        found = pl.offset_for_timestamp(ts_ms)
        page = self.page(topic, partition, pl.high_watermark if found is None else found, rows)
        page.note = f"first record at or after {iso_ms(ts_ms)}: offset {page.start}" if found is not None else \
            f"no record at or after {iso_ms(ts_ms)}"
        return page

    def key_partition(self, topic: str, key: bytes) -> int:
        return core.murmur2_partition(key, self.logdir.topic(topic).num_partitions)

    def search_key(self, topic: str, key: bytes, start: int | None = None, rows: int = PAGE_ROWS,
                   budget_s: float = KEY_SCAN_BUDGET_S) -> Page:
        """Records whose key is ``key``, in the partition murmur2 routes it to,
        from offset ``start``; ``next`` is where the scan stopped (more matches,
        or the time budget ran out) and None once the partition is scanned."""
        partition = self.key_partition(topic, key)
        pl = self.partition(topic, partition)
        low, high = pl.watermarks()
        pos = min(max(low if start is None else start, low), high)
        first = pos
        found: list[Row] = []
        deadline = time.monotonic() + budget_s
        scalar = pa.scalar(key, pa.binary())
        reader = RangeReader(pl, pos, high)
        while not reader.done and len(found) < rows and time.monotonic() < deadline:
            frames = reader.read(READ_BYTES)
            if not frames:
                break
            for fr in frames:  # each starts at the cursor: sliced by the reader
                batch = fr.batch
                hits = pc.indices_nonzero(pc.fill_null(pc.equal(batch.column("key"), scalar), False))
                hits = hits.slice(0, rows - len(found))
                found.extend(_rows(topic, partition, batch, hits))
                pos = (batch.column(0)[hits[-1].as_py()].as_py() + 1 if len(found) >= rows
                       else max(pos, fr.next_offset))
                if len(found) >= rows:
                    break
        if len(found) < rows:
            pos = reader.position  # past a range retention deleted meanwhile, too
        note = f"key routed by murmur2 to partition {partition}; scanned offsets {first}..{pos - 1}"
        if pos < high and len(found) < rows:
            note += " (time budget reached: continue for the rest)"
        return Page(topic, partition, found, low, high, first, prev=None, next=pos if pos < high else None,
                    note=note)

    # -- groups -------------------------------------------------------------------

    def groups(self) -> list[dict]:
        out = []
        served = server_groups(self.coordinator)
        for g in sorted(set(self.admin.list_groups()) | set(served)):
            try:
                d = self.describe(g, served)
            except ArrowlogError:
                continue
            out.append({"name": g, "state": d.state, "members": len(d.members), "lag": d.total_lag,
                        "topics": sorted({p.topic for p in d.partitions})})
        return out

    def describe(self, group: str, served: dict | None = None) -> GroupDescription:
        """GroupAdmin.describe, with the members of the Kafka server's group of that
        name (their subscriptions and assignments decoded) when there is one."""
        served = server_groups(self.coordinator) if served is None else served
        if group not in served:
            return self.admin.describe(group)
        state, members = served[group]
        try:
            d = self.admin.describe(group)
        except UnknownGroupError:  # members over the wire, nothing committed yet
            d = GroupDescription(group, state, 0, [], [])
        known = {(p.topic, p.partition) for p in d.partitions}
        owners = {}
        # a wire member is also a member file (groups/wire.py): listed once, as the server knows it
        files = {m.member_id: m for m in d.members}
        d.members = [m for m in d.members if m.member_id not in {s.member_id for s in members}]
        for m in members:
            subscription, assignment = decode_subscription(m.subscription), decode_assignment(m.assignment)
            pid = files[m.member_id].pid if m.member_id in files else 0
            d.members.append(MemberDescription(m.member_id, m.client_id, pid, m.client_host, subscription,
                                               assignment))
            owners.update({tp: m.member_id for tp in assignment})
            for topic in subscription:  # partitions it reads but has not committed for
                if self.logdir.has_topic(topic):
                    for pl in self.logdir.topic(topic).partitions():
                        if (topic, pl.partition) not in known:
                            low, high = pl.watermarks()
                            d.partitions.append(PartitionLag(topic, pl.partition, None, low, high, None, None))
                            known.add((topic, pl.partition))
        for p in d.partitions:
            if p.owner is None and (p.topic, p.partition) in owners:
                p.owner = owners[(p.topic, p.partition)]
        d.partitions.sort(key=lambda p: (p.topic, p.partition))
        if members:
            d.state = state
        return d

    def group(self, group: str, now_ms: int | None = None) -> dict:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        d = self.describe(group)
        rows = []
        for r in d.partitions:
            seconds = None
            if r.lag is not None and r.log_end_offset is not None:
                seconds = lag_seconds(self.logdir, r.topic, r.partition, r.committed, r.lag, now_ms)
            rows.append({**r.__dict__, "lag_seconds": seconds})
        return {"name": d.group, "state": d.state, "generation": d.generation, "members": d.members,
                "partitions": rows, "total_lag": d.total_lag}

    def reset_offsets(self, group: str, topics: list[str] | None, to: str, value: Any, execute: bool) -> list:
        return self.admin.reset_offsets(group, topics, to=to, value=value, execute=execute)
