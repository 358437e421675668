"""kill -9 at every step of a cleaning round (storage/cleaner.py's _step
points: the cleaned copy written and synced, the commit rename, the index
renames, the directory fsyncs, the publish), then reopen: the log holds the
old or the new version of each segment, never a mix that loses a key's
latest record, never a duplicate offset; a later round finishes the job."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import faultlib
import pyarrow as pa
import pytest

import arrowlog
from arrowlog.storage import LogDir
from arrowlog.storage.cleaner import CLEANING_DIR

NOW = 10**13  # every tombstone is past delete.retention.ms
CHILD = """
import os, signal, sys
from arrowlog.storage import LogDir, cleaner
kill_at, seen = int(sys.argv[2]), [0]
def step(name):
    seen[0] += 1
    if seen[0] == kill_at:
        print(name, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
cleaner._step = step
with LogDir(sys.argv[1]) as ld:
    ld.compact("t", now_ms=int(sys.argv[3]))
print("STEPS", seen[0], flush=True)
"""


def _write(path: str) -> None:
    """Four closed segments of keyed updates and tombstones, one active."""
    with LogDir(path) as ld:
        plog = ld.create_topic("t", config={"cleanup.policy": "compact", "segment.bytes": 8192}).partition(0)
        headers_type = plog.schema.field("headers").type
        i = 0
        while len(plog.segment_bases()) < 5:
            n = 20
            keys = [b"k%d" % ((i + j) * 7 % 23) for j in range(n)]
            values = [None if (i + j) % 5 == 0 else b"v%d" % (i + j) for j in range(n)]
            plog.append(pa.RecordBatch.from_arrays(
                [pa.array([1000 + i + j for j in range(n)], pa.timestamp("ms", tz="UTC")),
                 pa.array(keys, pa.binary()), pa.array(values, pa.binary()), pa.nulls(n, headers_type)],
                schema=pa.schema(list(plog.schema)[1:])))
            i += n


def _records(path: str) -> list[dict]:
    with LogDir(path) as ld:
        assert ld.topic("t").partition(0).verify()["errors"] == []
        with arrowlog.replay(ld, "t") as r:
            return r.to_arrow().to_pylist()


def _run_child(path: str, kill_at: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, path, str(kill_at), str(NOW)], capture_output=True,
                          text=True, env=faultlib.writer_env(), timeout=300)


def _check(after: list[dict], original: list[dict], active_base: int, where: str) -> None:
    offsets = [r["offset"] for r in after]
    assert offsets == sorted(set(offsets)), f"{where}: duplicate or unordered offsets"
    by_offset = {r["offset"]: r for r in original}
    for r in after:
        assert r == by_offset[r["offset"]], f"{where}: record {r['offset']} changed"
    latest = {}
    for r in original:
        latest[r["key"]] = r
    last_after = {}
    for r in after:
        last_after[r["key"]] = r
    for key, r in latest.items():
        expired_tombstone = r["value"] is None and r["offset"] < active_base
        if expired_tombstone:
            assert key not in last_after or last_after[key] == r, f"{where}: {key!r} came back from the dead"
        else:
            assert last_after.get(key) == r, f"{where}: lost the latest record of {key!r}"


def test_kill_at_every_step_of_a_round(tmp_path):
    original_dir = str(tmp_path / "original")
    _write(original_dir)
    original = _records(original_dir)
    with LogDir(original_dir) as ld:
        active_base = ld.topic("t").partition(0).segment_bases()[-1]

    full_dir = str(tmp_path / "full")
    shutil.copytree(original_dir, full_dir)
    done = _run_child(full_dir, 0)
    assert done.returncode == 0, done.stderr
    steps = int(done.stdout.split()[-1])
    assert steps >= 4 * 9  # four segments rewritten, each through every step
    final = _records(full_dir)
    _check(final, original, active_base, "uninterrupted")
    assert len(final) < len(original)

    names = set()
    for kill_at in range(1, steps + 1):
        work = str(tmp_path / f"kill{kill_at}")
        shutil.copytree(original_dir, work)
        res = _run_child(work, kill_at)
        assert res.returncode == -9, (kill_at, res.stdout, res.stderr)
        name = res.stdout.strip()
        names.add(name)
        where = f"killed at step {kill_at} ({name})"
        after = _records(work)  # the first opener finishes or discards the swap
        # and removes the cleaning directory, which would keep a clean close from marking it
        assert not os.path.lexists(os.path.join(work, "topics", "t", "0", CLEANING_DIR)), where
        _check(after, original, active_base, where)
        # a new round completes the work: the same survivors as an uninterrupted one
        with LogDir(work) as ld:
            ld.compact("t", now_ms=NOW)
        assert _records(work) == final, where
        shutil.rmtree(work)
    assert {"commit", "log renamed", "before .timeindex", "indexes renamed", "published"} <= names


@pytest.mark.parametrize("leftover", ["log", "indexes"])
def test_recovery_resolves_a_left_swap(tmp_path, leftover):
    """A swap left by a power loss: cleaning/B.log still there (not
    committed: discarded) or only its indexes (committed: moved in)."""
    path = str(tmp_path / "d")
    _write(path)
    original = _records(path)
    part = os.path.join(path, "topics", "t", "0")
    base = sorted(n for n in os.listdir(part) if n.endswith(".log"))[0][:20]
    cdir = os.path.join(part, CLEANING_DIR)
    os.makedirs(cdir)
    if leftover == "log":
        with open(os.path.join(cdir, base + ".log"), "wb") as f:
            f.write(b"half a cleaned segment")
        shutil.copy(os.path.join(part, base + ".index"), os.path.join(cdir, base + ".index"))
    else:
        shutil.copy(os.path.join(part, base + ".index"), os.path.join(cdir, base + ".index"))
        shutil.copy(os.path.join(part, base + ".timeindex"), os.path.join(cdir, base + ".timeindex"))
    assert _records(path) == original
    assert not os.path.lexists(cdir)  # resolved, and gone
