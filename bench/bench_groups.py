"""How fresh is a record in another process, and does a consumer group spread the reading?

1. Cross-process latency: process A calls ``produce(topic, value)`` then
   ``flush()`` for single records (value = its CLOCK_MONOTONIC send time, so
   A and B share the clock); process B, a group member subscribed to the
   one-partition topic, polls and records receive time - send time. Sends
   are paced (a short gap) so nothing queues. p50 / p99 / p99.9 over 10,000
   sends (1,000 with quick). Target: p99 below 1 ms. Also the CPU the
   reader burns while it waits a second with nothing to read (it should
   sleep on the high watermark's futex, not spin).
2. Group throughput: N 100-byte records in a 6-partition topic. One
   consumer subscribed alone reads them all (``consume(1000)`` and an
   asynchronous commit per batch); then 3 member processes of one group do
   the same, and the clock stops when together they have read N. The clock
   starts once the group has settled (partitions are paused until then), so
   this is reading throughput, not joining. Two workloads: "read" touches
   each value; "sha256" hashes each value, a stand-in for real per-record
   work, where spreading over processes pays (up to the machine's cores).

3. Fail-over: two members on 6 partitions, one SIGKILLed; how long until
   the survivor owns all six (no session timeout: the kernel drops the dead
   member's locks, the survivor's next probe notices).

``run(quick=False) -> dict`` returns the figures; ``python -m
bench.bench_groups [--quick]`` prints them as JSON.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import struct
import sys
import tempfile
import time

PACE_S = 0.0002
IDLE_S = 1.0          # the reader first waits this long with nothing to read
VALUE_BYTES = 100
PARTITIONS = 6
MEMBERS = 3


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, int(round(q / 100.0 * (len(s) - 1)))))
    return s[k]


# -- 1. latency ----------------------------------------------------------------------------


def _latency_reader(path: str, n: int, ready, out) -> None:
    import arrowlog

    c = arrowlog.Consumer({"log.dir": path, "group.id": "bench-latency", "auto.offset.reset": "latest",
                           "enable.auto.commit": False})
    c.subscribe(["lat"])
    while not c.assignment():
        c.poll(0.01)
    ready.set()
    lat = []
    idle_cpu = None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = time.monotonic() + 300
    while len(lat) < n and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        now = time.perf_counter_ns()
        if idle_cpu is None:     # CPU used while waiting for the first record
            idle_cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        lat.append((now - struct.unpack_from("<q", m.value())[0]) / 1000.0)
    c.close()
    out.put((lat, idle_cpu))


def latency(path: str, n: int) -> dict:
    import arrowlog

    with arrowlog.LogDir(path) as log:
        log.create_topic("lat", partitions=1)
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_latency_reader, args=(path, n, ready, out))
    reader.start()
    if not ready.wait(60):
        reader.kill()
        raise RuntimeError("the latency reader did not start")
    time.sleep(IDLE_S)          # the reader waits idle: what does that cost it?
    pad = b"\0" * (VALUE_BYTES - 8)
    p = arrowlog.Producer({"log.dir": path, "linger.ms": 0})
    for _ in range(n):
        p.produce("lat", struct.pack("<q", time.perf_counter_ns()) + pad)
        p.flush()
        t = time.perf_counter() + PACE_S
        while time.perf_counter() < t:
            pass
    p.close()
    lat, idle_cpu = out.get(timeout=300)
    reader.join(60)
    return {"sends": n, "received": len(lat), "p50_us": _percentile(lat, 50), "p99_us": _percentile(lat, 99),
            "p99_9_us": _percentile(lat, 99.9), "max_us": max(lat) if lat else float("nan"),
            "idle_reader_cpu_percent": None if idle_cpu is None else 100.0 * idle_cpu}


# -- 2. group throughput -------------------------------------------------------------------------


def _read_share(path: str, group: str, total: int, work: bool, counter, go, stop) -> None:
    import hashlib

    import arrowlog

    c = arrowlog.Consumer({"log.dir": path, "group.id": group, "auto.offset.reset": "earliest",
                           "enable.auto.commit": False})

    def on_assign(cons, parts):
        # hold new partitions until the clock starts, so the timed part is
        # reading, not joining (a joiner's share is paused like the rest)
        cons.incremental_assign(parts)
        if not go.is_set():
            cons.pause(parts)

    c.subscribe(["grp"], on_assign=on_assign)
    early: list = []
    while not go.is_set():
        # a partition assigned just after the clock started is not paused:
        # what this poll returns from it counts
        early += c.consume(1, 0.01)
    c.resume(c.assignment())
    sha = hashlib.sha256
    while not stop.is_set():
        msgs, early = early + c.consume(1000, 0.1), []
        if not msgs:
            continue
        if work:
            for m in msgs:
                sha(m.value()).digest()
        else:
            for m in msgs:
                m.value()
        c.commit(asynchronous=True)
        with counter.get_lock():
            counter.value += len(msgs)
            if counter.value >= total:
                stop.set()
    c.close()


def _group_run(path: str, group: str, members: int, total: int, work: bool) -> float:
    from arrowlog.groups import GroupAdmin

    ctx = mp.get_context("spawn")
    counter, go, stop = ctx.Value("q", 0), ctx.Event(), ctx.Event()
    procs = [ctx.Process(target=_read_share, args=(path, group, total, work, counter, go, stop))
             for _ in range(members)]
    for pr in procs:
        pr.start()
    admin = GroupAdmin(path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:       # wait until the group has settled: every partition owned
        if group in admin.list_groups():
            d = admin.describe(group)
            if len(d.members) == members and sum(len(m.assignment) for m in d.members) == PARTITIONS:
                break
        time.sleep(0.02)
    else:
        raise RuntimeError(f"group {group} did not settle")
    t0 = time.perf_counter()
    go.set()
    if not stop.wait(600):
        for pr in procs:
            pr.kill()
        raise RuntimeError(f"the group read {counter.value} of {total} records")
    elapsed = time.perf_counter() - t0
    for pr in procs:
        pr.join(60)
    return elapsed


def group_throughput(path: str, total: int) -> dict:
    import arrowlog

    with arrowlog.LogDir(path) as log:
        log.create_topic("grp", partitions=PARTITIONS)
    value = b"x" * VALUE_BYTES
    with arrowlog.Producer({"log.dir": path}) as p:
        chunk = 10_000
        for start in range(0, total, chunk):
            n = min(chunk, total - start)
            p.produce_batch("grp", [value] * n, keys=[b"k%d" % i for i in range(start, start + n)])
    out: dict = {"records": total}
    for label, work in (("read", False), ("sha256", True)):
        one = _group_run(path, f"solo-{label}", 1, total, work)
        three = _group_run(path, f"trio-{label}", MEMBERS, total, work)
        out[label] = {"one_consumer_rec_s": total / one, "three_members_rec_s": total / three,
                      "speedup": one / three}
    return out


# -- 3. fail-over -----------------------------------------------------------------------------------


def _idle_member(path: str, group: str, stop) -> None:
    import arrowlog

    c = arrowlog.Consumer({"log.dir": path, "group.id": group, "auto.offset.reset": "latest"})
    c.subscribe(["grp"])
    while not stop.is_set():
        c.consume(100, 0.05)
    c.close()


def failover(path: str, rounds: int) -> dict:
    """Two members on 6 partitions; SIGKILL one; milliseconds until the
    survivor owns all 6 (seen by GroupAdmin.describe, polled every 2 ms;
    describe only reads, it leaves removing the dead to the survivor)."""
    from arrowlog.groups import GroupAdmin

    ctx = mp.get_context("spawn")
    admin = GroupAdmin(path)
    times = []
    for r in range(rounds):
        group = f"failover-{r}"
        stop = ctx.Event()
        procs = [ctx.Process(target=_idle_member, args=(path, group, stop)) for _ in range(2)]
        for pr in procs:
            pr.start()

        def owners(group: str = group) -> list[int]:
            if group not in admin.list_groups():
                return []
            return sorted(len(m.assignment) for m in admin.describe(group).members)
        deadline = time.monotonic() + 60
        while owners() != [3, 3]:
            if time.monotonic() > deadline:
                raise RuntimeError("the fail-over group did not settle")
            time.sleep(0.01)
        procs[1].kill()
        t0 = time.perf_counter()
        while owners() != [6]:
            if time.perf_counter() - t0 > 60:
                raise RuntimeError("the survivor did not take over")
            time.sleep(0.002)
        times.append((time.perf_counter() - t0) * 1000.0)
        stop.set()
        for pr in procs:
            pr.join(30)
    return {"rounds": rounds, "median_ms": _percentile(times, 50), "max_ms": max(times)}


def run(quick: bool = False) -> dict:
    base = tempfile.mkdtemp(prefix="arrowlog-bench-groups-")
    try:
        lat = latency(os.path.join(base, "lat"), 1_000 if quick else 10_000)
        thr = group_throughput(os.path.join(base, "grp"), 200_000 if quick else 2_000_000)
        fo = failover(os.path.join(base, "grp"), 2 if quick else 5)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"latency": lat, "group_throughput": thr, "failover": fo, "cpus": os.cpu_count()}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
