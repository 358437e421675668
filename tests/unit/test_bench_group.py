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
    assert len(costs) == 3
    for cpu, wall, in_commit, commits, syncs in costs:
        # the readers' CPU, and their time inside commit() (a part of each reader's wall time)
        assert cpu > 0 and 0 < in_commit
        # every synchronous commit is durable by a sync: its own or one it shared
        assert commits > 0 and 0 < syncs <= commits
    assert costs[2][2] < costs[2][1]   # one reader: inside commit() for part of the run
    admin = GroupAdmin(path)
    groups = admin.list_groups()
    assert len(groups) == 3
    for g in groups:
        # every record was committed: the runs' clocks stopped on commits, not on reads
        assert sum(admin.committed(g).values()) == ctx.n


def test_the_notes_say_how_busy_the_members_kept_the_cores_and_how_long_commits_took():
    from bench.harness import Row

    three, one = Row("group.three.arrowlog", "w", "arrowlog", "d"), Row("group.one.arrowlog", "w", "arrowlog", "d")
    # (CPU together, wall, inside commit() together, commits, fdatasyncs) of two timed runs after a warm-up
    trio = [(9.0, 9.0, 9.0, 9, 9), (0.18, 0.10, 0.09, 100, 60), (0.18, 0.10, 0.09, 100, 60)]
    solo = [(9.0, 9.0, 9.0, 9, 9), (0.20, 0.30, 0.12, 50, 50), (0.20, 0.30, 0.12, 50, 50)]
    bench_group._explain(three, one, trio, solo, runs=2)
    assert "CPU 0.200 s of 0.300 s (67%)" in one.note and "inside commit() 0.120 s (40%)" in one.note
    cores = min(os.cpu_count() or 1, bench_group.MEMBERS)
    busy = round(100 * 0.18 / (0.10 * cores))
    assert f"they kept {busy}% of {cores} cores busy over 0.100 s" in three.note
    assert "each inside commit() 0.030 s (30%)" in three.note
    assert "0.60 fdatasyncs per commit" in three.note and "(1.00 per commit)" in one.note
    # off CPU: the one consumer's wall time that its CPU does not explain (its sync waits)
    assert "off CPU 0.100 s" in one.note
    assert "4000 µs of CPU per batch" in one.note and "1800 µs of CPU per batch" in three.note
