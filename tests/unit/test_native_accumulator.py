"""The record accumulator builds the same Arrow data pyarrow would.

Its columns come from the one native envelope builder (_native/envelope.pxi),
which the Kafka record-batch decoder shares (tests/unit/test_kafka_codec.py
checks that side against the same oracle).
"""

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowlog._native import core
from arrowlog.schema import HEADERS_TYPE, PRODUCE_SCHEMA

records = st.lists(
    st.tuples(
        st.one_of(st.none(), st.binary(max_size=40)),
        st.one_of(st.none(), st.binary(max_size=200)),
        st.integers(min_value=0, max_value=2**45),
        st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=8))),
                                      max_size=3)),
    ),
    min_size=1, max_size=300,
)


@given(records)
@settings(max_examples=200, deadline=None)
def test_take_matches_pyarrow(recs):
    acc = core.RecordAccumulator()
    for key, value, ts, headers in recs:
        acc.append_record(key, value, ts, headers)
    assert acc.count == len(recs)
    assert acc.min_timestamp == min(r[2] for r in recs)
    assert acc.max_timestamp == max(r[2] for r in recs)
    batch = acc.take()
    batch.validate(full=True)
    assert acc.count == 0
    expected = pa.RecordBatch.from_arrays([
        pa.array([r[2] for r in recs], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        pa.array([r[0] for r in recs], pa.binary()),
        pa.array([r[1] for r in recs], pa.binary()),
        pa.array([None if r[3] is None else [{"key": k, "value": v} for k, v in r[3]] for r in recs],
                 HEADERS_TYPE),
    ], schema=PRODUCE_SCHEMA)
    assert batch.equals(expected)


def produce_table(recs):
    """The oracle: pyarrow's own build of (key, value, timestamp, headers) records in PRODUCE_SCHEMA."""
    return pa.Table.from_pydict({
        "timestamp": [r[2] for r in recs],
        "key": [r[0] for r in recs],
        "value": [r[1] for r in recs],
        "headers": [None if r[3] is None else [{"key": k, "value": v} for k, v in r[3]] for r in recs],
    }, schema=PRODUCE_SCHEMA)


@given(st.one_of(st.just([]), records))
@settings(max_examples=100, deadline=None)
def test_envelope_builder_matches_pyarrow_table(recs):
    """Null keys and values, headers (an empty list, a null list, null header
    values) and no records at all build exactly what pa.Table.from_pydict does."""
    acc = core.RecordAccumulator()
    for key, value, ts, headers in recs:
        acc.append_record(key, value, ts, headers)
    batch = acc.detach().to_batch()
    batch.validate(full=True)
    assert batch.schema.equals(PRODUCE_SCHEMA)
    assert pa.Table.from_batches([batch]).equals(produce_table(recs))


def test_envelope_builder_edge_records():
    recs = [
        (None, None, 0, None),
        (b"", b"", 1, []),
        (b"k", None, 2, [("", None), ("\u00e9", b"")]),
        (None, b"v" * 1000, 2**45, [("h", b"x" * 100)]),
    ]
    acc = core.RecordAccumulator()
    for key, value, ts, headers in recs:
        acc.append_record(key, value, ts, headers)
    got = pa.Table.from_batches([acc.detach().to_batch()])
    assert got.equals(produce_table(recs))
    assert got.column("headers").to_pylist()[:2] == [None, []]


def test_empty_accumulator_builds_an_empty_batch():
    batch = core.RecordAccumulator().to_batch()
    batch.validate(full=True)
    assert batch.num_rows == 0 and batch.schema.equals(PRODUCE_SCHEMA)
    assert pa.Table.from_batches([batch]).equals(produce_table([]))


def test_detach_leaves_empty_and_reusable():
    acc = core.RecordAccumulator()
    acc.append_record(b"k", b"v", 1)
    detached = acc.detach()
    assert acc.count == 0 and detached.count == 1
    acc.append_record(b"k2", b"v2", 2)
    assert detached.to_batch().column(2).to_pylist() == [b"v"]
    assert acc.take().column(2).to_pylist() == [b"v2"]
    assert acc.take() is None


def test_normalize_headers_rejects_bad_shapes():
    import pytest

    with pytest.raises(TypeError):
        core.normalize_headers([("k",)])
    with pytest.raises(TypeError):
        core.normalize_headers([(1, b"v")])
    assert core.normalize_headers({"a": "b", "c": None}) == [("a", b"b"), ("c", None)]


def _filled(acc, recs):
    for key, value, ts, headers in recs:
        acc.append_record(key, value, ts, headers)
    return acc


@settings(max_examples=60, deadline=None)
@given(records.filter(bool), records.filter(bool))
def test_a_recycled_batch_serves_the_next_detach_as_a_fresh_one_would(first, second):
    """recycle() keeps a stored batch's memory for the next detach(): the
    next batch's frame and Arrow data are those of a fresh accumulator, even
    when the first one left null bitmaps and headers behind."""
    acc = _filled(core.RecordAccumulator(), first)
    stored = acc.detach()
    body = stored.frame_body(7)
    acc.recycle(stored)
    assert stored.count == 0
    _filled(acc, second)
    again = acc.detach()
    assert again is stored  # no new accumulator
    assert acc.count == 0
    fresh = _filled(core.RecordAccumulator(), second)
    assert again.frame_body(3) == fresh.frame_body(3)
    assert again.to_batch().equals(fresh.to_batch())
    assert body == _filled(core.RecordAccumulator(), first).frame_body(7)


def test_recycle_leaves_a_batch_whose_buffers_went_to_arrow():
    acc = core.RecordAccumulator()
    acc.append_record(b"k", b"v", 1)
    taken = acc.detach()
    taken.to_batch()
    acc.recycle(taken)
    acc.append_record(b"k2", b"v2", 2)
    assert acc.detach() is not taken
