"""The group's commit journal (arrowlog.groups.journal): members share
fdatasyncs, torn and damaged records, state older than the disk, rollover."""

from __future__ import annotations

import json
import os
import struct

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


def test_a_commit_is_one_fdatasync_and_never_waits_for_the_lock_after_it(tmp_path, monkeypatch):
    # members' syncs run at once (the block layer merges concurrent flushes); a
    # check for a covering sync before our own (a lock round) spared a sync in
    # one commit of about 13,000 with three members, and was dropped. After the
    # sync, how far it made the journal durable is published only if the lock is
    # free: a member descheduled while holding it must not stall the others
    first, second = member_dir(tmp_path), member_dir(tmp_path)
    first.write_offsets({("t", 9): (1, None)})   # creates the journal
    second.write_offsets({("t", 8): (1, None)})
    synced: list[int] = []
    locks: list[int] = []
    real_sync, real_flock = os.fdatasync, jmod.fcntl.flock
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real_sync(fd))[1])
    monkeypatch.setattr(jmod.fcntl, "flock", lambda fd, op: (locks.append(op), real_flock(fd, op))[1])
    second.write_offsets({("t", 1): (11, None)})
    first.write_offsets({("t", 0): (10, None)})
    assert len(synced) == 2
    ex, nb, un = jmod.fcntl.LOCK_EX, jmod.fcntl.LOCK_EX | jmod.fcntl.LOCK_NB, jmod.fcntl.LOCK_UN
    assert locks == [ex, un, nb, un] * 2
    j = first._journal
    assert j is not None
    _boot, _seq, gen, tail, dgen, dpos = j._read_state()
    assert (dgen, dpos) == (gen, tail) == j._synced   # published at once: the lock was free
    assert offsets(first) == {9: 1, 8: 1, 0: 10, 1: 11}


def test_a_sync_that_finds_the_lock_taken_is_published_at_the_next_claim(tmp_path, monkeypatch):
    first, second = member_dir(tmp_path), member_dir(tmp_path)
    first.write_offsets({("t", 9): (1, None)})
    second.write_offsets({("t", 8): (1, None)})
    j2 = second._journal
    assert j2 is not None
    real_sync = os.fdatasync

    def sync_while_the_other_takes_the_lock(fd):
        real_sync(fd)
        j2._claim.__enter__()   # the other member holds the claim lock right after our sync

    monkeypatch.setattr(os, "fdatasync", sync_while_the_other_takes_the_lock)
    first.write_offsets({("t", 0): (10, None)})   # returns without waiting for the lock
    monkeypatch.setattr(os, "fdatasync", real_sync)
    j = first._journal
    assert j is not None
    _boot, _seq, gen, tail, _dgen, dpos = j._read_state()
    assert j._synced == (gen, tail) and dpos < tail   # durable, not published yet
    j2._claim.__exit__()
    # the next record of the same member carries it as its hint (how far the
    # journal was durable when it was claimed): a damaged record before it is an error
    first.write_offsets({("t", 2): (12, None)})
    with open(os.path.join(first.path, journal_name(gen)), "rb") as f:
        f.seek(tail)
        assert struct.unpack("<4sIIQQ", f.read(HEADER_SIZE))[4] == tail
    assert offsets(first) == {9: 1, 8: 1, 0: 10, 2: 12}


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
