"""produce_batch's native frame writer (core.bulk_frame, PartitionLog.append_bulk)
stores the bytes pyarrow's IPC writer stores for the same batch: an oracle
over random batches (null keys and values, sliced arrays, data buffers longer
than their entries, constant or per-record timestamps, headers and typed
columns that take the general path), comparing the segment bytes written
with the native writer and with it switched off."""

import os

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowlog import Producer
from arrowlog._native import core
from arrowlog.schema import TIMESTAMP_TYPE
from arrowlog.storage import LogDir


def stored_bytes(data_dir: str, topic: str = "t") -> list[bytes]:
    """Each partition's frames as stored, header and body (the bytes of its
    one segment file from the first frame to the published end)."""
    out = []
    with LogDir(data_dir) as d:
        for log in d.topic(topic).partitions():
            (segment,) = [name for name in os.listdir(log.directory) if name.endswith(".log")]
            end = log.state.snapshot()["active_position"]
            size = sum(f.size for f in log.read(0, 1 << 40))
            with open(os.path.join(log.directory, segment), "rb") as f:
                out.append(f.read()[end - size:end])
    return out


def without_native(monkeypatch):
    """Switch the native bulk writer off: every frame through pyarrow's writer."""
    monkeypatch.setattr(core, "bulk_frame", lambda *args: None)


def binary_column(rng: np.random.Generator, n: int) -> pa.Array:
    """A binary column of ``n`` rows: maybe with nulls (or all null, or all
    empty), maybe a slice of a larger array, maybe with a data buffer longer
    than its entries."""
    before, after = int(rng.integers(0, 20)), int(rng.integers(0, 20))
    kind = ["plain", "some null", "all null", "empty values"][int(rng.integers(0, 4))]
    rows = []
    for i in range(before + n + after):
        null = kind == "all null" or (kind == "some null" and rng.integers(0, 3) == 0)
        rows.append(None if null else b"" if kind == "empty values" else bytes([65 + i % 26]) * int(rng.integers(0, 40)))
    arr = pa.array(rows, pa.binary())
    if rng.integers(0, 2) and arr.buffers()[2] is not None:  # spare bytes after the entries
        spare = pa.py_buffer(arr.buffers()[2].to_pybytes() + b"Z" * int(rng.integers(1, 100)))
        arr = pa.Array.from_buffers(pa.binary(), len(arr), [arr.buffers()[0], arr.buffers()[1], spare],
                                    null_count=arr.null_count)
    return arr.slice(before, n)


def appends(seed: int) -> list:
    """A few (keys, values, timestamps, min, max, timestamp_rows) appends to one partition."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(rng.integers(1, 4))):
        n = int(rng.integers(1, 300))
        keys, values = binary_column(rng, n), binary_column(rng, n)
        start, extra = int(rng.integers(0, 9)), int(rng.integers(0, 9))
        if rng.integers(0, 2):  # a column, maybe a slice, maybe with spare values after
            stamps = pa.array(np.arange(1000, 1000 + start + n + extra), TIMESTAMP_TYPE).slice(start, n)
            out.append((keys, values, stamps, 1000 + start, 1000 + start + n - 1, 0))
        else:  # one timestamp, as the first n of a column of n + extra
            out.append((keys, values, 77, 77, 77, n + extra if rng.integers(0, 2) else 0))
    return out


def write(data_dir, batches):
    with LogDir(data_dir) as d:
        d.create_topic("t", partitions=1)
        log = d.topic("t").partition(0)
        for keys, values, stamps, lo, hi, rows in batches:
            log.append_bulk(keys, values, stamps, min_timestamp=lo, max_timestamp=hi, timestamp_rows=rows)
    return stored_bytes(data_dir)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_native_frames_are_byte_identical_to_pyarrows(tmp_path_factory, monkeypatch, seed):
    batches = appends(seed)
    native = write(str(tmp_path_factory.mktemp("native")), batches)
    with monkeypatch.context() as m:
        without_native(m)
        general = write(str(tmp_path_factory.mktemp("general")), batches)
    assert native == general


def test_native_path_is_taken_for_keys_and_values(tmp_path, monkeypatch):
    # the oracle above compares two paths: make sure the first one is the native one
    made = []
    real = core.bulk_frame

    def spy(*args):
        frame = real(*args)
        made.append(frame)
        return frame
    monkeypatch.setattr(core, "bulk_frame", spy)
    with Producer({"log.dir": str(tmp_path)}) as p:
        p.produce_batch("t", [b"v%d" % i for i in range(1000)], keys=[b"k%d" % i for i in range(1000)])
        p.produce_batch("t", [b"v"] * 10)  # no keys: an all-null key column
    assert len(made) == 2 and all(isinstance(f, core.BulkFrame) for f in made)


def test_a_large_batch_in_several_frames_is_byte_identical(tmp_path, monkeypatch):
    # 70,000 records per frame and more: the cached all-null columns grow past their first size
    rng = np.random.default_rng(5)
    n = 300_000
    values = pa.array([bytes(rng.integers(0, 256, i % 50, dtype=np.uint8)) for i in range(n)], pa.binary())
    keys = pa.array([None if i % 11 == 0 else b"%d" % i for i in range(n)], pa.binary())
    stored = []
    monkeypatch.setattr(core, "wall_clock_ms", lambda: 1_700_000_000_000)  # records without timestamps get this
    for native in (True, False):
        with monkeypatch.context() as m:
            if not native:
                without_native(m)
            d = str(tmp_path / str(native))
            with Producer({"log.dir": d, "batch.size": 1 << 20, "batch.num.messages": 70_000}) as p:
                p.produce_batch("t", values, keys=keys, timestamps=np.arange(n) + 5)
                p.produce_batch("t", values.slice(7, 100_000))
                p.produce_batch("t", values.slice(1, 65_537), keys=keys.slice(3, 65_537))
            stored.append(stored_bytes(d))
    assert stored[0] == stored[1]
    with LogDir(str(tmp_path / "True")) as d:
        frames = d.topic("t").partition(0).read(0, 1 << 40)
        table = pa.Table.from_batches([f.batch for f in frames])
    assert table.num_rows == n + 100_000 + 65_537
    assert table.column("value").to_pylist()[:n] == values.to_pylist()


@pytest.mark.parametrize("case", ["headers", "string values", "large_binary keys", "typed values"])
def test_other_batches_take_the_general_path_and_store_the_same(tmp_path, monkeypatch, case):
    n = 500
    values: object = [b"v%d" % i for i in range(n)]
    kwargs: dict = {}
    config: dict = {}
    if case == "headers":
        kwargs["headers"] = [{"h": b"%d" % i} if i % 2 else None for i in range(n)]
    elif case == "string values":
        values = pa.array([f"s{i}" for i in range(n)], pa.string()).slice(1, n - 1)
    elif case == "large_binary keys":
        kwargs["keys"] = pa.array([b"k%d" % i for i in range(n)], pa.large_binary())
    else:
        config = {"value.schema": pa.schema([("x", pa.int64())])}
        values = [{"x": i} for i in range(n)]
    stored = []
    for native in (True, False):
        with monkeypatch.context() as m:
            if not native:
                without_native(m)
            d = str(tmp_path / str(native))
            if config:
                with LogDir(d) as ld:
                    ld.create_topic("t", partitions=1, config=config)
            with Producer({"log.dir": d}) as p:
                p.produce_batch("t", values, timestamps=np.arange(len(values)) + 1, **kwargs)
            stored.append(stored_bytes(d))
    assert stored[0] == stored[1]
