"""The transaction coordinator's state (server/transactions.py), without a server:
last stable offsets, markers, the timeout, and what a restart reads back."""

from __future__ import annotations

import os

from arrowlog.server import errors as E
from arrowlog.server import txn_coordinator as T
from arrowlog.server import txn_state as S
from arrowlog.server.producers import ProducerRegistry


class FakePartition:
    def __init__(self):
        self.high_watermark = 0
        self.log_start_offset = 0
        self.markers = []

    def append(self, batch):
        self.markers.append(batch.column("headers")[0].as_py()[0]["value"])
        self.high_watermark += 1
        return self.high_watermark - 1


class FakeOffsets:
    def __init__(self):
        self.committed = {}

    def commit(self, group, updates):
        self.committed.setdefault(group, {}).update(updates)


def coordinator(data, parts, offsets=None):
    def partition(topic, index):
        pl = parts.setdefault((topic, index), FakePartition())
        return pl, E.NONE, None
    return T.TransactionCoordinator(str(data), ProducerRegistry(None), offsets or FakeOffsets(), partition,
                                    lambda pl: None)


def produce(txns, parts, topic, pid, epoch, n):
    pl = parts.setdefault((topic, 0), FakePartition())
    assert txns.check_batch(topic, 0, pid, epoch) == E.NONE
    expected = pl.high_watermark
    txns.begin_batch(topic, 0, pid, expected, n)
    pl.high_watermark += n
    txns.end_batch(topic, 0, pid, expected, expected)
    return expected


def test_open_transaction_holds_the_stable_offset_until_it_ends(tmp_path):
    parts = {}
    offsets = FakeOffsets()
    txns = coordinator(tmp_path, parts, offsets)
    code, pid, epoch = txns.init_producer_id("app", 60000)
    assert code == E.NONE
    assert txns.add_offsets("app", pid, epoch, "g") == E.NONE
    assert txns.txn_offset_commit("app", pid, epoch, "g", {"in": {0: {"offset": 7}}}) == E.NONE
    base = produce(txns, parts, "out", pid, epoch, 3)
    assert txns.last_stable_offset("out", 0, 3) == base == 0
    assert offsets.committed == {}
    assert txns.end_txn("app", pid, epoch, commit=True) == E.NONE
    assert parts[("out", 0)].markers == [b"COMMIT"] and txns.control_at("out", 0, 3) == (pid, epoch)
    assert txns.last_stable_offset("out", 0, 4) == 4
    assert offsets.committed == {"g": {"in": {0: {"offset": 7}}}}
    assert txns.end_txn("app", pid, epoch, commit=False) == T.INVALID_TXN_STATE


def test_timeout_aborts_and_fences(tmp_path):
    parts = {}
    txns = coordinator(tmp_path, parts)
    _, pid, epoch = txns.init_producer_id("slow", 1000)
    base = produce(txns, parts, "out", pid, epoch, 2)
    start = txns.txns["slow"].start_ms
    assert txns.expire(now_ms=start + 1000) == []           # not yet
    assert txns.expire(now_ms=start + 1001) == ["slow"]
    assert txns.is_aborted("out", 0, base) and parts[("out", 0)].markers == [b"ABORT"]
    assert txns.last_stable_offset("out", 0, 3) == 3
    assert txns.end_txn("slow", pid, epoch, commit=True) == T.PRODUCER_FENCED
    assert txns.check_batch("out", 0, pid, epoch) == E.INVALID_PRODUCER_EPOCH


def test_restart_reads_the_journal_back_and_skips_a_torn_line(tmp_path):
    parts = {}
    txns = coordinator(tmp_path, parts)
    _, pid, epoch = txns.init_producer_id("a", 60000)
    aborted = produce(txns, parts, "t", pid, epoch, 2)
    assert txns.end_txn("a", pid, epoch, commit=False) == E.NONE
    open_base = produce(txns, parts, "t", pid, epoch, 1)
    with open(os.path.join(tmp_path, "transactions", "journal"), "ab") as f:
        f.write(b'{"x": {"id": "torn", "pi')                 # a power loss mid-line
    again = coordinator(tmp_path, parts)                     # no close(): as after kill -9
    assert again.is_aborted("t", 0, aborted) and not again.is_aborted("t", 0, open_base)
    assert again.last_stable_offset("t", 0, 10) == open_base
    assert "torn" not in again.txns
    code, pid2, epoch2 = again.init_producer_id("a", 60000)  # aborts the open one, fences the old epoch
    assert (code, pid2) == (E.NONE, pid) and epoch2 > epoch
    assert again.is_aborted("t", 0, open_base) and again.last_stable_offset("t", 0, 10) == 10


def test_refusals():
    txns = T.TransactionCoordinator(None, ProducerRegistry(None), FakeOffsets(), None, None)
    assert txns.init_producer_id("x", 0)[0] == T.INVALID_TRANSACTION_TIMEOUT
    assert txns.init_producer_id("x", T.TRANSACTION_MAX_TIMEOUT_MS + 1)[0] == T.INVALID_TRANSACTION_TIMEOUT
    assert txns.check_batch("t", 0, 999, 0) == T.INVALID_PRODUCER_ID_MAPPING
    _, pid, epoch = txns.init_producer_id("x", 1000)
    assert txns.txn_offset_commit("x", pid, epoch, "g", {}) == T.INVALID_TXN_STATE   # no AddOffsetsToTxn
    assert txns.add_offsets("x", pid + 1, epoch, "g") == T.INVALID_PRODUCER_ID_MAPPING
    assert txns.add_offsets("x", pid, epoch + 1, "g") == E.INVALID_PRODUCER_EPOCH


def test_compaction_forgets_expired_ids_and_what_retention_removed(tmp_path):
    parts = {}
    txns = coordinator(tmp_path, parts)
    _, pid, epoch = txns.init_producer_id("old", 60000)
    aborted = produce(txns, parts, "t", pid, epoch, 2)
    assert txns.end_txn("old", pid, epoch, commit=False) == E.NONE      # ABORT marker at 2
    _, other, other_epoch = txns.init_producer_id("open", 60000)
    produce(txns, parts, "t", other, other_epoch, 1)                  # open at 3
    txns.txns["old"].last_ms -= S.TRANSACTIONAL_ID_EXPIRATION_MS + 1
    txns.txns["open"].last_ms -= S.TRANSACTIONAL_ID_EXPIRATION_MS + 1  # open: kept however old
    parts[("t", 0)].log_start_offset = 3                               # retention removed 0-2
    txns.compact()
    assert set(txns.txns) == {"open"}
    assert not txns.is_aborted("t", 0, aborted) and txns.control_at("t", 0, 2) is None
    again = coordinator(tmp_path, parts)
    assert set(again.txns) == {"open"} and again.last_stable_offset("t", 0, 10) == 3


def test_restart_forgets_offsets_the_log_lost(tmp_path):
    parts = {}
    txns = coordinator(tmp_path, parts)
    _, pid, epoch = txns.init_producer_id("a", 60000)
    aborted = produce(txns, parts, "t", pid, epoch, 2)                # 0-1
    assert txns.end_txn("a", pid, epoch, commit=False) == E.NONE      # ABORT at 2
    later = produce(txns, parts, "t", pid, epoch, 2)                  # 3-4, open
    parts[("t", 0)].high_watermark = 2     # a power loss: the log kept 0-1 only
    again = coordinator(tmp_path, parts)
    assert again.is_aborted("t", 0, aborted)
    assert again.control_at("t", 0, 2) is None and not again.is_aborted("t", 0, later)
    assert again.last_stable_offset("t", 0, 2) == 2
    assert again.txns["a"].partitions[("t", 0)] == []


def library(data, parts):
    """A coordinator as a transactional in-process producer opens it (no registry, no owner)."""
    def partition(topic, index):
        return parts.setdefault((topic, index), FakePartition()), E.NONE, None
    return T.TransactionCoordinator(str(data), None, FakeOffsets(), partition, lambda pl: None, owner=False)


def test_two_processes_share_one_state_through_the_journal(tmp_path):
    parts = {}
    server = coordinator(tmp_path, parts)                     # as arrowlog serve opens it
    lib = library(tmp_path, parts)                            # another process on the same directory
    _, pid, epoch = lib.init_producer_id("lib", 60000)
    assert pid >= T.LOCAL_PID_BASE and epoch == 0             # never an id the server's registry hands out
    base = produce(lib, parts, "t", pid, epoch, 2)
    assert server.last_stable_offset("t", 0, 2) == base       # the server reads what the library wrote
    _, wpid, wepoch = server.init_producer_id("lib", 60000)   # the server fences the library producer
    assert (wpid, wepoch) == (pid, epoch + 1) and server.is_aborted("t", 0, base)
    assert lib.check_batch("t", 0, pid, epoch) == E.INVALID_PRODUCER_EPOCH
    assert lib.end_txn("lib", pid, epoch, commit=True) == T.PRODUCER_FENCED
    server.compact()                                          # a new snapshot: the library reads it all again
    assert lib.last_stable_offset("t", 0, 10) == 10 and lib.is_aborted("t", 0, base)
    assert lib.init_producer_id("lib", 60000)[1:] == (pid, epoch + 2)
    assert server.describe()[0]["producer_epoch"] == epoch + 2


def test_a_batch_in_flight_when_another_process_aborts_its_transaction_stays_aborted(tmp_path):
    parts = {}
    server = coordinator(tmp_path, parts)
    lib = library(tmp_path, parts)
    _, pid, epoch = server.init_producer_id("w", 1000)
    pl = parts.setdefault(("t", 0), FakePartition())
    assert server.check_batch("t", 0, pid, epoch) == E.NONE
    server.begin_batch("t", 0, pid, 0, 2)                    # the server is about to append at 0...
    start = server.txns["w"].start_ms
    assert lib.expire(now_ms=start + 1001) == ["w"]           # ...another process times it out: ABORT at 0
    pl.high_watermark += 2                                    # the batch lands after the marker, at 1
    server.end_batch("t", 0, pid, 0, 1)
    assert server.is_aborted("t", 0, 1) and not server.is_aborted("t", 0, 0)
    assert lib.last_stable_offset("t", 0, 3) == 3
    lib._refresh()
    assert lib.is_aborted("t", 0, 1) and not lib.is_aborted("t", 0, 0)


def test_unreadable_state_files_are_skipped_with_a_word(tmp_path, caplog):
    parts = {}
    os.makedirs(tmp_path / "transactions")
    (tmp_path / "transactions" / "snapshot.json").write_text("[1, 2]")          # JSON, not a snapshot
    (tmp_path / "transactions" / "journal").write_text('5\n["a"]\n{"a": 1}\n')   # lines that are not events
    lib = library(tmp_path, parts)
    _, pid, epoch = lib.init_producer_id("a", 60000)                          # the state starts empty
    assert list(lib.txns) == ["a"]
    assert "snapshot" in caplog.text and "unreadable line" in caplog.text


def test_stable_offset_of_a_partition_the_open_transaction_did_not_write_to(tmp_path):
    """The first offsets of open transactions are cached per partition; the cache is built
    on the first question after a change, and that answer must be the asked partition's."""
    parts = {}
    txns = coordinator(tmp_path, parts)
    _, pid, epoch = txns.init_producer_id("a", 60000)
    parts[("t", 1)] = FakePartition()
    parts[("t", 1)].high_watermark = 5
    assert txns.check_batch("t", 1, pid, epoch) == E.NONE
    txns.begin_batch("t", 1, pid, 5, 2)                      # open on t-1 at 5; nothing open on t-0
    txns.end_batch("t", 1, pid, 5, 5)
    assert txns.last_stable_offset("t", 0, 9) == 9           # first question after the change
    assert txns.last_stable_offset("t", 1, 7) == 5
    assert txns.last_stable_offset("t", 0, 9) == 9


def test_add_partitions_refused_for_an_unknown_partition_opens_no_transaction(tmp_path):
    """Kafka adds nothing when one partition is unknown: the transaction stays as it was, so
    no timeout later aborts it and fences the producer that asked."""
    txns = coordinator(tmp_path, {})
    _, pid, epoch = txns.init_producer_id("a", 1000)
    codes = txns.add_partitions("a", pid, epoch, [("t", 0), ("gone", 0)], lambda topic, p: topic == "t")
    assert codes == {("t", 0): T.OPERATION_NOT_ATTEMPTED, ("gone", 0): E.UNKNOWN_TOPIC_OR_PARTITION}
    assert txns.txns["a"].state == S.EMPTY
    assert txns.expire(now_ms=S._now_ms() + 10_000) == []
    assert txns.add_partitions("a", pid, epoch, [("t", 0)], lambda topic, p: True) == {("t", 0): E.NONE}
