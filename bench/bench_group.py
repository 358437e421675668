"""Does a consumer group spread the work over processes, how fresh is a record at a member, and how fast is fail-over?

The same records in a 6-partition topic (keyed, so murmur2 spreads them):

- *read*: one consumer subscribed alone reads everything, touching each
  value and committing synchronously after each ``consume(1000)``; then three
  processes join one group and do the same with their shares. The clock
  stops when together they have read every record, counted per partition by
  the next offset reached, so records redelivered after a rebalance are not
  counted twice (the group's joining and first assignment are inside the
  time, for the one consumer too). Target (issue 19): three members ≥ 2.5×
  one consumer; commits must not serialise the members on one fsync.
- *sha256*: the same with a SHA-256 of each value, a stand-in for real
  per-record work, where spreading over processes pays up to the cores.
- *latency to a group member*: produce()+flush() in this process → ``poll()``
  of a subscribed group member in another (paced sends, p50/p99/p99.9).
- *fail-over*: two members on six partitions, one SIGKILLed: milliseconds
  until the survivor owns all six, seen through ``GroupAdmin.describe``.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import time
from statistics import median as _median

from . import datasets
from .bench_latency import fill_quantiles, latency_runs, one_run, receive, stamp_sender
from .datasets import TOPIC
from .harness import Row

PARTITIONS = 6
MEMBERS = 3
FAILOVER_TOPIC = "failover"


def _consume_loop(c, n: int | None, work: bool, progress=None, stop=None) -> int:
    got = 0
    idle_since = time.monotonic()
    sha = hashlib.sha256
    while True:
        if n is not None and got >= n:
            return got
        if stop is not None and stop.is_set():
            return got
        msgs = c.consume(1000, 0.2)
        if not msgs:
            if time.monotonic() - idle_since > 30:
                raise RuntimeError(f"group consumer stalled after {got} records")
            continue
        idle_since = time.monotonic()
        if work:
            for m in msgs:
                sha(m.value()).digest()
        else:
            for m in msgs:
                len(m.value())
        got += len(msgs)
        c.commit(asynchronous=False)
        if progress is not None:
            # the next offset reached per partition: a record redelivered after a
            # rebalance is not counted twice
            reached: dict[int, int] = {}
            for m in msgs:
                reached[m.partition()] = m.offset() + 1
            with progress.get_lock():
                for part, nxt in reached.items():
                    if nxt > progress[part]:
                        progress[part] = nxt


def _consumer(path: str, group: str, topic: str = TOPIC, reset: str = "earliest"):
    import arrowlog

    c = arrowlog.Consumer({"log.dir": path, "group.id": group, "auto.offset.reset": reset,
                           "enable.auto.commit": False})
    c.subscribe([topic])
    return c


def member(path: str, group: str, work: bool, progress, ready, go, stop, cpu=None, slot: int = 0) -> None:
    c = _consumer(path, group)
    ready.release()
    go.wait()
    cpu0 = time.process_time()
    try:
        _consume_loop(c, None, work, progress, stop)
    finally:
        if cpu is not None:
            cpu[slot] = time.process_time() - cpu0   # this process's CPU (user + system) while reading
        c.close()


def _stop(procs, stop) -> None:
    """Ask the member processes to stop; kill any still running after 10 s."""
    stop.set()
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()


def one_consumer(ctx, path: str, n: int, work: bool, costs: list | None = None) -> list[float]:
    """``costs`` gets (CPU seconds, wall seconds) of every run."""
    runs = iter(range(1_000_000))

    def body(_):
        t0, cpu0 = time.perf_counter(), time.process_time()
        c = _consumer(path, f"solo-{'sha256' if work else 'read'}-{next(runs)}")
        _consume_loop(c, n, work)
        c.close()
        if costs is not None:
            costs.append((time.process_time() - cpu0, time.perf_counter() - t0))

    return ctx.measure(body)


def three_members(ctx, path: str, n: int, work: bool, costs: list | None = None) -> list[float]:
    """``costs`` gets (the members' CPU seconds together, wall seconds) of every run."""
    mpc = mp.get_context("spawn")
    runs = iter(range(1_000_000))

    def body(_):
        group = f"trio-{'sha256' if work else 'read'}-{next(runs)}"  # a new group: nothing committed yet
        progress = mpc.Array("q", PARTITIONS)
        cpu = mpc.Array("d", MEMBERS)
        ready, go, stop = mpc.Semaphore(0), mpc.Event(), mpc.Event()
        procs = [mpc.Process(target=member, args=(path, group, work, progress, ready, go, stop, cpu, i), daemon=True)
                 for i in range(MEMBERS)]
        for p in procs:
            p.start()
        try:
            for _ in procs:
                if not ready.acquire(timeout=60):
                    raise RuntimeError("a group member did not start")
            t0 = time.perf_counter()
            go.set()
            deadline = time.monotonic() + 300
            while sum(progress[:]) < n:  # offsets start at 0, so the sum of next offsets counts records
                if time.monotonic() > deadline or not any(p.is_alive() for p in procs):
                    raise RuntimeError(f"the group read {sum(progress[:])} of {n} records")
                time.sleep(0.0005)
            elapsed = time.perf_counter() - t0
        finally:
            _stop(procs, stop)
        if costs is not None:
            costs.append((sum(cpu[:]), elapsed))   # read once every member has stopped
        return elapsed

    return ctx.measure(body)


def _explain(three: Row, one: Row, trio: list[tuple[float, float]], solo: list[tuple[float, float]],
             runs: int) -> None:
    """Where the time went, measured in this run's timed runs (the last ``runs``;
    the warm-up is left out): how much of the one consumer's time is CPU (the
    rest waits for its commits' fdatasyncs) and how far three processes can go
    on this machine's cores with the CPU they used."""
    trio, solo = trio[-runs:], solo[-runs:]
    if not trio or not solo:
        return
    cores = os.cpu_count() or 1
    solo_cpu, solo_wall = _median([c for c, _ in solo]), _median([w for _, w in solo])
    trio_cpu = _median([c for c, _ in trio])
    one.note = (f"CPU {solo_cpu:.2f} s of {solo_wall:.2f} s ({100 * solo_cpu / solo_wall:.0f}%), medians of the "
                "timed runs: the rest waits for its commits' fdatasyncs")
    floor = trio_cpu / min(cores, MEMBERS)
    three.note = (f"the members' CPU together {trio_cpu:.2f} s (median): on {cores} cores they need at least "
                  f"{floor:.2f} s, so {MEMBERS} members can be at most ≈ {solo_wall / floor:.1f}× one consumer in this "
                  "run, and only if their commit waits overlap completely")


# -- latency to a group member ---------------------------------------------------------
def group_reader(path: str, n: int, ready, out) -> None:
    c = _consumer(path, "bench-latency", reset="latest")
    deadline = time.monotonic() + 60
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.01)
    receive(c, n, ready, out)


def member_latency(ctx) -> dict[str, list[float]]:
    import arrowlog
    from arrowlog.storage import LogDir

    def make_run(n):
        path = ctx.scratch("group-latency")
        LogDir(path).create_topic(TOPIC, partitions=1)
        p = arrowlog.Producer({"log.dir": path, "linger.ms": 0})
        try:
            return one_run(ctx, group_reader, (path,), stamp_sender(p), n)
        finally:
            p.close()

    return latency_runs(ctx, "arrowlog, group member", make_run)


# -- fail-over -----------------------------------------------------------------------------
def _idle_member(path: str, group: str, stop) -> None:
    c = _consumer(path, group, FAILOVER_TOPIC, reset="latest")
    while not stop.is_set():
        c.consume(100, 0.05)
    c.close()


def failover(ctx) -> list[float]:
    """Milliseconds from SIGKILL of one of two members until the survivor owns
    all six partitions (GroupAdmin.describe polled every 2 ms; describe only
    reads, it leaves removing the dead to the survivor)."""
    from arrowlog.groups import GroupAdmin
    from arrowlog.storage import LogDir

    path = ctx.scratch("group-failover")
    LogDir(path).create_topic(FAILOVER_TOPIC, partitions=PARTITIONS)
    mpc = mp.get_context("spawn")
    admin = GroupAdmin(path)
    rounds = iter(range(1_000_000))

    def body(_):
        group = f"failover-{next(rounds)}"
        stop = mpc.Event()
        procs = [mpc.Process(target=_idle_member, args=(path, group, stop), daemon=True) for _ in range(2)]
        for pr in procs:
            pr.start()

        def owners() -> list[int]:
            if group not in admin.list_groups():
                return []
            return sorted(len(m.assignment) for m in admin.describe(group).members)

        try:
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
            return (time.perf_counter() - t0) * 1000.0
        finally:
            _stop(procs, stop)

    return ctx.measure(body)


def run(ctx) -> list[Row]:
    n, nb = ctx.n, ctx.records.nbytes
    rows: list[Row] = []

    def path():
        return datasets.arrowlog_dataset(ctx, partitions=PARTITIONS)

    for tag, work, what in (("", False, "len(value)"), ("sha256.", True, "sha256(value)")):
        wl = f"consumer group: {MEMBERS} processes on {PARTITIONS} partitions, {what} per record"
        trio: list[tuple[float, float]] = []
        solo: list[tuple[float, float]] = []
        three = ctx.row(Row(f"group.{tag}three.arrowlog", wl, "arrowlog",
                            f"{MEMBERS} member processes, one group, commit(asynchronous=False) per consume(1000); "
                            "joining and the first assignment inside the time",
                            records=n, nbytes=nb), lambda work=work, trio=trio: three_members(ctx, path(), n, work, trio))
        one = ctx.row(Row(f"group.{tag}one.arrowlog", wl, "arrowlog, 1 consumer",
                          "one subscribed consumer, commit(asynchronous=False) per consume(1000); joining inside the time",
                          records=n, nbytes=nb), lambda work=work, solo=solo: one_consumer(ctx, path(), n, work, solo))
        _explain(three, one, trio, solo, ctx.runs)
        rows += [three, one]

    rows += fill_quantiles([Row(f"group.latency.{q}.arrowlog", "cross-process latency", "arrowlog, group member",
                                "produce()+flush() → poll() of a subscribed group member in another process",
                                kind="latency", unit=f"µs {q}", records=ctx.latency_sends)
                            for q in ("p50", "p99", "p99.9")], lambda: member_latency(ctx))
    rows.append(ctx.row(Row("group.failover.arrowlog", "consumer group fail-over", "arrowlog",
                            f"2 members on {PARTITIONS} partitions, one SIGKILLed: until the survivor owns all",
                            kind="latency", unit="ms"), lambda: failover(ctx)))
    return rows
