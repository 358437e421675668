"""The group benchmark's read harness: one consumer and three members measured the same way.

Small data (a few thousand records), real processes: the harness must finish
each run with every record read, in a new group each time.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from arrowlog.groups import GroupAdmin  # noqa: E402
from bench import bench_group, datasets  # noqa: E402
from bench.context import Context  # noqa: E402


def test_repeated_runs_each_read_everything_in_a_new_group(tmp_path):
    ctx = Context(n=6000, runs=1, warmup=0)
    ctx.root = str(tmp_path)
    path = datasets.arrowlog_dataset(ctx, partitions=bench_group.PARTITIONS)
    costs: list = []
    # twice with three members, then one consumer: a run that reused an earlier
    # run's group would find everything committed and stall
    for count in (3, 3, 1):
        (elapsed,) = bench_group.readers(ctx, path, ctx.n, False, count, costs)
        assert elapsed > 0
    assert len(costs) == 3 and all(cpu > 0 for cpu, _ in costs)
    admin = GroupAdmin(path)
    groups = admin.list_groups()
    assert len(groups) == 3
    for g in groups:
        # every record was committed: the runs' clocks stopped on commits, not on reads
        assert sum(admin.committed(g).values()) == ctx.n
