"""How many "which offset was current at time T?" lookups per second can each system answer?

arrowlog ``Consumer.offsets_for_times([TopicPartition(topic, 0, T)])`` (time
index + scan to the first record at or after T) against Redis ``XRANGE T +
COUNT 1`` on a stream whose IDs are the timestamps, and SQLite ``SELECT offset
... WHERE ts >= T ORDER BY ts LIMIT 1`` with an index on ``ts``. Every lookup
is one call with a random T inside the data; the answers are checked.

A second arrowlog row asks the same of the same records stored in 64 MiB
segments, so most answers lie in closed segments (the general path: the
segment found by its largest timestamp, then its indexes and frames); the
first row's data fits one segment, the active one.
"""

from __future__ import annotations

import random
import sqlite3

from . import datasets
from .context import BASE_TS_MS
from .datasets import REDIS_STREAM, TOPIC
from .harness import Row

SEGMENT_BYTES = 64 << 20


def targets(ctx, count: int) -> list[int]:
    rnd = random.Random(42)
    return [BASE_TS_MS + rnd.randrange(ctx.n) for _ in range(count)]


def arrowlog_segments_dataset(ctx) -> str:
    """The records of ``datasets.arrowlog_dataset`` in SEGMENT_BYTES segments."""
    key = "arrowlog.dataset.segments"
    if key not in ctx.cache:
        import arrowlog
        from arrowlog.storage import LogDir

        recs = ctx.records
        path = ctx.scratch("arrowlog-segments")
        LogDir(path).create_topic(TOPIC, partitions=1, config={"segment.bytes": SEGMENT_BYTES})
        with arrowlog.Producer({"log.dir": path}) as p:
            p.produce_batch(TOPIC, recs.values_arrow, keys=recs.keys_arrow, timestamps=recs.timestamps, partition=0)
        ctx.cache[key] = path
    return ctx.cache[key]


def arrowlog_seek(ctx, ts: list[int], path: str) -> list[float]:
    import arrowlog

    c = arrowlog.Consumer({"log.dir": path, "auto.offset.reset": "earliest"})
    tp = arrowlog.TopicPartition
    got = c.offsets_for_times([tp(TOPIC, 0, ts[0])], 5.0)[0].offset
    if got != ts[0] - BASE_TS_MS:
        raise AssertionError(f"offsets_for_times({ts[0]}) gave {got}, expected {ts[0] - BASE_TS_MS}")

    def body(_):
        lookup = c.offsets_for_times
        for t in ts:
            lookup([tp(TOPIC, 0, t)], 5.0)

    try:
        return ctx.measure(body)
    finally:
        c.close()


def redis_seek(ctx, ts: list[int]) -> list[float]:
    r = datasets.redis(ctx).client()
    got = r.xrange(REDIS_STREAM, min=str(ts[0]), count=1)[0][0]
    if got != b"%d-0" % ts[0]:
        raise AssertionError(f"XRANGE gave {got!r}")

    def body(_):
        xr = r.xrange
        for t in ts:
            xr(REDIS_STREAM, min=str(t), count=1)

    return ctx.measure(body)


def sqlite_seek(ctx, ts: list[int]) -> list[float]:
    con = sqlite3.connect(datasets.sqlite_dataset(ctx))
    q = "SELECT offset FROM records WHERE ts >= ? ORDER BY ts LIMIT 1"
    got = con.execute(q, (ts[0],)).fetchone()[0]
    if got != ts[0] - BASE_TS_MS + 1:  # SQLite rowids start at 1
        raise AssertionError(f"SQLite gave offset {got}")

    def body(_):
        ex = con.execute
        for t in ts:
            ex(q, (t,)).fetchone()

    try:
        return ctx.measure(body)
    finally:
        con.close()


def run(ctx) -> list[Row]:
    count = 2_000 if ctx.quick else 20_000
    ts = targets(ctx, count)
    wl = "seek by timestamp"
    return [
        ctx.row(Row("seek.time.arrowlog", wl, "arrowlog", "Consumer.offsets_for_times, one partition per call",
                    unit="lookups/s", records=count), lambda: arrowlog_seek(ctx, ts, datasets.arrowlog_dataset(ctx))),
        ctx.row(Row("seek.time.arrowlog.segments", wl, "arrowlog",
                    f"the same over {SEGMENT_BYTES >> 20} MiB segments: most answers in closed ones",
                    unit="lookups/s", records=count), lambda: arrowlog_seek(ctx, ts, arrowlog_segments_dataset(ctx))),
        ctx.row(Row("seek.time.redis", wl, "Redis Streams", "XRANGE <ms> + COUNT 1 (IDs are timestamps), one round trip each",
                    unit="lookups/s", records=count), lambda: redis_seek(ctx, ts)),
        ctx.row(Row("seek.time.sqlite", wl, "SQLite WAL", "indexed SELECT ... WHERE ts >= ? ORDER BY ts LIMIT 1",
                    unit="lookups/s", records=count), lambda: sqlite_seek(ctx, ts)),
        Row("seek.time.nats", wl, "NATS JetStream", unit="lookups/s",
            missing="no lookup-by-time call: a client creates a consumer with opt_start_time per lookup"),
    ]
