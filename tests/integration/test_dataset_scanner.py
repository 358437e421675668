"""What arrowlog.dataset's scanner hands to pyarrow's own machinery: every
Scanner method agrees with pyarrow's scanner over the replayed topic,
write_dataset round-trips a window, pyarrow's other Dataset methods never
crash, and the scan's own shortcuts (kept filter trees, counted bytes) keep
pyarrow's meaning."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_dataset import T0, arrow_expr, hours_topic, messy, produce_messy, shared, windows  # noqa: F401

import arrowlog
from arrowlog._dataset_filters import arrow_tree
from arrowlog._dataset_stats import byte_widths, handed_bytes
from arrowlog.dataset import DatasetError

ORDER = [("partition", "ascending"), ("offset", "ascending")]


def general(log, topic, columns, expr):
    """pyarrow's own scanner over the replayed topic: what the pushdown must equal."""
    return pads.dataset(arrowlog.replay(log, topic).to_arrow()).scanner(columns=columns, filter=expr)


def ordered(table: pa.Table) -> pa.Table:
    return table.sort_by([(k, d) for k, d in ORDER if k in table.column_names])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conds=windows(), columns=st.sampled_from([None, ["partition", "offset", "x"], ["offset", "y"]]),
       n=st.integers(0, 40))
def test_every_scanner_method_equals_pyarrows_scanner_over_the_replay(messy, shared, conds, columns, n):  # noqa: F811
    expr = arrow_expr(conds)
    ours, theirs = shared.scanner(columns=columns, filter=expr), general(messy, "m", columns, expr)
    assert ours.projected_schema == theirs.projected_schema
    assert ours.dataset_schema == theirs.dataset_schema
    expected = theirs.to_table()
    table = ours.to_table()
    assert table.schema == expected.schema
    if {"partition", "offset"} <= set(table.column_names):
        assert ordered(table).equals(ordered(expected))
    else:
        assert table.sort_by([(c, "ascending") for c in table.column_names]).equals(
            expected.sort_by([(c, "ascending") for c in expected.column_names]))
    assert ours.count_rows() == theirs.count_rows() == table.num_rows
    assert pa.Table.from_batches(list(ours.to_batches()), schema=table.schema).equals(table)
    assert ours.to_reader().read_all().equals(table)
    for ready in (n, 1 << 20):  # handed over ready-made, or in part then as pulled
        assert pa.RecordBatchReader._import_from_c_capsule(ours.to_stream(ready)).read_all().equals(table)
    assert pa.Table.from_batches([b.record_batch for b in ours.scan_batches()], schema=table.schema).equals(table)
    assert ours.head(n).equals(table.slice(0, n))
    picks = pa.array(range(0, table.num_rows, 3), pa.int64())
    assert ours.take(picks).equals(table.take(picks))


def window(lo, hi):
    return (pc.field("timestamp") >= pa.scalar(lo, pa.timestamp("ms", "UTC"))) & \
        (pc.field("timestamp") < pa.scalar(hi, pa.timestamp("ms", "UTC")))


@pytest.mark.parametrize("fmt", ["parquet", "ipc"])
def test_write_dataset_of_a_windowed_scanner_round_trips_the_window(messy, tmp_path, fmt):  # noqa: F811
    expr = window(T0 + 20_000, T0 + 50_000)
    ds = arrowlog.dataset(messy, "m")
    pads.write_dataset(ds.scanner(columns=["partition", "offset", "x", "y"], filter=expr), tmp_path / "w",
                       format=fmt, partitioning=["partition"], partitioning_flavor="hive")
    back = pads.dataset(tmp_path / "w", format=fmt, partitioning="hive").to_table()
    expected = general(messy, "m", ["partition", "offset", "x", "y"], expr).to_table()
    assert 0 < back.num_rows < arrowlog.replay(messy, "m").to_arrow().num_rows
    assert ordered(back.select(["partition", "offset", "x", "y"]).cast(expected.schema)).equals(ordered(expected))


def test_write_dataset_of_the_whole_dataset_writes_every_row(messy, tmp_path):  # noqa: F811
    pads.write_dataset(arrowlog.dataset(messy, "m"), tmp_path / "all", format="parquet")
    back = pads.dataset(tmp_path / "all").to_table()
    assert ordered(back).equals(ordered(arrowlog.replay(messy, "m").to_arrow()).cast(back.schema))


def test_pyarrows_other_dataset_methods_read_the_topic_or_say_why_not(hours_topic):  # noqa: F811
    # each of these reached a C++ dataset the class does not have: a segmentation fault
    ds = arrowlog.dataset(hours_topic, "ev")
    full = arrowlog.replay(hours_topic, "ev").to_arrow()
    assert ds.partition_expression.equals(pc.scalar(True))
    kept = ds.filter(pc.field("x") < 10)
    assert isinstance(kept, pads.Dataset) and kept.to_table().num_rows == 10
    top = ds.sort_by([("x", "descending")]).head(1)
    assert top["x"].to_pylist() == [pc.max(full["x"]).as_py()]
    # a join answers as pyarrow's over the replayed topic does (which refuses the list of headers)
    with pytest.raises(pa.ArrowInvalid) as theirs:
        pads.dataset(full).join(pads.dataset(full), keys=["partition", "offset"], right_suffix="_r")
    with pytest.raises(pa.ArrowInvalid) as ours:
        ds.join(arrowlog.dataset(hours_topic, "ev"), keys=["partition", "offset"], right_suffix="_r")
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(DatasetError, match="fragments"):
        ds.get_fragments()
    with pytest.raises(DatasetError, match="cannot be replaced"):
        ds.replace_schema(ds.schema)


def test_a_filter_tree_is_kept_per_expression_not_per_text():
    # the two print alike ("(x == 1)"); the cache must not hand one the other's literal
    narrow, wide = pc.field("x") == pa.scalar(1, pa.int8()), pc.field("x") == pa.scalar(1, pa.int64())
    assert str(narrow) == str(wide)
    assert arrow_tree(narrow)[2][1][1].type == pa.int8()
    assert arrow_tree(wide)[2][1][1].type == pa.int64()
    assert arrow_tree(narrow)[2][1][1].type == pa.int8()


def test_handed_bytes_are_what_pyarrow_counts(tmp_path):
    stamps = pa.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], pa.timestamp("ms", "UTC"))
    batch = pa.record_batch({
        "offset": pa.array(range(10), pa.int64()),
        "timestamp": stamps,
        "x": pa.array([1, None, 3, 4, 5, 6, None, 8, 9, 10], pa.int32()),
        "y": pa.array([0.5] * 10, pa.float64()),
        "key": pa.array([b"k%d" % i for i in range(10)], pa.binary()),
        "s": pa.array([{"a": i} for i in range(10)]),
        "flag": pa.array([True, False] * 5),
    })
    widths = byte_widths(batch.schema)
    assert widths == [8, 8, 4, 8, 0, 0, 0]
    for part in (batch, batch.slice(3, 5), batch.slice(9), batch.slice(0, 0)):
        assert handed_bytes(part, widths) == part.nbytes


def test_a_dataset_scanned_with_the_same_filter_twice_gives_the_same_rows(tmp_path):
    # the second scan takes the kept reading of the filter; an equal-text filter of
    # another literal type must not change the rows either
    with arrowlog.LogDir(str(tmp_path / "d")) as log:
        log.create_topic("m", partitions=3, config={"value.schema": pa.schema([("x", pa.int64()),
                                                                                ("name", pa.string()),
                                                                                ("y", pa.float64())])})
        import numpy as np
        produce_messy(log.path, "m", np.random.default_rng(3))
        ds = arrowlog.dataset(log, "m")
        full = arrowlog.replay(log, "m").to_arrow()
        for literal in (pa.scalar(1, pa.int64()), pa.scalar(1, pa.int8()), pa.scalar(1, pa.int64())):
            expr = (pc.field("partition") == literal) & (pc.field("offset") >= pa.scalar(5, literal.type))
            assert ordered(ds.to_table(filter=expr)).equals(ordered(full.filter(expr)))


def test_to_stream_reads_a_scan_within_its_rows_at_once_and_a_larger_one_as_pulled(hours_topic):  # noqa: F811
    ds = arrowlog.dataset(hours_topic, "ev")  # 6 hours of 4 frames of 50 rows each, 2 partitions
    hour = window(T0 + 3_600_000, T0 + 2 * 3_600_000)
    expected = ds.to_table(columns=["x", "y"], filter=hour)
    assert expected.num_rows == 200
    ds.reset_stats()
    stream = ds.scanner(columns=["x", "y"], filter=hour).to_stream(200)
    assert ds.stats["frames_scanned"] == 4  # all read before anything is pulled: a Table's stream
    assert pa.RecordBatchReader._import_from_c_capsule(stream).read_all().equals(expected)
    assert ds.stats["frames_scanned"] == 4
    ds.reset_stats()
    reader = pa.RecordBatchReader._import_from_c_capsule(ds.scanner(columns=["x"]).to_stream(60))
    assert ds.stats["frames_scanned"] == 2  # 100 rows read: more than 60; the other 22 frames wait
    assert reader.read_next_batch().num_rows == 50
    assert ds.stats["frames_scanned"] == 2
    assert reader.read_all().num_rows == 1200 - 50
    assert ds.stats["frames_scanned"] == 24
    ds.close()
