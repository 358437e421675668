"""A segment keeps the batches it decoded, keyed by the frame header they came
with: asking again for an unchanged frame does not decode it again, and a
frame rewritten in place is decoded anew, never served stale."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from arrowlog._native import core
from arrowlog.schema import HEADERS_TYPE, PRODUCE_SCHEMA
from arrowlog.storage import LogDir
from arrowlog.storage import segment as segment_mod
from arrowlog.storage.segment import Segment


def one_record(value: bytes) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(np.array([1_700_000_000_000], dtype=np.int64)).cast(pa.timestamp("ms", tz="UTC")),
         pa.nulls(1, pa.binary()), pa.array([value], pa.binary()), pa.nulls(1, HEADERS_TYPE)],
        schema=PRODUCE_SCHEMA)


def partition_dir(root, value: bytes) -> str:
    with LogDir(str(root)) as d:
        d.create_topic("t", partitions=1).partition(0).append(one_record(value))
    return os.path.join(str(root), "topics", "t", "0")


def test_an_unchanged_frame_is_decoded_once_and_a_rewritten_one_again(tmp_path, monkeypatch):
    part = partition_dir(tmp_path / "a", b"first value")
    other = partition_dir(tmp_path / "b", b"other value")  # same size, same offsets: another CRC
    decodes = []
    real = pa.ipc.read_record_batch
    monkeypatch.setattr(segment_mod.pa.ipc, "read_record_batch",
                        lambda *a: decodes.append(1) or real(*a))
    seg = Segment(part, 0, writable=False)
    try:
        pos = seg.header_size
        _, count, body, _, _ = seg.frame_header(pos, seg.file_size)
        first = seg.frame_batch(pos, body, count)
        assert seg.frame_batch(pos, body, count) is first and len(decodes) == 1
        assert first.column("value")[0].as_py() == b"first value"
        # the frame is rewritten in place with different bytes (as after a truncated tail is written anew)
        with open(os.path.join(other, "00000000000000000000.log"), "rb") as f:
            f.seek(pos)
            frame = f.read(core.FRAME_HEADER_SIZE + body)
        fd = os.open(os.path.join(part, "00000000000000000000.log"), os.O_WRONLY)
        try:
            os.pwrite(fd, frame, pos)
        finally:
            os.close(fd)
        again = seg.frame_batch(pos, body, count)
        assert again.column("value")[0].as_py() == b"other value" and len(decodes) == 2
    finally:
        seg.close()


def test_the_decoded_batches_kept_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(segment_mod, "FRAME_BATCHES_CACHED", 4)
    with LogDir(str(tmp_path)) as d:
        pl = d.create_topic("t", partitions=1).partition(0)
        for i in range(10):
            pl.append(one_record(b"value %d" % i))
    seg = Segment(os.path.join(str(tmp_path), "topics", "t", "0"), 0, writable=False)
    try:
        pos = seg.header_size
        while pos < seg.file_size:
            try:
                _, count, body, _, _ = seg.frame_header(pos, seg.file_size)
            except Exception:
                break
            seg.frame_batch(pos, body, count)
            assert len(seg._batches) <= 4
            pos += core.FRAME_HEADER_SIZE + body
        assert seg._batches
    finally:
        seg.close()


def test_a_full_cache_lets_only_its_oldest_batch_go(tmp_path, monkeypatch):
    # Clearing the whole cache when it filled freed 1,024 batches in one call:
    # a reader following a log record by record stalled 3-4 ms every 1,024 frames.
    root = str(tmp_path / "d")
    with LogDir(root) as d:
        log = d.create_topic("t", partitions=1).partition(0)
        for i in range(6):
            log.append(one_record(b"v%d" % i))
    monkeypatch.setattr(segment_mod, "FRAME_BATCHES_CACHED", 4)
    seg = Segment(os.path.join(root, "topics", "t", "0"), 0, writable=False)
    try:
        pos, positions = seg.header_size, []
        for _ in range(6):
            _, count, body, _, _ = seg.frame_header(pos, seg.file_size)
            assert seg.frame_batch(pos, body, count).num_rows == 1
            positions.append(pos)
            pos += core.FRAME_HEADER_SIZE + body
        assert list(seg._batches) == positions[2:]  # the two oldest went, one at a time
    finally:
        seg.close()
