"""How fast can Python hand records to the log: one call per record, in bulk, and durably?

Workloads (same records everywhere: 100-byte values, 8-byte keys):

- *produce one by one*: arrowlog ``produce(topic, value, key=key)`` per record
  then one ``flush()``, against confluent-kafka's ``produce()`` merely queueing
  the records (no broker reachable), Redis Streams pipelined ``XADD`` (AOF
  everysec), NATS JetStream ``publish_async`` (file storage) and SQLite WAL
  ``INSERT`` per record in one transaction.
- *produce in bulk*: arrowlog ``produce_batch`` of Arrow binary arrays (GB/s of
  values) into a new topic, by a new Producer in each run and by a new
  process (its very first batch), against SQLite ``executemany`` and the
  machine's sequential page-cache write of the same bytes (run after run
  in this process, and as a new process's first write, alternating with
  the new processes of arrowlog's row).
- *produce in bulk while another process writes the same disk*: the
  ``produce_batch`` row and the page-cache write again, each while a bounded
  dd-like writer (bench/contention.py) rewrites a file with an fsync per pass.
- *durable produce*: every 1,000 records made durable (fsync) before going on:
  arrowlog ``durability=fsync`` with ``flush()`` per 1,000, Redis
  ``appendfsync always`` with one pipeline per 1,000, SQLite
  ``synchronous=FULL`` with a commit per 1,000, and the machine's
  write+fsync of the same bytes in 1,000-record writes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time

from .contention import Contention
from .harness import Row
from .peers import SQLITE_INSERT, NatsServer, RedisServer, closed_port, open_sqlite

TOPIC = "bench"
DURABLE_BATCH = 1000


def arrowlog_log(ctx, partitions: int = 1, config: dict | None = None) -> str:
    """A fresh data directory with the benchmark topic."""
    from arrowlog.storage import LogDir

    path = ctx.scratch("arrowlog")
    LogDir(path).create_topic(TOPIC, partitions=partitions, config=config or {})
    return path


def _rmtree(path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class _Held:
    """Producers a timed body opened, closed untimed in the teardown: close()
    syncs what was written (so the next open of the log is clean), which is
    not part of producing."""

    def __init__(self):
        self.producers = []

    def keep(self, producer):
        self.producers.append(producer)
        return producer

    def teardown(self, path) -> None:
        while self.producers:
            self.producers.pop().close()
        _rmtree(path)


# -- arrowlog -------------------------------------------------------------------
def arrowlog_produce_one(ctx, recs, n: int) -> list[float]:
    import arrowlog

    values, keys = recs.values[:n], recs.keys[:n]

    held = _Held()

    def body(path):
        p = held.keep(arrowlog.Producer({"log.dir": path}))
        produce = p.produce
        for v, k in zip(values, keys, strict=True):
            produce(TOPIC, v, key=k)
        p.flush()

    return ctx.measure(body, setup=lambda: arrowlog_log(ctx), teardown=held.teardown)


def arrowlog_produce_batch(ctx, recs, n: int) -> list[float]:
    import arrowlog

    values, keys = recs.values_arrow[:n], recs.keys_arrow[:n]

    held = _Held()

    def body(path):
        p = held.keep(arrowlog.Producer({"log.dir": path}))
        p.produce_batch(TOPIC, values, keys=keys)
        p.flush()

    return ctx.measure(body, setup=lambda: arrowlog_log(ctx), teardown=held.teardown)


def arrowlog_produce_durable(ctx, recs, n: int) -> list[float]:
    import arrowlog

    values, keys = recs.values[:n], recs.keys[:n]

    held = _Held()

    def body(path):
        p = held.keep(arrowlog.Producer({"log.dir": path, "durability": "fsync"}))
        produce = p.produce
        for i in range(0, n, DURABLE_BATCH):
            for v, k in zip(values[i : i + DURABLE_BATCH], keys[i : i + DURABLE_BATCH], strict=True):
                produce(TOPIC, v, key=k)
            p.flush()

    return ctx.measure(body, setup=lambda: arrowlog_log(ctx), teardown=held.teardown)


FIRST_CALL = """
import json, sys
from bench.bench_produce import first_call_s
print(json.dumps({"elapsed": first_call_s(sys.argv[1], int(sys.argv[2]), sys.argv[3])}))
"""


def new_topic_batch_s(path: str, values, keys) -> float:
    """Seconds for a new Producer's produce_batch + flush into a new topic in
    ``path`` (the topic created, its partition's files with it, and the
    Producer closed untimed)."""
    import arrowlog
    from arrowlog.storage import LogDir

    LogDir(path).create_topic(TOPIC, partitions=1)
    t0 = time.perf_counter()
    p = arrowlog.Producer({"log.dir": path})
    p.produce_batch(TOPIC, values, keys=keys)
    p.flush()
    elapsed = time.perf_counter() - t0
    p.close()
    return elapsed


def _write_all(fd: int, data: memoryview, chunk: int, fsync_every: int = 0) -> None:
    for i in range(0, len(data), chunk):
        os.write(fd, data[i : i + chunk])
        if fsync_every:
            os.fsync(fd)


def new_file_write_s(path: str, data: bytes, chunk: int = 1 << 20) -> float:
    """Seconds for a sequential write() of ``data`` in ``chunk``-byte writes
    into a new file in ``path`` (opened and closed untimed)."""
    fd = os.open(os.path.join(path, "f"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.perf_counter()
        _write_all(fd, memoryview(data), chunk)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def first_call_s(path: str, n: int, what: str) -> float:
    """In a new process: seconds of its first ``produce_batch`` (a new
    Producer, into a new topic in ``path``) or of its first ``write()`` of
    the same values into a new file there. Both processes import the same
    modules and build the same records, untimed, before the clock starts:
    they differ only in the call timed. The records come first, then
    arrowlog's import, as in the row's script before (the order sets what
    glibc's heap holds when the clock starts)."""
    from .context import Records

    recs = Records(n)
    values, keys = recs.values_arrow, recs.keys_arrow
    import arrowlog  # noqa: F401  (imported by both: the processes differ only in the timed call)

    if what == "write":
        return new_file_write_s(path, recs.value_bytes)
    return new_topic_batch_s(path, values, keys)


def first_calls_of_processes(ctx, n: int) -> list[float]:
    """A new process's first produce_batch, and (kept in ctx.cache for its
    own row) a new process's first write() of the same values: the two
    processes alternate, each after a sync, the first one's files removed
    before the second starts, and which goes first alternates by run."""
    from .adapters import run_json

    writes: list[float] = []

    def body(path):
        order = ("batch", "write") if len(writes) % 2 == 0 else ("write", "batch")
        got = {}
        for what in order:
            d = os.path.join(path, what)
            os.mkdir(d)
            got[what] = float(run_json(["-c", FIRST_CALL, d, str(n), what], timeout=300)["elapsed"])
            _rmtree(d)
            os.sync()
        writes.append(got["write"])
        return got["batch"]

    samples = ctx.measure(body, setup=lambda: ctx.scratch("arrowlog-first"), teardown=_rmtree)
    ctx.cache["produce.first.write"] = writes[len(writes) - len(samples):]
    return samples


def first_writes_of_processes(ctx) -> list[float]:
    if "produce.first.write" not in ctx.cache:
        raise RuntimeError("measured with produce.batch.arrowlog-firstprocess, which did not run")
    return ctx.cache["produce.first.write"]


# -- confluent-kafka: the client-side cost before any I/O -------------------------
def confluent_queue(ctx, recs, n: int) -> list[float]:
    from confluent_kafka import Producer

    values, keys = recs.values[:n], recs.keys[:n]
    conf = {
        "bootstrap.servers": f"127.0.0.1:{closed_port()}",
        "queue.buffering.max.messages": max(n, 100_000),
        "queue.buffering.max.kbytes": 2_147_483_647,
        # A long linger keeps librdkafka's broker thread idle, so this is the
        # pure queueing cost: the cheapest produce() a Kafka user can get.
        "linger.ms": 1000,
        "log_level": 0,
    }

    def setup():
        return Producer(conf)

    def body(p):
        produce = p.produce
        for v, k in zip(values, keys, strict=True):
            produce(TOPIC, v, key=k)

    def teardown(p):
        p.purge()
        p.poll(0)

    return ctx.measure(body, setup=setup, teardown=teardown)


# -- Redis Streams ---------------------------------------------------------------
def redis_xadd(ctx, recs, n: int, appendfsync: str, batch: int = 1000) -> list[float]:
    srv = ctx.server(f"redis-{appendfsync}", lambda: RedisServer(appendfsync))
    r = srv.client()
    values, keys = recs.values[:n], recs.keys[:n]

    def body(stream):
        pipe = r.pipeline(transaction=False)
        xadd = pipe.xadd
        for i in range(0, n, batch):
            for v, k in zip(values[i : i + batch], keys[i : i + batch], strict=True):
                xadd(stream, {b"k": k, b"v": v})
            pipe.execute()

    def setup():
        r.delete("produce")
        return "produce"

    samples = ctx.measure(body, setup=setup, teardown=lambda s: r.delete(s))
    r.close()
    return samples


# -- NATS JetStream --------------------------------------------------------------
async def nats_connect(srv):
    import nats

    nc = await nats.connect(srv.url, pending_size=256 * 1024 * 1024)
    return nc, nc.jetstream(publish_async_max_pending=20_000)


async def nats_fresh_stream(js, name: str, subject: str) -> None:
    from nats.js.api import StorageType, StreamConfig

    try:
        await js.delete_stream(name)
    except Exception:  # absent: nothing to delete
        pass
    await js.add_stream(StreamConfig(name=name, subjects=[subject], storage=StorageType.FILE))


async def nats_publish_all(srv, values, stream="BENCH", subject="bench") -> float:
    nc, js = await nats_connect(srv)
    try:
        await nats_fresh_stream(js, stream, subject)
        t0 = time.perf_counter()
        pub = js.publish_async
        for v in values:  # the key is not sent: NATS has no per-message key (subjects play that role)
            await pub(subject, v)
        await js.publish_async_completed()
        return time.perf_counter() - t0
    finally:
        await nc.close()


def nats_publish(ctx, recs, n: int) -> list[float]:
    srv = ctx.server("nats", NatsServer)
    values = recs.values[:n]
    samples = ctx.measure(lambda _: asyncio.run(nats_publish_all(srv, values)))
    ctx.cache["nats.stream_records"] = n  # the last run left the BENCH stream full: consume reuses it
    return samples


# -- SQLite ----------------------------------------------------------------------
def sqlite_insert(ctx, recs, n: int, synchronous: str, mode: str) -> list[float]:
    values, keys = recs.values[:n], recs.keys[:n]
    ts = recs.timestamps[:n].tolist()

    def setup():
        d = ctx.scratch("sqlite")
        return d, open_sqlite(os.path.join(d, "log.db"), synchronous)

    def body(state):
        _, con = state
        if mode == "one":
            ex = con.execute
            con.execute("BEGIN")
            for t, k, v in zip(ts, keys, values, strict=True):
                ex(SQLITE_INSERT, (t, k, v))
            con.execute("COMMIT")
        elif mode == "bulk":
            con.execute("BEGIN")
            con.executemany(SQLITE_INSERT, zip(ts, keys, values, strict=True))
            con.execute("COMMIT")
        else:  # durable: a commit per batch
            for i in range(0, n, DURABLE_BATCH):
                j = i + DURABLE_BATCH
                con.execute("BEGIN")
                con.executemany(SQLITE_INSERT, zip(ts[i:j], keys[i:j], values[i:j], strict=True))
                con.execute("COMMIT")

    def teardown(state):
        d, con = state
        con.close()
        _rmtree(d)

    return ctx.measure(body, setup=setup, teardown=teardown)


# -- machine limits ----------------------------------------------------------------
def page_cache_write(ctx, data: bytes, chunk: int = 1 << 20, fsync_every: int = 0) -> list[float]:
    """Sequential write of ``data`` in ``chunk``-byte writes; fsync after each if asked."""
    mv = memoryview(data)

    def setup():
        d = ctx.scratch("write")
        return d, os.open(os.path.join(d, "f"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def body(state):
        _write_all(state[1], mv, chunk, fsync_every)

    def teardown(state):
        d, fd = state
        os.close(fd)
        _rmtree(d)

    return ctx.measure(body, setup=setup, teardown=teardown)


def under_contention(ctx, measure_rows) -> list[float]:
    """``measure_rows()`` while a dd-like writer (1 MiB writes, fsync per pass) loads the same disk."""
    with Contention(ctx.scratch("contention"), pass_mib=64 if ctx.quick else 256, max_s=900) as load:
        samples = measure_rows()
        if not load.running:
            raise RuntimeError("the background writer stopped before the row was measured")
    return samples


def run(ctx) -> list[Row]:
    recs = ctx.records
    n = ctx.n
    nb = recs.nbytes
    nd = ctx.n_durable
    rows: list[Row] = []
    add = rows.append

    wl = "produce one by one"
    add(ctx.row(Row("produce.one.arrowlog", wl, "arrowlog", "produce(topic, value, key=key) per record, one flush()",
                    records=n, nbytes=nb), lambda: arrowlog_produce_one(ctx, recs, n)))
    add(ctx.row(Row("produce.one.confluent", wl, "confluent-kafka", "produce() queueing only, no broker reachable (linger.ms=1000)",
                    records=n, nbytes=nb, note="client-side cost before any I/O: the records never leave the process"),
                lambda: confluent_queue(ctx, recs, n)))
    add(ctx.row(Row("produce.one.redis", wl, "Redis Streams", "pipelined XADD, 1,000 per round trip, AOF everysec",
                    records=n, nbytes=nb), lambda: redis_xadd(ctx, recs, n, "everysec")))
    nn = ctx.n_nats
    add(ctx.row(Row("produce.one.nats", wl, "NATS JetStream", "publish_async per record (value only), file storage, all acks awaited",
                    records=nn, nbytes=nn * 100, note="fewer records: nats-py publishes far slower than the others, and the whole run must fit in 10 minutes"), lambda: nats_publish(ctx, recs, nn)))
    add(ctx.row(Row("produce.one.sqlite", wl, "SQLite WAL", "INSERT per record, one transaction, synchronous=NORMAL",
                    records=n, nbytes=nb), lambda: sqlite_insert(ctx, recs, n, "NORMAL", "one")))

    wl = "produce in bulk"
    add(ctx.row(Row("produce.batch.arrowlog", wl, "arrowlog",
                    "new Producer, produce_batch(topic, values, keys=keys) of Arrow binary arrays into a new "
                    "topic (its first batch), flush()", records=n, nbytes=nb),
                lambda: arrowlog_produce_batch(ctx, recs, n)))
    add(ctx.row(Row("produce.batch.arrowlog-firstprocess", wl, "arrowlog, a new process",
                    "the same in a new process: its first Producer and first produce_batch (the process's imports "
                    "and the records' construction done before the clock starts)", records=n, nbytes=nb,
                    note="create_topic, untimed, makes the partition's files (docs/SCALING.md): the batch opens them"),
                lambda: first_calls_of_processes(ctx, n)))
    add(ctx.row(Row("produce.batch.pagecache-firstprocess", wl, "machine limit, a new process",
                    "a new process's first sequential write() of the values, 1 MiB writes, into a new file (its "
                    "imports and records made as for the row above before the clock starts; the two processes "
                    "alternate)", nbytes=nb,
                    note="the like-for-like reference of the row above: the page-cache row writes into pages "
                         "its previous run just freed (docs/SCALING.md, \"A new process's first produce_batch\")"),
                lambda: first_writes_of_processes(ctx)))
    add(ctx.row(Row("produce.batch.sqlite", wl, "SQLite WAL", "executemany in one transaction, synchronous=NORMAL",
                    records=n, nbytes=nb), lambda: sqlite_insert(ctx, recs, n, "NORMAL", "bulk")))
    add(ctx.row(Row("produce.batch.pagecache", wl, "machine limit", "sequential page-cache write of the values, 1 MiB writes",
                    nbytes=nb), lambda: page_cache_write(ctx, recs.value_bytes)))

    wl = "produce in bulk while another process writes the same disk (dd-like, fsync per 256 MiB)"
    load = "a background writer rewrites a 256 MiB file (64 MiB with --quick) in 1 MiB writes, fsync per pass"
    add(ctx.row(Row("produce.contended.arrowlog", wl, "arrowlog",
                    "the produce_batch row above, under the background writer", records=n, nbytes=nb, note=load),
                lambda: under_contention(ctx, lambda: arrowlog_produce_batch(ctx, recs, n))))
    add(ctx.row(Row("produce.contended.pagecache", wl, "machine limit",
                    "sequential write() of the values, 1 MiB writes, under the same background writer", nbytes=nb),
                lambda: under_contention(ctx, lambda: page_cache_write(ctx, recs.value_bytes))))

    wl = "durable produce (fsync every 1,000 records)"
    dnb = nd * 100
    add(ctx.row(Row("produce.durable.arrowlog", wl, "arrowlog", 'durability="fsync", produce() per record, flush() per 1,000',
                    records=nd, nbytes=dnb), lambda: arrowlog_produce_durable(ctx, recs, nd)))
    add(ctx.row(Row("produce.durable.redis", wl, "Redis Streams", "pipelined XADD, 1,000 per round trip, appendfsync always",
                    records=nd, nbytes=dnb), lambda: redis_xadd(ctx, recs, nd, "always")))
    add(ctx.row(Row("produce.durable.sqlite", wl, "SQLite WAL", "executemany + COMMIT per 1,000, synchronous=FULL",
                    records=nd, nbytes=dnb), lambda: sqlite_insert(ctx, recs, nd, "FULL", "durable")))
    add(ctx.row(Row("produce.durable.fsync", wl, "machine limit", "write of 1,000 values (100 kB) + fsync, repeated",
                    records=nd, nbytes=dnb), lambda: page_cache_write(ctx, recs.value_bytes[:dnb], chunk=DURABLE_BATCH * 100, fsync_every=1)))
    return rows
