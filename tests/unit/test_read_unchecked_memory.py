"""Reads with check.crcs off check each frame's columns against its buffers
(core.check_frame_batch) once per process and segment file, as the CRC-on
path remembers its CRC checks: a frame read again, through any LogDir, is
not checked again unless its file changed; a damaged frame in a changed file
is still the same clear CorruptRecordError."""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pytest
from mangle import flip_body

from arrowlog import Producer, errors
from arrowlog.storage import LogDir, reading
from arrowlog.storage.segment import forget_verified

TOPIC = "t"


@pytest.fixture
def checks(monkeypatch):
    """The base offsets core.check_frame_batch is called for."""
    seen: list[int] = []
    real = reading.core.check_frame_batch

    def counted(batch, topic, partition, base):
        seen.append(base)
        return real(batch, topic, partition, base)

    monkeypatch.setattr(reading.core, "check_frame_batch", counted)
    forget_verified()  # as a new process: nothing checked yet
    yield seen
    forget_verified()


def write_two_frames(data: str) -> tuple[str, int, int]:
    """Two one-record frames, the second typed-free 64 bytes; the segment's
    path and the second frame's [start, end)."""
    LogDir(data).create_topic(TOPIC)
    with Producer({"log.dir": data, "linger.ms": 0}) as p:
        log = LogDir(data).topic(TOPIC).partition(0)
        p.produce(TOPIC, b"first", key=b"k", partition=0)
        p.flush()
        start = log.state.snapshot()["active_position"]
        p.produce(TOPIC, b"x" * 64, partition=0)
        p.flush()
        st = log.state.snapshot()
    return os.path.join(log.directory, f"{st['active_base_offset']:020d}.log"), start, st["active_position"]


def read_all(data: str, check_crcs: bool) -> pa.Table:
    log = LogDir(data, check_crcs=check_crcs)
    try:
        frames = log.topic(TOPIC).partition(0).read(0)
        return pa.Table.from_batches([f.batch for f in frames])
    finally:
        log.close()


def test_an_unchecked_frame_is_checked_once_per_process_through_any_logdir(data_dir, checks):
    write_two_frames(data_dir)
    first = read_all(data_dir, check_crcs=False)
    assert checks == [0, 1] and first.num_rows == 2
    again = read_all(data_dir, check_crcs=False)  # a new LogDir over the unchanged file
    assert again.equals(first)
    assert checks == [0, 1]  # not checked again


def test_a_frame_whose_crc_passed_needs_no_unchecked_check(data_dir, checks):
    write_two_frames(data_dir)
    read_all(data_dir, check_crcs=True)
    assert read_all(data_dir, check_crcs=False).num_rows == 2
    assert checks == []


def test_a_frame_changed_on_disk_is_checked_again_and_its_damage_named(data_dir, checks):
    path, start, end = write_two_frames(data_dir)
    read_all(data_dir, check_crcs=False)
    assert checks == [0, 1]
    before = os.stat(path).st_ctime_ns
    flip_body(path, start, end, [(0.8515625, 1)])  # the value offsets of the second frame no longer fit
    deadline = time.monotonic() + 30
    while os.stat(path).st_ctime_ns == before:  # a coarse clock: the change must show in the file's ctime
        assert time.monotonic() < deadline, "the segment's ctime never moved"
        os.utime(path)
    with pytest.raises(errors.CorruptRecordError, match="the frame at offset 1 is damaged.*check.crcs is off"):
        read_all(data_dir, check_crcs=False)
    assert checks == [0, 1, 0, 1]  # both frames checked again in the changed file
