"""arrowlog.dataset as a DuckDB source: the conditions the scan cuts exactly
(partition, offset, a TIMESTAMPTZ window) go from DuckDB's predicate tree
straight into the scan's bounds; anything else takes DuckDB's pyarrow
translation through LogDataset.scanner, as for any pyarrow Dataset. Either
way the rows are those of a brute-force filter."""

from __future__ import annotations

import sys

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from test_dataset import T0, VALUE_SCHEMA, hours_topic, produce_hours, sql_ts, ts  # noqa: F401

import arrowlog
from arrowlog import _dataset_duckdb
from arrowlog.dataset import LogDataset

pytestmark = pytest.mark.skipif(_dataset_duckdb.dataset_class(LogDataset) is LogDataset,
                                reason="the installed DuckDB has no source protocol (duckdb._sources)")


@pytest.fixture
def counted(hours_topic, monkeypatch):  # noqa: F811
    """A dataset of hours_topic, and how often DuckDB went through scanner(filter=...)."""
    ds = arrowlog.dataset(hours_topic, "ev")
    calls = []
    plain = LogDataset.scanner

    def scanner(self, *args, **kwargs):
        calls.append(kwargs.get("filter"))
        return plain(self, *args, **kwargs)

    monkeypatch.setattr(type(ds), "scanner", scanner)
    yield ds, calls
    ds.close()


def brute(log, expr, columns=("partition", "offset", "x")):
    table = arrowlog.replay(log, "ev").to_arrow().filter(expr)
    return sorted(zip(*(table[c].to_pylist() for c in columns)))


def test_the_dataset_is_a_duckdb_source_and_still_a_pyarrow_dataset(counted):
    ds, _ = counted
    assert isinstance(ds, LogDataset) and type(ds).__name__ == "LogDataset"
    import duckdb._sources as sources
    import pyarrow.dataset as pads
    assert isinstance(ds, pads.Dataset)
    assert sources.adapt(ds) is ds  # DuckDB uses it as it is: no wrapper per query


def test_exact_conditions_go_into_the_scan_without_a_pyarrow_expression(counted, hours_topic):  # noqa: F811
    ds, calls = counted
    lo, hi = T0 + 2 * 3_600_000 + 5, T0 + 4 * 3_600_000
    sql = (f'select partition, "offset", x from ds where "timestamp" >= {sql_ts(lo)} and "timestamp" < {sql_ts(hi)} '
           'and partition in (1) and "offset" between 210 and 330')
    got = sorted(duckdb.sql(sql).fetchall())
    expected = brute(hours_topic, (pc.field("timestamp") >= ts(lo)) & (pc.field("timestamp") < ts(hi))
                     & (pc.field("partition") == 1) & (pc.field("offset") >= 210) & (pc.field("offset") <= 330))
    assert got == expected and 0 < len(got)
    assert calls == []  # straight from DuckDB's tree into the bounds
    plan = duckdb.sql("explain " + sql).fetchall()[0][1]
    scan = plan[plan.index("PYTHON_ARROW_SCAN"):]
    assert '"timestamp" >=' in scan and "partition" in scan and '"offset"' in scan, plan


def test_other_conditions_take_duckdbs_pyarrow_translation_and_stay_exact(counted, hours_topic):  # noqa: F811
    ds, calls = counted
    lo = T0 + 3_600_000
    sql = f'select partition, "offset", x from ds where "timestamp" >= {sql_ts(lo)} and x > 400 and name = \'n2\''
    got = sorted(duckdb.sql(sql).fetchall())
    expected = brute(hours_topic, (pc.field("timestamp") >= ts(lo)) & (pc.field("x") > 400)
                     & (pc.field("name") == "n2"))
    assert got == expected and 0 < len(got)
    assert len(calls) == 1 and calls[0] is not None  # the pyarrow expression DuckDB made, x > 400 in it
    assert "x" in str(calls[0]) and "timestamp" in str(calls[0])


@pytest.mark.parametrize("where", [
    "partition = 0 or x < 10", "not (partition = 0)", "partition != 1", "x in (5, 7, 400)",
])
def test_conditions_outside_the_exact_kinds_are_not_cut_by_the_bounds_alone(counted, hours_topic, where):  # noqa: F811
    ds, calls = counted
    got = sorted(duckdb.connect().execute(f'select partition, "offset", x from ds where {where}').fetchall())
    every = arrowlog.replay(hours_topic, "ev").to_arrow()  # noqa: F841 (DuckDB finds it by name)
    expected = sorted(duckdb.connect().execute(f'select partition, "offset", x from every where {where}').fetchall())
    assert got == expected and 0 < len(got) < every.num_rows
    assert len(calls) == 1  # through DuckDB's pyarrow translation


def test_sub_millisecond_timestamps_bound_the_scan_as_duckdb_compares_them(data_dir):
    log = arrowlog.LogDir(data_dir)
    log.create_topic("ev", partitions=1, config={"value.schema": VALUE_SCHEMA})
    with arrowlog.Producer({"log.dir": data_dir}) as p:
        xs = np.arange(20)
        p.produce_batch("ev", pa.table({"x": xs, "name": ["a"] * 20, "y": xs * 0.5}), timestamps=T0 + xs,
                        partition=0)
    ds = arrowlog.dataset(log, "ev")
    con = duckdb.connect()
    con.register("ds", ds)

    def xs_where(where):
        return [r[0] for r in con.execute(f"select x from ds where {where} order by x").fetchall()]

    at = sql_ts(T0 + 5).replace(".005+00:00'", ".0055+00:00'")  # 5.5 ms after T0
    assert xs_where(f'"timestamp" > {at}') == list(range(6, 20))
    assert xs_where(f'"timestamp" >= {at}') == list(range(6, 20))
    assert xs_where(f'"timestamp" < {at}') == list(range(0, 6))
    assert xs_where(f'"timestamp" <= {at}') == list(range(0, 6))
    assert xs_where(f'"timestamp" = {at}') == []
    ds.close()
    log.close()


def test_without_duckdbs_source_protocol_the_dataset_is_a_plain_pyarrow_dataset(monkeypatch):
    monkeypatch.setitem(sys.modules, "duckdb._sources", None)  # an import of it fails
    assert _dataset_duckdb._build(LogDataset) is LogDataset


def test_a_window_read_again_reuses_its_shaped_frames_while_the_segment_keeps_them(hours_topic):  # noqa: F811
    ds = arrowlog.dataset(hours_topic, "ev")
    window = (pc.field("timestamp") >= ts(T0 + 3_600_000)) & (pc.field("timestamp") < ts(T0 + 2 * 3_600_000))
    first = ds.to_table(columns=["x", "y"], filter=window)
    kept = dict(ds._shaper.shaped)
    assert kept  # the frames of the hour, shaped to (x, y)
    again = ds.to_table(columns=["x", "y"], filter=window)
    assert again.equals(first) and ds._shaper.shaped == kept  # the same shaped frames, none made anew
    for log in hours_topic.topic("ev").partitions():  # the segments let go of their decoded batches
        for seg in log._segments.values():
            seg._batches.clear()
    assert ds._shaper.shaped == {}  # nothing kept pins what the segments let go of
    assert ds.to_table(columns=["x", "y"], filter=window).equals(first)
    assert len(ds._shaper.shaped) == len(kept)  # shaped anew from the batches decoded anew
    ds.close()


def test_a_window_is_handed_to_duckdb_read_and_a_limit_reads_little_more_than_it_takes(hours_topic, monkeypatch):  # noqa: F811
    ds = arrowlog.dataset(hours_topic, "ev")  # 24 frames of 50 rows
    con = duckdb.connect()
    lo, hi = T0 + 2 * 3_600_000, T0 + 4 * 3_600_000
    sql = f'select count(*), sum(x) from ds where "timestamp" >= {sql_ts(lo)} and "timestamp" < {sql_ts(hi)}'
    expected = brute(hours_topic, (pc.field("timestamp") >= ts(lo)) & (pc.field("timestamp") < ts(hi)))
    want = (len(expected), sum(x for _, _, x in expected))
    for ready in (1 << 18, 120, 1):  # a Table handed over; 3 frames then pulled; one frame then pulled
        monkeypatch.setattr(_dataset_duckdb, "READY_ROWS", ready)
        assert con.execute(sql).fetchall()[0] == want
    monkeypatch.setattr(_dataset_duckdb, "READY_ROWS", 60)
    ds.reset_stats()
    assert len(con.execute("select x from ds limit 3").fetchall()) == 3
    assert ds.stats["frames_scanned"] < 24  # not the whole topic read for three rows
    ds.close()
