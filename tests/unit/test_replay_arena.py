"""Column memory a native replay keeps for the next one (core/arena.pxi,
replayview.pxi): a later replay of the process writes into the pages an
earlier table left instead of faulting fresh ones in, and memory a live
table holds is never handed to another (issue 19)."""

import gc

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arrowlog
from arrowlog._native import core
from arrowlog.schema import PRODUCE_SCHEMA
from arrowlog.storage import LogDir
from arrowlog.storage.segment import forget_verified

PARTITIONS = 4


def write(path, seed, per_partition=800, nulls=False):
    """Topic "t" of PARTITIONS small partitions, ~0.1 MB of values each
    (enough for the replay's column buffers to come from the arena), closed
    cleanly; ``seed`` makes the values of one topic differ from another's."""
    with LogDir(path) as d:
        d.create_topic("t", PARTITIONS)
        t = d.topic("t")
        for p in range(PARTITIONS):
            n = per_partition
            keys = [None if nulls and i % 3 == 0 else b"k%d-%d" % (seed, i) for i in range(n)]
            values = [None if nulls and i % 5 == 0 else bytes([(seed + p + i) % 251]) * (100 + i % 7) for i in range(n)]
            headers = [[("h", b"%d" % i)] if nulls and i % 4 == 0 else None for i in range(n)]
            t.partition(p).append(pa.RecordBatch.from_pydict({
                "timestamp": [1_000 + i for i in range(n)], "key": keys, "value": values, "headers": headers,
            }, schema=PRODUCE_SCHEMA))
    return path


def replay(path):
    r = arrowlog.replay(path, "t")
    try:
        return r.to_arrow()
    finally:
        r.close()


def general(path):
    """The same range read the general way."""
    r = arrowlog.replay(path, "t")
    try:
        r._clean = None
        forget_verified()
        return r.to_arrow()
    finally:
        r.close()


def value_address(table):
    return table.column("value").chunk(0).buffers()[2].address


@pytest.fixture(autouse=True)
def empty_arena():
    core.arena_release()
    yield
    core.arena_release()


def test_a_later_replay_writes_into_the_memory_an_earlier_tables_left(tmp_path):
    path = write(str(tmp_path / "d"), 1)
    first = replay(path)
    assert first.column("value").num_chunks == 1  # (read natively, one batch)
    address = value_address(first)
    assert core.arena_blocks() == []  # (the live table holds them)
    del first
    kept = core.arena_blocks()
    # its key and value data (the offsets of ~3,200 rows are malloc's), the
    # values written to the end of what they hold at least
    assert len(kept) == 2 and max(used for _, used in kept) >= PARTITIONS * 800 * 100
    again = replay(path)
    assert value_address(again) == address
    assert core.arena_blocks() == []
    assert again.equals(general(path))
    del again
    assert sorted(core.arena_blocks()) == sorted(kept)  # taken and given back: none added


def test_memory_a_live_table_holds_is_never_given_to_another_replay(tmp_path):
    a = write(str(tmp_path / "a"), 1)
    b = write(str(tmp_path / "b"), 2, nulls=True)
    del_me = replay(a)
    del del_me  # (the arena now holds memory with a's rows in it)
    first = replay(a)
    second = replay(b)   # while the first is alive: memory of its own
    third = replay(a)
    assert len({value_address(t) for t in (first, second, third)}) == 3
    expected_a, expected_b = general(a), general(b)
    assert first.equals(expected_a) and third.equals(expected_a) and second.equals(expected_b)
    # nulls, headers and a shorter run of values written over what another
    # topic's table left: the same table as the general way's
    del first, third
    assert replay(b).equals(expected_b)
    assert second.equals(expected_b)


def test_the_arena_keeps_at_most_its_limits_and_frees_on_release(tmp_path):
    path = write(str(tmp_path / "d"), 1)
    tables = [replay(path) for _ in range(core.ARENA_MAX_BLOCKS)]  # two blocks each
    del tables
    gc.collect()
    kept = core.arena_blocks()
    assert len(kept) == core.ARENA_MAX_BLOCKS
    assert sum(size for size, _ in kept) <= core.ARENA_BYTES
    assert core.arena_release() == sum(size for size, _ in kept)
    assert core.arena_blocks() == []
    assert replay(path).equals(general(path))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.tuples(st.integers(50, 400), st.integers(0, 1500), st.integers(1, 7), st.booleans()),
                       min_size=2, max_size=6),
       seed=st.integers(0, 250))
def test_replays_into_kept_memory_give_the_general_paths_table(tmp_path_factory, frames, seed):
    """Frames of every size, nulls at every rhythm, replayed twice: the
    second into the blocks the first table left (whatever it wrote there)."""
    path = str(tmp_path_factory.mktemp("d"))
    with LogDir(path) as d:
        d.create_topic("t", 2)
        t = d.topic("t")
        for i, (n, size, every, headers) in enumerate(frames):
            t.partition(i % 2).append(pa.RecordBatch.from_pydict({
                "timestamp": [1_000 + j for j in range(n)],
                "key": [None if j % (every + 1) == 1 else b"k%d" % j for j in range(n)],
                "value": [None if j % every == 0 else bytes([(seed + j) % 251]) * (size + j % 5) for j in range(n)],
                "headers": [[("h", b"%d" % j)] if headers and j % 3 == 0 else None for j in range(n)],
            }, schema=PRODUCE_SCHEMA))
    expected = general(path)
    first = replay(path)
    assert first.equals(expected)
    del first
    assert replay(path).equals(expected)
