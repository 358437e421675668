"""The read-side data sets, built once per run (setup, never timed) and shared.

Every system holds the same records: arrowlog in a topic written with
``produce_batch`` (timestamps one millisecond apart), Redis in a stream whose
IDs are those timestamps, SQLite in a WAL table with an index on the
timestamp, NATS in a JetStream file stream.
"""

from __future__ import annotations

import asyncio
import os

import pyarrow as pa

from .peers import SQLITE_INSERT, NatsServer, RedisServer, open_sqlite

TOPIC = "bench"
REDIS_STREAM = "ds"
NATS_STREAM, NATS_SUBJECT = "BENCH", "bench"


def arrowlog_dataset(ctx, partitions: int = 1) -> str:
    """A data directory whose topic ``bench`` holds all ``ctx.n`` records."""
    key = f"arrowlog.dataset.{partitions}"
    if key in ctx.cache:
        return ctx.cache[key]
    import arrowlog
    from arrowlog.storage import LogDir

    recs = ctx.records
    path = ctx.scratch(f"arrowlog-read-{partitions}")
    LogDir(path).create_topic(TOPIC, partitions=partitions)
    p = arrowlog.Producer({"log.dir": path})
    kw = {"partition": 0} if partitions == 1 else {}
    p.produce_batch(TOPIC, recs.values_arrow, keys=recs.keys_arrow, timestamps=recs.timestamps, **kw)
    p.flush()
    ctx.cache[key] = path
    return path


def arrowlog_batch_sizes(path: str, partition: int = 0) -> list[int]:
    """Record counts of the stored batches, in order (to build a like-for-like Arrow file)."""
    from arrowlog.storage import LogDir

    pl = LogDir(path).topic(TOPIC).partition(partition)
    sizes, offset = [], pl.log_start_offset
    while offset < pl.high_watermark:
        frames = pl.read(offset, 64 << 20)
        if not frames:
            break
        for f in frames:
            sizes.append(f.record_count)
            offset = f.base_offset + f.record_count
    return sizes


def arrow_ipc_file(ctx, batch_sizes: list[int]) -> str:
    """The same records as one uncompressed Arrow IPC file with the same batch sizes."""
    key = ("ipc", tuple(batch_sizes))
    if key in ctx.cache:
        return ctx.cache[key]
    table = ctx.records.envelope_table()
    path = os.path.join(ctx.scratch("ipc"), "records.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        start = 0
        for size in batch_sizes:
            w.write_batch(table.slice(start, size).combine_chunks().to_batches()[0])
            start += size
    ctx.cache[key] = path
    return path


def redis(ctx):
    """The shared AOF-everysec server, its stream ``ds`` loaded with every record."""
    srv = ctx.server("redis-everysec", lambda: RedisServer("everysec"))
    if "redis.dataset" not in ctx.cache:
        recs = ctx.records
        ids = [b"%d-0" % t for t in recs.timestamps.tolist()]
        srv.bulk_load(REDIS_STREAM, recs.keys, recs.values, ids)
        ctx.cache["redis.dataset"] = True
    return srv


def sqlite_dataset(ctx) -> str:
    """A WAL database with every record and an index on ``ts``."""
    if "sqlite.dataset" in ctx.cache:
        return ctx.cache["sqlite.dataset"]
    recs = ctx.records
    path = os.path.join(ctx.scratch("sqlite-read"), "log.db")
    con = open_sqlite(path)
    con.execute("BEGIN")
    con.executemany(SQLITE_INSERT, zip(recs.timestamps.tolist(), recs.keys, recs.values, strict=True))
    con.execute("COMMIT")
    con.execute("CREATE INDEX records_ts ON records (ts)")
    con.execute("CREATE TABLE consumer_offsets (grp TEXT PRIMARY KEY, next_offset INTEGER)")
    con.close()
    ctx.cache["sqlite.dataset"] = path
    return path


def nats(ctx):
    """The shared nats-server, stream BENCH holding ``ctx.n_nats`` records."""
    from .bench_produce import nats_publish_all

    srv = ctx.server("nats", NatsServer)
    if ctx.cache.get("nats.stream_records") != ctx.n_nats:
        asyncio.run(nats_publish_all(srv, ctx.records.values[: ctx.n_nats], NATS_STREAM, NATS_SUBJECT))
        ctx.cache["nats.stream_records"] = ctx.n_nats
    return srv
