"""Hostile and unusual input on the Kafka port: the server answers with an error
or closes that one connection, appends nothing, and keeps serving."""

from __future__ import annotations

import socket
import struct

import pytest

from arrowlog.server import messages as M
from arrowlog.server.wire import Reader, Writer

from .wireclient import call, high_watermark, make_batch, produce, raw_request, recv_frame, still_serving


@pytest.fixture
def created(server, topic):
    resp = call(server, M.CREATE_TOPICS, 7, {"topics": [
        {"name": topic, "num_partitions": 1, "replication_factor": 1}]})
    assert resp["topics"][0]["error_code"] == 0
    return topic


def closed_by_server(sock) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("payload", [
    struct.pack(">i", 200 * 1024 * 1024),          # far above the frame limit: refused before allocating
    struct.pack(">i", -5),                          # negative size
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",           # an HTTP client on the Kafka port
    struct.pack(">ihhi", 8, 999, 0, 1),             # unknown API key
    struct.pack(">ihhi", 8, 3, 99, 1),              # Metadata version we do not serve
    struct.pack(">ihhih", 10, 3, 1, 1, 50),         # client_id longer than the frame
])
def test_bad_frames_close_the_connection(server, payload):
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(payload)
        assert closed_by_server(s)
    still_serving(server)


def test_truncated_frame_then_disconnect(server):
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(struct.pack(">i", 1000) + b"\x00" * 100)
    still_serving(server)


def test_bad_crc_is_refused_and_nothing_appended(server, created):
    good = make_batch()
    assert produce(server, created, good)["base_offset"] == 0
    bad = bytearray(make_batch())
    bad[-1] ^= 0xFF
    r = produce(server, created, bytes(bad))
    assert r["error_code"] == 2 and r["base_offset"] == -1  # CORRUPT_MESSAGE
    assert high_watermark(server, created) == 3
    still_serving(server)


def test_truncated_batch_is_refused_and_nothing_appended(server, created):
    whole = make_batch(5)
    r = produce(server, created, whole[:-7])
    assert r["error_code"] == 2
    # A good batch followed by a torn one: the whole set is refused.
    r = produce(server, created, whole + whole[:30])
    assert r["error_code"] == 2
    assert high_watermark(server, created) == 0


def test_wrong_magic_is_refused(server, created):
    bad = bytearray(make_batch())
    bad[16] = 1
    r = produce(server, created, bytes(bad))
    assert r["error_code"] == 43  # UNSUPPORTED_FOR_MESSAGE_FORMAT
    assert high_watermark(server, created) == 0


def test_old_produce_versions_are_refused(server, created):
    for version in (0, 1, 2):
        r = produce(server, created, make_batch(), version=version)
        assert r["error_code"] == 35  # UNSUPPORTED_VERSION
    assert high_watermark(server, created) == 0


def test_api_versions_above_our_range_gets_a_v0_answer(server):
    resp = raw_request(server.host, server.port, 18, 99, b"\x00\x00garbage", correlation_id=5)
    r = Reader(resp)
    assert r.int32() == 5
    assert r.int16() == 35
    assert r.int32() == 1
    assert (r.int16(), r.int16(), r.int16()) == (18, 0, 4)
    assert r.remaining() == 0


@pytest.mark.parametrize("version", range(0, 5))
def test_api_versions_every_version(server, version):
    body = {"client_software_name": "arrowlog-test", "client_software_version": "1.0"}
    resp = call(server, M.API_VERSIONS, version, body)
    assert resp["error_code"] == 0
    ranges = {k["api_key"]: (k["min_version"], k["max_version"]) for k in resp["api_keys"]}
    assert ranges == {a.key: (a.min_version, a.max_version) for a in M.APIS.values()}


def test_api_versions_bad_software_name(server):
    resp = call(server, M.API_VERSIONS, 3, {"client_software_name": "-bad name-",
                                            "client_software_version": "1"})
    assert resp["error_code"] == 42  # INVALID_REQUEST


def test_acks_zero_gets_no_response(server, created):
    w = Writer()
    M.PRODUCE.encode_request({"acks": 0, "timeout_ms": 1000, "topic_data": [
        {"name": created, "partition_data": [{"index": 0, "records": make_batch()}]}]}, w, 7)
    produce_req = struct.pack(">hhih", 0, 7, 1, 1) + b"x" + bytes(w.buf)
    versions_req = struct.pack(">hhih", 18, 0, 2, 1) + b"x"
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        for req in (produce_req, versions_req):
            s.sendall(struct.pack(">i", len(req)) + req)
        first = recv_frame(s)
    assert struct.unpack(">i", first[:4])[0] == 2  # the ApiVersions answer comes first
    assert high_watermark(server, created) == 3


def test_idempotent_duplicates_and_sequence_gaps(server, created):
    init = call(server, M.INIT_PRODUCER_ID, 4, {"transactional_id": None, "transaction_timeout_ms": 60000})
    assert init["error_code"] == 0
    pid, epoch = init["producer_id"], init["producer_epoch"]
    first = make_batch(3, producer_id=pid, epoch=epoch, seq=0)
    assert produce(server, created, first)["base_offset"] == 0
    second = make_batch(2, producer_id=pid, epoch=epoch, seq=3)
    assert produce(server, created, second)["base_offset"] == 3
    # A retry of the first batch is answered with its original offset and not appended.
    again = produce(server, created, first)
    assert again["error_code"] == 0 and again["base_offset"] == 0
    assert high_watermark(server, created) == 5
    gap = make_batch(1, producer_id=pid, epoch=epoch, seq=9)
    assert produce(server, created, gap)["error_code"] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    # KIP-360: the producer bumps its epoch; the old epoch is fenced, the new one starts at 0.
    bumped = call(server, M.INIT_PRODUCER_ID, 4, {"transactional_id": None, "transaction_timeout_ms": 60000,
                                                  "producer_id": pid, "producer_epoch": epoch})
    assert bumped["producer_id"] == pid and bumped["producer_epoch"] == epoch + 1
    assert produce(server, created, make_batch(1, producer_id=pid, epoch=epoch + 1, seq=0))["base_offset"] == 5
    stale = make_batch(1, producer_id=pid, epoch=epoch, seq=5)
    assert produce(server, created, stale)["error_code"] == 47  # INVALID_PRODUCER_EPOCH
    assert high_watermark(server, created) == 6


def test_unknown_topic_and_partition(server):
    r = produce(server, "no-such-topic-here", make_batch())
    assert r["error_code"] == 3
    still_serving(server)
