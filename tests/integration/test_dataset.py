"""arrowlog.dataset / scan_polars: DuckDB and polars push filters and columns into the log."""

from __future__ import annotations

import datetime as dt
import os

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arrowlog
from arrowlog.dataset import DatasetError

T0 = 1_700_000_000_000  # ms
HOUR = 3_600_000
VALUE_SCHEMA = pa.schema([("x", pa.int64()), ("name", pa.string()), ("y", pa.float64())])
UTC = dt.timezone.utc


def ts(ms: int) -> pa.Scalar:
    return pa.scalar(ms, pa.timestamp("ms", tz="UTC"))


def sql_ts(ms: int) -> str:
    return "TIMESTAMPTZ '" + dt.datetime.fromtimestamp(ms / 1000, UTC).isoformat(sep=" ", timespec="milliseconds") + "'"


def produce_hours(log: arrowlog.LogDir, topic: str, hours: int, frames_per_hour: int, rows: int, partitions: int):
    """Typed records, one frame per produce_batch, ascending time: `hours` of them."""
    with arrowlog.Producer({"log.dir": log.path}) as p:
        i = 0
        for h in range(hours):
            for f in range(frames_per_hour):
                start = T0 + h * HOUR + f * (HOUR // frames_per_hour)
                stamps = start + np.arange(rows) * (HOUR // frames_per_hour // rows)
                xs = np.arange(i, i + rows)
                p.produce_batch(topic, pa.table({"x": xs, "name": [f"n{v % 5}" for v in xs],
                                                 "y": pa.array(xs * 0.5)}),
                                timestamps=stamps, partition=(h * frames_per_hour + f) % partitions)
                i += rows


@pytest.fixture
def hours_topic(data_dir):
    log = arrowlog.LogDir(data_dir)
    log.create_topic("ev", partitions=2, config={"value.schema": VALUE_SCHEMA})
    produce_hours(log, "ev", hours=6, frames_per_hour=4, rows=50, partitions=2)
    yield log
    log.close()


def test_duckdb_one_hour_window_reads_only_that_hours_frames(hours_topic):
    ds = arrowlog.dataset(hours_topic, "ev")
    lo, hi = T0 + 2 * HOUR, T0 + 3 * HOUR
    sql = f'select count(*), sum(x) from ds where "timestamp" >= {sql_ts(lo)} and "timestamp" < {sql_ts(hi)}'
    brute = arrowlog.replay(hours_topic, "ev").to_arrow().filter(
        (pc.field("timestamp") >= ts(lo)) & (pc.field("timestamp") < ts(hi)))
    expected = (brute.num_rows, pc.sum(brute.column("x")).as_py())
    assert duckdb.sql(sql).fetchall()[0] == expected  # cold: learns the frames' time ranges
    ds.reset_stats()
    assert duckdb.sql(sql).fetchall()[0] == expected
    # 24 frames in all; the hour holds 4 (and the frame starting at `hi` cannot be told apart
    # from the hour by its min/max alone only if it overlaps: it does not)
    assert ds.stats["frames_read"] == 4, ds.stats
    assert ds.stats["rows_scanned"] == expected[0] == 200
    plan = duckdb.sql("explain " + sql).fetchall()[0][1]
    scan = plan[plan.index("PYTHON_ARROW_SCAN"):]
    assert "Filters:" in scan and '"timestamp" >=' in scan and '"timestamp" <' in scan, plan


def test_a_cold_window_scan_starts_where_the_time_index_points(hours_topic):
    # A fresh dataset knows no frame yet: the time index, not a walk from
    # each partition's start, finds where the last hour begins.
    ds = arrowlog.dataset(hours_topic, "ev")
    f = pc.field("timestamp") >= ts(T0 + 5 * HOUR)
    assert ds.count_rows(filter=f) == 200
    assert ds.stats["frames_read"] == 4, ds.stats  # the hour's frames, of 24


def test_offset_and_partition_conditions_use_the_offset_index(hours_topic):
    ds = arrowlog.dataset(hours_topic, "ev")
    f = (pc.field("partition") == 1) & (pc.field("offset") >= 20) & (pc.field("offset") <= 60)
    got = ds.to_table(columns=["partition", "offset"], filter=f)
    assert got.column("offset").to_pylist() == list(range(20, 61))
    assert set(got.column("partition").to_pylist()) == {1}
    assert ds.stats["frames_read"] == 2  # offsets 0..49 and 50..99 of partition 1


def test_projection_of_one_typed_column_touches_only_its_buffers(hours_topic):
    ds = arrowlog.dataset(hours_topic, "ev")
    everything = ds.to_table()
    all_bytes = ds.stats["bytes_scanned"]
    ds.reset_stats()
    xs = ds.to_table(columns=["x"])
    assert xs.schema.names == ["x"] and xs.column("x").equals(everything.column("x"))
    # x is 8 bytes a row; everything else (envelope, strings, y) is not read
    assert ds.stats["bytes_scanned"] == 8 * everything.num_rows < all_bytes / 4, (ds.stats, all_bytes)


def test_value_field_filter_skips_frames_once_their_range_is_known(hours_topic):
    ds = arrowlog.dataset(hours_topic, "ev")
    f = pc.field("x") >= 1150
    brute = arrowlog.replay(hours_topic, "ev").to_arrow().filter(f)
    assert ds.to_table(filter=f).sort_by("x").equals(brute.sort_by("x"))
    ds.reset_stats()
    assert ds.to_table(filter=f).num_rows == brute.num_rows == 50
    assert ds.stats["frames_scanned"] == 1, ds.stats


def test_scan_is_a_snapshot_and_the_dataset_sees_later_appends(hours_topic):
    ds = arrowlog.dataset(hours_topic, "ev")
    before = ds.count_rows()
    scanner = ds.scanner(columns=["offset"])  # the watermarks are taken here
    produce_hours(hours_topic, "ev", hours=1, frames_per_hour=2, rows=10, partitions=2)
    assert scanner.to_table().num_rows == before
    assert ds.count_rows() == before + 20
    assert duckdb.sql("select count(*) from ds").fetchall()[0][0] == before + 20


def test_polars_scan_pushes_columns_predicate_and_n_rows(hours_topic):
    ds = arrowlog.dataset(hours_topic, "ev")
    lf = arrowlog.scan_polars(ds, "ev")
    lo = dt.datetime.fromtimestamp((T0 + 4 * HOUR) / 1000, UTC)
    q = lf.filter((pl.col("timestamp") >= lo) & (pl.col("partition") == 0)).select("x")
    assert "arrowlog" in q.explain()
    brute = pl.from_arrow(arrowlog.replay(hours_topic, "ev").to_arrow())
    expected = brute.filter((pl.col("timestamp") >= lo) & (pl.col("partition") == 0)).select("x")
    assert q.collect().sort("x").equals(expected.sort("x"))
    ds.reset_stats()
    assert q.collect().height == expected.height
    assert ds.stats["frames_read"] == 4, ds.stats  # hours 4 and 5 of partition 0
    ds.reset_stats()
    head = lf.head(7).collect()
    assert head.height == 7 and ds.stats["frames_read"] == 1, ds.stats


def test_unknown_column_is_a_clear_error(hours_topic):
    ds = arrowlog.dataset(hours_topic, "ev")
    with pytest.raises(DatasetError, match="no column.*'nope'"):
        ds.to_table(columns=["nope"])


def test_dataset_from_a_path_owns_and_closes_its_log(hours_topic):
    with arrowlog.dataset(hours_topic.path, "ev") as ds:
        assert ds.count_rows(filter=pc.field("partition") == 0) == 600


# -- random conjunctions against a brute-force filter -------------------------------------

def produce_messy(path, topic, rng, keyed=False):
    """90 small frames over three partitions: timestamps out of order inside
    and across frames, nulls in y. ``keyed``: the first 24 frames and every
    fourth after hold only three hot keys, the rest many keys, and every
    tenth frame is followed by a tombstone."""
    with arrowlog.Producer({"log.dir": path}) as p:
        for i in range(90):
            n = int(rng.integers(1, 60))
            xs = rng.integers(-1000, 1000, n)
            stamps = T0 + i * 1000 + rng.integers(-2500, 2500, n)
            ys = pa.array([None if v % 7 == 0 else float(v) for v in xs], pa.float64())
            keys = None
            if keyed:
                hot = i < 24 or i % 4 == 1
                keys = [(b"h%d" if hot else b"k%d") % k for k in rng.integers(0, 3 if hot else 200, n)]
            p.produce_batch(topic, pa.table({"x": xs, "name": [f"n{v % 4}" for v in xs], "y": ys}), keys=keys,
                            timestamps=stamps, partition=i % 3)
            if keyed and i % 10 == 5:
                p.produce(topic, None, key=b"k%d" % rng.integers(0, 200), timestamp=T0 + i * 1000, partition=i % 3)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """Three partitions of small frames: timestamps out of order inside and across
    frames, nulls in y, and partition 0's start deleted by retention."""
    path = str(tmp_path_factory.mktemp("messy") / "data")
    log = arrowlog.LogDir(path)
    log.create_topic("m", partitions=3, config={"value.schema": VALUE_SCHEMA, "segment.bytes": 16 << 10,
                                                "retention.bytes": 24 << 10})
    produce_messy(path, "m", np.random.default_rng(5))
    log.topic("m").partition(0).enforce_retention()
    assert log.topic("m").partition(0).watermarks()[0] > 0  # the start was deleted
    yield log
    log.close()


@pytest.fixture(scope="module")
def shared(messy):
    """One dataset for every example: its frame statistics grow in patches
    (each query learns its own offset range), with gaps between them."""
    return arrowlog.dataset(messy, "m")


COLUMNS = {"partition": (0, 2), "offset": (0, 2000), "timestamp": (T0 - 3000, T0 + 93_000),
           "x": (-1100, 1100), "y": (-1100.0, 1100.0)}


@st.composite
def conditions(draw):
    out = []
    for _ in range(draw(st.integers(0, 4))):
        col = draw(st.sampled_from(sorted(COLUMNS) + ["name", "or"]))
        if col == "name":
            out.append(("name", "==", draw(st.sampled_from(["n0", "n1", "n3", "zz"]))))
        elif col == "or":
            out.append(("or", draw(st.integers(0, 2)), draw(st.integers(-1000, 1000))))
        elif col in ("partition", "x") and draw(st.booleans()):
            out.append((col, "in", draw(st.lists(st.integers(*COLUMNS[col]), min_size=1, max_size=3))))
        else:
            lo, hi = COLUMNS[col]
            value = draw(st.integers(int(lo), int(hi)))
            out.append((col, draw(st.sampled_from(["==", "<", "<=", ">", ">="])), value))
    return out


def arrow_expr(conds):
    expr = None
    for c in conds:
        if c[0] == "or":
            e = (pc.field("partition") == c[1]) | (pc.field("x") < c[2])
        elif c[1] == "in":
            e = pc.field(c[0]).isin(c[2])
        else:
            value = ts(c[2]) if c[0] == "timestamp" else c[2]
            f = pc.field(c[0])
            e = {"==": f == value, "<": f < value, "<=": f <= value, ">": f > value, ">=": f >= value}[c[1]]
        expr = e if expr is None else expr & e
    return expr


def sql_where(conds):
    parts = []
    for c in conds:
        if c[0] == "or":
            parts.append(f"(partition = {c[1]} or x < {c[2]})")
        elif c[1] == "in":
            parts.append(f'"{c[0]}" in ({", ".join(map(str, c[2]))})')
        else:
            value = sql_ts(c[2]) if c[0] == "timestamp" else (f"'{c[2]}'" if c[0] == "name" else str(c[2]))
            parts.append(f'"{c[0]}" {"=" if c[1] == "==" else c[1]} {value}')
    return " and ".join(parts) or "true"


def polars_expr(conds):
    expr = pl.lit(True)
    for c in conds:
        if c[0] == "or":
            e = (pl.col("partition") == c[1]) | (pl.col("x") < c[2])
        elif c[1] == "in":
            e = pl.col(c[0]).is_in(c[2])
        else:
            value = dt.datetime.fromtimestamp(c[2] / 1000, UTC) if c[0] == "timestamp" else c[2]
            f = pl.col(c[0])
            e = {"==": f == value, "<": f < value, "<=": f <= value, ">": f > value, ">=": f >= value}[c[1]]
        expr = expr & e
    return expr


def rows(table, cols=("partition", "offset", "x", "y")):
    return sorted(zip(*(table[c].to_pylist() for c in cols)))


def assert_matches_brute_force(log, topic, shared, conds):
    full = arrowlog.replay(log, topic).to_arrow()
    expr = arrow_expr(conds)
    expected = rows(full.filter(expr) if expr is not None else full)
    ds = arrowlog.dataset(log, topic)
    assert rows(ds.to_table(filter=expr)) == expected
    assert rows(shared.to_table(filter=expr)) == expected
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    got = con.sql(f"select partition, \"offset\", x, y from ds where {sql_where(conds)}").fetchall()
    assert sorted(got, key=lambda r: (r[0], r[1])) == expected
    lf = arrowlog.scan_polars(ds, topic).filter(polars_expr(conds)).select("partition", "offset", "x", "y")
    assert rows(lf.collect().to_arrow()) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conds=conditions())
def test_random_conjunctions_equal_a_brute_force_filter(messy, shared, conds):
    assert_matches_brute_force(messy, "m", shared, conds)


@pytest.fixture(scope="module")
def compacted(tmp_path_factory):
    """The messy frames again, keyed, on a compacted topic: the first
    segments hold only three hot keys (compaction leaves them one empty
    frame), later frames mix hot keys with many others, some records are
    tombstones (young enough to stay), so offsets have gaps."""
    path = str(tmp_path_factory.mktemp("compacted") / "data")
    log = arrowlog.LogDir(path)
    log.create_topic("c", partitions=3, config={"value.schema": VALUE_SCHEMA, "segment.bytes": 16 << 10,
                                                "cleanup.policy": "compact"})
    produce_messy(path, "c", np.random.default_rng(7), keyed=True)
    before = arrowlog.replay(log, "c").to_arrow().num_rows
    log.compact("c", now_ms=T0)  # every tombstone is younger than delete.retention.ms: they stay
    after = arrowlog.replay(log, "c").to_arrow()
    assert 0 < after.num_rows < before / 2
    assert after.filter(pc.field("x").is_null()).num_rows > 0  # tombstones
    for p in range(3):
        plog = log.topic("c").partition(p)
        frames, pos = [], plog.watermarks()[0]
        while pos < plog.watermarks()[1]:
            frames += plog.read(pos)
            pos = frames[-1].next_offset
        assert any(fr.rows == 0 for fr in frames)  # a frame compaction emptied
        assert any(fr.rows < fr.next_offset - fr.base_offset for fr in frames)  # gaps inside frames
    yield log
    log.close()


@pytest.fixture(scope="module")
def shared_compacted(compacted):
    return arrowlog.dataset(compacted, "c")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conds=conditions())
def test_random_conjunctions_equal_a_brute_force_filter_across_compacted_gaps(compacted, shared_compacted, conds):
    assert_matches_brute_force(compacted, "c", shared_compacted, conds)


@pytest.mark.parametrize("fixture,topic", [("messy", "m"), ("compacted", "c")])
def test_time_lookup_is_the_first_offset_at_or_after_the_time(request, fixture, topic):
    # What a window's start leans on: Kafka's ListOffsets by time over
    # out-of-order timestamps, a retention-truncated start and compacted gaps.
    log = request.getfixturevalue(fixture)
    full = arrowlog.replay(log, topic).to_arrow()
    for p in range(3):
        part = full.filter(pc.field("partition") == p).sort_by("offset")
        offsets = np.array(part["offset"].to_pylist())
        stamps = np.array(part["timestamp"].cast(pa.int64()).to_pylist())
        for t in range(T0 - 4000, T0 + 95_000, 97):
            later = offsets[stamps >= t]
            assert log.topic(topic).partition(p).offset_for_timestamp(t) == (int(later[0]) if len(later) else None)


def test_window_is_exact_after_a_clean_reopen_of_small_segments(data_dir):
    # Reopened closed segments once lacked their final time-index entry; a
    # window's start comes from the time index, so it must hold after a reopen.
    with arrowlog.LogDir(data_dir) as log:
        log.create_topic("s", partitions=1, config={"segment.bytes": 16 << 10})
    with arrowlog.Producer({"log.dir": data_dir}) as p:
        for i in range(60):
            p.produce_batch("s", [b"x" * 20] * 20, timestamps=T0 + np.arange(i * 20, i * 20 + 20), partition=0)
    with arrowlog.LogDir(data_dir) as log:
        assert len(log.topic("s").partition(0).segment_bases()) > 3
        ds = arrowlog.dataset(log, "s")
        for lo in (T0 + 140, T0 + 179, T0 + 500):
            assert log.topic("s").partition(0).offset_for_timestamp(lo) == lo - T0
            f = (pc.field("timestamp") >= ts(lo)) & (pc.field("timestamp") < ts(lo + 100))
            assert ds.to_table(columns=["offset"], filter=f).column("offset").to_pylist() == \
                list(range(lo - T0, lo - T0 + 100))


def test_json_values_are_columns_and_only_needed_fields_are_parsed(data_dir):
    log = arrowlog.LogDir(data_dir)
    log.create_topic("orders", partitions=2)
    with arrowlog.Producer({"log.dir": data_dir}) as p:
        for i in range(300):
            p.produce("orders", b'{"item": "mug%d", "total": %d.5, "offset": %d}' % (i % 3, i, i),
                      timestamp=T0 + i * 1000, partition=i % 2)
    ds = arrowlog.dataset(log, "orders", value_format="json")
    assert ds.schema.names == ["partition", "offset", "timestamp", "key", "item", "total", "value_offset", "headers"]
    assert ds.schema.field("total").type == pa.float64()
    got = duckdb.sql(f'select item, count(*) n, sum(total) s from ds where "timestamp" >= {sql_ts(T0 + 100_000)} '
                     "group by item order by item").fetchall()
    assert got == [(f"mug{k}", sum(1 for i in range(100, 300) if i % 3 == k),
                    sum(i + 0.5 for i in range(100, 300) if i % 3 == k)) for k in range(3)]
    ds.reset_stats()
    only = ds.to_table(columns=["total"], filter=pc.field("total") < 10)
    assert sorted(only.column("total").to_pylist()) == [i + 0.5 for i in range(10)]
    assert ds.stats["bytes_scanned"] == 8 * ds.stats["rows_scanned"]  # no other field was built
    lf = arrowlog.scan_polars(ds, "orders").filter(pl.col("value_offset") >= 295).select("value_offset")
    assert sorted(lf.collect()["value_offset"].to_list()) == [295, 296, 297, 298, 299]
    log.close()


def test_json_dataset_of_an_empty_topic_asks_for_a_schema(data_dir):
    with arrowlog.LogDir(data_dir) as log:
        log.create_topic("e")
        with pytest.raises(DatasetError, match="value_schema"):
            arrowlog.dataset(log, "e", value_format="json")
        ds = arrowlog.dataset(log, "e", value_format="json", value_schema=pa.schema([("a", pa.int64())]))
        assert ds.to_table().num_rows == 0 and "a" in ds.schema.names


def test_a_filter_on_an_unknown_column_is_a_clear_error(hours_topic):
    ds = arrowlog.dataset(hours_topic, "ev")
    with pytest.raises(DatasetError, match=r"filter names column\(s\) \['nope'\]"):
        ds.to_table(filter=pc.field("nope") > 1)
    with pytest.raises(DatasetError, match="Expression"):
        ds.to_table(filter="x > 1")


def test_concurrent_scans_of_one_dataset_agree(hours_topic):
    from concurrent.futures import ThreadPoolExecutor

    ds = arrowlog.dataset(hours_topic, "ev")
    f = (pc.field("timestamp") >= ts(T0 + HOUR)) & (pc.field("x") < 900)
    expected = rows(arrowlog.replay(hours_topic, "ev").to_arrow().filter(f))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: rows(ds.to_table(filter=f)), range(8)))
    assert all(r == expected for r in results)


def test_key_equality_reads_only_the_keys_partition_when_keys_were_routed_by_murmur2(data_dir):
    log = arrowlog.LogDir(data_dir)
    log.create_topic("k", partitions=4)
    with arrowlog.Producer({"log.dir": data_dir}) as p:
        for i in range(400):
            p.produce("k", b"v%d" % i, key=b"user-%d" % (i % 10))
    key = b"user-3"
    f = pc.field("key") == key
    expected = rows(arrowlog.replay(log, "k").to_arrow().filter(f), ("partition", "offset"))
    plain = arrowlog.dataset(log, "k")
    assert rows(plain.to_table(filter=f), ("partition", "offset")) == expected
    assert plain.stats["frames_read"] > 1  # every partition
    routed = arrowlog.dataset(log, "k", keys_by_murmur2=True)
    assert rows(routed.to_table(filter=f), ("partition", "offset")) == expected
    assert {p for p, _ in expected} == {arrowlog.murmur2_partition(key, 4)}
    assert routed.stats["frames_read"] < plain.stats["frames_read"], (routed.stats, plain.stats)
    routed.reset_stats()
    got = duckdb.sql("select partition, \"offset\" from routed where key = 'user-3'::blob").fetchall()
    assert sorted(got) == expected
    assert 0 < routed.stats["frames_read"] < plain.stats["frames_read"], (routed.stats, plain.stats)
    log.close()


def test_windows_stay_exact_when_known_frames_have_gaps(hours_topic):
    ds = arrowlog.dataset(hours_topic, "ev")
    full = arrowlog.replay(hours_topic, "ev").to_arrow()
    patches = [(pc.field("offset") >= 100) & (pc.field("offset") < 300),
               (pc.field("offset") >= 450) & (pc.field("offset") < 500)]
    for f in patches:  # the dataset learns these frames only
        assert rows(ds.to_table(filter=f)) == rows(full.filter(f))
    for lo_h, hi_h in ((4, 5), (3, 4), (0, 6), (5, 6), (1, 2)):
        f = (pc.field("timestamp") >= ts(T0 + lo_h * HOUR)) & (pc.field("timestamp") < ts(T0 + hi_h * HOUR))
        assert rows(ds.to_table(filter=f)) == rows(full.filter(f)), (lo_h, hi_h)


def test_a_polars_scan_of_a_path_closes_its_log_when_dropped(hours_topic):
    import gc

    def scan_and_drop():
        lf = arrowlog.scan_polars(hours_topic.path, "ev")
        assert lf.select(pl.len()).collect().item() == 1200
        del lf
        gc.collect()

    scan_and_drop()  # whatever polars opens once for good is open now
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        scan_and_drop()
    assert len(os.listdir("/proc/self/fd")) <= before


def test_a_kafka_location_is_refused_with_what_to_use_instead():
    with pytest.raises(arrowlog.ConfigError, match=r"local data directory.*arrowlog.replay\(url, topic\)"):
        arrowlog.dataset("kafka://127.0.0.1:9", "t")


def test_a_filter_on_a_column_added_by_an_evolution_skips_the_older_frames(hours_topic):
    """Frames written before the value schema gained a column read it as nulls, and no
    comparison is true of a null: a filter on the new column scans only newer frames."""
    wider = pa.schema(list(VALUE_SCHEMA) + [("region", pa.string())])
    hours_topic.alter_topic("ev", {"value.schema": wider})
    with arrowlog.Producer({"log.dir": hours_topic.path}) as p:
        p.produce_batch("ev", pa.table({"x": [9000, 9001], "name": ["a", "b"], "y": [1.0, 2.0],
                                        "region": ["eu", "us"]}), partition=0)
    ds = arrowlog.dataset(hours_topic, "ev")
    f = pc.field("region") == "eu"
    assert ds.to_table(filter=f).column("x").to_pylist() == [9000]
    assert ds.stats["frames_scanned"] == 1, ds.stats
    everything = ds.to_table()
    assert everything.num_rows == 6 * 4 * 50 + 2 and everything.column("region").null_count == 6 * 4 * 50
    duckdb = pytest.importorskip("duckdb")
    assert duckdb.sql("SELECT x FROM ds WHERE region IN ('eu', 'us') ORDER BY x").fetchall() == [(9000,), (9001,)]


# -- the exact path: windows cut by the scan itself ----------------------------------------

def window_expr(lo, hi, unit="ms"):
    scale = {"ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    t = pa.timestamp(unit, tz="UTC")
    return (pc.field("timestamp") >= pa.scalar(lo, t)) & (pc.field("timestamp") < pa.scalar(hi, t)), scale


def test_a_window_hands_over_only_its_rows_and_only_the_projected_columns(hours_topic):
    # DuckDB asks for x alone with the window pushed down: the scan cuts the frames
    # at the window's edges itself (no Arrow filter stage), zero-copy.
    ds = arrowlog.dataset(hours_topic, "ev")
    lo, hi = T0 + 2 * HOUR + HOUR // 8, T0 + 3 * HOUR + HOUR // 8  # edges inside frames
    brute = arrowlog.replay(hours_topic, "ev").to_arrow().filter(
        (pc.field("timestamp") >= ts(lo)) & (pc.field("timestamp") < ts(hi)))
    sql = f'select count(*), sum(x) from ds where "timestamp" >= {sql_ts(lo)} and "timestamp" < {sql_ts(hi)}'
    assert duckdb.sql(sql).fetchall()[0] == (brute.num_rows, pc.sum(brute.column("x")).as_py())
    ds.reset_stats()
    assert duckdb.sql(sql).fetchall()[0][0] == brute.num_rows
    assert ds.stats["rows_scanned"] == brute.num_rows, ds.stats
    assert ds.stats["bytes_scanned"] == 8 * brute.num_rows, ds.stats  # x only, no timestamps
    scanner = ds.scanner(columns=["x"], filter=window_expr(lo, hi)[0])
    assert scanner.to_table().column("x").to_pylist() == sorted(brute.column("x").to_pylist()) or \
        sorted(scanner.to_table().column("x").to_pylist()) == sorted(brute.column("x").to_pylist())
    assert scanner.count_rows() == brute.num_rows  # a scanner reads its snapshot again
    assert scanner.head(3).num_rows == 3 and scanner.projected_schema.names == ["x"]


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_sub_millisecond_window_edges_are_exact(hours_topic, unit):
    ds = arrowlog.dataset(hours_topic, "ev")
    full = arrowlog.replay(hours_topic, "ev").to_arrow()
    stamps = sorted(set(full.column("timestamp").cast(pa.int64()).to_pylist()))
    scale = {"ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    for a, b in ((stamps[10], stamps[40]), (stamps[100], stamps[101])):
        for lo, hi in ((a * scale, b * scale), (a * scale + 1, b * scale + 1), (a * scale - 1, b * scale - 1)):
            f, _ = window_expr(lo, hi, unit)
            expected = rows(full.filter(f))
            assert rows(ds.to_table(filter=f)) == expected, (unit, lo, hi)
            assert rows(ds.to_table(filter=f & (pc.field("x") > -1))) == expected  # through Arrow's filter


@st.composite
def windows(draw):
    lo = draw(st.integers(T0 - 3000, T0 + 93_000))
    conds = [("timestamp", ">=", lo), ("timestamp", "<", lo + draw(st.integers(0, 20_000)))]
    if draw(st.booleans()):
        conds.append(("partition", "in", draw(st.lists(st.integers(0, 2), min_size=1, max_size=2))))
    if draw(st.booleans()):
        conds.append(("offset", draw(st.sampled_from([">=", "<", "=="])), draw(st.integers(0, 2000))))
    if draw(st.booleans()):
        conds.append(draw(st.sampled_from([("x", ">", 0), ("name", "==", "n1"), ("or", 1, 0)])))  # not exact
    return conds


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conds=windows())
def test_random_windows_equal_a_brute_force_filter(messy, shared, compacted, shared_compacted, conds):
    # messy: timestamps out of order inside frames (the mask path), a retention-truncated
    # start; compacted: gaps inside frames, emptied frames, tombstones
    assert_matches_brute_force(messy, "m", shared, conds)
    assert_matches_brute_force(compacted, "c", shared_compacted, conds)


def test_transaction_markers_aborted_and_open_transactions_are_left_out_as_replay_does(data_dir):
    with arrowlog.LogDir(data_dir) as log:
        log.create_topic("t", partitions=1)
    p = arrowlog.Producer({"log.dir": data_dir, "transactional.id": "etl"})
    p.init_transactions(10)
    p.begin_transaction()
    p.produce("t", b"c0", timestamp=T0)
    p.produce("t", b"c1", timestamp=T0 + 1)  # 0-1, COMMIT at 2
    p.commit_transaction()
    p.begin_transaction()
    p.produce("t", b"a0", timestamp=T0 + 2)
    p.flush()  # 3, ABORT at 4
    p.abort_transaction()
    p.begin_transaction()
    p.produce("t", b"c2", timestamp=T0 + 3)
    p.commit_transaction()  # 5, COMMIT at 6
    p.begin_transaction()
    p.produce("t", b"open", timestamp=T0 + 4)
    p.flush()  # 7, still open
    expected = arrowlog.replay(data_dir, "t").to_arrow()
    assert expected.column("value").to_pylist() == [b"c0", b"c1", b"c2"]
    with arrowlog.dataset(data_dir, "t") as ds:
        assert ds.to_table().equals(expected)
        assert ds.to_table(columns=["offset"], filter=pc.field("timestamp") >= ts(T0)).column(
            "offset").to_pylist() == [0, 1, 5]
        assert duckdb.sql("select value from ds order by \"offset\"").fetchall() == [(b"c0",), (b"c1",), (b"c2",)]
    p.abort_transaction()
    p.close()


def test_a_damaged_frame_inside_the_window_is_an_error_never_data(hours_topic):
    from arrowlog._native import core
    from arrowlog.errors import CorruptRecordError
    from arrowlog.storage import segment

    ds = arrowlog.dataset(hours_topic, "ev")
    lo, hi = T0 + 2 * HOUR, T0 + 3 * HOUR
    f = window_expr(lo, hi)[0]
    assert ds.count_rows(filter=f) == 200  # the frames' ranges are known now
    log = hours_topic.topic("ev").partition(0)
    frames = log.read(log.offset_for_timestamp(lo), 1)
    seg, end = log._locate(frames[0].base_offset, log._snapshot())
    position = seg.header_size
    while core.read_frame_header(seg.log, position, end)[0] != frames[0].base_offset:
        position += core.FRAME_HEADER_SIZE + core.read_frame_header(seg.log, position, end)[2]
    path = seg.log_path
    position = bytes(open(path, "rb").read()).index(b"n3", position)  # a value inside the window's first frame
    with open(path, "r+b") as fh:
        fh.seek(position)
        fh.write(b"Z")
    for engine in ("to_table", "duckdb"):
        segment.forget_verified()  # what a new process would see
        with arrowlog.dataset(hours_topic.path, "ev") as fresh:
            if engine == "to_table":
                with pytest.raises(CorruptRecordError):
                    fresh.to_table(columns=["x"], filter=f)
            else:
                with pytest.raises(Exception, match="CRC"):
                    duckdb.sql(f'select count(*) from fresh where "timestamp" >= {sql_ts(lo)} '
                               f'and "timestamp" < {sql_ts(hi)}').fetchall()


def test_pl_scan_pyarrow_dataset_reads_through_the_scanner(hours_topic):
    ds = arrowlog.dataset(hours_topic, "ev")
    lo = dt.datetime.fromtimestamp((T0 + 5 * HOUR) / 1000, UTC)
    got = pl.scan_pyarrow_dataset(ds).filter(pl.col("timestamp") >= lo).select(pl.len(), pl.col("x").sum()).collect()
    brute = arrowlog.replay(hours_topic, "ev").to_arrow().filter(pc.field("timestamp") >= ts(T0 + 5 * HOUR))
    assert got.row(0) == (brute.num_rows, pc.sum(brute.column("x")).as_py())
    assert ds.stats["rows_scanned"] == brute.num_rows  # the window, cut by the scan
    assert pl.scan_pyarrow_dataset(ds).head(3).collect().height == 3
