"""kill -9 while a topic is being created: create_topic makes every
partition's files before it writes topic.json (storage/precreate.py), so a
kill can leave any partition half made. Afterwards the topic is created
again (or found, when topic.json made it) and every partition takes
writes and reads them back, and verify() finds nothing wrong."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time

import faultlib

PARTITIONS = 48
CHILD = """
import sys
from arrowlog.storage import LogDir
d = LogDir(sys.argv[1])
print("R", flush=True)
sys.stdin.readline()
d.create_topic("t", int(sys.argv[2]), {"segment.bytes": 65536})
print("D", flush=True)
"""


def _creator(path: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, path, str(PARTITIONS)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=faultlib.writer_env(), text=True)
    assert proc.stdout.readline().strip() == "R"
    return proc


def _creation_seconds(base: str) -> float:
    """How long an uninterrupted create_topic takes here (the kills land in it)."""
    path = os.path.join(base, "timing")
    proc = _creator(path)
    t0 = time.perf_counter()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "D"
    elapsed = time.perf_counter() - t0
    proc.wait()
    shutil.rmtree(path)
    return elapsed


def _check(path: str, cycle: int, seed: int) -> None:
    from arrowlog.storage import LogDir

    where = f"seed={seed} cycle={cycle}"
    with LogDir(path) as d:
        t = d.create_topic("t", PARTITIONS, {"segment.bytes": 65536}, exist_ok=True)
        assert t.num_partitions == PARTITIONS, where
        for p, log in enumerate(t.partitions()):
            assert log.watermarks() == (0, 0), f"{where}: partition {p} is not empty"
            assert log.append(faultlib.make_batch([b"%d" % p])) == 0, where
    with LogDir(path) as d:
        for p, log in enumerate(d.topic("t").partitions()):
            got = [v for f in log.read(0, 100) for v in f.batch.column("value").to_pylist()]
            assert got == [b"%d" % p], f"{where}: partition {p} holds {got}"
            assert log.verify()["errors"] == [], where


def test_kill9_while_creating_a_topic(seed):
    rng = random.Random(seed)
    base = faultlib.fast_scratch("arrowlog-create-kill-")
    try:
        span = _creation_seconds(base)
        for cycle in range(faultlib.count(12, 120)):
            path = os.path.join(base, str(cycle))
            proc = _creator(path)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            time.sleep(rng.uniform(0, span))  # the moment of the kill: random by design
            proc.kill()
            proc.wait()
            _check(path, cycle, seed)
            shutil.rmtree(path)
    finally:
        shutil.rmtree(base, ignore_errors=True)
