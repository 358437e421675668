"""A tiny Kafka client for tests: requests written with the server's own schema
tables (checked against Kafka's definitions in tests/unit/test_kafka_messages.py)."""

from __future__ import annotations

import socket
import struct

import pyarrow as pa

from arrowlog._native.kafka import encode_batch
from arrowlog.server import messages as M
from arrowlog.server.wire import Reader, Writer


def raw_request(host: str, port: int, api_key: int, version: int, body: bytes,
                correlation_id: int = 1, client_id: str = "raw", flexible: bool = False) -> bytes:
    """Send one request on a fresh socket and return the response frame (without its size)."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(framed(api_key, version, body, correlation_id, client_id, flexible))
        return recv_frame(s)


def framed(api_key: int, version: int, body: bytes, correlation_id: int, client_id: str = "c",
           flexible: bool = False) -> bytes:
    """A request as a client sends it: its size, the request header, ``body``."""
    cid = client_id.encode()
    header = struct.pack(">hhih", api_key, version, correlation_id, len(cid)) + cid
    if flexible:
        header += b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def request_frame(api, version: int, body: dict, correlation_id: int, client_id: str = "c") -> bytes:
    """``body`` encoded with the server's schema and framed, for several requests on one socket."""
    w = Writer()
    api.encode_request(body, w, version)
    return framed(api.key, version, bytes(w.buf), correlation_id, client_id, api.is_flexible(version))


def recv_frame(s: socket.socket) -> bytes:
    size = struct.unpack(">i", recv_exact(s, 4))[0]
    return recv_exact(s, size)


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def send(server, api, version, body: dict, correlation_id=7) -> tuple[Reader, bytes]:
    """Send one request; return a reader positioned at the response body, and the raw response."""
    w = Writer()
    api.encode_request(body, w, version)
    flexible = api.is_flexible(version)
    raw = raw_request(server.host, server.port, api.key, version, bytes(w.buf), correlation_id,
                      flexible=flexible)
    r = Reader(raw)
    assert r.int32() == correlation_id
    if flexible and api.key != M.API_VERSIONS.key:
        r.skip_tags()
    return r, raw


def call(server, api, version, body: dict, correlation_id=7) -> dict:
    r, _ = send(server, api, version, body, correlation_id)
    return api.decode_response(r, version)


def commit_topics(topic: str, offsets: dict[int, int], **fields) -> list[dict]:
    """The ``topics`` of an OffsetCommit or TxnOffsetCommit request: ``offsets``
    ({partition: offset}) of ``topic``, each partition with ``fields`` too."""
    return [{"name": topic, "partitions": [{"partition_index": p, "committed_offset": o, **fields}
                                           for p, o in offsets.items()]}]


def still_serving(server):
    resp = call(server, M.API_VERSIONS, 0, {})
    assert resp["error_code"] == 0
    assert {k["api_key"] for k in resp["api_keys"]} >= {0, 1, 3, 18}


def make_batch(n=3, first=0, producer_id=-1, epoch=-1, seq=-1):
    batch = pa.RecordBatch.from_pydict({
        "offset": pa.array(range(first, first + n), pa.int64()),
        "timestamp": pa.array([1_700_000_000_000 + i for i in range(n)], pa.timestamp("ms")),
        "key": pa.array([None] * n, pa.binary()),
        "value": pa.array([b"v%d" % i for i in range(n)], pa.binary()),
        "headers": pa.nulls(n, pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
    })
    return encode_batch(batch, producer_id=producer_id, producer_epoch=epoch, base_sequence=seq)


def produce(server, topic, records, version=9, acks=-1):
    resp = call(server, M.PRODUCE, version, {
        "transactional_id": None, "acks": acks, "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}]})
    return resp["responses"][0]["partition_responses"][0]


def high_watermark(server, topic):
    resp = call(server, M.LIST_OFFSETS, 7, {"replica_id": -1, "topics": [
        {"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}]})
    return resp["topics"][0]["partitions"][0]["offset"]


