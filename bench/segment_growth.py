"""How much of a bulk append waits on growing the segment file, quiet and under a busy disk?

``python -m bench.segment_growth [--records N] [--runs R]``: a new Producer
writes N 100-byte values with ``produce_batch`` into a new topic (the
``produce.batch`` row's work), R times per strategy, first on a quiet disk,
then while a dd-like writer (bench/contention.py: 256 MiB rewritten in 1 MiB
writes, fsync per pass) loads the same disk. For each way of growing the
active segment it prints GB/s of values and the time spent growing:

- ``fallocate``: what segment.py does (posix_fallocate ahead of the data:
  unwritten extents; steps doubling the file up to 64 MiB, and an append
  that jumps past the end gets as much again as the jump);
- ``fallocate-16``: what it did before (each step doubles the file size, up
  to 16 MiB, and reaches at least the end asked for: a bulk append of large
  frames grew the file on nearly every frame);
- ``zeros``: writing zeros ahead instead (written extents; costs a copy);
- ``none``: no growing at all (delayed allocation at writeback: a full disk
  would be an error of the write itself).

``--creates N`` measures instead what starting a segment costs (what every
new partition pays): N ``Segment.create`` calls (three files created, one
renamed, three fallocated), each in a new directory, quiet and contended,
median and 90th percentile.

An experiment, not part of ``python -m bench``: it swaps
``Segment.ensure_allocated`` for the run. docs/DURABILITY.md quotes it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from .bench_produce import new_topic_batch_s
from .contention import Contention
from .context import Records


def _old_fallocate(seg, end: int) -> None:
    from arrowlog._native import core
    from arrowlog.storage import segment as s

    if end <= seg.file_size:
        return
    step = min(max(seg.file_size, s.LOG_INITIAL_BYTES), 16 << 20)
    target = min(max(end, seg.file_size + step), seg.capacity)
    core.fallocate(seg.log_fd, 0, target)
    seg.file_size = target


def _zeros(step: int):
    zero = memoryview(bytes(step))

    def grow(seg, end: int) -> None:
        from arrowlog.storage import segment as s

        if end <= seg.file_size:
            return
        target = min(max(end, seg.file_size + min(max(seg.file_size, s.LOG_INITIAL_BYTES), step)),
                     seg.capacity)
        pos = seg.file_size
        while pos < target:
            n = min(target - pos, len(zero))
            os.pwrite(seg.log_fd, zero[:n], pos)
            pos += n
        seg.file_size = target

    return grow


def segment_creates(root: str, count: int) -> list[float]:
    """Seconds of each of ``count`` Segment.create calls, each in a new directory."""
    from arrowlog.schema import ENVELOPE_SCHEMA
    from arrowlog.storage.segment import Segment

    base = tempfile.mkdtemp(dir=root)
    dirs = [os.path.join(base, str(i)) for i in range(count)]
    for d in dirs:
        os.mkdir(d)
    os.sync()
    out = []
    for d in dirs:
        t = time.perf_counter()
        seg = Segment.create(d, 0, ENVELOPE_SCHEMA, None, 1 << 30, 0)
        out.append(time.perf_counter() - t)
        seg.close()
    shutil.rmtree(base)
    return sorted(out)


def creates(root: str, count: int) -> None:
    def show(label: str) -> None:
        xs = segment_creates(root, count)
        print(f"{label:9} Segment.create: median {statistics.median(xs) * 1e6:.0f} µs, "
              f"p90 {xs[int(len(xs) * 0.9)] * 1e6:.0f} µs, slowest {xs[-1] * 1e3:.1f} ms", flush=True)

    show("quiet")
    with Contention(root, pass_mib=256, max_s=900):
        show("contended")


def main(argv: list[str] | None = None) -> None:
    from arrowlog.storage import segment as s

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--creates", type=int, default=0, help="measure N segment creations instead")
    args = ap.parse_args(argv)
    if args.creates:
        root = tempfile.mkdtemp(prefix="arrowlog-growth-")
        try:
            print(f"load average at start: {os.getloadavg()[0]:.2f}")
            creates(root, args.creates)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    recs = Records(args.records)
    values, keys = recs.values_arrow, recs.keys_arrow
    root = tempfile.mkdtemp(prefix="arrowlog-growth-")
    real = s.Segment.ensure_allocated
    strategies = {"fallocate": real, "fallocate-16": _old_fallocate, "zeros": _zeros(16 << 20),
                  "none": lambda seg, end: None}
    spent: list[float] = []

    def timed(grow):
        def wrapper(seg, end: int) -> None:
            if end <= seg.file_size:
                return
            t = time.perf_counter()
            grow(seg, end)
            spent.append(time.perf_counter() - t)
        return wrapper

    def once() -> tuple[float, float, float, int]:
        path = tempfile.mkdtemp(dir=root)
        os.sync()
        spent.clear()
        elapsed = new_topic_batch_s(path, values, keys)
        shutil.rmtree(path)
        return recs.nbytes / elapsed / 1e9, sum(spent), max(spent, default=0.0), len(spent)

    def series(label: str) -> None:
        for name, grow in strategies.items():
            s.Segment.ensure_allocated = timed(grow)
            once()  # warm-up
            xs = [once() for _ in range(args.runs)]
            print(f"{label:9} {name:9} {statistics.median(x[0] for x in xs):.2f} GB/s "
                  f"({' '.join(f'{x[0]:.2f}' for x in xs)}); growing {statistics.median(x[1] for x in xs) * 1e3:.1f} "
                  f"ms a run (median) in {statistics.median(x[3] for x in xs):.0f} calls, slowest call "
                  f"{max(x[2] for x in xs) * 1e3:.1f} ms", flush=True)

    try:
        print(f"load average at start: {os.getloadavg()[0]:.2f}")
        series("quiet")
        with Contention(root, pass_mib=256, max_s=900) as load:
            series("contended")
            print(f"the background writer finished {load.wait_passes(1 << 30, 0.5)} passes of 256 MiB meanwhile")
    finally:
        s.Segment.ensure_allocated = real
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
