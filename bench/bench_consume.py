"""How fast can one reader get through every record, alone and as a group member that commits?

Workloads (every reader touches each value):

- *consume everything*: arrowlog ``Consumer.consume(1000)`` on an assigned
  partition, against Redis ``XREAD COUNT 1000``, a NATS JetStream pull
  consumer (``fetch(1000)``, no acks) and a SQLite table scan with
  ``fetchmany(1000)``.
- *consume as a group with commits*: arrowlog subscribed in a consumer group,
  committing after each ``consume(1000)``, against Redis ``XREADGROUP COUNT
  1000`` + ``XACK`` of the batch, a NATS durable pull consumer acknowledging
  each batch (AckAll on its last message), and SQLite storing the next offset
  in a table after each ``fetchmany(1000)``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

from . import datasets
from .bench_replay import add_crc_rows
from .datasets import NATS_STREAM, NATS_SUBJECT, REDIS_STREAM, TOPIC
from .harness import Row

BATCH = 1000
IDLE_LIMIT_S = 10.0  # a reader that sees nothing this long has stalled: fail the row


class Stalled(RuntimeError):
    pass


# -- arrowlog ----------------------------------------------------------------------
def consume_once(path: str, n: int, group: bool):
    """``once(crc)``: every record through a new Consumer, with the CRC check
    ``crc``: again (frames checked by an earlier run in this process are
    remembered), first (checked in each run, as in a new process) or off."""
    import arrowlog
    from arrowlog.storage import segment

    runs = iter(range(1_000_000))

    def once(crc: str = "again"):
        if crc == "first":
            segment.forget_verified()
        conf = {"log.dir": path, "auto.offset.reset": "earliest", "check.crcs": crc != "off"}
        if group:  # manual assignment needs no group; the group row joins one and commits
            conf.update({"group.id": f"bench-{next(runs)}", "enable.auto.commit": False})
        c = arrowlog.Consumer(conf)
        if group:
            c.subscribe([TOPIC])
        else:
            c.assign([arrowlog.TopicPartition(TOPIC, 0, 0)])
        got = total = 0
        idle_since = time.monotonic()
        while got < n:
            msgs = c.consume(BATCH, 1.0)
            if not msgs:
                if time.monotonic() - idle_since > IDLE_LIMIT_S:
                    raise Stalled(f"arrowlog consumer stalled after {got} of {n} records")
                continue
            idle_since = time.monotonic()
            for m in msgs:
                total += len(m.value())
            got += len(msgs)
            if group:
                c.commit(asynchronous=False)
        c.close()
        assert total == n * 100, total

    return once


def arrowlog_consume(ctx, path: str, n: int, group: bool) -> list[float]:
    once = consume_once(path, n, group)
    return ctx.measure(lambda _: once())


# -- Redis Streams ------------------------------------------------------------------
def redis_xread(ctx, n: int) -> list[float]:
    r = datasets.redis(ctx).client()

    def body(_):
        last, got, total = b"0", 0, 0
        while got < n:
            resp = r.xread({REDIS_STREAM: last}, count=BATCH)
            entries = resp[0][1]
            for _id, fields in entries:
                total += len(fields[b"v"])
            got += len(entries)
            last = entries[-1][0]
        assert total == n * 100

    return ctx.measure(body)


def redis_xreadgroup(ctx, n: int) -> list[float]:
    r = datasets.redis(ctx).client()
    runs = iter(range(1_000_000))

    def setup():
        g = f"g{next(runs)}"
        r.xgroup_create(REDIS_STREAM, g, id="0")
        return g

    def body(g):
        got, total = 0, 0
        while got < n:
            resp = r.xreadgroup(g, "c1", {REDIS_STREAM: ">"}, count=BATCH)
            entries = resp[0][1]
            for _id, fields in entries:
                total += len(fields[b"v"])
            r.xack(REDIS_STREAM, g, *[e[0] for e in entries])
            got += len(entries)
        assert total == n * 100

    return ctx.measure(body, setup=setup, teardown=lambda g: r.xgroup_destroy(REDIS_STREAM, g))


# -- NATS JetStream ------------------------------------------------------------------
async def _nats_pull(srv, n: int, durable: str | None, ack: bool) -> float:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(srv.url)
    try:
        js = nc.jetstream()
        cfg = ConsumerConfig(ack_policy=AckPolicy.ALL if ack else AckPolicy.NONE,
                             deliver_policy=DeliverPolicy.ALL, max_ack_pending=-1)
        psub = await js.pull_subscribe(NATS_SUBJECT, durable=durable, stream=NATS_STREAM, config=cfg)
        t0 = time.perf_counter()
        got = total = 0
        while got < n:
            msgs = await psub.fetch(BATCH, timeout=IDLE_LIMIT_S)
            for m in msgs:
                total += len(m.data)
            got += len(msgs)
            if ack:
                await msgs[-1].ack()
        elapsed = time.perf_counter() - t0
        assert total == n * 100
        if durable:
            await js.delete_consumer(NATS_STREAM, durable)
        return elapsed
    finally:
        await nc.close()


def nats_pull(ctx, n: int, ack: bool) -> list[float]:
    srv = datasets.nats(ctx)
    runs = iter(range(1_000_000))
    return ctx.measure(lambda _: asyncio.run(_nats_pull(srv, n, f"d{next(runs)}" if ack else None, ack)))


# -- SQLite ----------------------------------------------------------------------------
def sqlite_scan(ctx, n: int, commit: bool) -> list[float]:
    path = datasets.sqlite_dataset(ctx)

    def body(_):
        con = sqlite3.connect(path, isolation_level=None)
        cur = con.execute("SELECT offset, ts, key, value FROM records ORDER BY offset")
        got = total = 0
        while True:
            rows = cur.fetchmany(BATCH)
            if not rows:
                break
            for row in rows:
                total += len(row[3])
            got += len(rows)
            if commit:
                con.execute("INSERT OR REPLACE INTO consumer_offsets VALUES ('bench', ?)", (rows[-1][0] + 1,))
        con.close()
        assert got == n and total == n * 100

    return ctx.measure(body)


def run(ctx) -> list[Row]:
    n, nb = ctx.n, ctx.records.nbytes
    nn = ctx.n_nats
    rows: list[Row] = []
    add = rows.append

    def arrowlog_path():
        return datasets.arrowlog_dataset(ctx)

    wl = "consume everything"
    add_crc_rows(ctx, rows, "consume.all.arrowlog", wl,
                 "Consumer.consume(1000) loop, assigned partition (no group), len(value)",
                 lambda crc: consume_once(arrowlog_path(), n, False)(crc), lambda _: None, n, nb)
    add(ctx.row(Row("consume.all.redis", wl, "Redis Streams", "XREAD COUNT 1000 loop", records=n, nbytes=nb),
                lambda: redis_xread(ctx, n)))
    add(ctx.row(Row("consume.all.nats", wl, "NATS JetStream", "pull consumer fetch(1000), no acks",
                    records=nn, nbytes=nn * 100, note="fewer records, as in its produce row"),
                lambda: nats_pull(ctx, nn, ack=False)))
    add(ctx.row(Row("consume.all.sqlite", wl, "SQLite WAL", "SELECT ... ORDER BY offset, fetchmany(1000)",
                    records=n, nbytes=nb), lambda: sqlite_scan(ctx, n, commit=False)))

    wl = "consume as a group with commits"
    add(ctx.row(Row("consume.group.arrowlog", wl, "arrowlog",
                    "subscribe(), consume(1000), commit(asynchronous=False) per batch", records=n, nbytes=nb),
                lambda: arrowlog_consume(ctx, arrowlog_path(), n, group=True)))
    add(ctx.row(Row("consume.group.redis", wl, "Redis Streams", "XREADGROUP COUNT 1000 + XACK per batch",
                    records=n, nbytes=nb), lambda: redis_xreadgroup(ctx, n)))
    add(ctx.row(Row("consume.group.nats", wl, "NATS JetStream", "durable pull consumer fetch(1000), AckAll per batch",
                    records=nn, nbytes=nn * 100), lambda: nats_pull(ctx, nn, ack=True)))
    add(ctx.row(Row("consume.group.sqlite", wl, "SQLite WAL", "fetchmany(1000) scan, next offset stored per batch",
                    records=n, nbytes=nb), lambda: sqlite_scan(ctx, n, commit=True)))
    return rows
