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
``arrowlog`` (on, the default, *remembered*: the frames an earlier read in
this process checked are not checked again, as for a second replay in one
process), ``arrowlog-firstread`` (on, *first read*: that memory cleared before
each read, so every frame is checked, what a new process pays) and
``arrowlog-nocrc`` (*off*). The three are measured interleaved (off, first
read, remembered, off, ... within each timed run), so they share the machine's
load; each checked row's note gives its ratio against off, and the first
read's extra time in single-thread CRC-32C passes over the same segment
bytes, measured alongside in a fresh mapping.

Zero-copy reads take milliseconds, so each timed run repeats the read
several times and reports the time of one.
"""

from __future__ import annotations

import glob
import itertools
import os
import sqlite3
import time

import pyarrow as pa

from . import datasets
from .datasets import TOPIC
from .harness import Row, median

MIN_RUN_S = 0.5  # repeat a read until a timed run lasts this long: one read takes milliseconds
MIN_CYCLES = 3  # interleaved CRC rows: at least this many reads of each kind per timed run


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


CRC_MODES = ("off", "first", "again")  # CRC check off, on for a first read, on and remembered


def replay_once(ctx, to: str):
    """``once(crc)``: one replay of the whole topic into ``to`` (arrow, pandas,
    duckdb) through a new LogDir with the CRC check ``crc`` (CRC_MODES)."""
    import arrowlog
    from arrowlog.storage import segment

    path = datasets.arrowlog_dataset(ctx)
    finish = {"arrow": lambda r: r.to_arrow(), "pandas": lambda r: r.to_pandas(),
              "duckdb": lambda r: Aggregate(r.to_arrow())}[to]

    def once(crc: str):
        if crc == "first":
            segment.forget_verified()
        with arrowlog.LogDir(path, create=False, check_crcs=crc != "off") as d:
            return finish(arrowlog.replay(d, TOPIC))

    return once


def crc_pass(path: str):
    """``once()``: one single-thread CRC-32C pass over the bytes of the
    partition's segments, each file mapped afresh (what checking every frame
    of a first read costs on one core: the page faults of the first touch and
    the unmapping of the pages touched included, as a first read pays them)."""
    import arrowlog
    from arrowlog._native import core

    with arrowlog.LogDir(path, create=False) as d:
        part = d.topic(TOPIC).partition(0)
        files, left = sorted(glob.glob(os.path.join(part.directory, "*.log"))), part.size_bytes()
    spans = []
    for i, name in enumerate(files):  # the active (last) segment's file may be longer than its data
        size = left if i == len(files) - 1 else min(os.path.getsize(name), left)
        spans.append((name, size))
        left -= size

    def once():
        for name, size in spans:
            fd = os.open(name, os.O_RDONLY)
            try:
                if size > 0:
                    core.MappedFile(fd, size).crc32c(0, size)
            finally:
                os.close(fd)

    return once


def crc_trio(ctx, once, check, path: str) -> dict[str, list[float]]:
    """Per timed run, the median seconds of one ``once(mode)`` for each of
    CRC_MODES and of one CRC pass over the segments (``"pass"``). Within each run the modes
    alternate (off, first read, remembered, pass; the next cycle starting one
    later, so none always follows the same one), each as often as
    the others, until the slowest has lasted MIN_RUN_S (at least MIN_CYCLES
    times), so the rows compared share the machine's load: on a loaded 2-core
    machine, rows measured one after the other drift apart."""
    one_pass = crc_pass(path)
    steps = [(mode, lambda mode=mode: once(mode)) for mode in CRC_MODES] + [("pass", one_pass)]
    for mode, step in steps[:3]:
        check(step())
    rounds: list[dict[str, float]] = []
    cycles = itertools.count()  # across runs: each cycle starts one later, so no mode always follows the same one

    def body(_):
        took: dict[str, list[float]] = {mode: [] for mode, _ in steps}
        while len(took["off"]) < MIN_CYCLES or max(sum(t) for t in took.values()) < MIN_RUN_S:
            first = next(cycles) % len(steps)
            for mode, step in steps[first:] + steps[:first]:
                t0 = time.perf_counter()
                step()
                took[mode].append(time.perf_counter() - t0)
        rounds.append({mode: median(t) for mode, t in took.items()})  # a spike of load moves no median

    ctx.measure(body)
    timed = rounds[len(rounds) - ctx.runs:]  # the warm-up rounds come first
    return {mode: [r[mode] for r in timed] for mode in timed[0]}


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


def crc_cost_note(checked: Row, unchecked: Row, segment_bytes: int, pass_s: list[float] | None = None) -> None:
    """Say on ``checked`` (a remembered or first-read row) what the CRC check
    cost against ``unchecked`` (off), as a ratio of medians; for a first read
    also in CRC passes over the ``segment_bytes`` (``pass_s``: seconds of one
    single-thread pass, measured alongside)."""
    if not (checked.ok and unchecked.ok):
        return
    on, off = median(checked.samples), median(unchecked.samples)
    extra = on - off
    mb = f"{segment_bytes / 1e6:.0f} MB of segments"
    if not checked.key.endswith("-firstread"):
        checked.note = (f"remembered: {on / off:.2f}× the time with CRC off ({extra * 1e3:+.1f} ms); {mb}, "
                        "checked by an earlier read in this process, so no pass over them")
        return
    note = f"first read: {on / off:.2f}× the time with CRC off ({extra * 1e3:+.1f} ms); {mb}"
    if pass_s:
        one = median(pass_s)
        note += (f"; one single-thread CRC-32C pass over them takes {one * 1e3:.1f} ms here "
                 f"({segment_bytes / one / 1e9:.1f} GB/s, fresh mapping): the check added {extra / one:.2f} passes")
    checked.note = note


def note_crc_costs(ctx, rows: list[Row], pass_s: list[float] | None = None) -> None:
    """Notes on a (remembered, first read, off) trio of rows."""
    try:
        size = segment_bytes(ctx)
    except Exception:  # the rows say why arrowlog could not run
        return
    for checked in rows[:2]:
        crc_cost_note(checked, rows[2], size, pass_s)
    if rows[2].ok:
        rows[2].note = "CRC off: the reference of the two rows above (measured interleaved with them)"


def segment_bytes(ctx) -> int:
    import arrowlog

    with arrowlog.LogDir(datasets.arrowlog_dataset(ctx), create=False) as d:
        return d.topic(TOPIC).partition(0).size_bytes()


def add_crc_rows(ctx, rows: list[Row], prefix: str, workload: str, setting: str, once, check,
                 records: int, nbytes: int) -> None:
    """The three rows of one arrowlog workload, ``prefix`` (remembered),
    ``prefix-firstread`` and ``prefix-nocrc``, from one interleaved
    measurement of ``once(mode)`` (crc_trio)."""
    trio: dict[str, list[float]] = {}

    def samples(mode: str) -> list[float]:
        if not trio:  # measured once, for all three rows (a failure marks each row)
            trio.update(crc_trio(ctx, once, check, datasets.arrowlog_dataset(ctx)))
        return trio[mode]

    rows.append(ctx.row(Row(prefix, workload, "arrowlog",
                            f"{setting}; CRC-32C on (the default), remembered: the frames an earlier read in this "
                            "process checked are not checked again", records=records, nbytes=nbytes),
                        lambda: samples("again")))
    rows.append(ctx.row(Row(prefix + "-firstread", workload, "arrowlog, first read",
                            "the same, CRC-32C on, first read: every frame checked in each read (the process's "
                            "memory of checked frames cleared first, as in a new process)",
                            records=records, nbytes=nbytes),
                        lambda: samples("first")))
    rows.append(ctx.row(Row(prefix + "-nocrc", workload, "arrowlog, CRC off",
                            "the same without the CRC-32C check", records=records, nbytes=nbytes),
                        lambda: samples("off")))
    note_crc_costs(ctx, rows[-3:], trio.get("pass"))


def crc_rows(ctx, rows: list[Row], workload: str, to: str, setting: str) -> None:
    """The arrowlog rows of one replay workload: CRC on (remembered), on (first read), off."""
    n = ctx.n
    add_crc_rows(ctx, rows, f"replay.{to}.arrowlog", workload, setting, replay_once(ctx, to), _rows_check(n),
                 n, ctx.records.nbytes)


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
