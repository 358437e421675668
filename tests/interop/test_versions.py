"""Every API at every version arrowlog advertises, against the live server.

Requests are written with the server's own schema tables (which
tests/unit/test_kafka_messages.py checks against Kafka's definitions);
every response is decoded twice: by our tables, which must consume it
exactly, and by kafka-python 3's independent protocol classes (a test-only
oracle), which must agree on the error codes.
"""

from __future__ import annotations

import uuid

import pytest

from arrowlog.server import messages as M

from .wireclient import commit_topics, make_batch, send

kp_protocol = pytest.importorskip("kafka.protocol.api_message")


def _oracle_class(api_name: str):
    import kafka.protocol.admin  # noqa: F401  (registers the message classes)
    import kafka.protocol.consumer  # noqa: F401
    import kafka.protocol.metadata  # noqa: F401
    import kafka.protocol.producer  # noqa: F401

    def walk(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from walk(sub)

    for cls in walk(kp_protocol.ApiMessage):
        if cls.__name__ == api_name + "Response" and getattr(cls, "_class_version", None) is None:
            return cls
    raise LookupError(api_name)


def exchange(server, api, version, body):
    r, raw = send(server, api, version, body, 11)
    body_start = r.pos
    ours = api.decode_response(r, version)
    assert r.remaining() == 0, f"{r.remaining()} bytes left over"
    oracle = _oracle_class(api.name).decode(bytes(raw[body_start:]), version=version).to_dict()
    assert sorted(codes(oracle)) == sorted(codes(_present(api, version, ours)))
    return ours


def _present(api, version, decoded):
    """Drop fields the version does not have (our decoder fills in their defaults)."""
    def strip(fields, obj):
        out = {}
        for f in fields:
            if f.present(version) and f.name in obj:
                v = obj[f.name]
                if isinstance(f.type, tuple) and v is not None:
                    v = [strip(f.type, item) for item in v]
                out[f.name] = v
        return out

    return strip(api.response, decoded)


def codes(obj):
    """Every error_code in a decoded response."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "error_code":
                yield v
            else:
                yield from codes(v)
    elif isinstance(obj, list):
        for item in obj:
            yield from codes(item)


@pytest.fixture(scope="module")
def ready_topic(server):
    name = "versions-" + uuid.uuid4().hex[:8]
    resp = exchange(server, M.CREATE_TOPICS, 7, {"topics": [
        {"name": name, "num_partitions": 2, "replication_factor": 1}]})
    assert list(codes(resp)) == [0]
    resp = exchange(server, M.PRODUCE, 9, {"acks": -1, "timeout_ms": 1000, "topic_data": [
        {"name": name, "partition_data": [{"index": 0, "records": make_batch(5)}]}]})
    assert list(codes(resp)) == [0]
    return name


def join(server, group, version=5):
    return exchange(server, M.JOIN_GROUP, version, {
        "group_id": group, "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000, "member_id": "",
        "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b"\x00\x01"}]})


def joined_and_synced(server, group):
    j = join(server, group)
    assert j["error_code"] == 0 and j["leader"] == j["member_id"]
    s = exchange(server, M.SYNC_GROUP, 3, {
        "group_id": group, "generation_id": j["generation_id"], "member_id": j["member_id"],
        "assignments": [{"member_id": j["member_id"], "assignment": b"\x00\x00abc"}]})
    assert s["error_code"] == 0 and s["assignment"] == b"\x00\x00abc"
    return j


def case(server, topic, api, v):  # noqa: C901 - one branch per API
    group = "vg-" + uuid.uuid4().hex[:8]
    key = api.key
    if key == 18:
        r = exchange(server, api, v, {"client_software_name": "t", "client_software_version": "1"})
        assert len(r["api_keys"]) == len(M.APIS)
    elif key == 3:
        r = exchange(server, api, v, {"topics": [{"name": topic}], "allow_auto_topic_creation": False})
        assert r["topics"][0]["name"] == topic and len(r["topics"][0]["partitions"]) == 2
        assert r["brokers"][0]["port"] == server.port
    elif key == 0:
        r = exchange(server, api, v, {"acks": 1, "timeout_ms": 1000, "topic_data": [
            {"name": topic, "partition_data": [{"index": 1, "records": make_batch(2)}]}]})
        p = r["responses"][0]["partition_responses"][0]
        assert p["error_code"] == (0 if v >= 3 else 35)
    elif key == 1:
        r = exchange(server, api, v, {"max_wait_ms": 0, "min_bytes": 0, "max_bytes": 1 << 20, "topics": [
            {"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 2,
                                             "partition_max_bytes": 1 << 20}]}]})
        p = r["responses"][0]["partitions"][0]
        assert p["high_watermark"] == 5 and p["last_stable_offset"] == 5
        assert bytes(p["records"][:8]) == b"\x00" * 8  # whole batch from its base offset 0
    elif key == 2:
        r = exchange(server, api, v, {"replica_id": -1, "topics": [{"name": topic, "partitions": [
            {"partition_index": 0, "timestamp": 1_700_000_000_001}]}]})
        p = r["topics"][0]["partitions"][0]
        assert (p["offset"], p["timestamp"]) == (1, 1_700_000_000_001)
    elif key == 10:
        r = exchange(server, api, v, {"key": group})
        assert (r["node_id"], r["port"]) == (1, server.port)
    elif key == 11:
        r = join(server, group, v)
        assert r["error_code"] == 0 and r["generation_id"] == 1 and len(r["members"]) == 1
        assert r["protocol_name"] == "range" and r["members"][0]["metadata"] == b"\x00\x01"
    elif key == 14:
        j = join(server, group)
        r = exchange(server, api, v, {
            "group_id": group, "generation_id": j["generation_id"], "member_id": j["member_id"],
            "protocol_type": "consumer", "protocol_name": "range",
            "assignments": [{"member_id": j["member_id"], "assignment": b"xyz"}]})
        assert r["assignment"] == b"xyz"
    elif key == 12:
        j = joined_and_synced(server, group)
        r = exchange(server, api, v, {"group_id": group, "generation_id": j["generation_id"],
                                      "member_id": j["member_id"]})
        assert r["error_code"] == 0
        r = exchange(server, api, v, {"group_id": group, "generation_id": 99, "member_id": j["member_id"]})
        assert r["error_code"] == 22  # ILLEGAL_GENERATION
    elif key == 13:
        j = joined_and_synced(server, group)
        r = exchange(server, api, v, {"group_id": group, "member_id": j["member_id"],
                                      "members": [{"member_id": j["member_id"]}]})
        assert list(codes(r)) == [0] * len(list(codes(r)))
        r = exchange(server, M.HEARTBEAT, 0, {"group_id": group, "generation_id": j["generation_id"],
                                              "member_id": j["member_id"]})
        assert r["error_code"] == 25  # UNKNOWN_MEMBER_ID after leaving
    elif key == 8:
        r = exchange(server, api, v, {"group_id": group, "generation_id": -1, "member_id": "",
                                      "topics": commit_topics(topic, {0: 3}, committed_metadata="meta")})
        assert list(codes(r)) == [0]
        f = exchange(server, M.OFFSET_FETCH, 7, {"group_id": group, "topics": None})
        p = f["topics"][0]["partitions"][0]
        assert (p["committed_offset"], p["metadata"]) == (3, "meta")
    elif key == 9:
        exchange(server, M.OFFSET_COMMIT, 2, {"group_id": group, "generation_id": -1, "member_id": "",
                                              "topics": commit_topics(topic, {1: 1})})
        r = exchange(server, api, v, {"group_id": group, "topics": [
            {"name": topic, "partition_indexes": [0, 1]}]})
        assert [p["committed_offset"] for p in r["topics"][0]["partitions"]] == [-1, 1]
    elif key == 22:
        r = exchange(server, api, v, {"transactional_id": None, "transaction_timeout_ms": 1000})
        assert r["error_code"] == 0 and r["producer_id"] >= 0 and r["producer_epoch"] == 0
    elif key == 19:
        name = "created-" + uuid.uuid4().hex[:8]
        r = exchange(server, api, v, {"topics": [{"name": name, "num_partitions": 3, "replication_factor": -1,
                                                  "configs": [{"name": "retention.ms", "value": "60000"}]}]})
        assert r["topics"][0]["error_code"] == 0
        if v >= 5:
            assert r["topics"][0]["num_partitions"] == 3
    elif key == 20:
        name = "doomed-" + uuid.uuid4().hex[:8]
        exchange(server, M.CREATE_TOPICS, 7, {"topics": [{"name": name, "num_partitions": 1,
                                                          "replication_factor": 1}]})
        r = exchange(server, api, v, {"topic_names": [name], "topics": [{"name": name}], "timeout_ms": 1000})
        assert r["responses"][0]["error_code"] == 0 and r["responses"][0]["name"] == name
    elif key == 32:
        r = exchange(server, api, v, {"resources": [
            {"resource_type": 2, "resource_name": topic, "configuration_keys": None},
            {"resource_type": 4, "resource_name": "1", "configuration_keys": ["broker.id"]}]})
        topic_conf = {c["name"]: c["value"] for c in r["results"][0]["configs"]}
        assert topic_conf["cleanup.policy"] == "delete"
        assert r["results"][1]["configs"] == [{**r["results"][1]["configs"][0], "value": "1"}]
    elif key == 15:
        joined_and_synced(server, group)
        r = exchange(server, api, v, {"groups": [group]})
        g = r["groups"][0]
        assert g["group_state"] == "Stable" and len(g["members"]) == 1
        assert g["members"][0]["member_assignment"] == b"\x00\x00abc"
    elif key == 16:
        join(server, group)
        r = exchange(server, api, v, {})
        assert group in {g["group_id"] for g in r["groups"]}
        if v >= 5:
            assert {g["group_type"] for g in r["groups"]} == {"classic"}
            r = exchange(server, api, v, {"types_filter": ["consumer"]})
            assert r["groups"] == []   # KIP-848 consumer groups: none here
    elif key == 60:
        r = exchange(server, api, v, {})
        assert r["controller_id"] == 1 and r["brokers"][0]["port"] == server.port and r["cluster_id"]
    elif key in (17, 36):
        # The session server is a PLAINTEXT listener: SASL is out of place there (34).
        body = {"mechanism": "PLAIN"} if key == 17 else {"auth_bytes": b"\0u\0p"}
        r = exchange(server, api, v, body)
        assert r["error_code"] == 34
    elif key in (29, 30, 31):
        name = "acl-" + uuid.uuid4().hex[:8]
        binding = {"resource_type": 2, "resource_name": name, "resource_pattern_type": 3,
                   "principal": "User:versions", "host": "*", "operation": 3, "permission_type": 3}
        flt = {"resource_type_filter": 2, "resource_name_filter": name, "pattern_type_filter": 3,
               "principal_filter": None, "host_filter": None, "operation": 1, "permission_type": 1}
        created = exchange(server, M.CREATE_ACLS, v if key == 30 else 3, {"creations": [binding]})
        assert list(codes(created)) == [0]
        if key == 29:
            r = exchange(server, api, v, flt)
            assert [a["principal"] for res in r["resources"] for a in res["acls"]] == ["User:versions"]
        exchange(server, M.DELETE_ACLS, v if key == 31 else 3, {"filters": [flt]})
        assert exchange(server, M.DESCRIBE_ACLS, 3, flt)["resources"] == []
    elif key in (50, 51):
        user = "u-" + uuid.uuid4().hex[:8]
        r = exchange(server, M.ALTER_USER_SCRAM_CREDENTIALS, 0, {"upsertions": [
            {"name": user, "mechanism": 2, "iterations": 4096, "salt": b"salt", "salted_password": b"k" * 64}]})
        assert r["results"] == [{"user": user, "error_code": 0, "error_message": None}]
        r = exchange(server, M.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, {"users": [{"name": user}]})
        assert r["results"][0]["credential_infos"] == [{"mechanism": 2, "iterations": 4096}]
        exchange(server, M.ALTER_USER_SCRAM_CREDENTIALS, 0, {"deletions": [{"name": user, "mechanism": 2}]})
    elif key in (24, 25, 26, 28):
        from .test_transactions import version_case
        version_case(exchange, server, topic, group, api, v)
    elif key == 37:
        name = fresh_topic(server, 1)
        r = exchange(server, api, v, {"topics": [{"name": name, "count": 3, "assignments": None}],
                                      "timeout_ms": 1000})
        assert r["results"][0]["error_code"] == 0
        r = exchange(server, api, v, {"topics": [{"name": name, "count": 2, "assignments": None}],
                                      "timeout_ms": 1000})
        assert r["results"][0]["error_code"] == 37  # INVALID_PARTITIONS: cannot shrink
        m = exchange(server, M.METADATA, 12, {"topics": [{"name": name}], "allow_auto_topic_creation": False})
        assert len(m["topics"][0]["partitions"]) == 3
    elif key in (33, 44):
        name = fresh_topic(server, 1)
        conf = {"name": "retention.ms", "value": "123456", "config_operation": 0}
        r = exchange(server, api, v, {"resources": [{"resource_type": 2, "resource_name": name,
                                                     "configs": [conf]}]})
        assert r["responses"][0]["error_code"] == 0
        d = exchange(server, M.DESCRIBE_CONFIGS, 4, {"resources": [
            {"resource_type": 2, "resource_name": name, "configuration_keys": ["retention.ms"]}]})
        assert [c["value"] for c in d["results"][0]["configs"]] == ["123456"]
        r = exchange(server, api, v, {"resources": [{"resource_type": 2, "resource_name": name, "configs": [
            {**conf, "name": "no.such.config"}]}]})
        assert r["responses"][0]["error_code"] == 40  # INVALID_CONFIG
    elif key == 21:
        r = exchange(server, api, v, {"topics": [{"name": topic, "partitions": [
            {"partition_index": 1, "offset": 0}]}], "timeout_ms": 1000})
        assert list(codes(r)) == [0]
        r = exchange(server, api, v, {"topics": [{"name": topic, "partitions": [
            {"partition_index": 1, "offset": 1 << 40}]}], "timeout_ms": 1000})
        assert list(codes(r)) == [1]  # OFFSET_OUT_OF_RANGE: beyond the high watermark
    elif key == 42:
        exchange(server, M.OFFSET_COMMIT, 2, {"group_id": group, "generation_id": -1, "member_id": "",
                                              "topics": commit_topics(topic, {0: 1})})
        r = exchange(server, api, v, {"groups_names": [group, group + "-unknown"]})
        assert [(g["group_id"], g["error_code"]) for g in r["results"]] == [(group, 0), (group + "-unknown", 69)]
    elif key == 47:
        exchange(server, M.OFFSET_COMMIT, 2, {"group_id": group, "generation_id": -1, "member_id": "",
                                              "topics": commit_topics(topic, {0: 1, 1: 1})})
        r = exchange(server, api, v, {"group_id": group, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0}]}]})
        assert list(codes(r)) == [0, 0]
        f = exchange(server, M.OFFSET_FETCH, 7, {"group_id": group, "topics": None})
        assert [p["partition_index"] for p in f["topics"][0]["partitions"]] == [1]
    elif key == 61:
        r = exchange(server, api, v, {"topics": [{"name": topic, "partition_indexes": [0, 7]}]})
        assert [p["error_code"] for p in r["topics"][0]["partitions"]] == [0, 3]
    elif key == 43:
        r = exchange(server, api, v, {"election_type": 0, "topic_partitions": [
            {"topic": topic, "partitions": [0]}], "timeout_ms": 1000})
        assert 42 in list(codes(r))  # INVALID_REQUEST: one node has no leader to elect
    elif key == 45:
        r = exchange(server, api, v, {"topics": [{"name": topic, "partitions": [
            {"partition_index": 0, "replicas": [1, 2]}]}]})
        assert r["error_code"] == 42
    elif key == 46:
        r = exchange(server, api, v, {"topics": None})
        assert r["error_code"] == 0 and r["topics"] == []
    else:
        raise AssertionError(f"no case for {api.name}")


def fresh_topic(server, partitions):
    name = "fresh-" + uuid.uuid4().hex[:8]
    resp = exchange(server, M.CREATE_TOPICS, 7, {"topics": [
        {"name": name, "num_partitions": partitions, "replication_factor": 1}]})
    assert list(codes(resp)) == [0]
    return name


CASES = [(api, v) for api in M.APIS.values() for v in range(api.min_version, api.max_version + 1)]


@pytest.mark.parametrize("api,version", CASES, ids=[f"{a.name}-v{v}" for a, v in CASES])
def test_every_advertised_version(server, ready_topic, api, version):
    case(server, ready_topic, api, version)
