"""Bit rot in a cleanly closed partition is never served as data.

A clean partition skips recovery, so a bit that flips on disk after the
close is only caught by the read path. One random bit is flipped in a
random field of a random frame (CRC, magic, base offset, length, count,
timestamps, body) of any segment; the whole log is then read through
``replay()``, through a ``Consumer`` (with their default settings) and by
time (``offset_for_timestamp`` of every batch): each either raises
CorruptRecordError naming the segment file, or returns exactly the records
(offsets) that were written. 150 flips in the normal suite, 1,000
with ARROWLOG_FAULT_LONG=1.
"""

from __future__ import annotations

import os
import random
import shutil
import threading

import faultlib
import pytest

import arrowlog
from arrowlog import Consumer, TopicPartition
from arrowlog._native import core
from arrowlog.errors import CorruptRecordError
from arrowlog.storage import LogDir

FRAME = core.FRAME_HEADER_SIZE
# (name, offset in the frame, size in bytes); "body" is the rest of the frame
FIELDS = [("crc", 0, 4), ("magic", 4, 4), ("base_offset", 8, 8), ("body_length", 16, 4), ("record_count", 20, 4),
          ("min_timestamp", 24, 8), ("max_timestamp", 32, 8), ("body", FRAME, None)]
DEADLINE = 300.0
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def closed_log():
    with faultlib.scratch("arrowlog-bitrot-") as base:
        data = os.path.join(base, "data")
        values = faultlib.closed_partition(data, segments=3, segment_bytes=8 << 10, index_interval=1024)
        part = os.path.join(data, "topics", faultlib.TOPIC, "0")
        segments = {}
        for name in sorted(os.listdir(part)):
            if name.endswith(".log"):
                with open(os.path.join(part, name), "rb") as f:
                    segments[os.path.join(part, name)] = [fr[:2] for fr in faultlib.frame_layout(f.read())]
        yield data, values, segments


def read_replay(data: str) -> dict[int, bytes]:
    with arrowlog.replay(data, faultlib.TOPIC) as r:
        t = r.to_arrow()
    return dict(zip(t.column("offset").to_pylist(), t.column("value").to_pylist()))


def read_consumer(data: str, seen: dict[int, bytes]) -> None:
    c = Consumer({"log.dir": data, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition(faultlib.TOPIC, 0, arrowlog.OFFSET_BEGINNING)])
        while True:
            msgs = c.consume(1000, timeout=5.0)
            assert msgs, "the consumer returned nothing before the end of the partition"
            for m in msgs:
                if m.error() is not None:
                    return
                seen[m.offset()] = m.value()
    finally:
        c.close()


def batch_starts(values: dict[int, bytes]) -> dict[int, int]:
    """The first offset of each batch (closed_partition stamps batch b with
    T0 + b ms)."""
    return {faultlib.parse_value(v)[1]: off for off, v in values.items() if faultlib.parse_value(v)[2] == 0}


def read_times(data: str, starts: dict[int, int]) -> dict[int, int]:
    """offset_for_timestamp of every batch's timestamp, checked as it goes."""
    with LogDir(data, create=False) as d:
        pl = d.topic(faultlib.TOPIC).partition(0)
        for b, first in starts.items():
            got = pl.offset_for_timestamp(T0 + b)
            assert got == first, f"offset_for_timestamp({T0 + b}) = {got}, the batch starts at {first}"
    return {}


def one_flip(data: str, values: dict[int, bytes], segments: dict, rng: random.Random) -> str:
    path = rng.choice(sorted(segments))
    pos, size = rng.choice(segments[path])
    name, at, width = rng.choice(FIELDS)
    width = width or size - FRAME
    byte = pos + at + rng.randrange(width)
    bit = 1 << rng.randrange(8)
    what = f"bit {bit:#04x} of byte {byte} ({name} of the frame at {pos}) in {os.path.basename(path)}"
    with open(path, "r+b") as f:
        f.seek(byte)
        orig = f.read(1)[0]
        f.seek(byte)
        f.write(bytes([orig ^ bit]))
    outcomes = []
    try:
        for reader in ("replay", "consumer", "time"):
            seen: dict[int, bytes] = {}
            try:
                if reader == "replay":
                    seen = read_replay(data)
                elif reader == "consumer":
                    read_consumer(data, seen)
                else:
                    read_times(data, batch_starts(values))
                    seen = values
            except CorruptRecordError as exc:
                assert os.path.basename(path) in str(exc), f"{what}: {reader}'s error does not name the file: {exc}"
                outcomes.append("error")
                for off, v in seen.items():  # what a consumer delivered before the error
                    assert values.get(off) == v, f"{what}: {reader} delivered a wrong record at {off}"
                continue
            assert seen == values, f"{what}: {reader} returned {len(seen)} records, not exactly the written ones"
            outcomes.append("data")
    finally:
        with open(path, "r+b") as f:
            f.seek(byte)
            f.write(bytes([orig]))
    return "/".join(outcomes)


def test_single_bit_flips_are_errors_or_exact_data(closed_log, seed, tmp_path):
    data, values, segments = closed_log
    work = str(tmp_path / "data")
    shutil.copytree(data, work)
    segments = {os.path.join(work, os.path.relpath(p, data)): f for p, f in segments.items()}
    rng = random.Random(seed)
    flips = faultlib.count(150, 1000)
    tally: dict[str, int] = {}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(flips):
                outcome = one_flip(work, values, segments, rng)
                tally[outcome] = tally.get(outcome, 0) + 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failure.append(exc)

    # a reader that hangs fails the test instead of the suite
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(DEADLINE)
    assert not t.is_alive(), f"seed={seed}: the flips did not finish in {DEADLINE} s (a reader hangs); {tally}"
    if failure:
        raise AssertionError(f"seed={seed}: {failure[0]}") from failure[0]
    assert sum(tally.values()) == flips
    # every frame byte is covered by the CRC: a flip there is always caught
    assert tally.get("error/error/error", 0) == flips, f"seed={seed}: {tally}"
    # the log is intact again after the flips
    with LogDir(work, create=False) as d:
        assert d.topic(faultlib.TOPIC).partition(0).verify()["errors"] == []
