"""How fast are batches built, and Kafka record batches v2 encoded and decoded?

- batch build: 1,000 records (8-byte key, 100-byte value) appended to the
  native RecordAccumulator and taken as one Arrow record batch;
- record batch v2 encode: a stored 1,000-record Arrow batch to Kafka's wire
  format (what a Fetch response costs per batch);
- record batch v2 decode: the same bytes back to Arrow, CRC checked (what a
  Produce request costs per batch).
"""

import os

import numpy as np
import pyarrow as pa
import pytest

from arrowlog._native import core, kafka

N = 1000
KEYS = [i.to_bytes(8, "big") for i in range(N)]
VALUES = [os.urandom(100) for _ in range(N)]
TS = 1_767_225_600_000


def _build():
    acc = core.RecordAccumulator()
    for k, v in zip(KEYS, VALUES, strict=True):
        acc.append_record(k, v, TS)
    return acc.take()


def test_batch_build(benchmark):
    batch = _build()
    assert batch.num_rows == N and batch.column("value").to_pylist()[7] == VALUES[7]
    benchmark.group = "1,000-record batch"
    benchmark(_build)


@pytest.fixture(scope="module")
def stored_batch():
    b = _build()
    offsets = pa.array(np.arange(N, dtype=np.int64))
    return pa.RecordBatch.from_arrays([offsets] + b.columns, names=["offset"] + b.schema.names)


def test_record_batch_v2_encode(benchmark, stored_batch):
    wire = kafka.encode_batch(stored_batch)
    assert len(wire) > N * 108
    benchmark.group = "1,000-record batch"
    benchmark(kafka.encode_batch, stored_batch)


def test_record_batch_v2_decode(benchmark, stored_batch):
    wire = bytes(kafka.encode_batch(stored_batch))
    decoded = kafka.decode_record_set(wire)
    assert len(decoded) == 1 and decoded[0].record_count == N
    assert decoded[0].records.column("value").to_pylist() == VALUES
    benchmark.group = "1,000-record batch"
    benchmark(kafka.decode_record_set, wire)
