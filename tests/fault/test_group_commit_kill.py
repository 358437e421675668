"""Group commits under kill -9: the committed offsets are the old ones or
the new ones, never torn, never mixed.

A child process commits, in a tight loop, offsets whose metadata carry
counters that belong together (partition 1 = 2 x partition 0, partition 2 =
3 x partition 0; the offsets stay 0, within the empty log), alternating
synchronous and asynchronous commits, and after each synchronous commit
returns it writes its counter to a progress file. The parent SIGKILLs it at
a random moment, then checks: the offsets file parses, the three offsets
still belong together, the counter never went back, and it is at least the
last synchronous commit the child reported. The next child resumes from the
committed counter.

ARROWLOG_FAULT_LONG=1 runs 1000 kills instead of 60.
"""

from __future__ import annotations

import os
import random
import signal
import time

import faultlib
import pytest
from fds import readable
from group_committer import MIXES, PARTS, Committer
from group_committer import committed as committed_counters

import arrowlog
from arrowlog.groups import GroupDir

KILLS = 1000 if os.environ.get("ARROWLOG_FAULT_LONG") == "1" else 60


def child(data: str, progress: str, ready_fd: int) -> None:
    from arrowlog import Consumer, TopicPartition

    c = Consumer({"log.dir": data, "group.id": "g", "enable.auto.commit": False})
    start = c.committed([TopicPartition("t", 0)])[0].metadata
    i = int(start or 0)
    fd = os.open(progress, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(ready_fd, b"ready\n")
    while True:
        i += 1
        sync = i % 2 == 0
        # the counters ride in the metadata: offsets beyond the (empty) log would be refused
        c.commit(offsets=[TopicPartition("t", p, 0, str((p + 1) * i)) for p in range(3)], asynchronous=not sync)
        if sync:
            os.write(fd, b"%d\n" % i)


def committed(data: str) -> dict:
    return {p: int(e.metadata) for (t, p), e in GroupDir(os.path.join(data, "groups"), "g", create=False)
            .read_offsets().items()}


def last_progress(path: str) -> int:
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    done = [int(x) for x in lines[:-1] if x]   # the last piece may be a torn write
    return max(done, default=0)


def spawn(data: str, progress: str) -> int:
    """A forked child running ``child`` (forking skips a Python start-up
    per kill); returns its pid once it is about to commit."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            child(data, progress, w)
        finally:
            os._exit(1)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        ready = readable(f, timeout=30)
        line = f.readline() if ready else b""
    if line != b"ready\n":
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the committing child did not start")
    return pid


def test_commits_are_atomic_under_sigkill(data_dir, tmp_path, seed):
    rng = random.Random(seed)
    with arrowlog.LogDir(data_dir) as log:
        log.create_topic("t", partitions=3)
    progress = str(tmp_path / "progress")
    previous = 0
    for k in range(KILLS):
        pid = spawn(data_dir, progress)
        try:
            if k == KILLS - 1 and previous == 0:
                # by progress: the last child commits at least once
                deadline = time.monotonic() + 60
                while last_progress(progress) == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.03))  # the moment of the kill: random by design
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        offsets = committed(data_dir)      # parses: never a torn file
        reported = last_progress(progress)
        ctx = f"kill {k}, seed {seed}: {offsets}, last reported {reported}, previous {previous}"
        if not offsets:
            assert reported == 0 and previous == 0, ctx
            continue
        i = offsets[0]
        assert offsets == {0: i, 1: 2 * i, 2: 3 * i}, ctx     # one commit's values, never a mix
        assert i >= previous, ctx                             # never went back
        assert i >= reported, ctx                             # a returned sync commit is durable
        previous = i
    assert previous > 0, "the children never committed"
    leftovers = [n for n in os.listdir(os.path.join(data_dir, "groups", "g")) if n.endswith(".tmp")]
    assert len(leftovers) <= 1   # at most the temporary file of the last killed commit


@pytest.mark.parametrize("kinds", MIXES, ids="-".join)
def test_concurrent_journal_committers_under_sigkill(data_dir, seed, kinds):
    """Three processes (in-process members, or members and the Kafka server's
    offset store) commit into one group's journal; one of them, chosen at
    random, is SIGKILLed at a random moment (perhaps mid-claim, leaving half a
    record past the tail) and started again. Every time: the journal reads
    without error, no acknowledged commit is missing, counters never go back."""
    rng = random.Random(seed)
    with arrowlog.LogDir(data_dir) as log:
        log.create_topic("t", partitions=PARTS)
    procs = [Committer(data_dir, p, kinds[p]) for p in range(PARTS)]
    acked = {p: 0 for p in range(PARTS)}
    try:
        for k in range(faultlib.count(20, 100)):   # a Python start-up per kill: fewer than KILLS
            deadline = time.monotonic() + 60
            while not all(c.start is not None and c.acked > c.start for c in procs):   # by progress
                assert time.monotonic() < deadline, [(c.start, c.acked, c.proc.poll()) for c in procs]
                for c in procs:
                    c.read(0.01)
            victim = rng.randrange(PARTS)
            time.sleep(rng.uniform(0.0, 0.01))  # the moment of the kill: random by design
            procs[victim].kill()
            for p, c in enumerate(procs):
                c.read(0)
                acked[p] = max(acked[p], c.acked)
            got = committed_counters(data_dir)     # raises GroupError if the journal read as damaged
            ctx = f"kill {k}, seed {seed}: committed {got}, acknowledged {acked}"
            assert all(got.get(p, 0) >= acked[p] for p in range(PARTS)), ctx
            procs[victim] = Committer(data_dir, victim, kinds[victim])
    finally:
        for c in procs:
            c.kill()
    got = committed_counters(data_dir)
    assert all(got[p] >= acked[p] > 0 for p in range(PARTS)), (got, acked)
