"""How fast can this machine move the benchmark's bytes at all?

The ceilings every other row is read against, measured in the same run:
memcpy of the values (numpy), a sequential page-cache write of them, a
write+fsync of them in 1 MiB pieces, and the latency of one small
write+fsync (the floor under any durable per-record acknowledgement). The
pyarrow ``pa.memory_map`` read limit sits with the replay rows, and the
per-1,000-record write+fsync limit with the durable produce rows.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np

from .bench_produce import page_cache_write
from .harness import Row, percentile


def memcpy(ctx, data: bytes) -> list[float]:
    src = np.frombuffer(data, dtype=np.uint8)
    dst = np.empty_like(src)
    return ctx.measure(lambda _: np.copyto(dst, src))


def small_fsync_latency(ctx, count: int = 200) -> list[float]:
    """p50 of a 4 KiB write + fsync, µs, once per run."""
    block = b"\0" * 4096
    out = []
    for i in range(ctx.warmup + ctx.runs):
        d = ctx.scratch("fsync")
        fd = os.open(os.path.join(d, "f"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        lat = []
        try:
            for _ in range(count):
                t = time.perf_counter()
                os.write(fd, block)
                os.fsync(fd)
                lat.append((time.perf_counter() - t) * 1e6)
        finally:
            os.close(fd)
            shutil.rmtree(d, ignore_errors=True)
        if i >= ctx.warmup:
            out.append(percentile(sorted(lat), 50))
    return out


def run(ctx) -> list[Row]:
    recs = ctx.records
    wl = "machine limits"
    return [
        ctx.row(Row("machine.memcpy", wl, "machine limit", "memcpy of the values (numpy copyto)", nbytes=recs.nbytes),
                lambda: memcpy(ctx, recs.value_bytes)),
        ctx.row(Row("machine.pagecache", wl, "machine limit", "sequential page-cache write, 1 MiB writes",
                    nbytes=recs.nbytes), lambda: page_cache_write(ctx, recs.value_bytes)),
        ctx.row(Row("machine.fsync_1m", wl, "machine limit", "sequential write + fsync per 1 MiB",
                    nbytes=recs.nbytes), lambda: page_cache_write(ctx, recs.value_bytes, fsync_every=1)),
        ctx.row(Row("machine.fsync_4k", "machine limits: fsync latency", "machine limit", "4 KiB write + fsync, p50 of 200",
                    kind="latency", unit="µs"), lambda: small_fsync_latency(ctx)),
    ]
