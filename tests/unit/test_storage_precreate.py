"""A partition's files are made with its topic (storage/precreate.py): the
first write into a new partition creates no file, fsyncs nothing and runs
no recovery; a partition whose segment was written into, or that a crash
left half made, is still recovered."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from arrowlog._native import core
from arrowlog.schema import PRODUCE_SCHEMA
from arrowlog.storage import LogDir
from arrowlog.storage.partition import PartitionLog
from arrowlog.storage.precreate import PRECREATED_GENERATION
from arrowlog.storage.segment import LOG_INITIAL_BYTES

FILES = {"partition.state", "open.lock", "append.lock", "00000000000000000000.log", "00000000000000000000.index",
         "00000000000000000000.timeindex"}


def batch(values: list[bytes]) -> pa.RecordBatch:
    n = len(values)
    return pa.RecordBatch.from_arrays([pa.array([1_700_000_000_000] * n, pa.timestamp("ms")),
                                       pa.array([None] * n, pa.binary()), pa.array(values, pa.binary()),
                                       pa.nulls(n, PRODUCE_SCHEMA.field(3).type)], schema=PRODUCE_SCHEMA)


def values_of(log: PartitionLog) -> list[bytes]:
    return [v for f in log.read(0, 1 << 30) for v in f.batch.column("value").to_pylist()]


def files_of(directory: str) -> dict[str, int]:
    return {name: os.stat(os.path.join(directory, name)).st_ino for name in os.listdir(directory)}


def state_of(directory: str) -> dict:
    with open(os.path.join(directory, "partition.state"), "rb") as f:
        state = core.PartitionState(core.MappedFile(f.fileno(), core.STATE_FILE_SIZE, False,
                                                    os.path.join(directory, "partition.state")))
        return {"initialised": state.is_initialised(), "clean": state.clean, **state.snapshot()}


def test_create_topic_makes_every_partition(tmp_path):
    with LogDir(tmp_path) as d:
        d.create_topic("t", 3)
        for p in range(3):
            directory = os.path.join(d.topics_dir, "t", str(p))
            assert set(os.listdir(directory)) == FILES
            st = state_of(directory)
            assert st["initialised"] and not st["clean"]
            assert st["generation"] == PRECREATED_GENERATION and st["next_offset"] == 0


def test_add_partitions_makes_the_new_ones(tmp_path):
    with LogDir(tmp_path) as d:
        d.create_topic("t", 1)
        d.topic("t").partition(0).append(batch([b"a"]))
        d.add_partitions("t", 3)
        for p in (1, 2):
            assert set(os.listdir(os.path.join(d.topics_dir, "t", str(p)))) == FILES
        assert values_of(d.topic("t").partition(0)) == [b"a"]


def test_first_write_creates_no_file_fsyncs_nothing_and_recovers_nothing(tmp_path, monkeypatch):
    with LogDir(tmp_path) as d:
        d.create_topic("t", 2)
        directory = os.path.join(d.topics_dir, "t", "1")
        before = files_of(directory)
        syncs = []
        monkeypatch.setattr(os, "fsync", lambda fd: syncs.append(fd))
        monkeypatch.setattr(os, "fdatasync", lambda fd: syncs.append(fd))

        def no_recovery(self, **kw):
            raise AssertionError("a partition made with its topic was recovered")

        monkeypatch.setattr(PartitionLog, "_recover_locked", no_recovery)
        log = d.topic("t").partition(1)
        assert log.append(batch([b"x", b"y"])) == 0
        assert files_of(directory) == before  # the same files: none created, none replaced
        assert syncs == []
        assert values_of(log) == [b"x", b"y"]
        monkeypatch.undo()
    with LogDir(tmp_path) as d:  # closed cleanly, reopened: as any other partition
        assert values_of(d.topic("t").partition(1)) == [b"x", b"y"]


def test_a_precreated_partition_is_read_and_closed_like_a_new_one(tmp_path):
    with LogDir(tmp_path) as d:
        d.create_topic("t", 2)
    with LogDir(tmp_path) as d:
        assert [values_of(log) for log in d.topic("t").partitions()] == [[], []]
        assert d.topic("t").partition(0).watermarks() == (0, 0)
    with LogDir(tmp_path) as d:
        assert d.topic("t").partition(0).append(batch([b"z"])) == 0


def _power_loss_of_the_state(tmp_path, values: list[bytes]) -> str:
    """A partition whose synced records a power loss kept while its state
    file went back to what create_topic wrote."""
    with LogDir(tmp_path) as d:
        d.create_topic("t", 1)
        directory = os.path.join(d.topics_dir, "t", "0")
        with open(os.path.join(directory, "partition.state"), "rb") as f:
            made = f.read()
        log = d.topic("t").partition(0)
        for v in values:
            log.append(batch([v]), fsync=True)
    with open(os.path.join(directory, "partition.state"), "r+b") as f:
        f.write(made)
    return directory


def test_a_segment_holding_a_frame_is_recovered(tmp_path):
    directory = _power_loss_of_the_state(tmp_path, [b"kept", b"too"])
    assert state_of(directory)["generation"] == PRECREATED_GENERATION
    with LogDir(tmp_path) as d:
        log = d.topic("t").partition(0)
        assert values_of(log) == [b"kept", b"too"]
        assert log.state.snapshot()["generation"] >= 1  # recovered
        assert log.append(batch([b"next"])) == 2


def test_a_segment_grown_for_a_frame_is_recovered(tmp_path):
    big = b"b" * (2 * LOG_INITIAL_BYTES)
    directory = _power_loss_of_the_state(tmp_path, [big])
    assert os.path.getsize(os.path.join(directory, "00000000000000000000.log")) > LOG_INITIAL_BYTES
    with LogDir(tmp_path) as d:
        assert values_of(d.topic("t").partition(0)) == [big]


def test_stale_bytes_after_the_header_make_it_recover(tmp_path):
    """A frame written but never published, then a crash: the segment is not
    empty, so the first opener recovers (which zeroes the tail)."""
    with LogDir(tmp_path) as d:
        d.create_topic("t", 1)
        directory = os.path.join(d.topics_dir, "t", "0")
    path = os.path.join(directory, "00000000000000000000.log")
    position = state_of(directory)["active_position"]
    with open(path, "r+b") as f:
        f.seek(LOG_INITIAL_BYTES - 100)
        f.write(b"\x01" * 8)
    with LogDir(tmp_path) as d:
        log = d.topic("t").partition(0)
        assert log.state.snapshot()["generation"] >= 1
        assert values_of(log) == []
        assert log.append(batch([b"after"])) == 0
    with open(path, "rb") as f:
        f.seek(position)
        assert b"\x01" * 8 not in f.read()


# What a crash part-way through create_partition leaves (its steps in order:
# mkdir, the segment's files, the lock files, the state file, the state).
STEPS = {
    "directory": set(),
    "segment-temporary": {"00000000000000000000.log.tmp"},
    "segment-unnamed": {"00000000000000000000.log.tmp", "00000000000000000000.index",
                        "00000000000000000000.timeindex"},
    "segment": {"00000000000000000000.log", "00000000000000000000.index", "00000000000000000000.timeindex"},
    "locks": FILES - {"partition.state"},
    "state-file": FILES,
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_partition_a_crash_left_half_made_opens(tmp_path, step):
    with LogDir(tmp_path) as d:
        d.create_topic("t", 1)
        directory = os.path.join(d.topics_dir, "t", "0")
    log_path = os.path.join(directory, "00000000000000000000.log")
    if "00000000000000000000.log.tmp" in STEPS[step]:
        os.rename(log_path, log_path + ".tmp")
    for name in os.listdir(directory):
        if name not in STEPS[step]:
            os.unlink(os.path.join(directory, name))
    if step == "state-file":  # created, not yet written
        with open(os.path.join(directory, "partition.state"), "r+b") as f:
            f.write(bytes(core.STATE_FILE_SIZE))
    with LogDir(tmp_path) as d:
        log = d.topic("t").partition(0)
        assert values_of(log) == []
        assert log.append(batch([b"a", b"b"])) == 0
        assert values_of(log) == [b"a", b"b"]
    with LogDir(tmp_path) as d:
        assert values_of(d.topic("t").partition(0)) == [b"a", b"b"]
        assert d.topic("t").partition(0).verify()["errors"] == []
