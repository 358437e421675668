"""CRC-32C and murmur2 against independent libraries as oracles."""

import random

import crc32c as crc32c_pkg
import google_crc32c
import pytest
from confluent_kafka import murmur2 as ck_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kp_murmur2

from arrowlog._native import core


@given(st.binary(max_size=4096), st.integers(min_value=0, max_value=2**32 - 1))
@settings(max_examples=500, deadline=None)
def test_crc32c_matches_both_packages(data, seed):
    assert core.crc32c(data) == crc32c_pkg.crc32c(data) == google_crc32c.value(data)
    assert core.crc32c(data, seed) == crc32c_pkg.crc32c(data, seed)
    assert core.crc32c_software(data, seed) == crc32c_pkg.crc32c(data, seed)


def test_crc32c_unaligned_and_large():
    blob = random.Random(1).randbytes(1 << 20)
    for start in range(9):
        view = memoryview(blob)[start:start + (1 << 19) + start]
        assert core.crc32c(view) == crc32c_pkg.crc32c(bytes(view))
        assert core.crc32c_software(view) == crc32c_pkg.crc32c(bytes(view))


def test_crc32c_chains():
    a, b = b"hello ", b"world"
    assert core.crc32c(b, core.crc32c(a)) == core.crc32c(a + b)


def test_known_vector():
    # RFC 3720 B.4: 32 bytes of zeros
    assert core.crc32c(bytes(32)) == 0x8A9136AA


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_murmur2_matches_kafka_python(key):
    assert core.murmur2(key) & 0xFFFFFFFF == kp_murmur2(key) & 0xFFFFFFFF


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=500))
@settings(max_examples=500, deadline=None)
def test_partition_matches_confluent_kafka(key, partitions):
    assert core.murmur2_partition(key, partitions) == ck_murmur2(key, partitions)


def test_vectorised_partitions_match_scalar():
    import pyarrow as pa

    rng = random.Random(3)
    keys = [rng.randbytes(rng.randrange(0, 20)) if i % 7 else None for i in range(2000)]
    arr = pa.array(keys, pa.binary()).slice(5)
    got = core.murmur2_partitions(arr, 12)
    for k, p in zip(keys[5:], got):
        assert p == (-1 if k is None else core.murmur2_partition(k, 12))


def test_partition_rejects_bad_count():
    with pytest.raises(ValueError):
        core.murmur2_partition(b"k", 0)


@pytest.mark.parametrize("size", [767, 768, 769, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 7, 3 * 8192 + 768 + 5, 100_003])
def test_crc32c_lane_boundaries(size):
    # the hardware path checksums three lanes at once and combines them
    blob = random.Random(size).randbytes(size + 3)
    for start in (0, 3):
        view = memoryview(blob)[start:start + size]
        assert core.crc32c(view, 0x1234) == crc32c_pkg.crc32c(bytes(view), 0x1234)
