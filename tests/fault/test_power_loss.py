"""Power loss: the file system stops mid-write and comes back from its disk.

The log lives on a loop-mounted ext4 image. A writer appends with fsync
durability and reports what was acknowledged; at a random moment the file
system is shut down without flushing its journal (FS_IOC_SHUTDOWN,
NOLOGFLUSH): from then on nothing reaches the image, exactly as if the
machine had lost power. After unmounting and mounting the image again,
every fsync-acknowledged record must be there, intact, with the usual
structure checks. The log accumulates over every cycle, so each cycle also
starts from a log that a previous session closed or recovered.

With ``data=writeback,nodelalloc`` ext4 may commit a file's metadata before
its data, so what follows the synced prefix can read back as zeros (Kafka's
"nonsense block"): recovery must cut it off and show no phantom record.

Needs root and a loop device (CI has both); skipped otherwise.
"""

from __future__ import annotations

import os
import random
import time

import faultlib
import pytest

CASES = {
    # mount options, writer arguments, quick count, long count
    "fsync-every-append": ("", ["append", "--fsync"], 6, 50),
    "writeback-zero-tail": ("data=writeback,nodelalloc,commit=1", ["append", "--fsync-every", "4"], 6, 50),
    # clean closes and reopens inside one power cycle: a clean mark must never
    # outlive them; retention deletes segments at rolls as well
    "fsync-with-reopens": ("", ["append", "--fsync", "--reopen-every", "5", "--retention-bytes", "100000"], 4, 40),
    # the Producer with durability="fsync": acknowledged once flush() returned
    "producer-fsync": ("", ["producer", "--fsync"], 4, 40),
}


@pytest.mark.parametrize("name", list(CASES))
def test_power_loss_keeps_fsynced_records(name, ext4, seed):
    options, flags, quick, long = CASES[name]
    img = ext4(96, options)
    img.mount()
    data = os.path.join(img.mnt, "data")
    rng = random.Random(seed)
    acked: dict[int, bytes] = {}
    cycles = faultlib.count(quick, long)
    for cycle in range(cycles):
        w = faultlib.Writer(flags[0], data, str(cycle), "--seed", str(rng.randrange(1 << 30)), *flags[1:])
        w.wait_ready()
        if "--retention-bytes" in flags:
            # by progress, not by a guess: until a synced append has seen
            # retention delete a segment (the log accumulates over cycles,
            # so after the first cycle this holds at once)
            w.wait_for(lambda w: w.log_start > 0, "saw retention delete a segment")
        time.sleep(rng.uniform(0.01, 0.25))  # the moment of the power loss: random by design
        img.shutdown()
        time.sleep(rng.uniform(0, 0.02))  # let the writer run into the dead file system
        w.kill()
        img.umount()
        acked.update(w.acked)
        img.mount()
        contents = faultlib.check_after_power_loss(data, acked, f"seed={seed} cycle={cycle} ({name})",
                                                   whole_batches=flags[0] == "append")
    assert acked, "nothing was acknowledged: the test did not test"
    if "--retention-bytes" in flags:
        assert contents.log_start > 0, "retention never deleted a segment: the test did not test it"
