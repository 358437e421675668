"""Damage fuzz: bytes of a small compacted log's segment, index, state and
layout-mark files flipped, overwritten with hostile numbers or cut off,
then the log opened, read, replayed, consumed, searched by time,
compacted and appended to (a roll). Every call either gives only records the log really held (at
their offsets, with their values) or fails with an ArrowlogError subclass
with a message; never a raw ValueError / struct.error / OSError /
core.CorruptFrame, never a hang. Deterministic (derandomize) so it cannot
flake; one scratch copy of the pristine log per example, on /dev/shm when
there is one."""

from __future__ import annotations

import os
import shutil
import signal

import faultlib
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arrowlog
from arrowlog import Consumer, TopicPartition
from arrowlog.errors import ArrowlogError
from arrowlog.schema import PRODUCE_SCHEMA
from arrowlog.storage import LogDir

TOPIC = faultlib.TOPIC
CONFIG = {"segment.bytes": 4096, "index.interval.bytes": 256, "retention.ms": -1, "cleanup.policy": "compact",
          "min.cleanable.dirty.ratio": 0.01}
T0 = 1_700_000_000_000
# any single call of a few hundred records that takes this long hangs
HANG_SECONDS = 30
# more examples for a longer hunt: ARROWLOG_FUZZ_EXAMPLES=2000
EXAMPLES = int(os.environ.get("ARROWLOG_FUZZ_EXAMPLES", "30"))
STATS = os.environ.get("ARROWLOG_FUZZ_STATS")
HOSTILE = [0, 1, 7, 0x7F, 0xFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFF8, 0xFFFF_FFFF, 1 << 32, 1 << 62, (1 << 63) - 1,
           1 << 63, (1 << 64) - 1]


class Hang(Exception):
    """A call made no progress within HANG_SECONDS (not an ArrowlogError)."""


def _alarm(signum, frame):
    raise Hang(f"a call took more than {HANG_SECONDS} s")


@pytest.fixture(scope="module")
def pristine():
    """A cleanly closed compacted partition of several segments (keys that
    repeat, timestamps 1 ms apart per batch), compacted once, and its
    records."""
    base = faultlib.fast_scratch("arrowlog-fuzz-")
    data = os.path.join(base, "pristine")
    values: dict[int, tuple[bytes | None, bytes | None]] = {}
    times: dict[int, int] = {}
    with LogDir(data) as d:
        pl = d.create_topic(TOPIC, 1, config=CONFIG).partition(0)
        b = 0
        while len(pl.segment_bases()) < 5:
            n = 1 + b % 4
            keys = [b"k%d" % ((b * 3 + j) % 11) for j in range(n)]
            vals = [b"%d:%d|" % (b, j) + b"x" * (b * 7 % 90) for j in range(n)]
            first = pl.append(pa.RecordBatch.from_pydict(
                {"timestamp": [T0 + b] * n, "key": keys, "value": vals, "headers": [None] * n}, schema=PRODUCE_SCHEMA))
            for j in range(n):
                values[first + j] = (keys[j], vals[j])
                times[first + j] = T0 + b
            b += 1
        d.compact(TOPIC)   # a first round: the log as compaction left it, and its cleaner.json
        values = read_all(d)
    part = os.path.join(data, "topics", TOPIC, "0")
    files = sorted(n for n in os.listdir(part) if os.path.isfile(os.path.join(part, n)) and n != "open.lock")
    yield data, values, times, files
    shutil.rmtree(base)


def check_records(got: dict[int, tuple[bytes | None, bytes | None]], values: dict, what: str) -> None:
    for off, kv in got.items():
        assert values.get(off) == kv, f"{what} served a record the log never held at offset {off}: {kv!r}"


def read_all(d: LogDir) -> dict:
    pl = d.topic(TOPIC).partition(0)
    start, hw = pl.watermarks(check=True)
    out, offset = {}, start
    while offset < hw:
        frames = pl.read(offset, 1 << 16)
        assert frames, f"read({offset}) returned nothing below the high watermark {hw}"
        for fr in frames:
            for o, k, v in zip(fr.batch.column(0).to_pylist(), fr.batch.column("key").to_pylist(),
                               fr.batch.column("value").to_pylist()):
                if o >= offset:
                    out[o] = (k, v)
            offset = max(offset, fr.base_offset + fr.record_count)
    return out


def replay_all(d: LogDir) -> dict:
    with arrowlog.replay(d, TOPIC) as r:
        t = r.to_arrow()
    return dict(zip(t.column("offset").to_pylist(), zip(t.column("key").to_pylist(), t.column("value").to_pylist())))


def consume_all(d: LogDir) -> dict:
    c = Consumer({"log.dir": d.path, "enable.partition.eof": True, "auto.offset.reset": "error",
                  "check.crcs": d.check_crcs})
    try:
        c.assign([TopicPartition(TOPIC, 0, arrowlog.OFFSET_BEGINNING)])
        out: dict = {}
        for _ in range(1000):
            for m in c.consume(1000, timeout=0.5):
                if m.error() is not None:
                    if m.error().code() == m.error()._PARTITION_EOF:
                        return out
                    raise ArrowlogError(f"consumer error message: {m.error()}")
                out[m.offset()] = (m.key(), m.value())
        raise AssertionError("the consumer never reached the end")
    finally:
        c.close()


def times_of(d: LogDir) -> dict:
    """offset_for_timestamp of a few timestamps (the caller checks each
    answer is an offset the log held, or None)."""
    pl = d.topic(TOPIC).partition(0)
    return {ts: pl.offset_for_timestamp(ts) for ts in (T0 - 1, T0 + 7, T0 + 40, T0 + 10_000)}


def compact(d: LogDir) -> dict:
    d.compact(TOPIC)
    return read_all(d)


def damage(path: str, kind: str, at: float, value: int, width: int) -> None:
    size = os.path.getsize(path)
    if size == 0:
        return
    pos = min(int(at * size), size - 1)
    with open(path, "r+b") as f:
        if kind == "truncate":
            f.truncate(pos)
        elif kind == "flip":
            f.seek(pos)
            byte = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([byte ^ (1 << (value % 8))]))
        else:  # a hostile number, as the field at that (aligned) place would hold it
            pos -= pos % width
            f.seek(pos)
            f.write((value % (1 << (8 * width))).to_bytes(width, "little"))


@st.composite
def damages(draw, files: list[str], cut: bool = True):
    """(file, how, where, value, width) of one damage; ``cut``: truncations too."""
    name = draw(st.sampled_from(files))
    kind = draw(st.sampled_from(["flip", "flip", "number", "number"] + (["truncate"] if cut else [])))
    if name == "partition.state":   # its header, payload and both marks
        at = draw(st.integers(0, 327)) / 4096
    else:
        at = draw(st.floats(0, 1, allow_nan=False))
    return name, kind, at, draw(st.sampled_from(HOSTILE) | st.integers(0, 255)), draw(st.sampled_from([4, 8]))


APPENDED = b"appended|" + b"y" * 3000   # larger than what is left of a 4 KiB segment: the append rolls


def append(d: LogDir) -> dict:
    """An append (a roll, which walks the active segment's headers), then
    the log read back: the new records are the ones appended."""
    pl = d.topic(TOPIC).partition(0)
    first = pl.append(pa.RecordBatch.from_pydict(
        {"timestamp": [T0 + 10_000] * 2, "key": [b"new"] * 2, "value": [APPENDED] * 2, "headers": [None] * 2},
        schema=PRODUCE_SCHEMA))
    got = read_all(d)
    for off in (first, first + 1):
        assert got.pop(off, None) == (b"new", APPENDED), f"the record appended at {off} did not come back"
    return got


OPS = {"read": read_all, "replay": replay_all, "consume": consume_all, "times": times_of, "compact": compact,
       "append": append}


def check_all(copy: str, values: dict, hits, check: bool) -> None:
    """Every reader, each through a LogDir of its own, gives only true
    records (``check``: CRCs checked; unchecked, damaged records may be
    served, documented in docs/DURABILITY.md) or an ArrowlogError; none
    hangs."""
    for what in OPS:
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(HANG_SECONDS)
        try:
            with LogDir(copy, create=False, check_crcs=check) as d:
                got = OPS[what](d)
        except ArrowlogError as exc:
            assert str(exc), f"{what} after {hits}: an ArrowlogError without a message"
            if STATS:
                with open(STATS, "a") as f:
                    f.write(f"{what}\t{type(exc).__name__}\t{str(exc)[:150]}\n")
            continue
        except Exception as exc:
            raise AssertionError(f"{what} after {hits}: raw {type(exc).__name__}: {exc}") from exc
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        if not check:
            continue
        if what == "times":
            for ts, off in got.items():
                assert off is None or off in values, f"offset_for_timestamp({ts}) after {hits}: {off}"
        else:
            check_records(got, values, f"{what} after {hits}")


@pytest.mark.parametrize("when", ["closed", "held", "unchecked"])
def test_damage_fuzz(pristine, when):
    """``closed``: the damage is there before the first opener, whose
    layout check sees it; ``held``: it happens while another LogDir holds
    the partition open (so the readers' opens are not first opens, which
    trust the published state; no truncation: a file cut below the holder's
    live mappings is a SIGBUS in the holder, not an error a reader could
    give); ``unchecked``: as ``closed``, read with check.crcs off (damaged
    records may then be served, but no reader crashes or raises anything
    but an ArrowlogError)."""
    data, values, times, files = pristine

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(damages(files, cut=when != "held"), min_size=1, max_size=3))
    def case(hits):
        scratch = faultlib.fast_scratch("arrowlog-fuzz-case-")
        copy = os.path.join(scratch, "d")
        holder = None
        try:
            shutil.copytree(data, copy)
            if when == "held":
                holder = LogDir(copy, create=False)
                check_records(read_all(holder), values, "the undamaged copy")
            part = os.path.join(copy, "topics", TOPIC, "0")
            for name, kind, at, value, width in hits:
                damage(os.path.join(part, name), kind, at, value, width)
            check_all(copy, values, hits, check=when != "unchecked")
        finally:
            if holder is not None:
                holder.close()
            shutil.rmtree(scratch)

    case()
