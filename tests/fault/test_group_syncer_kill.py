"""Group commit under kill -9 of the syncer: a member whose commit is the
one fdatasync the others wait for is SIGKILLed in the middle of it. The
members waiting must not stay stuck: their bounded futex waits find the
sync lock free (its flock died with it) and one of them syncs for all.

The syncer is a member whose fdatasync never returns (it stands in for a
flush the kill interrupts); two more members commit in loops meanwhile.
None of their commits can return while the syncer holds the sync lock;
after the kill both go on, and what they acknowledged is committed.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time

import faultlib
from fds import readable
from group_committer import Committer, committed

from arrowlog.groups import GroupDir
from arrowlog.groups import journal as jmod

STUCK_SYNCER = r"""
import os, sys, time
from arrowlog import Consumer, TopicPartition
c = Consumer({"log.dir": sys.argv[1], "group.id": "g", "enable.auto.commit": False})
c.commit(offsets=[TopicPartition("t", 0, 0, "1")], asynchronous=False)   # the journal exists

def stuck(fd):
    os.write(1, b"syncing\n")
    time.sleep(3600)   # killed in here

os.fdatasync = stuck
c.commit(offsets=[TopicPartition("t", 0, 0, "2")], asynchronous=False)
"""


def records_written(data: str) -> int:
    """The group's commit counter (every journal record takes the next seq)."""
    with open(os.path.join(GroupDir(os.path.join(data, "groups"), "g", create=False).path, jmod.STATE_FILE),
              "rb") as f:
        return struct.unpack_from("<Q", f.read(jmod._STATE.size), 16)[0]


def test_members_waiting_for_a_killed_syncer_go_on(tmp_path):
    data = str(tmp_path / "data")
    subprocess.run([sys.executable, "-c", "import arrowlog, sys; d = arrowlog.LogDir(sys.argv[1]); "
                    "d.create_topic('t', partitions=3); d.close()", data],
                   env=faultlib.writer_env(), check=True, timeout=120)
    syncer = subprocess.Popen([sys.executable, "-c", STUCK_SYNCER, data], stdout=subprocess.PIPE,
                              env=faultlib.writer_env())
    members: list[Committer] = []
    try:
        assert readable(syncer.stdout, timeout=120), "the syncer did not start its sync"
        assert syncer.stdout.readline() == b"syncing\n"
        written = records_written(data)
        members = [Committer(data, p) for p in (1, 2)]
        deadline = time.monotonic() + 120
        # by progress: each member started and wrote its first record, then waits for a sync
        while not (all(c.start is not None for c in members) and records_written(data) >= written + 2):
            assert time.monotonic() < deadline, [(c.start, c.proc.poll()) for c in members]
            for c in members:
                c.read(0.01)
        for c in members:
            c.read(0)
            assert c.acked == 0   # nothing is durable while the syncer holds the sync lock
        syncer.kill()
        syncer.wait(60)
        deadline = time.monotonic() + 120
        while not all(c.acked > 5 for c in members):
            assert time.monotonic() < deadline, [(c.acked, c.proc.poll()) for c in members]
            for c in members:
                c.read(0.01)
    finally:
        if syncer.poll() is None:
            syncer.kill()
            syncer.wait(60)
        for c in members:
            c.kill()
    got = committed(data)
    for p, c in zip((1, 2), members):
        assert got[p] >= c.acked
    assert got[0] in (1, 2)   # the killed commit never returned: either is right
