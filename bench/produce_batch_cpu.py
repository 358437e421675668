"""Thread CPU time of the ``produce.batch.arrowlog`` row's body against the
``produce.batch.pagecache`` row's, run after run in one process: what the
wall-clock rows cannot show on a machine busy with other work.

    python -m bench.produce_batch_cpu [records] [runs]

Each run: a new topic and a new Producer, ``produce_batch`` of the
benchmark's Arrow values and keys, ``flush()`` (timed, as the row), the
Producer closed and the topic removed (untimed); then a sequential
``write()`` of the same values in 1 MiB writes into a new file (timed).
Prints medians and ranges of wall and thread CPU time, and the ratios.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

from .context import Records


def main(n: int = 1_000_000, runs: int = 7) -> None:
    import arrowlog
    from arrowlog.storage import LogDir

    recs = Records(n)
    values, keys = recs.values_arrow, recs.keys_arrow
    data = memoryview(recs.value_bytes)
    root = tempfile.mkdtemp(prefix="produce-batch-cpu-")
    times: dict[str, list[float]] = {"batch wall": [], "batch cpu": [], "write wall": [], "write cpu": []}
    try:
        for run in range(runs):
            path = os.path.join(root, f"log{run}")
            LogDir(path).create_topic("bench", partitions=1)
            c0, t0 = time.thread_time(), time.perf_counter()
            p = arrowlog.Producer({"log.dir": path})
            p.produce_batch("bench", values, keys=keys)
            p.flush()
            times["batch wall"].append(time.perf_counter() - t0)
            times["batch cpu"].append(time.thread_time() - c0)
            p.close()
            shutil.rmtree(path)
            fd = os.open(os.path.join(root, "raw"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            c0, t0 = time.thread_time(), time.perf_counter()
            for i in range(0, len(data), 1 << 20):
                os.write(fd, data[i:i + (1 << 20)])
            times["write wall"].append(time.perf_counter() - t0)
            times["write cpu"].append(time.thread_time() - c0)
            os.close(fd)
            os.unlink(os.path.join(root, "raw"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for name, xs in times.items():
        print(f"{name:10s} median {statistics.median(xs) * 1e3:7.1f} ms  range {min(xs) * 1e3:.1f}-{max(xs) * 1e3:.1f}")
    for kind in ("wall", "cpu"):
        ratio = statistics.median(times[f"write {kind}"]) / statistics.median(times[f"batch {kind}"])
        print(f"produce_batch / raw write ({kind}): {ratio:.2f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
