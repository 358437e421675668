"""How long from produce()+flush() in one process until another process has the record?

Process A (the harness) sends single records, each carrying its send time
(CLOCK_MONOTONIC, shared by all processes), paced so nothing queues; process B
receives them and records now − send time. 10,000 sends per run (1,000 with
--quick); the rows are p50, p99 and p99.9 per run, median over runs.

- arrowlog: ``produce(topic, value)`` + ``flush()`` → a ``Consumer.poll()``
  loop in B that waits on the published high watermark.
- Redis Streams: ``XADD`` (AOF everysec) → ``XREAD BLOCK`` in B.
- NATS JetStream: ``js.publish`` (waits for the stream's ack) → an ordered
  push consumer in B.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import struct
import time

from . import datasets
from .harness import Row, failure_reason, percentile
from .peers import NatsServer, RedisServer

PACE_S = 0.0002  # gap between sends: well above either side's per-record cost
PAD = b"\0" * 92  # 8-byte send time + 92 bytes = the benchmark's 100-byte values
STREAM = "lat"
NATS_STREAM, NATS_SUBJECT = "LAT", "lat"


def _stamp() -> bytes:
    return struct.pack("<q", time.perf_counter_ns()) + PAD


def _latency_us(value: bytes, now_ns: int) -> float:
    return (now_ns - struct.unpack_from("<q", value)[0]) / 1000


# -- process B ----------------------------------------------------------------
# the low-latency row's poll.spin.us: a few of the sender's PACE_S gaps
SPIN_US = 1000


def arrowlog_reader(path: str, spin_us: int, n: int, ready, out) -> None:
    import arrowlog

    c = arrowlog.Consumer({"log.dir": path, "auto.offset.reset": "earliest", "poll.spin.us": spin_us})
    c.assign([arrowlog.TopicPartition(datasets.TOPIC, 0, 0)])
    receive(c, n, ready, out)


def receive(c, n: int, ready, out) -> None:
    """Signal ``ready``, poll ``c`` until ``n`` stamped records came (or 2 minutes), send their latencies."""
    lat = []
    ready.set()
    deadline = time.monotonic() + 120
    while len(lat) < n and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        lat.append(_latency_us(m.value(), time.perf_counter_ns()))
    c.close()
    out.send(lat)


def redis_reader(port: int, n: int, ready, out) -> None:
    import redis

    r = redis.Redis(host="127.0.0.1", port=port)
    last = b"$"
    lat = []
    ready.set()
    deadline = time.monotonic() + 120
    while len(lat) < n and time.monotonic() < deadline:
        resp = r.xread({STREAM: last}, block=1000)
        now = time.perf_counter_ns()
        for _stream, entries in resp or []:
            for rid, fields in entries:
                lat.append(_latency_us(fields[b"v"], now))
                last = rid
    out.send(lat)


def nats_reader(url: str, n: int, ready, out) -> None:
    import asyncio

    import nats

    async def main() -> list[float]:
        nc = await nats.connect(url)
        sub = await nc.jetstream().subscribe(NATS_SUBJECT, ordered_consumer=True)
        lat: list[float] = []
        ready.set()
        deadline = time.monotonic() + 120
        while len(lat) < n and time.monotonic() < deadline:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            lat.append(_latency_us(msg.data, time.perf_counter_ns()))
        await nc.close()
        return lat

    out.send(asyncio.run(main()))


# -- process A ----------------------------------------------------------------
def stamp_sender(producer):
    """send(): one stamped record through ``producer`` to partition 0, flushed."""
    produce, flush = producer.produce, producer.flush
    key = b"k" * 8

    def send():
        produce(datasets.TOPIC, _stamp(), key=key, partition=0)
        flush()

    return send


def one_run(ctx, reader, reader_args, send, n: int) -> list[float]:
    """Start B, wait until it listens, send ``n`` paced records, collect B's latencies."""
    mpc = mp.get_context("spawn")
    ready = mpc.Event()
    recv, send_end = mpc.Pipe(duplex=False)
    proc = mpc.Process(target=reader, args=(*reader_args, n, ready, send_end), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.wait(0.1):
            if not proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"latency reader did not start (exit code {proc.exitcode})")
        time.sleep(0.05)  # let B block in its wait
        for _ in range(n):
            send()
            time.sleep(PACE_S)  # sleep, not spin: on 2 cores a spinning sender would starve B
        if not recv.poll(60):
            raise RuntimeError("latency reader returned nothing")
        lat = recv.recv()
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    if len(lat) < n:
        raise RuntimeError(f"reader received {len(lat)} of {n} records")
    return lat


def latency_runs(ctx, system: str, make_run) -> dict[str, list[float]]:
    """p50/p99/p99.9 of each timed run; all timed latencies kept for the chart."""
    per_q = {"p50": [], "p99": [], "p99.9": []}
    everything = []
    for i in range(ctx.warmup + ctx.runs):
        lat = make_run(ctx.latency_sends if i >= ctx.warmup else min(1000, ctx.latency_sends))
        if i < ctx.warmup:
            continue
        s = sorted(lat)
        everything += lat
        for q, key in ((50, "p50"), (99, "p99"), (99.9, "p99.9")):
            per_q[key].append(percentile(s, q))
    ctx.latency_samples[system] = everything
    return per_q


def arrowlog_latency(ctx, spin_us: int = 0) -> dict[str, list[float]]:
    import arrowlog
    from arrowlog.storage import LogDir

    def make_run(n):
        path = ctx.scratch("arrowlog-latency")
        LogDir(path).create_topic(datasets.TOPIC, partitions=1)
        p = arrowlog.Producer({"log.dir": path, "linger.ms": 0})
        try:
            return one_run(ctx, arrowlog_reader, (path, spin_us), stamp_sender(p), n)
        finally:
            p.close()

    return latency_runs(ctx, "arrowlog-spin" if spin_us else "arrowlog", make_run)


def redis_latency(ctx) -> dict[str, list[float]]:
    srv = ctx.server("redis-everysec", lambda: RedisServer("everysec"))
    r = srv.client()

    def make_run(n):
        r.delete(STREAM)
        return one_run(ctx, redis_reader, (srv.port,),
                       lambda: r.xadd(STREAM, {b"k": b"k" * 8, b"v": _stamp()}), n)

    return latency_runs(ctx, "Redis Streams", make_run)


def nats_latency(ctx) -> dict[str, list[float]]:
    import asyncio

    from .bench_produce import nats_connect, nats_fresh_stream

    srv = ctx.server("nats", NatsServer)
    loop = asyncio.new_event_loop()
    nc, js = loop.run_until_complete(nats_connect(srv))

    def make_run(n):
        loop.run_until_complete(nats_fresh_stream(js, NATS_STREAM, NATS_SUBJECT))
        return one_run(ctx, nats_reader, (srv.url,),
                       lambda: loop.run_until_complete(js.publish(NATS_SUBJECT, _stamp())), n)

    try:
        return latency_runs(ctx, "NATS JetStream", make_run)
    finally:
        loop.run_until_complete(nc.close())
        loop.close()


def inprocess_runs(ctx) -> dict[str, list[float]]:
    """p50/p99 (µs) of one produce()+flush() of a single record, each call timed, per run."""
    import arrowlog
    from arrowlog.storage import LogDir

    per_q: dict[str, list[float]] = {"p50": [], "p99": []}
    value, key = b"\0" * 100, b"k" * 8
    for i in range(ctx.warmup + ctx.runs):
        path = ctx.scratch("arrowlog-inprocess")
        LogDir(path).create_topic(datasets.TOPIC, partitions=1)
        p = arrowlog.Producer({"log.dir": path, "linger.ms": 0})
        produce, flush, clock = p.produce, p.flush, time.perf_counter_ns
        lat = []
        try:
            for _ in range(ctx.latency_sends):
                t = clock()
                produce(datasets.TOPIC, value, key=key, partition=0)
                flush()
                lat.append((clock() - t) / 1000)
        finally:
            p.close()
        if i >= ctx.warmup:
            s = sorted(lat)
            per_q["p50"].append(percentile(s, 50))
            per_q["p99"].append(percentile(s, 99))
    return per_q


def fill_quantiles(templates: list[Row], measure) -> list[Row]:
    """Rows whose unit ends in a quantile ("µs p99") filled from ``measure()``'s
    {quantile: samples}, or all marked missing with the reason it failed."""
    try:
        per_q = measure()
    except Exception as exc:
        for t in templates:
            t.missing = failure_reason(exc)
    else:
        for t in templates:
            t.samples = per_q[t.unit.split()[-1]]
    return templates


def run(ctx) -> list[Row]:
    rows = fill_quantiles([Row(f"latency.inprocess.{q}.arrowlog", "one record in-process", "arrowlog",
                               "produce(topic, value, key=key) + flush() of one 100-byte record, each pair timed",
                               kind="latency", unit=f"µs {q}", records=ctx.latency_sends) for q in ("p50", "p99")],
                          lambda: inprocess_runs(ctx))
    for system, key, setting, fn in (
        ("arrowlog", "arrowlog", "produce()+flush() → Consumer.poll() in another process", arrowlog_latency),
        ("arrowlog (poll.spin.us)", "arrowlog-spin", f"the same, the consumer in the low-latency mode "
         f"(poll.spin.us={SPIN_US}: spins before the futex wait)", lambda ctx: arrowlog_latency(ctx, SPIN_US)),
        ("Redis Streams", "redis", "XADD → XREAD BLOCK in another process, AOF everysec", redis_latency),
        ("NATS JetStream", "nats", "js.publish (ack awaited) → ordered push consumer in another process",
         nats_latency),
    ):
        rows += fill_quantiles([Row(f"latency.{q}.{key}", "cross-process latency", system, setting, kind="latency",
                                    unit=f"µs {q}", records=ctx.latency_sends) for q in ("p50", "p99", "p99.9")],
                               lambda fn=fn: fn(ctx))
    return rows


# -- where the time goes: `python -m bench.bench_latency --stages` ------------
# Not a row: the path of one record cut into stages by CLOCK_MONOTONIC stamps
# (perf_counter_ns) over a paced run, as docs/CLIENTS.md quotes them.
STAGES = ("A: produce()+flush()", "flush() returned → B's wait returned", "B: wait returned → frame read (_load)",
          "B: frame read → poll() returned", "total: before produce() → poll() returned")


def staged_reader(path: str, spin_us: int, n: int, ready, out) -> None:
    """arrowlog_reader with stamps: (offset, send time, wait returned, frame read, poll returned) per record;
    0 for a stage the poll did not pass through (the record was there before it waited)."""
    import arrowlog
    from arrowlog.backends.local import consumer as local

    clock, marks = time.perf_counter_ns, {}
    wait, load = local.wait_for_data, local.Consumer._load

    def timed_wait(*args, **kwargs):
        got = wait(*args, **kwargs)
        if got:
            marks["seen"] = clock()
        return got

    def timed_load(self, f):
        got = load(self, f)
        if got:
            marks["read"] = clock()
        return got

    local.wait_for_data, local.Consumer._load = timed_wait, timed_load
    c = arrowlog.Consumer({"log.dir": path, "auto.offset.reset": "earliest", "poll.spin.us": spin_us})
    c.assign([arrowlog.TopicPartition(datasets.TOPIC, 0, 0)])
    rows = []
    ready.set()
    deadline = time.monotonic() + 120
    while len(rows) < n and time.monotonic() < deadline:
        marks.clear()
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        done = clock()
        rows.append((m.offset(), struct.unpack_from("<q", m.value())[0], marks.get("seen", 0), marks.get("read", 0),
                     done))
    c.close()
    out.send(rows)


def stage_table(spin_us: int, n: int) -> str:
    """One paced run of ``n`` records with the stamps; a markdown table of p50/p99 per stage."""
    import tempfile

    import arrowlog
    from arrowlog.storage import LogDir

    flushed: list[int] = []
    with tempfile.TemporaryDirectory(prefix="arrowlog-stages-") as path:
        LogDir(path).create_topic(datasets.TOPIC, partitions=1)
        p = arrowlog.Producer({"log.dir": path, "linger.ms": 0})
        send_one = stamp_sender(p)

        def send():
            send_one()
            flushed.append(time.perf_counter_ns())

        try:
            rows = one_run(None, staged_reader, (path, spin_us), send, n)
        finally:
            p.close()
    samples: dict[str, list[float]] = {s: [] for s in STAGES}
    waited = 0
    for offset, sent, seen, read, done in rows[n // 10:]:  # the first tenth warms up
        samples[STAGES[0]].append(flushed[offset] - sent)
        if seen:
            waited += 1
            samples[STAGES[1]].append(seen - flushed[offset])
        if seen and read:
            samples[STAGES[2]].append(read - seen)
        if read:  # else read by an earlier poll, with the records before it
            samples[STAGES[3]].append(done - read)
        samples[STAGES[4]].append(done - sent)
    lines = [f"poll.spin.us={spin_us}, {len(rows) - n // 10} records ({waited} found by a wait), "
             f"load average {os.getloadavg()[0]:.1f}", "", "| stage | p50 µs | p99 µs |", "|---|---|---|"]
    for stage, xs in samples.items():
        xs.sort()
        if xs:
            lines.append(f"| {stage} | {percentile(xs, 50) / 1000:.1f} | {percentile(xs, 99) / 1000:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="where one record's cross-process latency goes, stage by stage")
    ap.add_argument("--stages", action="store_true", required=True)
    ap.add_argument("--spin-us", type=int, action="append", help="poll.spin.us (repeatable; default 0 and 1000)")
    ap.add_argument("-n", type=int, default=5000, help="records per run")
    args = ap.parse_args()
    for spin in args.spin_us or [0, SPIN_US]:
        print(stage_table(spin, args.n), end="\n\n")
