"""Group commit: concurrent committers share one round of fsyncs, and a
pending commit is applied once (arrowlog.groups.store)."""

from __future__ import annotations

import json
import os
import threading
import time

from arrowlog.groups import GroupDir
from arrowlog.groups.store import PENDING_PREFIX


def pending(gdir: GroupDir) -> list[str]:
    return sorted(n for n in os.listdir(gdir.path) if n.startswith(PENDING_PREFIX))


def test_concurrent_committers_share_one_round_of_fsyncs(tmp_path, monkeypatch):
    groups = str(tmp_path / "groups")
    holder = GroupDir(groups, "g")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    errors: list[BaseException] = []

    def commit(p: int) -> None:
        try:
            GroupDir(groups, "g").write_offsets({("t", p): (10 + p, f"m{p}")})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(p,)) for p in range(3)]
    with holder.locked():  # another committer's round is in progress
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(pending(holder)) < 3:
            assert time.monotonic() < deadline, f"pending commits: {pending(holder)}"
            time.sleep(0.001)
        assert synced == []
    for t in threads:
        t.join(60)
    assert not errors
    # one round wrote all three: the file's fsync and the directory's, not three pairs
    assert len(synced) == 2
    got = holder.read_offsets()
    assert {p: (e.offset, e.metadata) for (_, p), e in got.items()} == {p: (10 + p, f"m{p}") for p in range(3)}
    assert pending(holder) == []


def test_a_commit_killed_before_its_round_is_applied_by_the_next(tmp_path):
    gdir = GroupDir(str(tmp_path / "groups"), "g")
    gdir.write_offsets({("t", 0): (5, None)})
    dead = GroupDir(str(tmp_path / "groups"), "g")
    dead._drop_pending([["t", 1, 7, "", 0, -1]])  # written, then the process died before taking the lock
    gdir.write_offsets({("t", 0): (6, None)})
    assert {p: e.offset for (_, p), e in gdir.read_offsets().items()} == {0: 6, 1: 7}
    assert pending(gdir) == []


def test_newer_commits_win_over_older_pending_ones(tmp_path):
    gdir = GroupDir(str(tmp_path / "groups"), "g")
    gdir._drop_pending([["t", 0, 3, "old", 0, -1]])
    gdir.write_offsets({("t", 0): (9, "new")})
    e = gdir.read_offsets()[("t", 0)]
    assert (e.offset, e.metadata) == (9, "new")


def test_a_pending_file_resurrected_after_its_round_is_not_applied_again(tmp_path):
    gdir = GroupDir(str(tmp_path / "groups"), "g")
    gdir.write_offsets({("t", 0): (8, None)})
    (name,) = json.load(open(gdir.offsets_path))["applied"]
    # a power loss undid the unlink of the pending file the last round merged, and
    # after the reboot (monotonic clock restarted) a commit sorts before it
    with open(os.path.join(gdir.path, name), "w") as f:
        json.dump([["t", 0, 8, "", 0, -1]], f)
    with open(os.path.join(gdir.path, f"{PENDING_PREFIX}{1:020d}-1-1.json"), "w") as f:
        json.dump([["t", 0, 3, "", 0, -1]], f)
    gdir.write_offsets({("t", 1): (2, None)})
    assert {p: e.offset for (_, p), e in gdir.read_offsets().items()} == {0: 3, 1: 2}
    assert pending(gdir) == []


def test_a_pending_file_torn_by_a_power_loss_is_dropped(tmp_path):
    gdir = GroupDir(str(tmp_path / "groups"), "g")
    # pending files are not fsynced: the rename survived, the data did not
    for i, junk in enumerate((b"", b'[["t", 0, 9', b'[["t", 0]]')):
        with open(os.path.join(gdir.path, f"{PENDING_PREFIX}{i + 1:020d}-1-1.json"), "wb") as f:
            f.write(junk)
    gdir.write_offsets({("t", 1): (2, None)})
    assert {p: e.offset for (_, p), e in gdir.read_offsets().items()} == {1: 2}
    assert pending(gdir) == []
