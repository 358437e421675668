"""ACL checks of the transactional APIs on an ``arrowlog serve`` with SASL and ACLs:
a principal needs WRITE on the transactional id, then READ on the group and
WRITE (AddPartitionsToTxn) or READ (TxnOffsetCommit) on the topics."""

from __future__ import annotations

import uuid

from arrowlog.server import txn_messages as TM

from .test_security import (  # noqa: F401  (certs, servers: fixtures)
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    certs,
    client_config,
    sasl_conn,
    servers,
)

TXN_ID_DENIED, GROUP_DENIED, TOPIC_DENIED, NOT_ATTEMPTED = 53, 30, 29, 55


def calls(conn, txn_id, topics, group):
    producer = {"transactional_id": txn_id, "producer_id": 1, "producer_epoch": 0}
    added = conn.call(TM.ADD_PARTITIONS_TO_TXN, 3, {
        "v3_and_below_transactional_id": txn_id, "v3_and_below_producer_id": 1, "v3_and_below_producer_epoch": 0,
        "v3_and_below_topics": [{"name": t, "partitions": [0]} for t in topics]})
    offsets = conn.call(TM.ADD_OFFSETS_TO_TXN, 3, {**producer, "group_id": group})
    committed = conn.call(TM.TXN_OFFSET_COMMIT, 3, {**producer, "group_id": group, "topics": [
        {"name": t, "partitions": [{"partition_index": 0, "committed_offset": 1}]} for t in topics]})
    ended = conn.call(TM.END_TXN, 3, {**producer, "committed": True})
    return ([r["results_by_partition"][0]["partition_error_code"] for r in added["results_by_topic_v3_and_below"]],
            offsets["error_code"], [t["partitions"][0]["error_code"] for t in committed["topics"]],
            ended["error_code"])


def test_transactional_apis_need_write_on_the_transactional_id(servers, certs):  # noqa: F811
    srv = servers["SASL_PLAINTEXT"]
    mine, theirs = "t-" + uuid.uuid4().hex[:8], "secret-" + uuid.uuid4().hex[:8]
    txn_id = "tx-alice-" + uuid.uuid4().hex[:8]
    with sasl_conn(srv, certs, "SCRAM-SHA-256", "alice") as conn:
        added, offsets, committed, ended = calls(conn, txn_id, [mine], "g-x")
    assert (added, offsets, committed, ended) == ([TXN_ID_DENIED], TXN_ID_DENIED, [TXN_ID_DENIED], TXN_ID_DENIED)

    admin = AdminClient(client_config(srv, certs, "SASL_PLAINTEXT", "SCRAM-SHA-512", "admin"))
    grant = AclBinding(ResourceType.TRANSACTIONAL_ID, txn_id, ResourcePatternType.LITERAL, "User:alice", "*",
                       AclOperation.WRITE, AclPermissionType.ALLOW)
    for fut in admin.create_acls([grant]).values():
        fut.result(20)
    with sasl_conn(srv, certs, "SCRAM-SHA-256", "alice") as conn:
        added, offsets, committed, _ = calls(conn, txn_id, [mine, theirs], "other-group")
    assert added == [NOT_ATTEMPTED, TOPIC_DENIED]
    assert offsets == GROUP_DENIED and committed == [GROUP_DENIED, GROUP_DENIED]
    with sasl_conn(srv, certs, "SCRAM-SHA-256", "alice") as conn:
        _, offsets, committed, _ = calls(conn, txn_id, [mine, theirs], "g-" + uuid.uuid4().hex[:6])
    # AddOffsetsToTxn passes the checks: the coordinator answers (producer id 1 is not this id's)
    assert offsets == 49 and committed == [NOT_ATTEMPTED, TOPIC_DENIED]
