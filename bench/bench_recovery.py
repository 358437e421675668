"""How long does reopening a 1 GiB log take, after a clean shutdown and after a crash?

A child process writes 1 GiB of 1 KiB values into one partition (64 MiB with
--quick) with ``produce_batch``. For the *clean* log it flushes and exits
normally; for the *unclean* one it flushes and then kills itself (SIGKILL), so
no shutdown code runs and the partition must be recovered (CRC scan from the
last recovery point, indexes checked). Each reopen runs in a fresh process
(no in-process caches) and times ``LogDir(path).topic(t).partition(0)`` up to
its high watermark. The unclean log is copied afresh for every run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import time

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
    p = arrowlog.Producer({"log.dir": path})
    for _ in range(total // (CHUNK * VALUE)):
        p.produce_batch(TOPIC, values, partition=0)
    p.flush()
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    p.close()  # clean shutdown: the last process out syncs and marks the partition clean


def reopen(path: str, out) -> None:
    from arrowlog.storage import LogDir

    t0 = time.perf_counter()
    pl = LogDir(path).topic(TOPIC).partition(0)
    hw = pl.high_watermark
    elapsed = time.perf_counter() - t0
    out.send((elapsed, hw))


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


def _timed_reopen(path: str, records: int) -> float:
    proc, recv = _spawn(reopen, path)
    try:
        if not recv.poll(300):
            raise RuntimeError("reopen did not finish")
        elapsed, hw = recv.recv()
    finally:
        proc.join(30)
    if hw != records:
        raise AssertionError(f"reopened log has high watermark {hw}, expected {records}")
    return float(elapsed)


def clean_reopen(ctx, total: int) -> list[float]:
    path = build(ctx, total, kill=False)
    return ctx.measure(lambda _: _timed_reopen(path, total // VALUE))


def unclean_reopen(ctx, total: int) -> list[float]:
    pristine = build(ctx, total, kill=True)

    def setup():
        d = os.path.join(ctx.scratch("recovery-copy"), "log")
        shutil.copytree(pristine, d)
        return d

    return ctx.measure(lambda d: _timed_reopen(d, total // VALUE), setup=setup,
                       teardown=lambda d: shutil.rmtree(os.path.dirname(d), ignore_errors=True))


def run(ctx) -> list[Row]:
    total = (64 << 20) if ctx.quick else (1 << 30)
    wl = "reopen a log"
    size = f"{total >> 20} MiB"
    return [
        ctx.row(Row("recovery.clean.arrowlog", wl, "arrowlog", f"clean reopen of a {size} log, time to high watermark",
                    kind="latency", unit="s"), lambda: clean_reopen(ctx, total)),
        ctx.row(Row("recovery.unclean.arrowlog", wl + " after a crash", "arrowlog",
                    f"reopen after SIGKILL of the writer, {size} log: recovery scan rate",
                    nbytes=total), lambda: unclean_reopen(ctx, total)),
    ]
