"""How fast does a log reopen after an unclean shutdown (GiB/s of segment data
scanned by recovery), and after a clean one (seconds for a 1 GiB log)?

A child process writes 1 GiB of 1 KiB values into one partition (64 MiB with
--quick) with ``produce_batch``. For the *clean* log it flushes and closes the
producer (the last process out syncs and marks the partition clean); for the
*unclean* one it flushes and then kills itself (SIGKILL), so no shutdown code
runs, with the background fsync off (``fsync.interval.ms=0``) so that the
recovery point stays at 0 and recovery must CRC-check every frame of the log.
Each reopen runs in a fresh process (no in-process caches) and times
``LogDir(path).topic(t).partition(0)`` up to its high watermark; it also
reports how many bytes recovery had to scan (from the recovery point it found
in ``partition.state``), and the unclean row refuses to run if that is not
the whole log. The unclean log is copied afresh for every run.

Each is measured warm (the log's pages still in the page cache, as right
after the writer) and cold (``echo 3 > /proc/sys/vm/drop_caches`` before
each run, untimed: every byte comes from the disk; needs root, and the cold
rows say so when it is not available).

Targets (issue 7): unclean ≥ 1 GiB/s scanned; clean reopen of 1 GiB < 1 s.

``run(ctx)`` feeds the benchmark harness; ``run(quick=False)`` alone (or
``python -m bench.bench_recovery [--quick]``) returns a dict of the medians.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import time

from .context import drop_page_cache
from .datasets import TOPIC
from .harness import Row

VALUE = 1024
CHUNK = 1 << 16  # values per produce_batch call: 64 MiB


def writer(path: str, total: int, kill: bool) -> None:
    import numpy as np
    import pyarrow as pa

    import arrowlog
    from arrowlog.storage import LogDir

    LogDir(path).create_topic(TOPIC, partitions=1)
    block = np.random.default_rng(7).integers(0, 256, CHUNK * VALUE, dtype=np.uint8).tobytes()
    offsets = pa.py_buffer((np.arange(CHUNK + 1, dtype=np.int32) * VALUE).tobytes())
    values = pa.Array.from_buffers(pa.binary(), CHUNK, [None, offsets, pa.py_buffer(block)])
    # unclean: no background fsync, so recovery has the whole log to check
    p = arrowlog.Producer({"log.dir": path, "fsync.interval.ms": 0 if kill else 1000})
    for _ in range(total // (CHUNK * VALUE)):
        p.produce_batch(TOPIC, values, partition=0)
    p.flush()
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    p.close()  # clean shutdown: the last process out syncs and marks the partition clean


def bytes_to_scan(path: str) -> int:
    """Segment bytes at or after the recovery point recorded in the
    partition's state file: what an unclean reopen has to CRC-check."""
    import struct

    part = os.path.join(path, "topics", TOPIC, "0")
    with open(os.path.join(part, "partition.state"), "rb") as f:
        raw = f.read(128)
    # payload at byte 24: log_start, next, active_base, active_position, ..., recovery_point (9th)
    fields = struct.unpack_from("<11q", raw, 24)
    active_base, active_position, recovery_point = fields[2], fields[3], fields[8]
    bases = sorted(int(n[:20]) for n in os.listdir(part) if n.endswith(".log"))
    start = max((b for b in bases if b <= recovery_point), default=bases[0])
    total = 0
    for b in bases:
        if b >= start:
            total += active_position if b == active_base else os.path.getsize(os.path.join(part, f"{b:020d}.log"))
    return total


def reopen(path: str, out) -> None:
    from arrowlog.storage import LogDir

    scanned = bytes_to_scan(path)
    t0 = time.perf_counter()
    pl = LogDir(path).topic(TOPIC).partition(0)
    hw = pl.high_watermark
    elapsed = time.perf_counter() - t0
    out.send((elapsed, hw, scanned))


def _spawn(target, *args):
    mpc = mp.get_context("spawn")
    recv, send = mpc.Pipe(duplex=False)
    p = mpc.Process(target=target, args=(*args, send))
    p.start()
    return p, recv


def build(ctx, total: int, kill: bool) -> str:
    key = f"recovery.{total}.{kill}"
    if key in ctx.cache:
        return ctx.cache[key]
    path = ctx.scratch("recovery-unclean" if kill else "recovery-clean")
    mpc = mp.get_context("spawn")
    p = mpc.Process(target=writer, args=(path, total, kill))
    p.start()
    p.join(600)
    expected = -signal.SIGKILL if kill else 0
    if p.exitcode != expected:
        raise RuntimeError(f"log writer exited with {p.exitcode}")
    ctx.cache[key] = path
    return path


def _timed_reopen(path: str, records: int, whole: int | None = None) -> float:
    """Seconds to reopen; with ``whole``, insists that recovery had at
    least that many bytes to scan (so the rate is not flattered)."""
    proc, recv = _spawn(reopen, path)
    try:
        if not recv.poll(300):
            raise RuntimeError("reopen did not finish")
        elapsed, hw, scanned = recv.recv()
    finally:
        proc.join(30)
    if hw != records:
        raise AssertionError(f"reopened log has high watermark {hw}, expected {records}")
    if whole is not None and scanned < whole:
        raise AssertionError(f"recovery had only {scanned} of {whole} bytes to scan: the rate would be flattered")
    return float(elapsed)


def clean_reopen(ctx, total: int, cold: bool = False) -> list[float]:
    path = build(ctx, total, kill=False)
    return ctx.measure(lambda _: _timed_reopen(path, total // VALUE), setup=drop_page_cache if cold else None)


def unclean_reopen(ctx, total: int, cold: bool = False) -> list[float]:
    pristine = build(ctx, total, kill=True)

    def setup():
        d = os.path.join(ctx.scratch("recovery-copy"), "log")
        shutil.copytree(pristine, d)
        if cold:
            drop_page_cache()
        return d

    return ctx.measure(lambda d: _timed_reopen(d, total // VALUE, whole=total), setup=setup,
                       teardown=lambda d: shutil.rmtree(os.path.dirname(d), ignore_errors=True))


def run(ctx=None, quick: bool = False):
    """Harness rows for ``ctx``; without one, a standalone run returning
    {"log_bytes", "clean_reopen_s", "unclean_reopen_s", "unclean_scan_gib_per_s"} (medians)."""
    if ctx is None:
        return _standalone(quick)
    total = (64 << 20) if ctx.quick else (1 << 30)
    wl = "reopen a log"
    size = f"{total >> 20} MiB"
    cold = "; page cache dropped before each run (cold: read from the disk)"
    warm = "; the log's pages in the page cache (warm)"
    return [
        ctx.row(Row("recovery.clean.arrowlog", wl, "arrowlog",
                    f"clean reopen of a {size} log, time to high watermark{warm}",
                    kind="latency", unit="s"), lambda: clean_reopen(ctx, total)),
        ctx.row(Row("recovery.clean.arrowlog-cold", wl, "arrowlog, cold cache",
                    f"clean reopen of a {size} log, time to high watermark{cold}",
                    kind="latency", unit="s"), lambda: clean_reopen(ctx, total, cold=True)),
        ctx.row(Row("recovery.unclean.arrowlog", wl + " after a crash", "arrowlog",
                    f"reopen after SIGKILL of the writer, {size} log: recovery scan rate{warm}",
                    nbytes=total), lambda: unclean_reopen(ctx, total)),
        ctx.row(Row("recovery.unclean.arrowlog-cold", wl + " after a crash", "arrowlog, cold cache",
                    f"reopen after SIGKILL of the writer, {size} log: recovery scan rate{cold}",
                    nbytes=total), lambda: unclean_reopen(ctx, total, cold=True)),
    ]


class _Ctx:
    """Just enough of the harness context for a standalone run."""

    def __init__(self, quick: bool, root: str):
        self.quick = quick
        self.cache: dict = {}
        self.root = root

    def scratch(self, name: str) -> str:
        import tempfile

        return tempfile.mkdtemp(prefix=name + "-", dir=self.root)

    def measure(self, body, setup=None, teardown=None, runs: int = 3) -> list[float]:
        out = []
        for _ in range(runs):
            os.sync()
            arg = setup() if setup else None
            try:
                out.append(body(arg))
            finally:
                if teardown:
                    teardown(arg)
        return out


def _standalone(quick: bool) -> dict:
    import statistics
    import tempfile

    total = (64 << 20) if quick else (1 << 30)
    root = tempfile.mkdtemp(prefix="bench-recovery-")
    try:
        ctx = _Ctx(quick, root)
        clean = statistics.median(clean_reopen(ctx, total))
        unclean = statistics.median(unclean_reopen(ctx, total))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"log_bytes": total, "clean_reopen_s": clean, "unclean_reopen_s": unclean,
            "unclean_scan_gib_per_s": total / unclean / (1 << 30)}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
