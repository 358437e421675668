"""Does a consumer group spread the work: three member processes on six partitions against one consumer?

The same records in a 6-partition topic (keyed, so murmur2 spreads them).
One consumer subscribed alone reads everything, committing after each
``consume(1000)``; then three processes join one group, each consuming and
committing its share, and the clock stops when together they have read every
record, counted per partition by the next offset reached, so records
redelivered after a rebalance are not counted twice (the group's joining and
first assignment are inside the time).
"""

from __future__ import annotations

import multiprocessing as mp
import time

from . import datasets
from .datasets import TOPIC
from .harness import Row

PARTITIONS = 6
MEMBERS = 3


def _consume_loop(c, n: int | None, progress=None, stop=None) -> int:
    got = 0
    idle_since = time.monotonic()
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


def _consumer(path: str, group: str):
    import arrowlog

    c = arrowlog.Consumer({"log.dir": path, "group.id": group, "auto.offset.reset": "earliest",
                           "enable.auto.commit": False})
    c.subscribe([TOPIC])
    return c


def member(path: str, group: str, progress, ready, go, stop) -> None:
    c = _consumer(path, group)
    ready.release()
    go.wait()
    try:
        _consume_loop(c, None, progress, stop)
    finally:
        c.close()


def one_consumer(ctx, path: str, n: int) -> list[float]:
    runs = iter(range(1_000_000))

    def body(_):
        c = _consumer(path, f"solo-{next(runs)}")
        _consume_loop(c, n)
        c.close()

    return ctx.measure(body)


def three_members(ctx, path: str, n: int) -> list[float]:
    mpc = mp.get_context("spawn")
    runs = iter(range(1_000_000))

    def body(_):
        group = f"trio-{next(runs)}"
        progress = mpc.Array("q", PARTITIONS)
        ready, go, stop = mpc.Semaphore(0), mpc.Event(), mpc.Event()
        procs = [mpc.Process(target=member, args=(path, group, progress, ready, go, stop), daemon=True)
                 for _ in range(MEMBERS)]
        for p in procs:
            p.start()
        try:
            for _ in procs:
                if not ready.acquire(timeout=60):
                    raise RuntimeError("a group member did not start")
            t0 = time.perf_counter()
            go.set()
            deadline = time.monotonic() + 120
            while sum(progress[:]) < n:  # offsets start at 0, so the sum of next offsets counts records
                if time.monotonic() > deadline or not any(p.is_alive() for p in procs):
                    raise RuntimeError(f"the group read {sum(progress[:])} of {n} records")
                time.sleep(0.0005)
            return time.perf_counter() - t0
        finally:
            stop.set()
            for p in procs:
                p.join(10)
                if p.is_alive():
                    p.kill()

    return ctx.measure(body)


def run(ctx) -> list[Row]:
    n, nb = ctx.n, ctx.records.nbytes
    wl = f"consumer group: {MEMBERS} processes on {PARTITIONS} partitions"

    def path():
        return datasets.arrowlog_dataset(ctx, partitions=PARTITIONS)

    return [
        ctx.row(Row("group.three.arrowlog", wl, "arrowlog", f"{MEMBERS} member processes, one group, commit per batch",
                    records=n, nbytes=nb), lambda: three_members(ctx, path(), n)),
        ctx.row(Row("group.one.arrowlog", wl, "arrowlog, 1 consumer", "one subscribed consumer, commit per batch",
                    records=n, nbytes=nb), lambda: one_consumer(ctx, path(), n)),
    ]
