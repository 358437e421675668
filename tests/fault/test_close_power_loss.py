"""Power loss right after a Producer's close() returns: nothing it wrote is
lost, whether it was the last process out of a partition (the data
directory's close flushes and marks it clean) or another process keeps the
partition open (the close flushes what the producer wrote all the same).

The close makes one file-system flush for all partitions while it unmaps
their segments, then publishes the recovery points and clean marks without
a second flush: the file system is shut down without flushing its journal
(FS_IOC_SHUTDOWN, NOLOGFLUSH) the moment close() returns, remounted, and
every record must be there, intact. Needs root and a loop device.
"""

from __future__ import annotations

import gc
import os
import random

import faultlib
import pytest

import arrowlog
from arrowlog.storage import LogDir

PARTITIONS = 48


@pytest.mark.parametrize("held_elsewhere", [False, True])
def test_a_power_loss_right_after_a_producer_close_loses_nothing(ext4, seed, held_elsewhere):
    img = ext4(160)
    img.mount()
    data = os.path.join(img.mnt, "data")
    rng = random.Random(seed)
    with LogDir(data) as d:
        d.create_topic("t", PARTITIONS)
    del d  # its mappings would keep the file system busy
    written: dict[int, list[bytes]] = {i: [] for i in range(PARTITIONS)}
    for cycle in range(faultlib.count(3, 20)):
        other = None
        if held_elsewhere:  # its own descriptors: to flock, another process
            other = LogDir(data)
            for i in range(PARTITIONS):
                other.topic("t").partition(i)
        # no periodic sync during the test: the close alone makes it durable
        p = arrowlog.Producer({"log.dir": data, "linger.ms": 1000, "fsync.interval.ms": 3_600_000})
        for _ in range(2):  # two flushes: appends into segments already written to
            for j in range(rng.randrange(200, 2000)):
                part = rng.randrange(PARTITIONS)
                value = faultlib.value_for(cycle, len(written[part]), j, 0, rng.randrange(0, 300))
                p.produce("t", value, partition=part)
                written[part].append(value)
            p.flush()
        p.close()
        img.shutdown()  # the power goes the moment close() returned
        if other is not None:
            other.close()  # (on a dead file system: nothing more reaches the disk)
        del p, other
        gc.collect()
        img.umount()
        img.mount()
        with LogDir(data) as d:
            t = d.topic("t")
            for i in range(PARTITIONS):
                contents = faultlib.read_log(t.partition(i))
                faultlib.check_log(contents, {}, whole_batches=False)
                values = [contents.values[o] for o in sorted(contents.values)]
                assert values == written[i], \
                    f"seed={seed} cycle={cycle} partition {i}: {len(values)} records back of {len(written[i])}"
        del d, t, contents
