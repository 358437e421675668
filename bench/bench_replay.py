"""How close does replaying a whole topic into Arrow and pandas come to reading an Arrow file?

- *replay to Arrow*: ``arrowlog.replay(dir, topic).to_arrow()`` against
  pyarrow reading the same records from one uncompressed Arrow IPC file with
  the same batch sizes through ``pa.memory_map`` (the zero-copy limit).
- *replay to pandas*: ``replay(...).to_pandas()`` against the same Arrow file
  ``.to_pandas()`` (the limit) and ``pandas.read_sql`` of the SQLite table
  (what a user of an SQLite-backed log would write).

Zero-copy reads take milliseconds, so each timed run repeats the read
several times and reports the time of one.
"""

from __future__ import annotations

import sqlite3
import time

import pyarrow as pa

from . import datasets
from .datasets import TOPIC
from .harness import Row

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


def arrowlog_replay(ctx, n: int, to: str, check_crcs: bool = True) -> list[float]:
    import arrowlog

    path = datasets.arrowlog_dataset(ctx)

    def source():  # a fresh log per run: each run pays the CRC check once (check_crcs, the default)
        return path if check_crcs else arrowlog.LogDir(path, create=False, check_crcs=False)

    fn = (lambda: arrowlog.replay(source(), TOPIC).to_arrow()) if to == "arrow" else (
        lambda: arrowlog.replay(source(), TOPIC).to_pandas())
    return ctx.measure(lambda _: _repeat(fn, _rows_check(n)))


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


def run(ctx) -> list[Row]:
    n, nb = ctx.n, ctx.records.nbytes
    rows: list[Row] = []
    add = rows.append
    wl = "replay to Arrow"
    add(ctx.row(Row("replay.arrow.arrowlog", wl, "arrowlog", "replay(dir, topic).to_arrow(), whole topic",
                    records=n, nbytes=nb), lambda: arrowlog_replay(ctx, n, "arrow")))
    add(ctx.row(Row("replay.arrow.arrowlog-nocrc", wl, "arrowlog, check_crcs=False",
                    "the same without the CRC-32C check of each frame (the row above checks it, the default)",
                    records=n, nbytes=nb), lambda: arrowlog_replay(ctx, n, "arrow", check_crcs=False)))
    add(ctx.row(Row("replay.arrow.mmap", wl, "machine limit",
                    "pyarrow: pa.memory_map + ipc.open_file().read_all(), same batch sizes, uncompressed",
                    records=n, nbytes=nb), lambda: mmap_read(ctx, n, "arrow")))
    wl = "replay to pandas"
    add(ctx.row(Row("replay.pandas.arrowlog", wl, "arrowlog", "replay(dir, topic).to_pandas(), whole topic",
                    records=n, nbytes=nb), lambda: arrowlog_replay(ctx, n, "pandas")))
    add(ctx.row(Row("replay.pandas.arrowlog-nocrc", wl, "arrowlog, check_crcs=False",
                    "the same without the CRC-32C check of each frame", records=n, nbytes=nb),
                lambda: arrowlog_replay(ctx, n, "pandas", check_crcs=False)))
    add(ctx.row(Row("replay.pandas.mmap", wl, "machine limit", "pyarrow: same Arrow file via pa.memory_map, .to_pandas()",
                    records=n, nbytes=nb), lambda: mmap_read(ctx, n, "pandas")))
    add(ctx.row(Row("replay.pandas.sqlite", wl, "SQLite WAL", "pandas.read_sql of offset, ts, key, value",
                    records=n, nbytes=nb), lambda: sqlite_read_sql(ctx, n)))
    sizes = ctx.cache.get("replay.batch_sizes")
    if sizes:
        note = f"{len(sizes):,} stored batches, {min(sizes):,}–{max(sizes):,} records each; the Arrow file uses the same"
        next(r for r in rows if r.key == "replay.arrow.mmap").note = note
    return rows
