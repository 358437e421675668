"""produce_batch()'s message.max.bytes check and the bytes it counts for
statistics (backends/local/batches.py::_check_sizes)."""

import json
import time

import pyarrow as pa
import pytest

import arrowlog
from arrowlog import Producer, errors


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
