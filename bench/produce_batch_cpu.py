"""Thread CPU time of the ``produce.batch.arrowlog`` row's body against the
``produce.batch.pagecache`` row's, run after run in one process: what the
wall-clock rows cannot show on a machine busy with other work.

    python -m bench.produce_batch_cpu [records] [runs]

Each run: a new topic and a new Producer, ``produce_batch`` of the
benchmark's Arrow values and keys, ``flush()`` (timed, as the row), the
Producer closed and the topic removed (untimed); then a sequential
``write()`` of the same values in 1 MiB writes into a new file (timed).
Prints medians and ranges of wall and thread CPU time, and the ratios.

    python -m bench.produce_batch_cpu --contended [records] [runs]

does the first while bench/contention.py's background writer (the
``produce.contended.*`` rows' dd-like writer, 1 MiB writes, fsync per
256 MiB pass) rewrites a file on the same disk, and prints each call's
voluntary context switches too (waits: a journal commit, a throttled page).

    python -m bench.produce_batch_cpu --first-process [records] [runs] [--python PATH]

measures instead what the ``produce.batch.arrowlog-firstprocess`` and
``produce.batch.pagecache-firstprocess`` rows time, in CPU as well: new
processes, alternating, each building the records and importing arrowlog
untimed, then timing its first ``produce_batch`` (new Producer, new topic,
``flush()``) or its first ``write()`` of the same values into a new file:
wall, process CPU (every thread) and minor page faults of that call.
``--python`` runs the processes with another interpreter (another
checkout's virtualenv, for an A/B; the records are built by this
checkout's bench/context.py either way).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from .contention import Contention
from .context import Records


def _switches() -> int:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw


def main(n: int = 1_000_000, runs: int = 7, contended: bool = False) -> None:
    import arrowlog
    from arrowlog.storage import LogDir

    recs = Records(n)
    values, keys = recs.values_arrow, recs.keys_arrow
    data = memoryview(recs.value_bytes)
    root = tempfile.mkdtemp(prefix="produce-batch-cpu-")
    times: dict[str, list[float]] = {k: [] for k in ("batch wall", "batch cpu", "batch waits", "write wall",
                                                     "write cpu", "write waits")}
    load = Contention(root) if contended else contextlib.nullcontext()
    try:
        with load:
            for run in range(runs):
                path = os.path.join(root, f"log{run}")
                LogDir(path).create_topic("bench", partitions=1)
                w0, c0, t0 = _switches(), time.thread_time(), time.perf_counter()
                p = arrowlog.Producer({"log.dir": path})
                p.produce_batch("bench", values, keys=keys)
                p.flush()
                times["batch wall"].append(time.perf_counter() - t0)
                times["batch cpu"].append(time.thread_time() - c0)
                times["batch waits"].append(_switches() - w0)
                p.close()
                shutil.rmtree(path)
                fd = os.open(os.path.join(root, "raw"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                w0, c0, t0 = _switches(), time.thread_time(), time.perf_counter()
                for i in range(0, len(data), 1 << 20):
                    os.write(fd, data[i:i + (1 << 20)])
                times["write wall"].append(time.perf_counter() - t0)
                times["write cpu"].append(time.thread_time() - c0)
                times["write waits"].append(_switches() - w0)
                os.close(fd)
                os.unlink(os.path.join(root, "raw"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for name, xs in times.items():
        scale, unit = (1, "  ") if name.endswith("waits") else (1e3, "ms")
        print(f"{name:11s} median {statistics.median(xs) * scale:7.1f} {unit}  range {min(xs) * scale:.1f}-"
              f"{max(xs) * scale:.1f}")
    for kind in ("wall", "cpu"):
        ratio = statistics.median(times[f"write {kind}"]) / statistics.median(times[f"batch {kind}"])
        print(f"produce_batch / raw write ({kind}): {ratio:.2f}x")


FIRST_CALL = """
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[4])
from bench.context import Records

path, n, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
recs = Records(n)
values, keys = recs.values_arrow, recs.keys_arrow
import arrowlog  # after the records, as the benchmark's rows do
from arrowlog.storage import LogDir
if what == "write":
    fd = os.open(os.path.join(path, "f"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    data = memoryview(recs.value_bytes)
else:
    LogDir(path).create_topic("bench", partitions=1)
f0, c0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.process_time(), time.perf_counter()
if what == "write":
    for i in range(0, len(data), 1 << 20):
        os.write(fd, data[i:i + (1 << 20)])
else:
    p = arrowlog.Producer({"log.dir": path})
    p.produce_batch("bench", values, keys=keys)
    p.flush()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
print(json.dumps({"wall": wall, "cpu": cpu, "faults": faults}))
"""


def first_process(n: int = 1_000_000, runs: int = 9, python: str = sys.executable) -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    scratch = tempfile.mkdtemp(prefix="produce-batch-first-")
    got: dict[str, list[dict]] = {"batch": [], "write": []}
    try:
        for run in range(runs):
            for what in ("batch", "write") if run % 2 == 0 else ("write", "batch"):
                path = os.path.join(scratch, what)
                os.mkdir(path)
                os.sync()
                out = subprocess.run([python, "-c", FIRST_CALL, path, str(n), what, root], capture_output=True,
                                     text=True, timeout=600, check=True)
                got[what].append(json.loads(out.stdout.strip().splitlines()[-1]))
                shutil.rmtree(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for what, xs in got.items():
        for k, scale, unit in (("wall", 1e3, "ms"), ("cpu", 1e3, "ms"), ("faults", 1, "")):
            v = [x[k] * scale for x in xs]
            print(f"first {what:5s} {k:6s} median {statistics.median(v):8.1f} {unit:2s} range {min(v):.1f}-{max(v):.1f}")
    for k in ("wall", "cpu"):
        ratio = statistics.median(x[k] for x in got["write"]) / statistics.median(x[k] for x in got["batch"])
        print(f"a new process's first produce_batch / its first write() ({k}): {ratio:.2f}x")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--first-process" in args:
        args.remove("--first-process")
        py = sys.executable
        if "--python" in args:
            i = args.index("--python")
            py = args[i + 1]
            del args[i:i + 2]
        first_process(*(int(a) for a in args[:2]), python=py)
    else:
        contended = "--contended" in args
        if contended:
            args.remove("--contended")
        main(*(int(a) for a in args[:2]), contended=contended)
