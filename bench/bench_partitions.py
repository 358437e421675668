"""How does arrowlog scale with the number of partitions (issue 19, second table)?

One Producer writes the same keyed 100-byte records into a new topic of 1,
64 or 1,024 partitions (keys spread the records over all of them):

- first: produce + flush into the new, empty partitions (each is created);
- steady: the same again into the now open partitions;
- first write per partition: (first - steady) / partitions, in ms;
- close: Producer + data directory closed (every partition synced and marked clean);
- close flush: of it, the wall time of the close's file-system flush (one
  ``syncfs``: the disk, and every dirty page of the file system, other
  processes' included), so that the rest is the code's share;
- replay: ``arrowlog.replay(dir, topic).to_arrow()`` of every row, right after the
  close, in the same process (files it has not read before: every frame's CRC-32C is
  checked); the warm-up run holds the process's first replay, and a run's table is
  released before the next, whose replay may reuse its memory (_native/core/arena.pxi).
  Over 1,024 partitions it reads 1,024 segments of ~52 KB by copy (backends/local/clean_read.py),
  and most of its CPU is the kernel's: the copy out of the page cache with its lookup of every
  page, then two opens a partition. Mapping the segments instead (with or without
  MAP_POPULATE), or reading each into a cache-resident buffer and copying the columns out,
  cost as much CPU or more (issue 19).

Every number of a run comes from the same directory, one after the other;
the 1-partition rows are the baseline of the ratios in targets.py.
"""

from __future__ import annotations

import os
import threading
import time

from .harness import Row

TOPIC = "scale"
COUNTS = (1, 64, 1024)


def _keys(n: int) -> list[bytes]:
    return [b"key-%07d" % i for i in range(n)]


def _timed_close(p) -> tuple[float, float]:
    """p.close()'s wall time, and that of its file-system flush (the
    ``syncfs`` a closing thread or its flusher makes; not a periodic sync
    of the linger thread running beside it)."""
    from arrowlog.storage import partition

    real = partition._syncfs
    closing = threading.current_thread()
    spans: list[float] = []

    def syncfs(fd: int) -> bool:
        t0 = time.perf_counter()
        try:
            return real(fd)
        finally:
            me = threading.current_thread()
            if me is closing or me.name.startswith("arrowlog-close"):
                spans.append(time.perf_counter() - t0)

    partition._syncfs = syncfs
    try:
        t0 = time.perf_counter()
        p.close()
        return time.perf_counter() - t0, sum(spans)
    finally:
        partition._syncfs = real


def scenario(ctx, partitions: int, n: int) -> dict[str, list[float]]:
    import arrowlog
    from arrowlog.storage import LogDir

    keys = _keys(n)
    value = b"v" * 100
    out: dict[str, list[float]] = {"first": [], "steady": [], "per_partition": [], "close": [], "close_flush": [],
                                   "replay": []}
    for i in range(ctx.warmup + ctx.runs):
        path = ctx.scratch(f"partitions-{partitions}")
        with LogDir(path) as d:
            d.create_topic(TOPIC, partitions)
        os.sync()  # as ctx.measure does: an earlier run's dirty pages do not throttle this one
        p = arrowlog.Producer({"log.dir": path, "linger.ms": 1000})
        times = []
        for _round in range(2):
            t0 = time.perf_counter()
            produce = p.produce
            for k in keys:
                produce(TOPIC, value, key=k)
            p.flush()
            times.append(time.perf_counter() - t0)
        close, close_flush = _timed_close(p)
        t0 = time.perf_counter()
        table = arrowlog.replay(path, TOPIC).to_arrow()
        replay = time.perf_counter() - t0
        if table.num_rows != 2 * n:
            raise AssertionError(f"replay gave {table.num_rows} rows, expected {2 * n}")
        del table  # released here, not inside the next run's replay timing
        if i < ctx.warmup:
            continue
        out["first"].append(times[0])
        out["steady"].append(times[1])
        out["per_partition"].append(max(times[0] - times[1], 0.0) / partitions * 1e3)
        out["close"].append(close)
        out["close_flush"].append(close_flush)
        out["replay"].append(replay)
    return out


def run(ctx) -> list[Row]:
    n = 20_000 if ctx.quick else 200_000
    wl = "many partitions"
    cache: dict[int, dict[str, list[float]]] = {}

    def samples(partitions: int, what: str):
        def get() -> list[float]:
            if partitions not in cache:
                cache[partitions] = scenario(ctx, partitions, n)
            return cache[partitions][what]
        return get

    rows = []
    for parts in COUNTS:
        name = f"{parts} partition{'s' if parts > 1 else ''}"
        rows += [
            ctx.row(Row(f"partitions.first.{parts}", wl, "arrowlog",
                        f"{name}: first produce+flush into new partitions ({n:,} keyed 100-byte records)",
                        records=n), samples(parts, "first")),
            ctx.row(Row(f"partitions.steady.{parts}", wl, "arrowlog", f"{name}: steady produce+flush", records=n),
                    samples(parts, "steady")),
            ctx.row(Row(f"partitions.first_write.{parts}", wl, "arrowlog",
                        f"{name}: first write into a new partition ((first - steady) / partitions)",
                        kind="latency", unit="ms"), samples(parts, "per_partition")),
            ctx.row(Row(f"partitions.close.{parts}", wl, "arrowlog", f"{name}: Producer + data directory close()",
                        kind="latency", unit="s"), samples(parts, "close")),
            ctx.row(Row(f"partitions.close_flush.{parts}", wl, "arrowlog",
                        f"{name}: of close(), its file-system flush (syncfs: every dirty page of the disk's file "
                        "system)", kind="latency", unit="s"), samples(parts, "close_flush")),
            ctx.row(Row(f"partitions.replay.{parts}", wl, "arrowlog", f"{name}: replay().to_arrow() of every row",
                        records=2 * n), samples(parts, "replay")),
        ]
    return rows
