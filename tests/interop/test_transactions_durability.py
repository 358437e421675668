"""Transaction state survives a kill -9 of ``arrowlog serve`` and a restart: aborted
batches stay hidden from read_committed readers, an open transaction still holds
the last stable offset (and its staged group offsets stay uncommitted) until it
is aborted, and its old epoch stays fenced."""

from __future__ import annotations

from arrowlog.server import messages as M
from arrowlog.server import txn_messages as TM

from .conftest import ServerProcess
from .test_transactions import (
    PRODUCER_FENCED,
    add_partition,
    committed_offset,
    end_txn,
    fetch_batches,
    init_txn,
    list_offset,
    produce_txn,
)
from .wireclient import call, commit_topics


def test_transactions_survive_kill9_and_restart(tmp_path, topic, group):
    data = tmp_path / "data"
    srv = ServerProcess(data)
    try:
        assert call(srv, M.CREATE_TOPICS, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                                          "replication_factor": 1}]})["topics"][0]["error_code"] == 0
        _, pid, epoch = init_txn(srv, "tx-a")
        assert add_partition(srv, "tx-a", pid, epoch, topic) == 0
        assert produce_txn(srv, "tx-a", topic, pid, epoch, 0)["error_code"] == 0       # 0-1
        assert end_txn(srv, "tx-a", pid, epoch, False) == 0                            # ABORT at 2
        assert add_partition(srv, "tx-a", pid, epoch, topic) == 0
        assert produce_txn(srv, "tx-a", topic, pid, epoch, 2, n=3)["error_code"] == 0  # 3-5
        assert end_txn(srv, "tx-a", pid, epoch, True) == 0                             # COMMIT at 6
        _, open_pid, open_epoch = init_txn(srv, "tx-open")
        producer = {"transactional_id": "tx-open", "producer_id": open_pid, "producer_epoch": open_epoch}
        assert add_partition(srv, "tx-open", open_pid, open_epoch, topic) == 0
        assert produce_txn(srv, "tx-open", topic, open_pid, open_epoch, 0)["error_code"] == 0   # 7-8, left open
        assert call(srv, TM.ADD_OFFSETS_TO_TXN, 3, {**producer, "group_id": group})["error_code"] == 0
        r = call(srv, TM.TXN_OFFSET_COMMIT, 3, {**producer, "group_id": group,
                                                "topics": commit_topics(topic, {0: 5})})
        assert r["topics"][0]["partitions"][0]["error_code"] == 0
        srv.proc.kill()
        srv.proc.wait(30)
    finally:
        srv.stop()

    srv = ServerProcess(data)
    try:
        assert list_offset(srv, topic, committed_only=False) == 9
        assert list_offset(srv, topic, committed_only=True) == 7          # still held by tx-open
        p, batches = fetch_batches(srv, topic, 1)
        assert p["last_stable_offset"] == 7
        assert [(b["base_offset"], b["record_count"] == 0) for b in batches] == [
            (0, True), (2, False), (3, False), (6, False)]                    # the aborted records stay hidden
        assert committed_offset(srv, group, topic) == -1                   # staged, not committed
        # a new producer with tx-open's id aborts what the killed server left open
        code, again_pid, again_epoch = init_txn(srv, "tx-open")
        assert (code, again_pid) == (0, open_pid) and again_epoch > open_epoch
        assert list_offset(srv, topic, committed_only=True) == 10
        _, batches = fetch_batches(srv, topic, 1)
        assert [(b["base_offset"], b["record_count"] == 0) for b in batches] == [
            (0, True), (2, False), (3, False), (6, False), (7, True), (9, False)]
        assert committed_offset(srv, group, topic) == -1
        assert end_txn(srv, "tx-open", open_pid, open_epoch, True) == PRODUCER_FENCED
    finally:
        assert srv.stop() == 0, srv.log()
