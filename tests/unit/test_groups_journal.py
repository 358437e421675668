"""The group's commit journal (arrowlog.groups.journal): members share
fdatasyncs, torn and damaged records, state older than the disk, rollover."""

from __future__ import annotations

import json
import mmap
import os
import struct
import threading
import time

import pytest

from arrowlog.errors import GroupError
from arrowlog.groups import GroupDir
from arrowlog.groups import journal as jmod
from arrowlog.groups.journal import HEADER_SIZE, encode_record, journal_name


def member_dir(tmp_path) -> GroupDir:
    return GroupDir(str(tmp_path / "groups"), "g", journal=True)


def offsets(gdir: GroupDir) -> dict[int, int]:
    return {p: e.offset for (_, p), e in gdir.read_offsets().items()}


def journals(gdir: GroupDir) -> list[str]:
    return sorted(n for n in os.listdir(gdir.path) if n.startswith("journal-"))


def wait_until(cond, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


def committer(gdir: GroupDir, partition: int, offset: int) -> threading.Thread:
    t = threading.Thread(target=gdir.write_offsets, args=({("t", partition): (offset, None)},), daemon=True)
    t.start()
    return t


def test_a_commit_alone_is_one_fdatasync_and_publishes_the_durable_mark(tmp_path, monkeypatch):
    gdir = member_dir(tmp_path)
    gdir.write_offsets({("t", 9): (1, None)})   # creates the journal
    synced: list[int] = []
    real_sync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real_sync(fd))[1])
    gdir.write_offsets({("t", 0): (10, None)})
    assert len(synced) == 1
    j = gdir._journal
    assert j is not None
    _boot, _seq, gen, tail, _dgen, _dpos = j._read_state()
    assert j._durable() == jmod._mark(gen, tail)
    # the next record carries it as its hint (how far the journal was durable
    # when it was claimed): a damaged record before it is an error
    gdir.write_offsets({("t", 2): (12, None)})
    with open(os.path.join(gdir.path, journal_name(gen)), "rb") as f:
        f.seek(tail)
        assert struct.unpack("<4sIIQQ", f.read(HEADER_SIZE))[4] == tail
    assert offsets(gdir) == {9: 1, 0: 10, 2: 12}


def test_members_that_commit_during_a_sync_share_the_next_one(tmp_path, monkeypatch):
    # group commit: the first member's sync began before the others wrote, so
    # it does not cover them; they wait for it, then one sync covers both
    first, second, third = member_dir(tmp_path), member_dir(tmp_path), member_dir(tmp_path)
    for i, gdir in enumerate((first, second, third)):
        gdir.write_offsets({("t", 9 - i): (1, None)})   # each opens its own handle (as a process would)
    release = threading.Event()
    synced: list[int] = []
    real_sync = os.fdatasync

    def slow_first_sync(fd):
        synced.append(fd)
        if len(synced) == 1:
            assert release.wait(60)
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_first_sync)
    j = first._journal
    assert j is not None
    seq0 = j._read_state()[1]
    threads = [committer(first, 0, 10)]
    wait_until(lambda: len(synced) == 1, "the first commit's sync did not start")
    threads += [committer(second, 1, 11), committer(third, 2, 12)]
    wait_until(lambda: j._read_state()[1] == seq0 + 3, "the other members did not write their records")
    assert all(t.is_alive() for t in threads)   # nobody is durable before the first sync ends
    release.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert len(synced) == 2   # three commits, two syncs
    assert offsets(first) == {9: 1, 8: 1, 7: 1, 0: 10, 1: 11, 2: 12}


def claim_locks(monkeypatch, j) -> list[int]:
    """Every exclusive flock taken on the journal's claim lock (``.seq``) from now on."""
    taken: list[int] = []
    real_flock = jmod.fcntl.flock

    def flock(fd, op):
        if fd == j._state_fd and op & jmod.fcntl.LOCK_EX:
            taken.append(op)
        return real_flock(fd, op)

    monkeypatch.setattr(jmod.fcntl, "flock", flock)
    return taken


def test_a_syncer_whose_record_is_the_tail_does_not_take_the_claim_lock_again(tmp_path, monkeypatch):
    # nobody claimed a record after ours: ours is the tail, so the sync needs no
    # second round of the claim lock to read it (one flock pair per commit saved)
    gdir = member_dir(tmp_path)
    gdir.write_offsets({("t", 9): (1, None)})
    j = gdir._journal
    assert j is not None
    taken = claim_locks(monkeypatch, j)
    gdir.write_offsets({("t", 0): (10, None)})
    assert len(taken) == 1   # the claim of the record only
    _boot, _seq, gen, tail, _dgen, _dpos = j._read_state()
    assert j._durable() == jmod._mark(gen, tail)
    assert offsets(gdir) == {9: 1, 0: 10}


def test_a_record_claimed_after_ours_before_our_sync_is_covered_by_it(tmp_path, monkeypatch):
    # another member claimed and wrote a record between our write and our sync:
    # the syncer reads the tail under the claim lock and covers it too
    first, second = member_dir(tmp_path), member_dir(tmp_path)
    first.write_offsets({("t", 9): (1, None)})
    second.write_offsets({("t", 8): (1, None)})
    a, b = first._journal, second._journal
    assert a is not None and b is not None
    _retired, gen, end, seq = a._append(b'[["t",0,10,"",0,-1]]')
    _retired, gen_b, end_b, _seq_b = b._append(b'[["t",1,11,"",0,-1]]')
    taken = claim_locks(monkeypatch, a)
    synced: list[int] = []
    real_sync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real_sync(fd))[1])
    a._wait_durable(jmod._mark(gen, jmod._aligned(end)), seq)
    assert len(taken) == 1 and len(synced) == 1
    assert a._durable() == jmod._mark(gen_b, jmod._aligned(end_b))   # the other member's record too
    b._wait_durable(jmod._mark(gen_b, jmod._aligned(end_b)), _seq_b)
    assert len(synced) == 1   # it was already durable: no sync of its own
    assert offsets(first) == {9: 1, 8: 1, 0: 10, 1: 11}


def test_a_waiter_takes_over_from_a_syncer_that_died(tmp_path):
    # a syncer killed mid-sync releases its flock but wakes nobody: the waiters'
    # bounded futex waits find the lock free and one of them syncs
    dead, alive = member_dir(tmp_path), member_dir(tmp_path)
    dead.write_offsets({("t", 9): (1, None)})
    alive.write_offsets({("t", 8): (1, None)})
    jd, ja = dead._journal, alive._journal
    assert jd is not None and ja is not None
    assert jd._syncer.try_enter()   # the syncer, stuck in its sync
    seq0 = ja._read_state()[1]
    t = committer(alive, 0, 10)
    wait_until(lambda: ja._read_state()[1] == seq0 + 1, "the member did not write its record")
    assert t.is_alive()   # it cannot be durable while the sync lock is held
    jd._syncer.__exit__()   # its death: the lock goes, no wake-up
    t.join(60)
    assert not t.is_alive()
    _boot, _seq, gen, tail, _dgen, _dpos = ja._read_state()
    assert ja._durable() == jmod._mark(gen, tail)
    assert offsets(alive) == {9: 1, 8: 1, 0: 10}


def test_a_mark_left_torn_by_a_dead_syncer_is_repaired(tmp_path):
    gdir = member_dir(tmp_path)
    gdir.write_offsets({("t", 9): (1, None)})
    j = gdir._journal
    assert j is not None
    with open(os.path.join(j.path, jmod.SYNC_FILE), "r+b") as f, mmap.mmap(f.fileno(), 4096) as m:
        (seq,) = struct.unpack_from("<Q", m, 16)   # the state's seqlock counter
        struct.pack_into("<Q", m, 16, seq + 1)     # odd: a publish that never ended
    assert j._durable() == -1
    gdir.write_offsets({("t", 0): (10, None)})
    _boot, _seq, gen, tail, _dgen, _dpos = j._read_state()
    assert j._durable() == jmod._mark(gen, tail)


@pytest.mark.parametrize("bogus", [lambda gen: jmod._mark(gen + 1000, 0),
                                   lambda gen: jmod._mark(gen, jmod.JOURNAL_SIZE + 8)],
                         ids=["future-generation", "beyond-the-journal"])
def test_a_mark_no_sync_could_have_published_is_not_trusted(tmp_path, monkeypatch, bogus):
    # the mark is read from a file: one beyond what any sync reached must not
    # let a commit return without its own fdatasync
    gdir = member_dir(tmp_path)
    gdir.write_offsets({("t", 9): (1, None)})
    j = gdir._journal
    assert j is not None
    with open(os.path.join(j.path, jmod.SYNC_FILE), "r+b") as f, mmap.mmap(f.fileno(), 4096) as m:
        struct.pack_into("<q", m, 24 + 8, bogus(j._read_state()[2]))   # the payload's next_offset: the mark
    synced: list[int] = []
    real_sync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real_sync(fd))[1])
    gdir.write_offsets({("t", 0): (10, None)})
    assert len(synced) == 1
    _boot, _seq, gen, tail, _dgen, _dpos = j._read_state()
    assert j._durable() == jmod._mark(gen, tail)   # replaced by the sync's own


def test_a_torn_last_record_is_ignored(tmp_path):
    gdir = member_dir(tmp_path)
    gdir.write_offsets({("t", 0): (5, None)})
    path = os.path.join(gdir.path, journal_name(1))
    size = len(encode_record(1, 0, b"x"))
    with open(path, "rb") as f:
        first_len = len(f.read().rstrip(b"\0"))
    gdir.write_offsets({("t", 0): (6, None)})
    assert offsets(gdir) == {0: 6}
    # power loss: only the first bytes of the second record reached the disk
    start = (first_len + 7) & ~7
    with open(path, "r+b") as f:
        f.seek(start + size // 2)
        f.write(bytes(200))
    assert offsets(GroupDir(str(tmp_path / "groups"), "g")) == {0: 5}


def test_a_damaged_record_before_durable_ones_is_an_error(tmp_path):
    gdir = member_dir(tmp_path)
    for off in (5, 6, 7):
        gdir.write_offsets({("t", 0): (off, None)})
    path = os.path.join(gdir.path, journal_name(1))
    with open(path, "r+b") as f:
        f.seek(HEADER_SIZE + 3)   # inside the first record's payload
        b = f.read(1)
        f.seek(HEADER_SIZE + 3)
        f.write(bytes([b[0] ^ 0x40]))
    with pytest.raises(GroupError, match="damaged at byte 0"):
        GroupDir(str(tmp_path / "groups"), "g").read_offsets()


def test_records_after_a_torn_one_that_were_never_durable_are_not_applied(tmp_path):
    gdir = member_dir(tmp_path)
    gdir.write_offsets({("t", 0): (5, None)})
    path = os.path.join(gdir.path, journal_name(1))
    with open(path, "rb") as f:
        end = (len(f.read().rstrip(b"\0")) + 7) & ~7
    torn = encode_record(8, end, json.dumps([["t", 0, 8, "", 0, -1]]).encode())
    later = encode_record(9, end, json.dumps([["t", 0, 9, "", 0, -1]]).encode())   # claimed before any sync of `torn`
    with open(path, "r+b") as f:
        f.seek(end)
        f.write(torn[:HEADER_SIZE] + bytes(len(torn) - HEADER_SIZE))
        f.seek(end + ((len(torn) + 7) & ~7))
        f.write(later)
    assert offsets(GroupDir(str(tmp_path / "groups"), "g")) == {0: 5}


def _state(gdir: GroupDir) -> tuple:
    with open(os.path.join(gdir.path, ".seq"), "rb") as f:
        return struct.unpack("<16sQQQQQ", f.read(56))


def _set_state(gdir: GroupDir, state: tuple) -> None:
    with open(os.path.join(gdir.path, ".seq"), "r+b") as f:
        f.write(struct.pack("<16sQQQQQ", *state))


def test_after_a_reboot_commits_go_to_a_new_journal_after_every_seq_on_disk(tmp_path):
    gdir = member_dir(tmp_path)
    for off in (5, 6, 7):
        gdir.write_offsets({("t", 0): (off, None), ("t", 1): (off, None)})
    gdir.close()
    _set_state(gdir, (bytes(16), 0, 0, 0, 0, 0))   # the unsynced state did not survive the power loss
    again = member_dir(tmp_path)
    again.write_offsets({("t", 0): (3, None)})     # lower, and newer: it wins
    assert offsets(again) == {0: 3, 1: 7}
    assert journals(again) == [journal_name(1), journal_name(2)]


def test_state_older_than_the_disk_is_noticed_without_a_reboot(tmp_path):
    gdir = member_dir(tmp_path)
    gdir.write_offsets({("t", 0): (5, None)})
    stale = _state(gdir)
    gdir.write_offsets({("t", 0): (6, None), ("t", 1): (6, None)})
    gdir.close()
    _set_state(gdir, stale)   # the file system came back (same boot) with the state of one commit ago
    again = member_dir(tmp_path)
    again.write_offsets({("t", 0): (2, None)})
    assert offsets(again) == {0: 2, 1: 6}   # the record the stale tail pointed before was not overwritten
    assert journals(again) == [journal_name(1), journal_name(2)]


def test_a_full_journal_is_retired_and_folded(tmp_path, monkeypatch):
    monkeypatch.setattr(jmod, "JOURNAL_SIZE", 1024)
    gdir = member_dir(tmp_path)
    for off in range(1, 60):
        gdir.write_offsets({("t", off % 3): (off, None)})
    assert offsets(gdir) == {0: 57, 1: 58, 2: 59}
    names = journals(gdir)
    assert len(names) == 1 and names[0] != journal_name(1)   # retired ones unlinked
    with open(gdir.offsets_path) as f:
        doc = json.load(f)
    assert doc["offsets"]["t"]  # folded
    assert offsets(GroupDir(str(tmp_path / "groups"), "g")) == {0: 57, 1: 58, 2: 59}


def test_a_commit_too_large_for_a_journal_takes_a_round(tmp_path, monkeypatch):
    monkeypatch.setattr(jmod, "JOURNAL_SIZE", 1024)
    gdir = member_dir(tmp_path)
    gdir.write_offsets({("t", 0): (1, None)})
    gdir.write_offsets({("t", 0): (2, "m" * 2000)})
    e = gdir.read_offsets()[("t", 0)]
    assert (e.offset, e.metadata) == (2, "m" * 2000)
    gdir.write_offsets({("t", 0): (3, None)})   # and the journal still orders after it
    assert offsets(gdir) == {0: 3}


def test_dropped_offsets_stay_dropped_over_older_journal_records(tmp_path):
    gdir = member_dir(tmp_path)
    gdir.write_offsets({("t", 0): (5, None), ("t", 1): (5, None)})
    GroupDir(str(tmp_path / "groups"), "g").drop_offsets([("t", 0)])
    assert offsets(gdir) == {1: 5}
    gdir.write_offsets({("t", 0): (1, None)})
    assert offsets(gdir) == {0: 1, 1: 5}


def test_a_handle_whose_group_was_removed_commits_into_the_directory_there_now(tmp_path):
    """GroupDir.remove marks the group's .seq (under the claim lock) before the
    directory goes: another handle on the group (the server's offset store while
    GroupAdmin deletes the group) finds the mark at its next claim and commits
    into the directory made anew, not into the one being deleted."""
    server = member_dir(tmp_path)
    server.write_offsets({("t", 0): (5, None), ("t", 1): (6, None)})
    old = server._journal
    assert old is not None and old.usable()
    GroupDir(str(tmp_path / "groups"), "g", create=False).remove()
    assert not os.path.exists(server.path)
    server.write_offsets({("t", 0): (7, None)})
    assert server._journal is not old
    assert offsets(GroupDir(str(tmp_path / "groups"), "g", create=False)) == {0: 7}
    assert [n for n in os.listdir(tmp_path / "groups") if n.startswith(".deleted-")] == []


def test_a_removal_whose_rename_fails_leaves_the_group_committing(tmp_path, monkeypatch):
    gdir = member_dir(tmp_path)
    gdir.write_offsets({("t", 0): (5, None)})
    from arrowlog.groups import store

    def refuse(src, dst):
        raise PermissionError(13, "refused", src)

    monkeypatch.setattr(store.os, "rename", refuse)
    with pytest.raises(PermissionError):
        GroupDir(str(tmp_path / "groups"), "g", create=False).remove()
    monkeypatch.undo()
    j = gdir._journal
    assert j is not None and j._read_state()[0] != jmod.REMOVED
    gdir.write_offsets({("t", 1): (6, None)})   # (a new generation: as after a reboot)
    assert gdir._journal is j
    assert offsets(GroupDir(str(tmp_path / "groups"), "g", create=False)) == {0: 5, 1: 6}


def test_a_handle_made_before_a_fork_is_not_the_childs(tmp_path):
    gdir = member_dir(tmp_path)
    gdir.write_offsets({("t", 0): (5, None)})
    j = gdir._journal
    assert j is not None and j.usable()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: report, and leave without running the parent's cleanup
        try:
            os.write(w, b"1" if j.usable() else b"0")
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"0"
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert j.usable()
