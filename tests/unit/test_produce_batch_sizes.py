"""produce_batch()'s message.max.bytes check and the bytes it counts for
statistics (backends/local/batches.py::_check_sizes)."""

import json
import time

import numpy as np
import pyarrow as pa
import pytest

import arrowlog
from arrowlog import Producer, errors
from arrowlog.storage import LogDir


def stored_values(data_dir, topic):
    return arrowlog.replay(data_dir, topic).to_arrow().column("value").to_pylist()


def test_largest_key_and_largest_value_in_different_rows_fit(data_dir):
    # the largest key plus the largest value is over the limit, but no one
    # record is: the quick bound must fall back to the exact per-record sizes
    with Producer({"log.dir": data_dir, "message.max.bytes": 1000}) as p:
        assert p.produce_batch("t", [b"v" * 990, b"w"], keys=[b"k", b"k" * 990]) == 2
    assert [len(v) for v in stored_values(data_dir, "t")] == [990, 1]


def test_key_value_and_headers_of_one_row_are_added_up(data_dir):
    headers = pa.array([None, [{"key": "h", "value": b"x" * 400}]],
                       type=pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])))
    with Producer({"log.dir": data_dir, "message.max.bytes": 1000}) as p:
        with pytest.raises(errors.MessageSizeTooLargeError, match="row 1 of produce_batch: a record of 1,001 bytes"):
            p.produce_batch("t", [b"a", b"b" * 300], keys=[b"k", b"k" * 300], headers=headers)
        assert p.produce_batch("t", [b"a", b"b" * 299], keys=[b"k", b"k" * 300], headers=headers) == 2
    assert [len(v) for v in stored_values(data_dir, "t")] == [1, 299]


def test_statistics_count_the_record_bytes_of_produce_and_produce_batch(data_dir):
    stats = []
    with Producer({"log.dir": data_dir, "statistics.interval.ms": 1, "stats_cb": stats.append}) as p:
        p.produce("t", b"v" * 10, key=b"k" * 5)
        p.flush()
        p.produce_batch("t", [b"v" * 100, b"w" * 50], keys=[b"k", None])
        deadline = time.monotonic() + 30  # statistics come every statistics.interval.ms, from poll()
        while (not stats or json.loads(stats[-1])["txmsgs"] < 3) and time.monotonic() < deadline:
            p.poll(0.01)
    last = json.loads(stats[-1])
    assert last["txmsgs"] == 3
    # key + value (+ headers) and 24 bytes a record, as the accumulator counts them
    assert last["txmsg_bytes"] == (15 + 24) + (101 + 24) + (50 + 24)


def test_longest_entry_is_found_without_an_array_of_lengths():
    from arrowlog._native import core
    from arrowlog.backends.local.batches import _longest

    assert core.max_entry_length(np.array([], dtype=np.int32)) == 0
    assert core.max_entry_length(np.array([7], dtype=np.int32)) == 0
    for n in range(2, 40):  # every remainder past the 8-wide loop, the longest at every place
        for at in range(n - 1):
            offsets = np.cumsum([5] + [1] * (n - 1), dtype=np.int32)
            offsets[at + 1:] += 9
            assert core.max_entry_length(offsets) == 10, (n, at)
    arr = pa.array([b"x" * 50, b"", None, b"y" * 9, b"z" * 70])
    assert _longest(arr) == 70
    assert _longest(arr.slice(1, 3)) == 9  # a slice: only its own entries
    assert _longest(pa.nulls(3, pa.binary())) == 0


def test_a_record_too_large_in_a_slice_is_caught_and_one_outside_it_is_not(data_dir):
    values = pa.array([b"v" * 2000, b"a", b"b" * 995, b"c", b"d" * 2000])
    with Producer({"log.dir": data_dir, "message.max.bytes": 1000}) as p:
        assert p.produce_batch("t", values.slice(1, 3), keys=[b"k", b"k", b"k"]) == 3
        with pytest.raises(errors.MessageSizeTooLargeError, match="row 1 of produce_batch"):
            p.produce_batch("t", values.slice(1, 3), keys=[b"k", b"kkkkkk", b"k"])
    assert [len(v) for v in stored_values(data_dir, "t")] == [1, 995, 1]


def test_records_without_timestamps_share_one_and_the_frames_say_so(data_dir):
    # produce_batch stamps records without timestamps with one wall-clock
    # time and gives it to every frame header as its bounds, unscanned
    before = int(time.time() * 1000)
    with Producer({"log.dir": data_dir, "batch.num.messages": 1000}) as p:  # several frames
        assert p.produce_batch("t", [b"v" * 100] * 5000) == 5000
    after = int(time.time() * 1000)
    with LogDir(data_dir) as d:
        frames = d.topic("t").partition(0).read(0, 1 << 30)
    assert len(frames) > 1
    stamps = {t for f in frames for t in f.batch.column("timestamp").cast(pa.int64()).to_pylist()}
    assert len(stamps) == 1 and before <= next(iter(stamps)) <= after
    assert {(f.min_timestamp, f.max_timestamp) for f in frames} == {(next(iter(stamps)),) * 2}


def test_given_timestamps_bound_each_frame(data_dir):
    ts = np.arange(5000, dtype=np.int64)[::-1] * 3 + 1_000_000
    with Producer({"log.dir": data_dir, "batch.num.messages": 1000}) as p:
        assert p.produce_batch("t", [b"v" * 100] * 5000, timestamps=pa.array(ts)) == 5000
    with LogDir(data_dir) as d:
        frames = d.topic("t").partition(0).read(0, 1 << 30)
    assert len(frames) > 1
    for f in frames:
        got = f.batch.column("timestamp").cast(pa.int64()).to_pylist()
        assert (f.min_timestamp, f.max_timestamp) == (min(got), max(got))


@pytest.mark.parametrize("given", [True, False], ids=["timestamps", "no-timestamps"])
def test_keyed_records_keep_their_timestamps_in_every_partition(data_dir, given):
    n = 3000
    keys = [b"key-%d" % (i % 17) for i in range(n)]
    values = [b"%d" % i for i in range(n)]
    ts = [1_000_000 + 7 * i for i in range(n)]
    with LogDir(data_dir) as d:
        d.create_topic("t", 3)
    with Producer({"log.dir": data_dir, "batch.num.messages": 400}) as p:
        p.produce_batch("t", values, keys=keys, timestamps=pa.array(ts) if given else None)
    seen = {}
    with LogDir(data_dir) as d:
        for part in range(3):
            frames = d.topic("t").partition(part).read(0, 1 << 30)
            assert frames
            for f in frames:
                got = f.batch.column("timestamp").cast(pa.int64()).to_pylist()
                assert (f.min_timestamp, f.max_timestamp) == (min(got), max(got))
                seen.update(zip((int(v) for v in f.batch.column("value").to_pylist()), got))
    assert sorted(seen) == list(range(n))
    if given:
        assert [seen[i] for i in range(n)] == ts
    else:
        assert len(set(seen.values())) == 1


def test_records_without_timestamps_or_headers_allocate_no_column_of_them(data_dir):
    # each frame gets a slice of one column of the wall-clock time, sized
    # for a frame: no n-record column (8 bytes a record, all fresh pages in
    # a new process) is built for the whole batch; nor a headers column of
    # n nulls (4 bytes of offsets and a bit a record, zeroed)
    import tracemalloc

    n = 200_000
    values = pa.array([b"v" * 100] * n)
    with Producer({"log.dir": data_dir, "batch.num.messages": 10_000}) as p:
        p.produce_batch("t", values[:10])  # the partition opened
        tracemalloc.start()
        try:
            p.produce_batch("t", values)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 2 * n, peak / n  # it was 12.6 bytes a record, then 4.2 (the headers column); now 0.05
