"""Group commits through a power loss: three processes commit into one
group's journal; the file system stops mid-commit (FS_IOC_SHUTDOWN without a
journal flush) and is mounted again, in the same boot.

Each committer owns one partition and commits a counter (in the metadata)
synchronously in a loop, printing it once commit() returned. After every
power loss the committed counter of each partition must be at least the
last one acknowledged; the next cycle's committers resume from it, so a
commit of theirs that lost to an older record (the journal's unsynced state
came back older than its records) shows as a counter going back.

Needs root and a loop device (CI has both); skipped otherwise.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import faultlib
import pytest
from group_committer import MIXES, PARTS, Committer, committed


@pytest.mark.parametrize("kinds", MIXES, ids="-".join)
def test_group_commits_survive_power_loss(ext4, seed, kinds):
    rng = random.Random(seed)
    img = ext4(96)
    img.mount()
    data = os.path.join(img.mnt, "data")
    # in a child: a LogDir's mappings would keep the file system busy at umount
    subprocess.run([sys.executable, "-c", "import arrowlog, sys; d = arrowlog.LogDir(sys.argv[1]); "
                    f"d.create_topic('t', partitions={PARTS}); d.close()", data],
                   env=faultlib.writer_env(), check=True, timeout=120)
    acked = {p: 0 for p in range(PARTS)}
    for cycle in range(faultlib.count(4, 30)):
        procs = [Committer(data, p, kinds[p]) for p in range(PARTS)]
        try:
            deadline = time.monotonic() + 120
            # by progress: every committer resumed and had commits acknowledged
            while not all(c.start is not None and c.acked > c.start + 5 for c in procs):
                assert time.monotonic() < deadline, [(c.start, c.acked, c.proc.poll()) for c in procs]
                for c in procs:
                    c.read(0.01)
            for p, c in enumerate(procs):
                assert c.start is not None and c.start >= acked[p], f"seed={seed} cycle={cycle}: partition {p} " \
                    f"resumed at {c.start}, below {acked[p]} acknowledged before the power loss"
            time.sleep(rng.uniform(0.0, 0.05))   # the moment of the power loss: random by design
            img.shutdown()
        finally:
            for c in procs:
                c.kill()
        for p, c in enumerate(procs):
            acked[p] = max(acked[p], c.acked)
        img.umount()
        img.mount()
        got = committed(data)
        ctx = f"seed={seed} cycle={cycle}: committed {got}, acknowledged {acked}"
        assert all(got.get(p, 0) >= acked[p] for p in range(PARTS)), ctx
    assert all(n > 0 for n in acked.values())
