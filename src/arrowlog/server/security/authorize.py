"""Per-request ACL checks, wrapped around the broker's handlers.

For each API: which operation on which resource it needs, and what the
answer says when it is refused (Kafka's choices):

    Produce         WRITE topic                       TOPIC_AUTHORIZATION_FAILED per partition
    Fetch           READ topic                        TOPIC_AUTHORIZATION_FAILED per partition
    ListOffsets     DESCRIBE topic                    TOPIC_AUTHORIZATION_FAILED per partition
    Metadata        DESCRIBE topic (listing all: unlisted); auto-create needs CREATE on
                    the cluster or the topic
    CreateTopics    CREATE cluster or topic           per topic
    DeleteTopics    DELETE topic                      per topic
    DescribeConfigs DESCRIBE_CONFIGS topic / cluster  per resource
    FindCoordinator DESCRIBE group / transactional id GROUP_AUTHORIZATION_FAILED / 53
    Join/Sync/Heartbeat/Leave  READ group             GROUP_AUTHORIZATION_FAILED
    OffsetCommit    READ group, READ topic            30 for all / 29 per topic
    OffsetFetch     DESCRIBE group, DESCRIBE topic    30 / 29 per topic (listing all: unlisted)
    DescribeGroups  DESCRIBE group                    per group
    ListGroups      DESCRIBE cluster, else the groups the principal may DESCRIBE
    InitProducerId  WRITE transactional id, else IDEMPOTENT_WRITE cluster or WRITE on a topic
    AddPartitionsToTxn  WRITE transactional id, WRITE topic   53 for all / 29 per topic (others 55)
    AddOffsetsToTxn WRITE transactional id, READ group    53 / 30
    EndTxn          WRITE transactional id                53
    TxnOffsetCommit WRITE transactional id, READ group, READ topic  53 / 30 for all / 29 per topic
    DescribeCluster, ApiVersions: no check

Refused topics are taken out of the request before the broker sees it and
their error entries are added to its answer, so the broker never acts on
them (and never auto-creates them).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .. import errors as E
from . import acl as A

_GROUP_APIS = {11, 12, 13, 14}


def authorize_and_handle(authorizer, principal: str, host: str, ctx, req: dict, broker):
    handler = broker.handlers[ctx.api_key]
    if not authorizer.enabled or principal in authorizer.super_users:
        return handler(ctx, req)

    def allowed(op, rtype, name):
        return authorizer.authorize(principal, host, op, rtype, name)

    check = _CHECKS.get(ctx.api_key)
    if check is None:
        return handler(ctx, req)
    return check(allowed, authorizer, principal, host, ctx, req, handler, broker)


def _then(result, finish):
    """Apply ``finish`` to a handler's answer, awaiting it first if needed."""
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        async def later():
            return finish(await result)
        return later()
    return finish(result)


def _split(items, name_of, ok):
    keep: list = []
    refused: list = []
    for item in items:
        (keep if ok(name_of(item)) else refused).append(item)
    return keep, refused


def _topic_filter(list_key, name_key, op, resp_key, denied_entry):
    """A check that refuses the topics ``op`` is not allowed on and answers them with ``denied_entry``."""
    def check(allowed, authorizer, principal, host, ctx, req, handler, broker):
        keep, refused = _split(req[list_key], lambda t: t[name_key], lambda n: allowed(op, A.TOPIC, n))
        if not refused:
            return handler(ctx, req)
        req = {**req, list_key: keep}
        if ctx.api_key == 1:   # Fetch: do not long-poll on the topics that remain
            req["max_wait_ms"] = 0

        def finish(resp):
            if resp is None:
                return None
            resp[resp_key] = list(resp.get(resp_key) or []) + [denied_entry(t) for t in refused]
            return resp
        return _then(handler(ctx, req), finish)
    return check


_produce = _topic_filter("topic_data", "name", A.WRITE, "responses", lambda t: {
    "name": t["name"], "partition_responses": [
        {"index": p["index"], "error_code": E.TOPIC_AUTHORIZATION_FAILED, "base_offset": -1}
        for p in t["partition_data"]]})

_fetch = _topic_filter("topics", "topic", A.READ, "responses", lambda t: {
    "topic": t["topic"], "partitions": [
        {"partition_index": p["partition"], "error_code": E.TOPIC_AUTHORIZATION_FAILED,
         "high_watermark": -1, "last_stable_offset": -1, "log_start_offset": -1,
         "aborted_transactions": None, "records": b""} for p in t["partitions"]]})

_list_offsets = _topic_filter("topics", "name", A.DESCRIBE, "topics", lambda t: {
    "name": t["name"], "partitions": [
        {"partition_index": p["partition_index"], "error_code": E.TOPIC_AUTHORIZATION_FAILED}
        for p in t["partitions"]]})

_create_topics_denied = _topic_filter("topics", "name", A.CREATE, "topics", lambda t: {
    "name": t["name"], "error_code": E.TOPIC_AUTHORIZATION_FAILED,
    "error_message": f"not authorised to create topic {t['name']!r}"})


def _create_topics(allowed, authorizer, principal, host, ctx, req, handler, broker):
    if allowed(A.CREATE, A.CLUSTER, A.CLUSTER_NAME):
        return handler(ctx, req)
    return _create_topics_denied(allowed, authorizer, principal, host, ctx, req, handler, broker)


def _metadata(allowed, authorizer, principal, host, ctx, req, handler, broker):
    requested = req["topics"]
    if requested is None or (ctx.version == 0 and not requested):
        def finish(resp):
            resp["topics"] = [t for t in resp["topics"] if allowed(A.DESCRIBE, A.TOPIC, t["name"])]
            return resp
        return finish(handler(ctx, req))
    names = [t["name"] if t["name"] is not None else broker.store.topic_by_id(t["topic_id"]) or ""
             for t in requested]
    keep = [{**t, "name": n} for t, n in zip(requested, names) if allowed(A.DESCRIBE, A.TOPIC, n)]
    refused = [n for n in names if not allowed(A.DESCRIBE, A.TOPIC, n)]
    req = {**req, "topics": keep}
    if req["allow_auto_topic_creation"] and not allowed(A.CREATE, A.CLUSTER, A.CLUSTER_NAME):
        may_create = all(allowed(A.CREATE, A.TOPIC, t["name"]) for t in keep
                         if broker.store.topic(t["name"]) is None)
        req["allow_auto_topic_creation"] = may_create
    resp = handler(ctx, req)
    resp["topics"] = list(resp["topics"]) + [
        {"error_code": E.TOPIC_AUTHORIZATION_FAILED, "name": n, "partitions": [], "topic_id": bytes(16)}
        for n in refused]
    return resp


def _delete_topics(allowed, authorizer, principal, host, ctx, req, handler, broker):
    if ctx.version >= 6:
        named = [(t, t["name"] or broker.store.topic_by_id(t["topic_id"]) or "") for t in req["topics"]]
        keep = [t for t, n in named if allowed(A.DELETE, A.TOPIC, n)]
        refused = [(n, t["topic_id"]) for t, n in named if not allowed(A.DELETE, A.TOPIC, n)]
        req = {**req, "topics": keep}
    else:
        keep, refused_names = _split(req["topic_names"], lambda n: n, lambda n: allowed(A.DELETE, A.TOPIC, n))
        refused = [(n, bytes(16)) for n in refused_names]
        req = {**req, "topic_names": keep}
    resp = handler(ctx, req)
    resp["responses"] = list(resp["responses"]) + [
        {"name": n, "topic_id": tid, "error_code": E.TOPIC_AUTHORIZATION_FAILED,
         "error_message": f"not authorised to delete topic {n!r}"} for n, tid in refused]
    return resp


def _describe_configs(allowed, authorizer, principal, host, ctx, req, handler, broker):
    def ok(r):
        if r["resource_type"] == A.TOPIC:
            return allowed(A.DESCRIBE_CONFIGS, A.TOPIC, r["resource_name"])
        return allowed(A.DESCRIBE_CONFIGS, A.CLUSTER, A.CLUSTER_NAME)
    keep, refused = _split(req["resources"], lambda r: r, ok)
    resp = handler(ctx, {**req, "resources": keep})
    resp["results"] = list(resp["results"]) + [
        {"error_code": E.TOPIC_AUTHORIZATION_FAILED if r["resource_type"] == A.TOPIC
         else E.CLUSTER_AUTHORIZATION_FAILED, "error_message": "not authorised",
         "resource_type": r["resource_type"], "resource_name": r["resource_name"], "configs": []}
        for r in refused]
    return resp


def _find_coordinator(allowed, authorizer, principal, host, ctx, req, handler, broker):
    if req.get("key_type", 0) == 1:
        if not allowed(A.DESCRIBE, A.TRANSACTIONAL_ID, req["key"]):
            return {"error_code": E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "error_message": "not authorised",
                    "node_id": -1, "host": "", "port": -1}
    elif not allowed(A.DESCRIBE, A.GROUP, req["key"]):
        return {"error_code": E.GROUP_AUTHORIZATION_FAILED, "error_message": "not authorised",
                "node_id": -1, "host": "", "port": -1}
    return handler(ctx, req)


def _group_member(allowed, authorizer, principal, host, ctx, req, handler, broker):
    if allowed(A.READ, A.GROUP, req["group_id"]):
        return handler(ctx, req)
    resp: dict[str, Any] = {"error_code": E.GROUP_AUTHORIZATION_FAILED}
    if ctx.api_key == 13 and ctx.version >= 3:
        resp["members"] = []
    return resp


def _offset_commit(allowed, authorizer, principal, host, ctx, req, handler, broker):
    if not allowed(A.READ, A.GROUP, req["group_id"]):
        return {"topics": [{"name": t["name"], "partitions": [
            {"partition_index": p["partition_index"], "error_code": E.GROUP_AUTHORIZATION_FAILED}
            for p in t["partitions"]]} for t in req["topics"]]}
    return _offset_commit_topics(allowed, authorizer, principal, host, ctx, req, handler, broker)


_offset_commit_topics = _topic_filter("topics", "name", A.READ, "topics", lambda t: {
    "name": t["name"], "partitions": [
        {"partition_index": p["partition_index"], "error_code": E.TOPIC_AUTHORIZATION_FAILED}
        for p in t["partitions"]]})


def _offset_fetch(allowed, authorizer, principal, host, ctx, req, handler, broker):
    if not allowed(A.DESCRIBE, A.GROUP, req["group_id"]):
        return {"error_code": E.GROUP_AUTHORIZATION_FAILED, "topics": [
            {"name": t["name"], "partitions": [
                {"partition_index": i, "committed_offset": -1, "metadata": "",
                 "error_code": E.GROUP_AUTHORIZATION_FAILED} for i in t["partition_indexes"]]}
            for t in req["topics"] or []]}
    if req["topics"] is None:
        resp = handler(ctx, req)
        resp["topics"] = [t for t in resp["topics"] if allowed(A.DESCRIBE, A.TOPIC, t["name"])]
        return resp
    return _offset_fetch_topics(allowed, authorizer, principal, host, ctx, req, handler, broker)


_offset_fetch_topics = _topic_filter("topics", "name", A.DESCRIBE, "topics", lambda t: {
    "name": t["name"], "partitions": [
        {"partition_index": i, "committed_offset": -1, "metadata": "",
         "error_code": E.TOPIC_AUTHORIZATION_FAILED} for i in t["partition_indexes"]]})


def _describe_groups(allowed, authorizer, principal, host, ctx, req, handler, broker):
    keep, refused = _split(req["groups"], lambda g: g, lambda g: allowed(A.DESCRIBE, A.GROUP, g))
    resp = handler(ctx, {**req, "groups": keep})
    resp["groups"] = list(resp["groups"]) + [
        {"error_code": E.GROUP_AUTHORIZATION_FAILED, "group_id": g, "group_state": "",
         "protocol_type": "", "protocol_data": "", "members": []} for g in refused]
    return resp


def _list_groups(allowed, authorizer, principal, host, ctx, req, handler, broker):
    resp = handler(ctx, req)
    if not allowed(A.DESCRIBE, A.CLUSTER, A.CLUSTER_NAME):
        resp["groups"] = [g for g in resp["groups"] if allowed(A.DESCRIBE, A.GROUP, g["group_id"])]
    return resp


def _init_producer_id(allowed, authorizer, principal, host, ctx, req, handler, broker):
    tid = req["transactional_id"]
    if tid is not None:
        if not allowed(A.WRITE, A.TRANSACTIONAL_ID, tid):
            return {"error_code": E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "producer_id": -1,
                    "producer_epoch": -1}
    elif not (allowed(A.IDEMPOTENT_WRITE, A.CLUSTER, A.CLUSTER_NAME)
              or authorizer.authorize_any_topic(principal, host, A.WRITE)):
        return {"error_code": E.CLUSTER_AUTHORIZATION_FAILED, "producer_id": -1, "producer_epoch": -1}
    return handler(ctx, req)


def _produce_with_txn(allowed, authorizer, principal, host, ctx, req, handler, broker):
    tid = req.get("transactional_id")
    if tid is not None and not allowed(A.WRITE, A.TRANSACTIONAL_ID, tid):
        if req["acks"] == 0:
            return None
        return {"responses": [{"name": t["name"], "partition_responses": [
            {"index": p["index"], "error_code": E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "base_offset": -1}
            for p in t["partition_data"]]} for t in req["topic_data"]]}
    return _produce(allowed, authorizer, principal, host, ctx, req, handler, broker)


def _txn_checks():
    """Checks of the transactional APIs (server/transactions.py): the transactional id
    first, then the group, then the topics; a refusal answers without the handler."""
    def per_partition(topics, index_of, code_of, code_key, entry_key):
        return [{"name": t["name"], entry_key: [{"partition_index": index_of(p), code_key: code_of(t["name"])}
                                                for p in t["partitions"]]} for t in topics]

    def add_partitions(allowed, authorizer, principal, host, ctx, req, handler, broker):
        topics = req["v3_and_below_topics"]
        if not allowed(A.WRITE, A.TRANSACTIONAL_ID, req["v3_and_below_transactional_id"]):
            def code(name):
                return E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        else:
            denied = {t["name"] for t in topics if not allowed(A.WRITE, A.TOPIC, t["name"])}
            if not denied:
                return handler(ctx, req)

            def code(name):
                return E.TOPIC_AUTHORIZATION_FAILED if name in denied else 55   # OPERATION_NOT_ATTEMPTED
        return {"results_by_topic_v3_and_below": per_partition(topics, lambda p: p, code, "partition_error_code",
                                                               "results_by_partition")}

    def with_group(allowed, authorizer, principal, host, ctx, req, handler, broker):
        if not allowed(A.WRITE, A.TRANSACTIONAL_ID, req["transactional_id"]):
            return {"error_code": E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
        if not allowed(A.READ, A.GROUP, req["group_id"]):
            return {"error_code": E.GROUP_AUTHORIZATION_FAILED}
        return handler(ctx, req)

    def end_txn(allowed, authorizer, principal, host, ctx, req, handler, broker):
        if not allowed(A.WRITE, A.TRANSACTIONAL_ID, req["transactional_id"]):
            return {"error_code": E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
        return handler(ctx, req)

    def txn_offset_commit(allowed, authorizer, principal, host, ctx, req, handler, broker):
        if not allowed(A.WRITE, A.TRANSACTIONAL_ID, req["transactional_id"]):
            refused = E.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        elif not allowed(A.READ, A.GROUP, req["group_id"]):
            refused = E.GROUP_AUTHORIZATION_FAILED
        else:
            denied = {t["name"] for t in req["topics"] if not allowed(A.READ, A.TOPIC, t["name"])}
            if not denied:
                return handler(ctx, req)
            refused = None

        def code(name):
            return refused if refused is not None else (E.TOPIC_AUTHORIZATION_FAILED if name in denied else 55)
        return {"topics": per_partition(req["topics"], lambda p: p["partition_index"], code, "error_code",
                                        "partitions")}

    return {24: add_partitions, 25: with_group, 26: end_txn, 28: txn_offset_commit}


# ---- admin APIs (Kafka's ACL requirements for each)
_create_partitions = _topic_filter("topics", "name", A.ALTER, "results", lambda t: {
    "name": t["name"], "error_code": E.TOPIC_AUTHORIZATION_FAILED,
    "error_message": f"not authorised to alter topic {t['name']!r}"})

_delete_records = _topic_filter("topics", "name", A.DELETE, "topics", lambda t: {
    "name": t["name"], "partitions": [
        {"partition_index": p["partition_index"], "low_watermark": -1,
         "error_code": E.TOPIC_AUTHORIZATION_FAILED} for p in t["partitions"]]})

_describe_producers = _topic_filter("topics", "name", A.READ, "topics", lambda t: {
    "name": t["name"], "partitions": [
        {"partition_index": i, "error_code": E.TOPIC_AUTHORIZATION_FAILED, "error_message": "not authorised",
         "active_producers": []} for i in t["partition_indexes"]]})


def _alter_configs(allowed, authorizer, principal, host, ctx, req, handler, broker):
    def ok(r):
        if r["resource_type"] == A.TOPIC:
            return allowed(A.ALTER_CONFIGS, A.TOPIC, r["resource_name"])
        return allowed(A.ALTER_CONFIGS, A.CLUSTER, A.CLUSTER_NAME)
    keep, refused = _split(req["resources"], lambda r: r, ok)

    def finish(resp):
        resp["responses"] = list(resp["responses"]) + [
            {"error_code": E.TOPIC_AUTHORIZATION_FAILED if r["resource_type"] == A.TOPIC
             else E.CLUSTER_AUTHORIZATION_FAILED, "error_message": "not authorised",
             "resource_type": r["resource_type"], "resource_name": r["resource_name"]} for r in refused]
        return resp
    return _then(handler(ctx, {**req, "resources": keep}), finish)


def _delete_groups(allowed, authorizer, principal, host, ctx, req, handler, broker):
    keep, refused = _split(req["groups_names"], lambda g: g, lambda g: allowed(A.DELETE, A.GROUP, g))
    resp = handler(ctx, {**req, "groups_names": keep})
    resp["results"] = list(resp["results"]) + [
        {"group_id": g, "error_code": E.GROUP_AUTHORIZATION_FAILED} for g in refused]
    return resp


def _offset_delete(allowed, authorizer, principal, host, ctx, req, handler, broker):
    if not allowed(A.DELETE, A.GROUP, req["group_id"]):
        return {"error_code": E.GROUP_AUTHORIZATION_FAILED, "topics": []}
    return _offset_delete_topics(allowed, authorizer, principal, host, ctx, req, handler, broker)


_offset_delete_topics = _topic_filter("topics", "name", A.READ, "topics", lambda t: {
    "name": t["name"], "partitions": [
        {"partition_index": p["partition_index"], "error_code": E.TOPIC_AUTHORIZATION_FAILED}
        for p in t["partitions"]]})


def _cluster_op(op, denied):
    """A check that needs ``op`` on the cluster for the whole request."""
    def check(allowed, authorizer, principal, host, ctx, req, handler, broker):
        if allowed(op, A.CLUSTER, A.CLUSTER_NAME):
            return handler(ctx, req)
        return denied(req)
    return check


_elect_leaders = _cluster_op(A.ALTER, lambda req: {"error_code": E.CLUSTER_AUTHORIZATION_FAILED,
                                                    "replica_election_results": []})
_alter_reassignments = _cluster_op(A.ALTER, lambda req: {
    "error_code": E.CLUSTER_AUTHORIZATION_FAILED, "error_message": "not authorised", "responses": []})
_list_reassignments = _cluster_op(A.DESCRIBE, lambda req: {
    "error_code": E.CLUSTER_AUTHORIZATION_FAILED, "error_message": "not authorised", "topics": []})


_CHECKS = {
    0: _produce_with_txn, 1: _fetch, 2: _list_offsets, 3: _metadata, 8: _offset_commit,
    9: _offset_fetch, 10: _find_coordinator, 15: _describe_groups, 16: _list_groups,
    19: _create_topics, 20: _delete_topics, 22: _init_producer_id, 32: _describe_configs,
    37: _create_partitions, 33: _alter_configs, 44: _alter_configs, 21: _delete_records, 42: _delete_groups,
    47: _offset_delete, 61: _describe_producers, 43: _elect_leaders, 45: _alter_reassignments,
    46: _list_reassignments,
    **{k: _group_member for k in _GROUP_APIS}, **_txn_checks(),
}
