"""Fetch semantics (whole batches, KIP-74, long poll), connection limits,
graceful shutdown, and committed offsets shared with arrowlog's group store."""

from __future__ import annotations

import socket
import struct
import threading
import time
import uuid

import pytest

import arrowlog
from arrowlog.groups import GroupAdmin
from arrowlog.server import messages as M
from arrowlog.server.wire import Reader

from .conftest import ServerProcess
from .wireclient import call, make_batch, produce, recv_frame, request_frame


@pytest.fixture
def batches(server, topic):
    """Three stored batches: offsets 0-4, 5-9, 10-14."""
    call(server, M.CREATE_TOPICS, 7, {"topics": [{"name": topic, "num_partitions": 1,
                                                  "replication_factor": 1}]})
    for first in (0, 5, 10):
        assert produce(server, topic, make_batch(5, first=first))["base_offset"] == first
    return topic


def fetch(server, topic, offset, max_bytes=1 << 20, partition_max=1 << 20, max_wait_ms=0, min_bytes=0):
    resp = call(server, M.FETCH, 12, {"max_wait_ms": max_wait_ms, "min_bytes": min_bytes,
                                      "max_bytes": max_bytes, "topics": [
        {"topic": topic, "partitions": [{"partition": 0, "fetch_offset": offset,
                                         "partition_max_bytes": partition_max}]}]})
    return resp["responses"][0]["partitions"][0]


def base_offsets(records) -> list[int]:
    data, out, pos = bytes(records), [], 0
    while pos + 12 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        out.append(base)
        pos += 12 + length
    return out


def test_fetch_returns_whole_batches_from_the_containing_one(server, batches):
    p = fetch(server, batches, 7)
    assert base_offsets(p["records"]) == [5, 10]
    assert (p["high_watermark"], p["last_stable_offset"], p["log_start_offset"]) == (15, 15, 0)
    assert p["error_code"] == 0 and p["aborted_transactions"] is None


def test_fetch_first_batch_whole_even_over_max_bytes(server, batches):
    p = fetch(server, batches, 0, max_bytes=10, partition_max=10)
    assert base_offsets(p["records"]) == [0]  # KIP-74: one whole batch, no more


def test_fetch_at_end_and_out_of_range(server, batches):
    p = fetch(server, batches, 15)
    assert p["error_code"] == 0 and bytes(p["records"]) == b""
    assert fetch(server, batches, 16)["error_code"] == 1  # OFFSET_OUT_OF_RANGE
    assert fetch(server, batches, -1)["error_code"] == 1


def test_fetch_long_poll_wakes_on_produce(server, batches):
    timer = threading.Timer(0.3, lambda: produce(server, batches, make_batch(2, first=15)))
    timer.start()
    t0 = time.monotonic()
    p = fetch(server, batches, 15, max_wait_ms=10_000, min_bytes=1)
    waited = time.monotonic() - t0
    timer.join()
    assert base_offsets(p["records"]) == [15]
    assert 0.2 < waited < 5


def test_fetch_long_poll_times_out_empty(server, batches):
    t0 = time.monotonic()
    p = fetch(server, batches, 15, max_wait_ms=300, min_bytes=1)
    assert bytes(p["records"]) == b"" and time.monotonic() - t0 >= 0.25


def test_pipelined_requests_answered_in_order(server, batches):
    """A long-polling Fetch does not hold up a later request's handling, and
    responses still come back in request order."""
    fetch_req = request_frame(M.FETCH, 11, {"max_wait_ms": 500, "min_bytes": 1, "max_bytes": 1 << 20, "topics": [
        {"topic": batches, "partitions": [{"partition": 0, "fetch_offset": 15, "partition_max_bytes": 1 << 20}]}]}, 1)
    produce_req = request_frame(M.PRODUCE, 8, {"acks": 1, "timeout_ms": 1000, "topic_data": [
        {"name": batches, "partition_data": [{"index": 0, "records": make_batch(1, first=15)}]}]}, 2)
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(fetch_req + produce_req)
        first, second = recv_frame(s), recv_frame(s)
    assert struct.unpack(">i", first[:4])[0] == 1 and struct.unpack(">i", second[:4])[0] == 2
    r = Reader(first[4:])
    resp = M.FETCH.decode_response(r, 11)
    assert base_offsets(resp["responses"][0]["partitions"][0]["records"]) == [15]


def test_commit_over_the_wire_is_the_groups_committed_offset(server, batches, group):
    resp = call(server, M.OFFSET_COMMIT, 8, {"group_id": group, "generation_id": -1, "member_id": "",
                                             "topics": [{"name": batches, "partitions": [
                                                 {"partition_index": 0, "committed_offset": 12,
                                                  "committed_metadata": "m"}]}]})
    assert resp["topics"][0]["partitions"][0]["error_code"] == 0
    with GroupAdmin(str(server.data_dir)) as admin:
        assert admin.committed(group) == {(batches, 0): 12}
        admin.commit(group, {(batches, 0): 3})
    resp = call(server, M.OFFSET_FETCH, 7, {"group_id": group, "topics": None})
    assert resp["topics"][0]["partitions"][0]["committed_offset"] == 3


@pytest.fixture
def limited(tmp_path):
    srv = ServerProcess(tmp_path / "limited", "--max-connections", "2", "--idle-timeout", "0.5",
                        "--first-request-timeout", "1", "--max-frame-bytes", "4096",
                        "--queued-max-request-bytes", "8192")
    yield srv
    assert srv.stop() == 0


def api_versions_on(sock) -> int:
    req = struct.pack(">hhih", 18, 0, 9, 1) + b"x"
    sock.sendall(struct.pack(">i", len(req)) + req)
    return struct.unpack(">i", recv_frame(sock)[:4])[0]


def closed_within(sock, seconds) -> float:
    sock.settimeout(seconds)
    t0 = time.monotonic()
    try:
        assert sock.recv(1) == b""
    except ConnectionResetError:
        pass
    return time.monotonic() - t0


def test_full_server_closes_the_oldest_idle_connection(limited):
    a = socket.create_connection((limited.host, limited.port), timeout=5)
    b = socket.create_connection((limited.host, limited.port), timeout=5)
    assert api_versions_on(b) == 9   # b is served, then idle; a has been idle longer
    c = socket.create_connection((limited.host, limited.port), timeout=5)
    assert api_versions_on(c) == 9   # full: a (idle the longest) made room
    assert closed_within(a, 5) < 5
    assert api_versions_on(b) == 9   # the others keep being served
    for s in (a, b, c):
        s.close()


def test_deadlines_first_request_idle_and_frame_limit(limited):
    silent = socket.create_connection((limited.host, limited.port), timeout=5)
    partial = socket.create_connection((limited.host, limited.port), timeout=5)
    partial.sendall(b"\x00\x00")  # 2 of the 4 size bytes
    assert 0.5 < closed_within(silent, 10) < 5   # --first-request-timeout 1
    assert closed_within(partial, 10) < 5
    served = socket.create_connection((limited.host, limited.port), timeout=5)
    assert api_versions_on(served) == 9
    assert 0.3 < closed_within(served, 10) < 5   # idle after its request: --idle-timeout 0.5
    for s in (silent, partial, served):
        s.close()
    with socket.create_connection((limited.host, limited.port), timeout=5) as s:
        s.sendall(struct.pack(">i", 5000))  # over the 4 KiB frame limit
        closed_within(s, 5)
    assert call(limited, M.API_VERSIONS, 3, {"client_software_name": "t",
                                             "client_software_version": "1"})["error_code"] == 0


def test_sigterm_flushes_and_data_survives(tmp_path):
    srv = ServerProcess(tmp_path / "stopping")
    try:
        call(srv, M.CREATE_TOPICS, 7, {"topics": [{"name": "kept", "num_partitions": 1,
                                                   "replication_factor": 1}]})
        assert produce(srv, "kept", make_batch(4))["base_offset"] == 0
    finally:
        assert srv.stop() == 0
    assert "shutting down" in srv.log()
    table = arrowlog.replay(str(srv.data_dir), "kept").to_arrow()
    assert table.column("value").to_pylist() == [b"v0", b"v1", b"v2", b"v3"]


def test_typed_value_topic_is_refused_not_crashed(server, topic):
    """A topic declaring an Arrow value schema holds struct values, which have no
    Kafka bytes form: produce and fetch answer errors and the server keeps serving."""
    import pyarrow as pa

    from arrowlog.storage import LogDir

    with LogDir(str(server.data_dir)) as d:
        t = d.create_topic(topic, partitions=1, config={"value.schema": pa.schema([("x", pa.int64())])})
        t.partition(0).append(pa.RecordBatch.from_pydict({
            "timestamp": pa.array([1], pa.timestamp("ms")), "key": pa.array([None], pa.binary()),
            "value": pa.array([{"x": 1}], pa.struct([("x", pa.int64())])),
            "headers": pa.nulls(1, pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])))}))
    assert fetch(server, topic, 0)["error_code"] == -1
    assert produce(server, topic, make_batch(1))["error_code"] == 87  # INVALID_RECORD
    assert fetch(server, topic, 0)["high_watermark"] == 1


def test_list_offsets_max_timestamp_and_by_time(server, topic):
    call(server, M.CREATE_TOPICS, 7, {"topics": [{"name": topic, "num_partitions": 1, "replication_factor": 1}]})
    produce(server, topic, make_batch(3))               # timestamps base+0, +1, +2
    produce(server, topic, make_batch(2, first=3))      # base+0, +1 again: not increasing

    def lookup(ts, version=7):
        resp = call(server, M.LIST_OFFSETS, version, {"replica_id": -1, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0, "timestamp": ts}]}]})
        p = resp["topics"][0]["partitions"][0]
        return p["offset"], p["timestamp"]

    base = 1_700_000_000_000
    assert lookup(-3) == (2, base + 2)                  # the record with the largest timestamp
    assert lookup(-2) == (0, -1) and lookup(-1) == (5, -1)
    assert lookup(base + 2) == (2, base + 2)
    assert lookup(base + 3) == (-1, -1)


def test_metadata_auto_creates_valid_names_only(server):
    name = "auto-" + uuid.uuid4().hex[:8]
    resp = call(server, M.METADATA, 12, {"topics": [{"name": name}, {"name": "bad name!"}],
                                         "allow_auto_topic_creation": True})
    by_name = {t["name"]: t for t in resp["topics"]}
    assert by_name[name]["error_code"] == 0 and len(by_name[name]["partitions"]) == 1
    assert by_name["bad name!"]["error_code"] == 17  # INVALID_TOPIC_EXCEPTION
    resp = call(server, M.METADATA, 12, {"topics": [{"name": "not-" + name}], "allow_auto_topic_creation": False})
    assert resp["topics"][0]["error_code"] == 3


def test_silent_member_is_expelled_after_its_session_timeout(server, group):
    join = call(server, M.JOIN_GROUP, 5, {
        "group_id": group, "session_timeout_ms": 1000, "rebalance_timeout_ms": 1000, "member_id": "",
        "protocol_type": "consumer", "protocols": [{"name": "range", "metadata": b""}]})
    member, generation = join["member_id"], join["generation_id"]
    sync = call(server, M.SYNC_GROUP, 3, {"group_id": group, "generation_id": generation, "member_id": member,
                                          "assignments": [{"member_id": member, "assignment": b"a"}]})
    assert sync["error_code"] == 0
    beat = {"group_id": group, "generation_id": generation, "member_id": member}
    assert call(server, M.HEARTBEAT, 3, beat)["error_code"] == 0
    deadline = time.monotonic() + 8
    while call(server, M.DESCRIBE_GROUPS, 5, {"groups": [group]})["groups"][0]["members"] \
            and time.monotonic() < deadline:
        time.sleep(0.2)  # no heartbeats: expelled once the 1 s session has passed
    assert call(server, M.HEARTBEAT, 3, beat)["error_code"] == 25  # UNKNOWN_MEMBER_ID
    desc = call(server, M.DESCRIBE_GROUPS, 5, {"groups": [group]})["groups"][0]
    assert desc["group_state"] == "Empty" and desc["members"] == []


def test_limits_are_checked_and_budgets_follow_the_frame_limit():
    from arrowlog.errors import ConfigError
    from arrowlog.server import Limits

    big = Limits(max_frame_bytes=400 << 20)
    assert big.queued_max_request_bytes == big.max_inflight_bytes == 400 << 20
    assert Limits().queued_max_request_bytes == 256 << 20
    with pytest.raises(ConfigError, match="--max-frame-bytes .* must not exceed --queued-max-request-bytes"):
        Limits(max_frame_bytes=400 << 20, queued_max_request_bytes=300 << 20)
    with pytest.raises(ConfigError, match="max_connections must be positive"):
        Limits(max_connections=0)
