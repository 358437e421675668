"""Every writer of committed offsets uses the group's commit journal: the
Kafka server (OffsetCommit, TxnOffsetCommit) and GroupAdmin, like in-process
members. No offsets.json is replaced per commit."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

import arrowlog
from arrowlog.errors import GroupError
from arrowlog.groups import GroupAdmin, GroupDir
from arrowlog.server import offsets as offsets_mod
from arrowlog.server.offsets import GroupOffsetStore


def names(path: str) -> list[str]:
    return sorted(os.listdir(path))


def test_a_server_commit_is_a_journal_record_not_a_file_replace(tmp_path):
    store = GroupOffsetStore(str(tmp_path))
    store.commit("g", {"t": {0: {"offset": 5, "metadata": "m", "leader_epoch": 3}}})
    store.commit("g", {"t": {1: {"offset": 7, "metadata": None}}})
    gpath = os.path.join(str(tmp_path), "groups", "g")
    files = names(gpath)
    assert [n for n in files if n.startswith("journal-")], files
    # no offsets.json replaced (and fsynced with its directory) per commit, no pending file
    assert "offsets.json" not in files and not [n for n in files if n.startswith("pending-")], files
    assert store.load("g") == {"t": {0: {"offset": 5, "metadata": "m", "leader_epoch": 3},
                                     1: {"offset": 7, "metadata": "", "leader_epoch": -1}}}
    store.close()


def test_server_and_member_commits_share_one_order(tmp_path):
    store = GroupOffsetStore(str(tmp_path))
    member = GroupDir(os.path.join(str(tmp_path), "groups"), "g", journal=True)
    store.commit("g", {"t": {0: {"offset": 1, "metadata": ""}}})
    member.write_offsets({("t", 0): (2, None)})
    assert store.load("g")["t"][0]["offset"] == 2      # the later commit wins, whoever wrote it
    store.commit("g", {"t": {0: {"offset": 3, "metadata": ""}}})
    assert member.read_offsets()[("t", 0)].offset == 3
    member.close()
    store.close()


def test_writers_stay_open_for_recent_groups_only(tmp_path, monkeypatch):
    monkeypatch.setattr(offsets_mod, "OPEN_WRITERS", 2)
    store = GroupOffsetStore(str(tmp_path))
    for g in ("a", "b", "c", "a"):
        store.commit(g, {"t": {0: {"offset": 1, "metadata": ""}}})
    assert list(store._writers) == ["c", "a"]   # "b" was closed, "a" reopened
    assert store.load("b") == {"t": {0: {"offset": 1, "metadata": "", "leader_epoch": -1}}}
    store.close()
    assert not store._writers


def test_a_deleted_group_starts_again_empty(tmp_path):
    store = GroupOffsetStore(str(tmp_path))
    store.commit("g", {"t": {0: {"offset": 9, "metadata": ""}}})
    store.delete("g")
    assert "g" not in store.groups()
    store.commit("g", {"t": {1: {"offset": 4, "metadata": ""}}})
    assert store.load("g") == {"t": {1: {"offset": 4, "metadata": "", "leader_epoch": -1}}}
    store.close()


def test_group_admin_commits_and_resets_are_journal_records(tmp_path):
    with arrowlog.LogDir(str(tmp_path)) as log:
        log.create_topic("t", partitions=2)
        p = arrowlog.Producer({"log.dir": str(tmp_path)})
        for i in range(10):
            p.produce("t", b"v%d" % i, partition=0)
        p.flush()
        p.close()
        admin = GroupAdmin(log)
        admin.commit("g", {("t", 0): 4})
        gpath = os.path.join(str(tmp_path), "groups", "g")
        assert "offsets.json" not in names(gpath) and [n for n in names(gpath) if n.startswith("journal-")]
        assert admin.committed("g") == {("t", 0): 4}
        plan = admin.reset_offsets("g", ["t"], to="earliest", execute=True)
        assert {(r.topic, r.partition): r.new for r in plan} == {("t", 0): 0, ("t", 1): 0}
        assert admin.committed("g") == {("t", 0): 0, ("t", 1): 0}   # the reset is later: it wins over 4
        assert "offsets.json" not in names(gpath) and not [n for n in names(gpath) if n.startswith("pending-")]


def test_an_offsets_file_of_a_newer_format_is_refused_not_misread(tmp_path):
    gdir = GroupDir(str(tmp_path / "groups"), "g")
    with open(gdir.offsets_path, "w") as f:
        json.dump({"format": 2, "group": "g", "seq": 3, "offsets": {"t": {"0": {"offset": 5, "seq": 3}}}}, f)
    with pytest.raises(GroupError, match="format 2, newer than this arrowlog reads"):
        gdir.read_offsets()


class _CountingLock:
    """A lock that counts the acquirers that had to wait for it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.blocked = 0

    def __enter__(self):
        if not self.lock.acquire(blocking=False):
            self.blocked += 1
            self.lock.acquire()

    def __exit__(self, *exc):
        self.lock.release()


def test_a_writer_is_not_closed_under_a_commit_still_using_it(tmp_path, monkeypatch):
    monkeypatch.setattr(offsets_mod, "OPEN_WRITERS", 1)
    store = GroupOffsetStore(str(tmp_path))
    store.commit("a", {"t": {0: {"offset": 1, "metadata": ""}}})   # the journal exists: the next commit only syncs
    lock = store._writers_lock = _CountingLock()
    in_sync, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def slow_first_sync(fd):
        if not in_sync.is_set():
            in_sync.set()
            assert release.wait(60)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_first_sync)
    errors: list = []

    def commit(group, offset):
        try:
            store.commit(group, {"t": {0: {"offset": offset, "metadata": ""}}})
        except BaseException as exc:   # reported below
            errors.append(exc)

    a = threading.Thread(target=commit, args=("a", 2))
    a.start()
    assert in_sync.wait(60)
    # a commit of another group evicts "a" (one writer open): it must wait for a's commit
    b = threading.Thread(target=commit, args=("b", 3))
    b.start()
    deadline = time.monotonic() + 60
    while b.is_alive() and not lock.blocked:   # by progress: b finished, or is waiting for the lock
        assert time.monotonic() < deadline
        time.sleep(0.001)
    release.set()
    a.join(60)
    b.join(60)
    assert not errors, errors
    assert store.load("a")["t"][0]["offset"] == 2 and store.load("b")["t"][0]["offset"] == 3
    store.close()
