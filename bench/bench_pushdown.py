"""Does a one-hour window query read only that hour, through DuckDB and polars?

A typed topic (``x`` int64, ``y`` float64, ``payload`` 240 bytes) of about
2.1 GB spanning 48 hours of timestamps in 2 partitions (``--quick``: 64 MB).
The same aggregate over one hour runs

* over ``arrowlog.dataset(path, topic)`` (DuckDB replacement scan) and
  ``arrowlog.scan_polars`` (a polars IO plugin): filters and columns pushed
  into arrowlog, which reads only the frames whose time range meets the hour
  (with DuckDB 2 the dataset is itself a DuckDB source, ``duckdb._sources``:
  DuckDB hands it its predicate tree, and the time window goes straight into
  the scan; with an older DuckDB it is scanned as a pyarrow Dataset);
* over ``arrowlog.replay(path, topic).to_arrow()`` (DuckDB) and
  ``pl.from_arrow`` of it (polars; also with the replay given the three
  columns the query needs, which saves polars copying the payloads): the
  whole topic is handed over and filtered afterwards.

Both DuckDB rows run the same SQL on one connection made once, as a program
issuing many queries does: ``con.execute(sql).fetchall()`` (DuckDB's DB-API
call, which parses, binds and plans the query once), the table named in the
SQL found by DuckDB's replacement scan (a Python variable), DuckDB's default
settings (threads: one per core). Both must return the same row, which must
count the hour's records. ``con.sql(sql).fetchall()`` builds a lazy relation,
which DuckDB 2 binds once to describe it and again to run it: the DuckDB
row's note gives the CPU per query that way too, and over a dataset whose
LogDir reads with ``check_crcs=False`` (each frame's buffers are then checked
once per process instead of its CRC).

Each timed run counts the hour's records; the ratio of the rows is the
speed-up. The two DuckDB rows are measured in alternating rounds (the order
flipped each round, the warm-up round left out on both sides): a round runs
the query ``REPEAT`` times over the dataset and ``REPEAT`` times over
``replay().to_arrow()``, and each side's figure for the round is its median
query (the pushed-down row's times ``REPEAT``, the records it counts), so a
preemption on a shared machine moves neither side and both see the same
machine. The polars rows run their pushed-down query ``REPEAT`` times per
timed run, as it takes milliseconds. Notes give the frames read (against a full scan), and the last
pair of rows the bytes handed over when projecting one typed column against
all of them. The first (warm-up) scan of a dataset learns the frames' time
ranges as it reads them: its frame count is in the note too.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time

import numpy as np
import pyarrow as pa

from .context import BASE_TS_MS
from .harness import Row

TOPIC = "pushdown"
HOUR_MS = 3_600_000
HOURS = 48
PAYLOAD = 240
CHUNK = 65_536  # records per produce_batch call
# A pushed-down query takes milliseconds: each timed run repeats it (the DuckDB
# rows: each side of a round), so one preemption does not decide the figure.
REPEAT = 20
SCHEMA = pa.schema([("x", pa.int64()), ("y", pa.float64()), ("payload", pa.binary())])


def build(ctx) -> tuple[str, int]:
    """The topic's data directory and its record count (made once per run)."""
    key = "pushdown.topic"
    if key in ctx.cache:
        return ctx.cache[key]
    import arrowlog

    target = (64 << 20) if ctx.quick else int(2.1e9)
    n = target // (PAYLOAD + 40) // CHUNK * CHUNK
    path = ctx.scratch("arrowlog-pushdown")
    log = arrowlog.LogDir(path)
    log.create_topic(TOPIC, partitions=2, config={"value.schema": SCHEMA, "retention.ms": -1, "retention.bytes": -1})
    log.close()
    rng = np.random.default_rng(16)
    payload_bytes = rng.integers(0, 256, CHUNK * PAYLOAD, dtype=np.uint8).tobytes()
    offsets = pa.py_buffer((np.arange(CHUNK + 1, dtype=np.int32) * PAYLOAD).tobytes())
    payload = pa.Array.from_buffers(pa.binary(), CHUNK, [None, offsets, pa.py_buffer(payload_bytes)])
    step = HOURS * HOUR_MS / n
    with arrowlog.Producer({"log.dir": path}) as p:
        for i, start in enumerate(range(0, n, CHUNK)):
            idx = np.arange(start, start + CHUNK, dtype=np.int64)
            values = pa.table([pa.array(idx), pa.array(idx * 0.25), payload], schema=SCHEMA)
            p.produce_batch(TOPIC, values, timestamps=BASE_TS_MS + (idx * step).astype(np.int64), partition=i % 2)
    ctx.cache[key] = (path, n)
    return path, n


def window(hour: int) -> tuple[int, int]:
    return BASE_TS_MS + hour * HOUR_MS, BASE_TS_MS + (hour + 1) * HOUR_MS


def sql_time(ms: int) -> str:
    return "TIMESTAMPTZ '" + dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(sep=" ") + "'"


def query(source: str, lo: int, hi: int) -> str:
    return (f'select count(*), sum(x), max(y) from {source} '
            f'where "timestamp" >= {sql_time(lo)} and "timestamp" < {sql_time(hi)}')


def cpu_note(cpu: dict[str, list[float]]) -> str:
    """The process CPU time per query of both DuckDB rows (all threads; on a
    loaded machine steadier than their wall time, which the rows report), and
    the same through ``con.sql(...)``."""
    if not cpu["duckdb"] or not cpu["replay"]:
        return ""
    ours, theirs = statistics.median(cpu["duckdb"]), statistics.median(cpu["replay"])
    note = (f"; process CPU per query (median): {ours * 1e3:.2f} ms, against {theirs * 1e3:.2f} ms over "
            f"replay().to_arrow() ({theirs / ours:.1f}x)")
    if cpu["duckdb.sql"] and cpu["replay.sql"]:
        ours, theirs = statistics.median(cpu["duckdb.sql"]), statistics.median(cpu["replay.sql"])
        note += (f"; through con.sql(...).fetchall() (bound twice): {ours * 1e3:.2f} ms against "
                 f"{theirs * 1e3:.2f} ms ({theirs / ours:.1f}x)")
    if cpu["duckdb.nocrc"]:
        note += (f"; over a LogDir(check_crcs=False): {statistics.median(cpu['duckdb.nocrc']) * 1e3:.2f} ms "
                 "per query")
    return note


def run(ctx) -> list[Row]:
    import duckdb
    import polars as pl

    import arrowlog

    path, n = build(ctx)
    lo, hi = window(HOURS // 2)
    stamps = BASE_TS_MS + (np.arange(n, dtype=np.int64) * (HOURS * HOUR_MS / n)).astype(np.int64)
    in_hour = int(np.count_nonzero((stamps >= lo) & (stamps < hi)))
    del stamps
    size = sum(log.size_bytes() for log in arrowlog.LogDir(path).topic(TOPIC).partitions())
    wl = f"one-hour window of a {size / 1e9:.2f} GB, {HOURS}-hour topic"
    ds = arrowlog.dataset(path, TOPIC)
    ds.to_table(columns=["offset"])
    total_frames = ds.stats["frames_read"]
    con = duckdb.connect()
    expected = con.execute(query("ds", lo, hi)).fetchall()[0]
    if expected[0] != in_hour:
        raise AssertionError(f"the window query counted {expected[0]} records, not {in_hour}")
    plan = con.execute("explain " + query("ds", lo, hi)).fetchall()[0][1]
    scan = plan[plan.find("PYTHON_ARROW_SCAN"):]
    if '"timestamp" >=' not in scan or '"timestamp" <' not in scan:
        raise AssertionError("EXPLAIN does not show the time filter in the arrow scan:\n" + plan)
    counts: dict[str, tuple[int, int]] = {}

    cpu: dict[str, list[float]] = {"duckdb": [], "replay": [], "duckdb.sql": [], "replay.sql": [],
                                   "duckdb.nocrc": []}  # per round: the median query's process CPU s
    unchecked = arrowlog.dataset(arrowlog.LogDir(path, check_crcs=False), TOPIC)
    unchecked.to_table(columns=["offset"])

    def over_dataset(run_sql):
        ds.reset_stats()
        got = run_sql(query("ds", lo, hi)).fetchall()[0]
        assert got == expected, (got, expected)

    def over_unchecked(run_sql):
        unchecked.reset_stats()
        got = run_sql(query("unchecked", lo, hi)).fetchall()[0]
        assert got == expected, (got, expected)

    def over_replay(run_sql):
        replayed = arrowlog.replay(path, TOPIC).to_arrow()  # noqa: F841  (DuckDB finds it by name)
        got = run_sql(query("replayed", lo, hi)).fetchall()[0]
        assert got == expected, (got, expected)

    def median_query(body, run_sql, key: str | None) -> float:
        """Run ``body`` REPEAT times; the median query's wall seconds (its
        process CPU goes to ``cpu[key]``): one preemption decides nothing."""
        walls, used = [], []
        for _ in range(REPEAT):
            c0, w0 = time.process_time(), time.perf_counter()
            body(run_sql)
            walls.append(time.perf_counter() - w0)
            used.append(time.process_time() - c0)
        if key is not None:
            cpu[key].append(statistics.median(used))
        return statistics.median(walls)

    def interleaved(how: str = "execute") -> dict[str, list[float]]:
        """Both DuckDB rows in alternating rounds (the order flipped each
        round): REPEAT queries over the dataset and REPEAT over
        replay().to_arrow(), the warm-up rounds on both sides left out. A
        round's figure is its median query (the pushed-down row's times
        REPEAT, the work its records count)."""
        run_sql = con.execute if how == "execute" else con.sql
        suffix = "" if how == "execute" else ".sql"
        out: dict[str, list[float]] = {"duckdb": [], "replay": []}
        for i in range(ctx.warmup + ctx.runs):
            timed = i >= ctx.warmup
            sides = [("duckdb", over_dataset), ("replay", over_replay)]
            for side, body in sides if i % 2 == 0 else sides[::-1]:
                os.sync()  # as ctx.measure does before every run
                wall = median_query(body, run_sql, side + suffix if timed else None)
                if timed:
                    out[side].append(wall * (REPEAT if side == "duckdb" else 1))
        counts["duckdb"] = (ds.stats["frames_read"], ds.stats["rows_scanned"])
        return out

    duck_rounds: dict[str, list[float]] = {}

    def duck_samples(side: str) -> list[float]:
        if not duck_rounds:
            duck_rounds.update(interleaved())
        return duck_rounds[side]

    lo_dt = dt.datetime.fromtimestamp(lo / 1000, dt.timezone.utc)
    hi_dt = dt.datetime.fromtimestamp(hi / 1000, dt.timezone.utc)
    aggregate = [pl.len(), pl.col("x").sum(), pl.col("y").max()]
    between = (pl.col("timestamp") >= lo_dt) & (pl.col("timestamp") < hi_dt)
    lf = arrowlog.scan_polars(ds, TOPIC)

    def check(df):
        got = tuple(df.row(0))
        assert got == expected, (got, expected)

    def polars_pushdown(_):
        for _ in range(REPEAT):
            ds.reset_stats()
            check(lf.filter(between).select(aggregate).collect())
        counts["polars"] = (ds.stats["frames_read"], ds.stats["rows_scanned"])

    def polars_replay(columns):
        def body(_):
            table = arrowlog.replay(path, TOPIC, columns=columns).to_arrow()
            check(pl.from_arrow(table).lazy().filter(between).select(aggregate).collect())
        return body

    cold = arrowlog.dataset(path, TOPIC)
    con.register("cold", cold)
    con.execute(query("cold", lo, hi)).fetchall()
    cold_frames = cold.stats["frames_read"]
    cold.close()

    def frames_note(engine: str) -> str:
        frames, rows = counts.get(engine, (0, 0))
        return (f"{frames} of {total_frames} frames read ({rows:,} rows handed over); a full scan reads "
                f"{total_frames}; the dataset's first scan read {cold_frames} while learning frame time ranges")

    rows = [
        ctx.row(Row("pushdown.duckdb.arrowlog", wl + " (DuckDB)", "arrowlog",
                    "con.execute(sql) over arrowlog.dataset(): time filter pushed into the scan",
                    records=REPEAT * in_hour),
                lambda: duck_samples("duckdb")),
        ctx.row(Row("pushdown.duckdb.replay", wl + " (DuckDB)", "replay().to_arrow()",
                    "con.execute(sql) over replay().to_arrow() of the whole topic", records=in_hour),
                lambda: duck_samples("replay")),
        ctx.row(Row("pushdown.polars.arrowlog", wl + " (polars)", "arrowlog",
                    "arrowlog.scan_polars(): predicate and columns pushed into the scan",
                    records=REPEAT * in_hour),
                lambda: ctx.measure(polars_pushdown)),
        ctx.row(Row("pushdown.polars.replay", wl + " (polars)", "replay().to_arrow()",
                    "pl.from_arrow(replay().to_arrow()) (what replay().to_polars() does), filtered by polars",
                    records=in_hour), lambda: ctx.measure(polars_replay(None))),
        ctx.row(Row("pushdown.polars.replay_columns", wl + " (polars)", "replay(columns=...).to_arrow()",
                    "pl.from_arrow(replay(columns=[timestamp, x, y]).to_arrow()): the columns chosen by hand",
                    records=in_hour), lambda: ctx.measure(polars_replay(["timestamp", "x", "y"]))),
    ]
    interleaved("sql")  # the same queries through con.sql(...), and with check_crcs=False, for the note
    for _ in range(ctx.runs):
        median_query(over_unchecked, con.execute, "duckdb.nocrc")
    unchecked.close()
    rows[0].note = frames_note("duckdb") + "; EXPLAIN shows the filter in PYTHON_ARROW_SCAN" + cpu_note(cpu)
    rows[2].note = frames_note("polars")

    # projection: one typed column against all of them, over the whole topic
    handed: dict[str, int] = {}

    def project(columns):
        def body(_):
            ds.reset_stats()
            table = ds.to_table(columns=columns)
            assert table.num_rows == n
            handed[str(columns)] = ds.stats["bytes_scanned"]
        return body

    one = ctx.row(Row("pushdown.project.x", "project one typed column of the whole topic", "arrowlog",
                      "dataset.to_table(columns=['x'])", records=n), lambda: ctx.measure(project(["x"])))
    every = ctx.row(Row("pushdown.project.all", "project one typed column of the whole topic",
                        "all columns", "dataset.to_table()", records=n), lambda: ctx.measure(project(None)))
    one.note = f"{handed.get(str(['x']), 0):,} bytes of Arrow buffers handed over"
    every.note = f"{handed.get(str(None), 0):,} bytes of Arrow buffers handed over"
    ds.close()
    con.close()
    return rows + [one, every]
