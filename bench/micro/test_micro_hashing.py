"""How fast are arrowlog's native CRC-32C and murmur2 next to the libraries users already trust?

CRC-32C against the ``crc32c`` and ``google-crc32c`` packages (both
hardware-accelerated C); murmur2 against kafka-python's pure-Python
partitioner hash. Each benchmark first checks the answers agree.
"""

import os

import pytest

from arrowlog._native import core

SIZES = {"100B": 100, "4KiB": 4096, "1MiB": 1 << 20}


@pytest.fixture(scope="module", params=list(SIZES), ids=list(SIZES))
def payload(request):
    return os.urandom(SIZES[request.param])


def test_crc32c_arrowlog(benchmark, payload):
    import crc32c

    assert core.crc32c(payload) == crc32c.crc32c(payload)
    benchmark.group = f"crc32c {len(payload)} B"
    benchmark(core.crc32c, payload)


def test_crc32c_package(benchmark, payload):
    import crc32c

    benchmark.group = f"crc32c {len(payload)} B"
    benchmark(crc32c.crc32c, payload)


def test_crc32c_google(benchmark, payload):
    import google_crc32c

    assert google_crc32c.value(payload) == core.crc32c(payload)
    benchmark.group = f"crc32c {len(payload)} B"
    benchmark(google_crc32c.value, payload)


KEYS = [os.urandom(8) for _ in range(1000)]


def _hash_all(fn):
    for k in KEYS:
        fn(k)


def test_murmur2_arrowlog(benchmark):
    from kafka.partitioner.default import murmur2 as kp_murmur2

    # kafka-python returns the unsigned-looking Java int; compare as 32-bit patterns
    assert all((core.murmur2(k) & 0xFFFFFFFF) == (kp_murmur2(k) & 0xFFFFFFFF) for k in KEYS[:50])
    benchmark.group = "murmur2, 1,000 8-byte keys"
    benchmark(_hash_all, core.murmur2)


def test_murmur2_kafka_python(benchmark):
    from kafka.partitioner.default import murmur2 as kp_murmur2

    benchmark.group = "murmur2, 1,000 8-byte keys"
    benchmark(_hash_all, kp_murmur2)
