"""What a frame of records without headers costs on disk: the all-null
headers column is stored as n + 1 list offsets and a validity bitmap, not
with child offsets sized for every row (storage/appending.py::null_column)."""

import pyarrow as pa
import pytest

from arrowlog import Producer
from arrowlog.schema import HEADERS_TYPE
from arrowlog.storage import LogDir
from arrowlog.storage.appending import null_column

# per record: offset and timestamp (8 + 8), key (8) and its offset (4), value
# (100) and its offset (4), the headers' list offset (4), two validity bits
PER_RECORD = 136.25


def frames_of(data_dir):
    with LogDir(data_dir) as d:
        return d.topic("t").partition(0).read(0, 1 << 40)


@pytest.mark.parametrize("how", ["produce_batch", "produce"])
def test_records_without_headers_store_no_header_offsets(data_dir, how):
    n = 20_000
    values = [b"%099d" % i + b"v" for i in range(n)]
    keys = [b"k%07d" % i for i in range(n)]
    with Producer({"log.dir": data_dir, "linger.ms": 60_000}) as p:
        if how == "produce_batch":
            p.produce_batch("t", values, keys=keys)
        else:
            for v, k in zip(values, keys, strict=True):
                p.produce("t", v, key=k)
        p.flush()
    frames = frames_of(data_dir)
    stored = sum(f.size for f in frames)
    # a frame header, IPC metadata and padding per frame on top of the records
    assert stored <= n * PER_RECORD + len(frames) * 1024, stored / n
    table = pa.Table.from_batches([f.batch for f in frames])
    assert table.column("headers").null_count == n
    assert table.column("value").to_pylist() == values and table.column("key").to_pylist() == keys


def test_null_column_is_all_null_and_small():
    for n in (0, 1, 9, 1000):
        col = null_column(n, HEADERS_TYPE)
        col.validate(full=True)
        assert col.null_count == n and col.to_pylist() == [None] * n
        assert col.equals(pa.nulls(n, HEADERS_TYPE))
        batch = pa.RecordBatch.from_arrays([col], names=["h"])
        assert batch.serialize().size <= 4 * n + n // 8 + 1024
    assert null_column(5, pa.binary()).equals(pa.nulls(5, pa.binary()))
