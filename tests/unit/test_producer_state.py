"""Idempotent-producer state survives a restart (server/producers.py)."""

from __future__ import annotations

import json
import os

from arrowlog.server import errors as E
from arrowlog.server.producers import ProducerRegistry


def crash(registry: ProducerRegistry) -> None:
    """What a kill -9 leaves: the files as they are, the flock released, no snapshot."""
    registry._files.close()
    registry._lock_fd = registry._fds.close(registry._lock_fd)


def test_sequences_and_ids_survive_a_restart_without_close(tmp_path):
    data = str(tmp_path)
    a = ProducerRegistry(data)
    _, pid, epoch = a.init_producer_id()
    assert a.check("t", 0, pid, epoch, 0, 3)[:2] == (E.NONE, None)
    a.record("t", 0, pid, epoch, 0, 3, 100)
    a.record("t", 0, pid, epoch, 3, 2, 103)
    crash(a)  # no close(): as after a kill -9, only the journal has them
    b = ProducerRegistry(data)
    assert b.needs_check("t", 0)
    b.check_log("t", 0, high_watermark=105)
    assert b.check("t", 0, pid, epoch, 0, 3)[:2] == (E.NONE, 100)      # a retry: its original offset
    assert b.check("t", 0, pid, epoch, 3, 2)[:2] == (E.NONE, 103)
    assert b.check("t", 0, pid, epoch, 9, 1)[0] == E.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert b.init_producer_id(pid, epoch + 5)[0] == E.INVALID_PRODUCER_EPOCH  # the epoch was kept
    _, other, _ = b.init_producer_id()
    assert other > pid  # never reused
    b.close()
    c = ProducerRegistry(data)
    c.check_log("t", 0, high_watermark=105)
    assert c.check("t", 0, pid, epoch, 3, 2)[:2] == (E.NONE, 103)
    assert c.init_producer_id()[1] > other


def test_batches_beyond_the_log_end_are_forgotten(tmp_path):
    a = ProducerRegistry(str(tmp_path))
    _, pid, epoch = a.init_producer_id()
    a.record("t", 0, pid, epoch, 0, 3, 0)
    a.record("t", 0, pid, epoch, 3, 3, 3)
    crash(a)
    b = ProducerRegistry(str(tmp_path))
    b.check_log("t", 0, high_watermark=3)  # a power loss cut the log after the first batch
    assert b.check("t", 0, pid, epoch, 0, 3)[:2] == (E.NONE, 0)
    assert b.check("t", 0, pid, epoch, 3, 3)[:2] == (E.NONE, None)  # appended again, not answered as a duplicate


def test_torn_journal_tail_and_deleted_topics(tmp_path):
    a = ProducerRegistry(str(tmp_path))
    _, pid, epoch = a.init_producer_id()
    a.record("t", 0, pid, epoch, 0, 1, 0)
    a.record("gone", 0, pid, epoch, 0, 1, 0)
    a.forget_topic("gone")
    crash(a)
    with open(os.path.join(str(tmp_path), "producers", "journal"), "ab") as f:
        f.write(b'{"b":["t",0,')  # a power loss mid-line
    b = ProducerRegistry(str(tmp_path))
    b.check_log("t", 0, 1)
    assert b.check("t", 0, pid, epoch, 0, 1)[:2] == (E.NONE, 0)
    assert not b.needs_check("gone", 0) and b.check("gone", 0, pid, epoch, 5, 1)[:2] == (E.NONE, None)


def test_silent_producers_expire_at_compaction(tmp_path):
    a = ProducerRegistry(str(tmp_path), expiration_ms=60_000)
    _, pid, epoch = a.init_producer_id()
    a.record("t", 0, pid, epoch, 0, 1, 0)
    a.close()
    path = os.path.join(str(tmp_path), "producers", "snapshot.json")
    with open(path) as f:
        snap = json.load(f)
    assert snap["partitions"] and str(pid) in snap["epochs"]
    for row in snap["partitions"]:
        row[4] -= 120_000  # last written two minutes ago
    snap["epochs"][str(pid)][1] -= 120_000
    with open(path, "w") as f:
        json.dump(snap, f)
    b = ProducerRegistry(str(tmp_path), expiration_ms=60_000)
    assert b.check("t", 0, pid, epoch, 7, 1)[:2] == (E.NONE, None)  # forgotten: any sequence is accepted
    assert b.init_producer_id()[1] > pid  # the id counter is not forgotten


def test_a_second_server_on_the_same_directory_does_not_clobber_the_state(tmp_path):
    a = ProducerRegistry(str(tmp_path))
    _, pid, epoch = a.init_producer_id()
    a.record("t", 0, pid, epoch, 0, 1, 0)
    b = ProducerRegistry(str(tmp_path))  # the files are a's: b keeps its state in memory
    b.record("t", 0, pid, epoch, 1, 1, 1)
    b.close()
    a.close()
    c = ProducerRegistry(str(tmp_path))
    c.check_log("t", 0, 10)
    assert c.check("t", 0, pid, epoch, 0, 1)[:2] == (E.NONE, 0)
    assert c.check("t", 0, pid, epoch, 1, 1)[:2] == (E.NONE, None)  # b's batch was never a's


def test_a_batch_journaled_but_not_confirmed_is_pending(tmp_path):
    a = ProducerRegistry(str(tmp_path))
    _, pid, epoch = a.init_producer_id()
    a.begin("t", 0, pid, epoch, 0, 2, 0)
    a.record("t", 0, pid, epoch, 0, 2, 0)
    a.begin("t", 0, pid, epoch, 2, 3, 2)  # the server dies before the append returns
    crash(a)
    b = ProducerRegistry(str(tmp_path))
    b.check_log("t", 0, 5)
    assert b.check("t", 0, pid, epoch, 0, 2) == (E.NONE, 0, True)
    assert b.check("t", 0, pid, epoch, 2, 3) == (E.NONE, 2, False)  # the caller looks at the log
    b.record("t", 0, pid, epoch, 2, 3, 2)  # it was there
    assert b.check("t", 0, pid, epoch, 2, 3) == (E.NONE, 2, True)
    assert b.check("t", 0, pid, epoch, 5, 1) == (E.NONE, None, True)
    crash(b)
    c = ProducerRegistry(str(tmp_path))
    c.check_log("t", 0, 2)  # the log ends before the pending batch: it never landed
    assert c.check("t", 0, pid, epoch, 2, 3)[:2] == (E.NONE, None)


def test_the_producers_directory_is_private(tmp_path):
    """<data>/producers/ is created 0700 like every data directory
    (docs/FORMAT.md), whatever the umask allows."""
    old = os.umask(0o022)
    try:
        r = ProducerRegistry(str(tmp_path))
    finally:
        os.umask(old)
    try:
        assert os.stat(tmp_path / "producers").st_mode & 0o777 == 0o700
    finally:
        r.close()
