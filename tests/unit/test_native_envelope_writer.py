"""RecordAccumulator.frame_body: the native writer of the stored envelope's
IPC message (what a one-record flush() appends), checked against pyarrow."""

import numpy as np
import pyarrow as pa
import pytest

from arrowlog import Producer
from arrowlog._native import core
from arrowlog.schema import ENVELOPE_SCHEMA
from arrowlog.storage import LogDir

CASES = {
    "one record": [(b"k", b"v" * 100, 5, None)],
    "null key and value, empty value": [(None, b"v", 5, None), (b"kk", None, 6, None), (b"k3", b"", 7, None)],
    "headers, a null header value, a record without": [
        (None, b"v", 5, [("a", b"x"), ("b", None)]), (b"kk", None, 6, None), (b"k3", b"", 7, [("c", b"zz")])],
    "an empty header list": [(b"", b"", 1, [])],
    "100 records, some with headers": [(b"k%d" % i, b"v" * i, i, None if i % 3 else [("h", b"%d" % i)])
                                       for i in range(100)],
    "9 records: bitmaps over a byte": [(None if i % 2 else b"k", b"v", i, None) for i in range(9)],
}


def accumulator(records):
    acc = core.RecordAccumulator()
    for key, value, ts, headers in records:
        acc.append_record(key, value, ts, headers)
    return acc


@pytest.mark.parametrize("records", CASES.values(), ids=CASES.keys())
def test_frame_body_reads_back_as_the_batch_pyarrow_would_write(records):
    acc = accumulator(records)
    body = acc.frame_body(1000)
    assert len(body) % 8 == 0
    got = pa.ipc.read_record_batch(pa.py_buffer(body), ENVELOPE_SCHEMA)
    got.validate(full=True)
    batch = acc.to_batch()
    want = pa.RecordBatch.from_arrays([pa.array(np.arange(1000, 1000 + len(records)), pa.int64()), *batch.columns],
                                      schema=ENVELOPE_SCHEMA)
    assert got.equals(want)
    assert got.column("offset").to_pylist() == list(range(1000, 1000 + len(records)))


def test_frame_body_of_an_empty_accumulator_is_refused():
    with pytest.raises(ValueError, match="at least one record"):
        core.RecordAccumulator().frame_body(0)


def test_produced_records_are_stored_and_read_back_through_the_native_frame(data_dir):
    # produce() without a delivery callback into a bytes topic takes the native path
    with Producer({"log.dir": data_dir, "linger.ms": 0}) as p:
        for i in range(5):
            p.produce("t", b"v%d" % i, key=None if i == 2 else b"k%d" % i, headers={"h": b"%d" % i} if i % 2 else None)
            p.flush()
    with LogDir(data_dir) as d:
        log = d.topic("t").partition(0)
        frames = log.read(0, 1 << 20)
        assert [f.record_count for f in frames] == [1] * 5  # one frame a flush()
        rows = pa.Table.from_batches([f.batch for f in frames]).to_pylist()
    assert [r["offset"] for r in rows] == list(range(5))
    assert [r["value"] for r in rows] == [b"v%d" % i for i in range(5)]
    assert [r["key"] for r in rows] == [b"k0", b"k1", None, b"k3", b"k4"]
    assert [r["headers"] for r in rows] == [None if i % 2 == 0 else [{"key": "h", "value": b"%d" % i}]
                                            for i in range(5)]


@pytest.mark.parametrize("config, value_size", [({}, 10), ({"compression.type": "zstd"}, 10),
                                                ({"cleanup.policy": "compact"}, 10), ({}, 100_000)],
                         ids=["native", "zstd", "compacted", "over 64 KiB"])
def test_producer_frames_native_or_through_pyarrow_are_stored_alike(data_dir, config, value_size):
    with LogDir(data_dir) as d:
        d.create_topic("t", 1, config)
    with Producer({"log.dir": data_dir, "linger.ms": 60_000}) as p:
        for i in range(3):
            p.produce("t", b"%d" % i * value_size, key=b"k%d" % i, timestamp=1_000 + i)
        p.flush()
    with LogDir(data_dir) as d:
        frames = d.topic("t").partition(0).read(0, 1 << 30)
        for f in frames:  # the frame headers' timestamp bounds are the records'
            ts = f.batch.column("timestamp").cast(pa.int64()).to_pylist()
            assert (f.min_timestamp, f.max_timestamp) == (min(ts), max(ts))
        rows = pa.Table.from_batches([f.batch for f in frames]).to_pylist()
    assert [(r["offset"], r["key"], r["value"]) for r in rows] == [(i, b"k%d" % i, b"%d" % i * value_size)
                                                                   for i in range(3)]


@pytest.mark.parametrize("records", CASES.values(), ids=CASES.keys())
def test_write_frame_stores_the_frame_write_frame_pieces_would(tmp_path, records):
    # the small-flush path's one native call: header, CRC and body in one pwrite,
    # byte for byte what the general writer stores for frame_body's message
    acc = accumulator(records)
    with open(tmp_path / "native", "w+b") as native, open(tmp_path / "pieces", "w+b") as pieces:
        size = acc.write_frame(native.fileno(), 64, 1000)
        want = core.write_frame_pieces(pieces.fileno(), 64, 1000, acc.count, acc.min_timestamp, acc.max_timestamp,
                                       [acc.frame_body(1000)])
        assert size == want == acc.frame_size() == core.FRAME_HEADER_SIZE + len(acc.frame_body(1000))
        assert native.read() == pieces.read()
    assert acc.count == len(records)  # the accumulator is left as it is


def test_write_frame_refuses_what_no_frame_may_be(tmp_path):
    with open(tmp_path / "f", "w+b") as f:
        with pytest.raises(ValueError, match="at least one record"):
            core.RecordAccumulator().write_frame(f.fileno(), 0, 0)
        with pytest.raises(ValueError, match="8-byte boundaries"):
            accumulator(CASES["one record"]).write_frame(f.fileno(), 4, 0)
        assert f.read() == b""


def test_write_frame_reports_a_failed_write_as_oserror(tmp_path):
    (tmp_path / "f").touch()
    with open(tmp_path / "f", "rb") as f:
        with pytest.raises(OSError):
            accumulator(CASES["one record"]).write_frame(f.fileno(), 0, 0)  # a read-only descriptor
