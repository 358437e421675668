"""Kafka's offset.metadata.max.bytes (4096): OffsetCommit and TxnOffsetCommit refuse a partition whose
metadata is longer with OFFSET_METADATA_TOO_LARGE (12), and store the others of the same request. Without
the limit any client could store 32 KB of metadata per partition in every commit record (review8)."""

from __future__ import annotations

from arrowlog.server import messages as M
from arrowlog.server import txn_messages as TM
from arrowlog.server.offsets import OFFSET_METADATA_MAX_CHARS

from .wireclient import call

LIMIT = OFFSET_METADATA_MAX_CHARS
TOO_LARGE = 12


def two_partitions(server, topic: str) -> str:
    resp = call(server, M.CREATE_TOPICS, 7, {"topics": [{"name": topic, "num_partitions": 2,
                                                         "replication_factor": 1}]})
    assert resp["topics"][0]["error_code"] == 0
    return topic


def commits(topic: str, metadata: list[str]) -> list[dict]:
    """One partition per metadata string, partition i at offset 10 + i."""
    return [{"name": topic, "partitions": [
        {"partition_index": i, "committed_offset": 10 + i, "committed_leader_epoch": -1, "committed_metadata": m}
        for i, m in enumerate(metadata)]}]


def fetched(server, group: str, topic: str) -> list[tuple[int, str]]:
    r = call(server, M.OFFSET_FETCH, 6, {"group_id": group, "topics": [{"name": topic, "partition_indexes": [0, 1]}]})
    return [(p["committed_offset"], p["metadata"]) for p in r["topics"][0]["partitions"]]


def codes(resp: dict) -> list[int]:
    return [p["error_code"] for t in resp["topics"] for p in t["partitions"]]


def test_offset_commit_refuses_metadata_over_the_limit_and_stores_the_rest(server, topic, group):
    two_partitions(server, topic)
    resp = call(server, M.OFFSET_COMMIT, 8, {"group_id": group, "generation_id": -1, "member_id": "",
                                             "group_instance_id": None,
                                             "topics": commits(topic, ["m" * LIMIT, "m" * (LIMIT + 1)])})
    assert codes(resp) == [0, TOO_LARGE]
    assert fetched(server, group, topic) == [(10, "m" * LIMIT), (-1, "")]


def test_txn_offset_commit_refuses_metadata_over_the_limit(server, topic, group):
    two_partitions(server, topic)
    txn_id = "tx-meta-" + topic
    r = call(server, M.INIT_PRODUCER_ID, 4, {"transactional_id": txn_id, "transaction_timeout_ms": 60000})
    producer = {"transactional_id": txn_id, "producer_id": r["producer_id"], "producer_epoch": r["producer_epoch"]}
    assert call(server, TM.ADD_OFFSETS_TO_TXN, 3, {**producer, "group_id": group})["error_code"] == 0
    resp = call(server, TM.TXN_OFFSET_COMMIT, 3, {**producer, "group_id": group,
                                                  "topics": commits(topic, ["x" * (LIMIT + 1), "ok"])})
    assert codes(resp) == [TOO_LARGE, 0]
    assert call(server, TM.END_TXN, 3, {**producer, "committed": True})["error_code"] == 0
    assert fetched(server, group, topic) == [(-1, ""), (11, "ok")]


def test_a_null_metadata_is_not_too_large(server, topic, group):
    two_partitions(server, topic)
    resp = call(server, M.OFFSET_COMMIT, 8, {"group_id": group, "generation_id": -1, "member_id": "",
                                             "group_instance_id": None, "topics": commits(topic, [None])})
    assert codes(resp) == [0]
    assert fetched(server, group, topic)[0] == (10, "")
