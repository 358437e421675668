"""kill -9 while a topic is being created: create_topic makes every
partition's files in a staging directory, renames it into place, then writes
topic.json (storage/precreate.py), so a kill can leave a staging directory
with any partition half made, or a topic directory without topic.json. The
next open removes the staging directory and shows no topic; the topic is created
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
        # the partitions are made in a staging directory the open removed: no half-made topic
        assert sorted(os.listdir(d.topics_dir)) in ([".lock", ".notify"], [".lock", ".notify", "t"]), where
        if d.list_topics():
            assert sorted(os.listdir(os.path.join(d.topics_dir, "t"))) == sorted(
                [str(p) for p in range(PARTITIONS)] + ["topic.json"]), where
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


def _admin(path: str, step) -> None:
    """``step(LogDir)``, the LogDir closed and dropped (its mappings would keep the file system busy)."""
    from arrowlog.storage import LogDir

    with LogDir(path) as d:
        step(d)


def test_power_loss_right_after_the_first_synced_writes(ext4, seed):
    """The topic's files are on disk with the partition's state at generation
    0; a writer appends with fsync; the power goes as soon as it has
    acknowledged a few batches, before the kernel wrote the state file back
    (its pages go every few seconds): the disk holds synced frames under a
    state that still says "made by create_topic, never written". The
    reopened partition must be recovered, not taken as untouched."""
    rng = random.Random(seed)
    img = ext4(96)
    img.mount()
    data = os.path.join(img.mnt, "data")
    acked: dict[int, bytes] = {}
    cycles = faultlib.count(3, 20)
    for cycle in range(cycles):
        _admin(data, lambda d: d.create_topic(faultlib.TOPIC, 1, faultlib.TOPIC_CONFIG))
        os.sync()  # the state at generation 0 on disk
        w = faultlib.Writer("append", data, str(cycle), "--seed", str(rng.randrange(1 << 30)), "--fsync")
        w.wait_ready()
        wanted = rng.randint(1, 20)
        w.wait_for(lambda w, wanted=wanted: len(w.acked) >= wanted, f"acknowledged {wanted} records")
        img.shutdown()
        w.kill()
        img.umount()
        acked = dict(w.acked)
        img.mount()
        faultlib.check_after_power_loss(data, acked, f"seed={seed} cycle={cycle}")
        _admin(data, lambda d: d.delete_topic(faultlib.TOPIC))
    assert acked, "nothing was acknowledged: the test did not test"
