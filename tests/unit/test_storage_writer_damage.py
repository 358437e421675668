"""The append path opens the active segment the published partition state
names (appending._writer_for). A state damaged since the open, naming a
segment that is not there or an older segment while later ones hold
published offsets, is a CorruptRecordError naming the partition; no
segment file is deleted (a later segment is only removed as the orphan of
a writer that died mid-roll: one starting at or past the log end)."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from arrowlog.errors import CorruptRecordError
from arrowlog.schema import PRODUCE_SCHEMA
from arrowlog.storage import LogDir


def batch(n: int, size: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"timestamp": [1_000 + i for i in range(n)], "key": [b"k%d" % i for i in range(n)],
                                       "value": [bytes([i]) * size for i in range(n)], "headers": [None] * n},
                                      schema=PRODUCE_SCHEMA)


def segments(directory: str) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith((".log", ".index", ".timeindex")))


@pytest.mark.parametrize("damage", ["an older segment", "no such segment"])
def test_a_damaged_active_segment_base_fails_the_append_and_deletes_nothing(tmp_path, damage):
    with LogDir(str(tmp_path / "d")) as d:
        d.create_topic("t", 1, config={"segment.bytes": 4096})
        log = d.topic("t").partition(0)
        for _ in range(6):
            log.append(batch(2, 600))
        before = segments(log.directory)
        assert sum(n.endswith(".log") for n in before) >= 3
        st = log.state.snapshot()
        sizes = {n: os.path.getsize(os.path.join(log.directory, n)) for n in before if n.endswith(".log")}
        bad = 0 if damage == "an older segment" else st["active_base_offset"] + 1
        log.state.publish(active_base_offset=bad)
        with pytest.raises(CorruptRecordError, match=rf"partition\.state of t-0 is damaged.*starts at offset {bad}"):
            log.append(batch(1, 10))
        assert segments(log.directory) == before
        assert {n: os.path.getsize(os.path.join(log.directory, n)) for n in sizes} == sizes
        log.state.publish(active_base_offset=st["active_base_offset"])   # restored: the same append goes through
        log.append(batch(1, 10))
        assert log.state.snapshot()["next_offset"] == st["next_offset"] + 1


def test_an_orphan_segment_past_the_log_end_is_still_removed(tmp_path):
    """The mid-roll orphan: a segment file starting at the log end that the
    state never named (the writer died before publishing the roll)."""
    with LogDir(str(tmp_path / "d")) as d:
        d.create_topic("t", 1)
        log = d.topic("t").partition(0)
        log.append(batch(3, 10))
        nxt = log.state.snapshot()["next_offset"]
    orphan = os.path.join(str(tmp_path / "d"), "topics", "t", "0", f"{nxt:020d}.log")
    with open(orphan, "wb") as f:
        f.write(b"\0" * 64)
    with LogDir(str(tmp_path / "d")) as d:
        log = d.topic("t").partition(0)
        log.append(batch(1, 10))
        assert not os.path.exists(orphan)
        assert log.state.snapshot()["next_offset"] == nxt + 1
