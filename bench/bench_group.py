"""Does a consumer group spread the work over processes, how fresh is a record at a member, and how fast is fail-over?

The same records in a 6-partition topic (keyed, so murmur2 spreads them):

- *read*: one consumer process subscribed alone reads everything, touching
  each value and committing synchronously after each ``consume(1000)``; then
  three processes join one group and do the same with their shares. Both
  sides run in the same harness: fresh (spawned) processes that subscribe
  before the clock starts, so the first assignment is inside the time and
  each process reads records it has not read before (CRC-32C checked on the
  first read in a process). Progress is counted from the offsets each
  commit returns (next offset per partition: one entry per partition per
  batch, and records redelivered after a rebalance are not counted twice);
  the reader that completes the count stops the clock, and no reader leaves
  the group before all have stopped reading (a leaving member would make
  the others take over its partitions inside their measured CPU). Target
  (issue 19): three members ≥ 2.5× one consumer; commits must not serialise
  the members on one fsync.
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
import uuid
from statistics import median as _median

from . import datasets
from .bench_latency import fill_quantiles, latency_runs, one_run, receive, stamp_sender
from .datasets import TOPIC
from .harness import Row

PARTITIONS = 6
MEMBERS = 3
FAILOVER_TOPIC = "failover"


class _Shared:
    """What the harness and its reader processes share for one timed run."""

    def __init__(self, mpc, n: int, readers: int):
        self.n = n
        self.progress = mpc.Array("q", PARTITIONS)   # next offset reached per partition
        self.finished_at = mpc.Value("d", 0.0)       # perf_counter() (CLOCK_MONOTONIC) when all was read
        self.cpu = mpc.Array("d", readers)           # each reader's CPU seconds while reading
        self.in_commit = mpc.Array("d", readers)     # each reader's wall seconds inside commit()
        self.commits = mpc.Array("q", readers)       # each reader's commit() calls
        self.syncs = mpc.Array("q", readers)         # each reader's fdatasync calls (its share of the group commits)
        self.ready = mpc.Semaphore(0)
        self.go, self.done = mpc.Event(), mpc.Event()
        self.left = mpc.Barrier(readers)             # nobody leaves the group while another still reads

    def reached(self, committed) -> None:
        """Record the offsets a commit returned (one entry per partition, so the
        bookkeeping costs the same per batch whatever the batch holds: a record
        redelivered after a rebalance is not counted twice); the reader that
        completes the count stops the clock."""
        progress = self.progress
        with progress.get_lock():
            for tp in committed:
                if tp.offset > progress[tp.partition]:
                    progress[tp.partition] = tp.offset
            if not self.done.is_set() and sum(progress[:]) >= self.n:  # offsets start at 0
                self.finished_at.value = time.perf_counter()
                self.done.set()


def _consume_loop(c, work: bool, shared: _Shared, slot: int) -> int:
    got = commits = 0
    in_commit = 0.0
    clock = time.perf_counter
    idle_since = time.monotonic()
    sha = hashlib.sha256
    while not shared.done.is_set():
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
        t = clock()
        committed = c.commit(asynchronous=False)
        in_commit += clock() - t
        commits += 1
        shared.reached(committed)
    shared.in_commit[slot] = in_commit
    shared.commits[slot] = commits
    return got


def _consumer(path: str, group: str, topic: str = TOPIC, reset: str = "earliest"):
    import arrowlog

    c = arrowlog.Consumer({"log.dir": path, "group.id": group, "auto.offset.reset": reset,
                           "enable.auto.commit": False})
    c.subscribe([topic])
    return c


def _count_syncs(shared: _Shared, slot: int) -> None:
    """Count this process's fdatasyncs (a reader writes nothing but its
    commits: these are its syncs of the group's commit journal)."""
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        shared.syncs[slot] += 1   # (one process per slot: no lock needed)
        real(fd)

    os.fdatasync = fdatasync


def member(path: str, group: str, work: bool, shared: _Shared, slot: int) -> None:
    c = _consumer(path, group)
    _count_syncs(shared, slot)
    shared.ready.release()
    shared.go.wait()
    cpu0 = time.process_time()
    try:
        _consume_loop(c, work, shared, slot)
        shared.cpu[slot] = time.process_time() - cpu0   # this process's CPU (user + system) while reading
        shared.left.wait(30)
    finally:
        c.close()


def _stop(procs, stop, barrier=None) -> None:
    """Ask the processes to stop; kill any still running after 10 s."""
    stop.set()
    if barrier is not None:
        barrier.abort()
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()


def readers(ctx, path: str, n: int, work: bool, count: int, costs: list | None = None) -> list[float]:
    """``count`` reader processes in one new group, each started fresh (spawned),
    subscribed before the clock starts: from the start signal until together
    they have read all ``n`` records. The same harness measures one consumer
    (``count=1``) and three members, so both sides pay the same: a process
    reading records it has not read before (CRC-32C on first read), the same
    bookkeeping per batch, the first assignment inside the time.
    ``costs`` gets (the readers' CPU seconds together, wall seconds, their wall
    seconds inside ``commit()`` together, their commits, their fdatasyncs) of
    every run."""
    mpc = mp.get_context("spawn")

    def body(_):
        group = f"{'trio' if count > 1 else 'solo'}-{'sha256' if work else 'read'}-{uuid.uuid4().hex[:8]}"
        shared = _Shared(mpc, n, count)
        procs = [mpc.Process(target=member, args=(path, group, work, shared, i), daemon=True) for i in range(count)]
        for p in procs:
            p.start()
        try:
            for _ in procs:
                if not shared.ready.acquire(timeout=60):
                    raise RuntimeError("a group reader did not start")
            t0 = time.perf_counter()
            shared.go.set()
            deadline = time.monotonic() + 300
            while not shared.done.wait(0.5):   # no polling: the reader that completes the count says so
                if time.monotonic() > deadline or not any(p.is_alive() for p in procs):
                    raise RuntimeError(f"the group read {sum(shared.progress[:])} of {n} records")
            elapsed = shared.finished_at.value - t0
            for p in procs:
                p.join(30)
        finally:
            _stop(procs, shared.done, shared.left)
        if costs is not None:
            costs.append((sum(shared.cpu[:]), elapsed, sum(shared.in_commit[:]), sum(shared.commits[:]),
                          sum(shared.syncs[:])))
        return elapsed

    return ctx.measure(body)


Costs = tuple[float, float, float, int, int]   # (CPU, wall, inside commit(), commits, fdatasyncs) of a run


def _explain(three: Row, one: Row, trio: list[Costs], solo: list[Costs], runs: int) -> None:
    """Where the time went, measured in this run's timed runs (the last ``runs``;
    the warm-up is left out): how much of the one consumer's time is CPU and how
    much is spent in its commits (their fdatasyncs), how many fdatasyncs a
    commit cost (group commit: members committing at once share one), how
    far three processes can go on this machine's cores with the CPU they
    used, and how much of those cores they kept busy."""
    trio, solo = trio[-runs:], solo[-runs:]
    if not trio or not solo:
        return
    cores = os.cpu_count() or 1
    solo_cpu, solo_wall = _median([r[0] for r in solo]), _median([r[1] for r in solo])
    solo_commit = _median([r[2] for r in solo])
    trio_cpu, trio_wall = _median([r[0] for r in trio]), _median([r[1] for r in trio])
    trio_commit = _median([r[2] / MEMBERS for r in trio])

    def per_commit(runs_: list[Costs]) -> float:
        return _median([r[4] / max(r[3], 1) for r in runs_])

    def cpu_per_batch(runs_: list[Costs]) -> float:
        """CPU µs per consume(1000) + commit() (the readers' CPU over their commits)."""
        return _median([1e6 * r[0] / max(r[3], 1) for r in runs_])

    one.note = (f"CPU {solo_cpu:.3f} s of {solo_wall:.3f} s ({100 * solo_cpu / solo_wall:.0f}%), medians of the "
                f"timed runs; inside commit() {solo_commit:.3f} s ({100 * solo_commit / solo_wall:.0f}%), "
                f"mostly waiting for its fdatasyncs ({per_commit(solo):.2f} per commit): off CPU "
                f"{solo_wall - solo_cpu:.3f} s; {cpu_per_batch(solo):.0f} µs of CPU per batch and its commit")
    usable = min(cores, MEMBERS)
    floor = trio_cpu / usable
    three.note = (f"the members' CPU together {trio_cpu:.3f} s (median; {trio_cpu / solo_cpu:.2f}× the one "
                  f"consumer's): on {cores} cores they need at least {floor:.3f} s, so {MEMBERS} members can be at "
                  f"most ≈ {solo_wall / floor:.1f}× one consumer in this run, and only if their commit waits "
                  f"overlap completely; they kept {100 * trio_cpu / (trio_wall * usable):.0f}% of {usable} cores "
                  f"busy over {trio_wall:.3f} s, each inside commit() {trio_commit:.3f} s "
                  f"({100 * trio_commit / trio_wall:.0f}%) on average; {per_commit(trio):.2f} fdatasyncs per "
                  f"commit (group commit: members committing at once share one); {cpu_per_batch(trio):.0f} µs of "
                  "CPU per batch and its commit")


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
        trio: list[Costs] = []
        solo: list[Costs] = []
        three = ctx.row(Row(f"group.{tag}three.arrowlog", wl, "arrowlog",
                            f"{MEMBERS} member processes, one group, commit(asynchronous=False) per consume(1000); "
                            "the first assignment inside the time",
                            records=n, nbytes=nb), lambda work=work, trio=trio: readers(ctx, path(), n, work, MEMBERS, trio))
        one = ctx.row(Row(f"group.{tag}one.arrowlog", wl, "arrowlog, 1 consumer",
                          "one subscribed consumer process, the same harness: commit(asynchronous=False) per "
                          "consume(1000), the first assignment inside the time",
                          records=n, nbytes=nb), lambda work=work, solo=solo: readers(ctx, path(), n, work, 1, solo))
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
