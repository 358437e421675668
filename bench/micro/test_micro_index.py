"""How fast is a sparse index lookup (binary search in the mapped .index/.timeindex)?

100,000 entries — a full 1 GiB segment at Kafka's 4 KiB interval has about
262,000 — written with the core's own entry writers, then searched for 1,000
random targets per round.
"""

import os
import random
import tempfile

import pytest

from arrowlog._native import core

ENTRIES = 100_000
BASE_TS = 1_767_225_600_000


def _mapped(entry_size: int):
    fd, path = tempfile.mkstemp(prefix="arrowlog-micro-index-")
    os.ftruncate(fd, ENTRIES * entry_size)
    m = core.MappedFile(fd, ENTRIES * entry_size, True, path)
    os.close(fd)
    os.unlink(path)
    return m


@pytest.fixture(scope="module")
def offset_index():
    m = _mapped(core.OFFSET_ENTRY_SIZE)
    for i in range(ENTRIES):
        core.write_offset_entry(m, i, i * 40, i * 4096)
    return m


@pytest.fixture(scope="module")
def time_index():
    m = _mapped(core.TIME_ENTRY_SIZE)
    for i in range(ENTRIES):
        core.write_time_entry(m, i, BASE_TS + i * 40, i * 40)
    return m


def test_offset_index_lookup(benchmark, offset_index):
    assert core.offset_index_lookup(offset_index, ENTRIES, 400_001) == (400_000, 10_000 * 4096)
    targets = [random.randrange(ENTRIES * 40) for _ in range(1000)]

    def lookups():
        for t in targets:
            core.offset_index_lookup(offset_index, ENTRIES, t)

    benchmark.group = "index lookup, 1,000 per round"
    benchmark(lookups)


def test_time_index_lookup(benchmark, time_index):
    assert core.time_index_lookup(time_index, ENTRIES, BASE_TS + 81) == 80
    targets = [BASE_TS + random.randrange(ENTRIES * 40) for _ in range(1000)]

    def lookups():
        for t in targets:
            core.time_index_lookup(time_index, ENTRIES, t)

    benchmark.group = "index lookup, 1,000 per round"
    benchmark(lookups)
