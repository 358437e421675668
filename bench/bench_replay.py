"""How close does replaying a whole topic into Arrow and pandas come to reading an Arrow file?

- *replay to Arrow*: ``arrowlog.replay(dir, topic).to_arrow()`` against
  pyarrow reading the same records from one uncompressed Arrow IPC file with
  the same batch sizes through ``pa.memory_map`` (the zero-copy limit).
- *replay to pandas*: ``replay(...).to_pandas()`` against the same Arrow file
  ``.to_pandas()`` (the limit) and ``pandas.read_sql`` of the SQLite table
  (what a user of an SQLite-backed log would write).
- *replay to Arrow, touching every value*: the same two reads followed by
  the sum of the value lengths through ``pyarrow.compute`` (checked), so a
  mapping-only read cannot look faster than the data it hands out.
- *aggregate over replay in DuckDB*: ``duckdb.sql`` summing the value
  lengths and taking the latest timestamp over ``replay(...).to_arrow()``.

Each arrowlog workload has three rows for the CRC-32C check of each frame
before its data is first handed out in a process (docs/DURABILITY.md):
``arrowlog`` (on, the default; each run opens a new LogDir, and the frames the
warm-up run checked are remembered process-wide, as for a second replay in
one process), ``arrowlog-firstread`` (on, that memory cleared before each run:
every frame checked, what a new process pays) and ``arrowlog-nocrc`` (off).

Zero-copy reads take milliseconds, so each timed run repeats the read
several times and reports the time of one.
"""

from __future__ import annotations

import sqlite3
import time

import pyarrow as pa

from . import datasets
from .datasets import TOPIC
from .harness import Row, median

MIN_RUN_S = 0.5  # repeat a read until a timed run lasts this long: one read takes milliseconds


def _repeat(fn, check) -> float:
    """Seconds for one ``fn()``, averaged over enough repetitions to last MIN_RUN_S."""
    check(fn())
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= MIN_RUN_S:
            return elapsed / reps


def _rows_check(n: int):
    def check(result):
        got = result.num_rows if hasattr(result, "num_rows") else len(result)
        if got != n:
            raise AssertionError(f"read {got} records, expected {n}")

    return check


class Aggregate:
    """What the DuckDB query found (num_rows for _rows_check)."""

    def __init__(self, table):
        import duckdb

        con = duckdb.connect()
        try:
            con.register("t", table)
            self.value_bytes, self.num_rows, self.latest = con.sql(
                'SELECT sum(octet_length(value)), count(*), max("timestamp") FROM t').fetchall()[0]
        finally:
            con.close()


def arrowlog_replay(ctx, n: int, to: str, crc: str = "again") -> list[float]:
    """One replay of the whole topic into ``to`` (arrow, pandas, duckdb) with
    the CRC check ``crc``: again (remembered from earlier runs in this
    process), first (checked on each run) or off."""
    import arrowlog
    from arrowlog.storage import segment

    path = datasets.arrowlog_dataset(ctx)

    finish = {"arrow": lambda r: r.to_arrow(), "pandas": lambda r: r.to_pandas(),
              "duckdb": lambda r: Aggregate(r.to_arrow())}[to]

    def once():  # a new LogDir per run
        if crc == "first":
            segment.forget_verified()
        with arrowlog.LogDir(path, create=False, check_crcs=crc != "off") as d:
            return finish(arrowlog.replay(d, TOPIC))

    return ctx.measure(lambda _: _repeat(once, _rows_check(n)))


def ipc_path(ctx) -> str:
    """The Arrow file with arrowlog's batch sizes (or 1,000-record batches if arrowlog cannot run)."""
    try:
        sizes = datasets.arrowlog_batch_sizes(datasets.arrowlog_dataset(ctx))
        ctx.cache["replay.batch_sizes"] = sizes
    except Exception:
        n = ctx.n
        sizes = [min(1000, n - i) for i in range(0, n, 1000)]
    return datasets.arrow_ipc_file(ctx, sizes)


def mmap_read(ctx, n: int, to: str) -> list[float]:
    path = ipc_path(ctx)

    def read():
        with pa.memory_map(path) as source:
            t = pa.ipc.open_file(source).read_all()
        return t if to == "arrow" else t.to_pandas()

    return ctx.measure(lambda _: _repeat(read, _rows_check(n)))


def value_bytes(table) -> int:
    """Sum of the value lengths through Arrow compute: every value's offsets are read."""
    import pyarrow.compute as pc

    return pc.sum(pc.binary_length(table.column("value"))).as_py()


def _touch_check(n: int):
    def check(total):
        if total != n * 100:
            raise AssertionError(f"the values add up to {total} bytes, expected {n * 100}")

    return check


def arrowlog_replay_values(ctx, n: int) -> list[float]:
    import arrowlog

    path = datasets.arrowlog_dataset(ctx)

    def once():
        with arrowlog.LogDir(path, create=False) as d:
            return value_bytes(arrowlog.replay(d, TOPIC).to_arrow())

    return ctx.measure(lambda _: _repeat(once, _touch_check(n)))


def mmap_read_values(ctx, n: int) -> list[float]:
    path = ipc_path(ctx)

    def once():
        with pa.memory_map(path) as source:
            return value_bytes(pa.ipc.open_file(source).read_all())

    return ctx.measure(lambda _: _repeat(once, _touch_check(n)))


def value_rows(ctx, rows: list[Row]) -> None:
    """replay to Arrow with every value touched, against pyarrow doing the same on the same batches."""
    n, nb = ctx.n, ctx.records.nbytes
    wl = "replay to Arrow, touching every value"
    touch = "then pc.sum(pc.binary_length(value)) checked"
    rows.append(ctx.row(Row("replay.values.arrowlog", wl, "arrowlog",
                            f"replay(dir, topic).to_arrow(), {touch}; CRC-32C on (frames checked by an earlier run "
                            "in this process are not checked again)", records=n, nbytes=nb),
                        lambda: arrowlog_replay_values(ctx, n)))
    rows.append(ctx.row(Row("replay.values.mmap", wl, "machine limit",
                            f"pyarrow: pa.memory_map + ipc.open_file().read_all() of the same batches, {touch}",
                            records=n, nbytes=nb), lambda: mmap_read_values(ctx, n)))


def sqlite_read_sql(ctx, n: int) -> list[float]:
    import pandas as pd

    path = datasets.sqlite_dataset(ctx)

    def read():
        con = sqlite3.connect(path)
        try:
            return pd.read_sql("SELECT offset, ts, key, value FROM records ORDER BY offset", con)
        finally:
            con.close()

    return ctx.measure(lambda _: _repeat(read, _rows_check(n)))


def crc_cost_note(checked: Row, unchecked: Row, segment_bytes: int) -> None:
    """Say on ``checked`` what the CRC check cost against ``unchecked`` in
    this run (medians), and for a first read as one pass over the segment
    bytes at a speed."""
    if not (checked.ok and unchecked.ok):
        return
    extra = median(checked.samples) - median(unchecked.samples)
    checked.note = (f"{extra * 1e3:+.1f} ms ({extra / median(unchecked.samples):+.0%}) against CRC off; "
                    f"{segment_bytes / 1e6:.0f} MB of segments"
                    + ((f", checked at {segment_bytes / extra / 1e9:.1f} GB/s" if extra > 0 else "")
                       if checked.key.endswith("-firstread") else
                       " (no pass: the frames were checked before in this process)"))


def note_crc_costs(ctx, rows: list[Row]) -> None:
    """Notes on the checked rows of a (checked, first read, unchecked) trio."""
    try:
        size = segment_bytes(ctx)
    except Exception:  # the rows say why arrowlog could not run
        return
    for checked in rows[:2]:
        crc_cost_note(checked, rows[2], size)


def segment_bytes(ctx) -> int:
    import arrowlog

    with arrowlog.LogDir(datasets.arrowlog_dataset(ctx), create=False) as d:
        return d.topic(TOPIC).partition(0).size_bytes()


def crc_rows(ctx, rows: list[Row], workload: str, to: str, setting: str) -> None:
    """The arrowlog rows of one workload: CRC on (remembered), on (first read), off."""
    n, nb = ctx.n, ctx.records.nbytes
    prefix = f"replay.{to}.arrowlog"
    rows.append(ctx.row(Row(prefix, workload, "arrowlog",
                            f"{setting}, CRC-32C on (the default): frames checked by an earlier run in this "
                            "process are not checked again", records=n, nbytes=nb),
                        lambda: arrowlog_replay(ctx, n, to, "again")))
    rows.append(ctx.row(Row(prefix + "-firstread", workload, "arrowlog, first read",
                            "the same, every frame's CRC-32C checked in each run (the process's memory of "
                            "checked frames cleared first, as in a new process)", records=n, nbytes=nb),
                        lambda: arrowlog_replay(ctx, n, to, "first")))
    rows.append(ctx.row(Row(prefix + "-nocrc", workload, "arrowlog, check_crcs=False",
                            "the same without the CRC-32C check", records=n, nbytes=nb),
                        lambda: arrowlog_replay(ctx, n, to, "off")))
    note_crc_costs(ctx, rows[-3:])


def run(ctx) -> list[Row]:
    n, nb = ctx.n, ctx.records.nbytes
    rows: list[Row] = []
    add = rows.append
    wl = "replay to Arrow"
    crc_rows(ctx, rows, wl, "arrow", "replay(dir, topic).to_arrow(), whole topic")
    add(ctx.row(Row("replay.arrow.mmap", wl, "machine limit",
                    "pyarrow: pa.memory_map + ipc.open_file().read_all(), same batch sizes, uncompressed",
                    records=n, nbytes=nb), lambda: mmap_read(ctx, n, "arrow")))
    value_rows(ctx, rows)
    wl = "replay to pandas"
    crc_rows(ctx, rows, wl, "pandas", "replay(dir, topic).to_pandas(), whole topic")
    add(ctx.row(Row("replay.pandas.mmap", wl, "machine limit", "pyarrow: same Arrow file via pa.memory_map, .to_pandas()",
                    records=n, nbytes=nb), lambda: mmap_read(ctx, n, "pandas")))
    add(ctx.row(Row("replay.pandas.sqlite", wl, "SQLite WAL", "pandas.read_sql of offset, ts, key, value",
                    records=n, nbytes=nb), lambda: sqlite_read_sql(ctx, n)))
    crc_rows(ctx, rows, "aggregate over replay in DuckDB", "duckdb",
             "duckdb: sum(octet_length(value)), max(timestamp) over replay(dir, topic).to_arrow()")
    sizes = ctx.cache.get("replay.batch_sizes")
    if sizes:
        note = f"{len(sizes):,} stored batches, {min(sizes):,}–{max(sizes):,} records each; the Arrow file uses the same"
        next(r for r in rows if r.key == "replay.arrow.mmap").note = note
    return rows
