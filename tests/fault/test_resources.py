"""File descriptors: a closed log holds none.

A leaked descriptor keeps a deleted segment's blocks allocated and a file
system busy (it could not be unmounted after a power-loss test); over many
partitions it runs a process out of descriptors.
"""

from __future__ import annotations

import faultlib
from fds import open_paths


def test_a_closed_log_keeps_no_file_open(data_dir):
    before = set(open_paths())
    # a new partition (created by recovery), appends across rolls, reads,
    # retention, a clean close; then the same again on the existing log
    for cycle in range(2):
        d, pl = faultlib.open_partition(data_dir, {"segment.bytes": 8192, "retention.ms": -1,
                                                  "retention.bytes": 30000})
        for b in range(40):
            pl.append(faultlib.make_batch(faultlib.batch_values(cycle, b, 3, 300)))
        faultlib.read_log(pl)
        pl.enforce_retention()
        d.close()
    leaked = sorted(p for p in set(open_paths()) - before if data_dir in p)
    assert leaked == [], f"still open after close: {leaked}"
