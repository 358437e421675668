"""Fetch responses that clients do not read are bounded, all connections together (review8).

Each connection has one Fetch at a time, but its response (up to fetch.max.bytes, 55 MiB) sat whole in the
transport of a client that never reads: 20 such connections fetching a 50 MB topic took the server from
165 MB to 1.17 GB resident (1,000 connections: 55 GB). A Fetch now gets at most what
``Limits.queued_max_response_bytes`` less the bytes still unsent on every connection leaves, and always at
least one batch (KIP-74), so every reader still makes progress."""

from __future__ import annotations

import socket
import time

import pyarrow as pa
import pytest
from inproc_server import frame, recv_frame
from inproc_server import served as serve_in_thread

from arrowlog._native.kafka import encode_batch
from arrowlog.server import Limits
from arrowlog.server import messages as M
from arrowlog.server.wire import Reader

MiB = 1 << 20
ROOM = 8 * MiB
BATCHES = 40
BATCH_BYTES = 512 * 1024
READERS = 10


def fetch_frame() -> bytes:
    return frame(M.FETCH, 12, {
        "replica_id": -1, "max_wait_ms": 0, "min_bytes": 0, "max_bytes": 60 * MiB, "isolation_level": 0,
        "session_id": 0, "session_epoch": -1, "forgotten_topics_data": [], "rack_id": "",
        "topics": [{"topic": "big", "partitions": [{"partition": 0, "fetch_offset": 0,
                                                    "partition_max_bytes": 60 * MiB}]}]})


def call(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(data)
        return recv_frame(s)


def batch(first: int) -> bytes:
    return encode_batch(pa.RecordBatch.from_pydict({
        "offset": pa.array([first], pa.int64()),
        "timestamp": pa.array([1_700_000_000_000], pa.timestamp("ms")),
        "key": pa.array([None], pa.binary()),
        "value": pa.array([bytes([first % 251]) * BATCH_BYTES], pa.binary()),
        "headers": pa.nulls(1, pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
    }))


@pytest.fixture
def served(tmp_path):
    with serve_in_thread(tmp_path / "data", limits=Limits(queued_max_response_bytes=ROOM)) as served:
        yield served


def fetched_records_bytes(response: bytes) -> int:
    r = Reader(response)
    r.int32()        # correlation id
    r.skip_tags()
    body = M.FETCH.decode_response(r, 12)
    return sum(len(bytes(p["records"] or b"")) for t in body["responses"] for p in t["partitions"])


def test_fetches_nobody_reads_hold_at_most_the_room_plus_a_batch_each(served):
    server, run = served
    assert call(server.port, frame(M.CREATE_TOPICS, 7, {"topics": [
        {"name": "big", "num_partitions": 1, "replication_factor": 1}]}))
    for i in range(BATCHES):
        call(server.port, frame(M.PRODUCE, 9, {"transactional_id": None, "acks": -1, "timeout_ms": 5000,
                                               "topic_data": [{"name": "big", "partition_data": [
                                                   {"index": 0, "records": batch(i)}]}]}))
    stalled = []
    for _ in range(READERS):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", server.port))
        s.sendall(fetch_frame())
        stalled.append(s)
    try:
        async def unsent() -> list[int] | None:
            """Each connection's unsent bytes, once every Fetch is answered: its response in the
            transport, or taken by the kernel whole (the connection has nothing left to answer)."""
            conns = list(server._connections)
            answered = len(conns) == READERS and all(
                c.requests == 1 and (c.answering == 0 or c.stream.write_buffer_size()) for c in conns)
            return [c.stream.write_buffer_size() for c in conns] if answered else None

        deadline = time.monotonic() + 60
        while (sizes := run(unsent())) is None:
            assert time.monotonic() < deadline, "the fetches were not all answered"
            time.sleep(0.05)
        # each response: a share of the room, or one batch when none is left (before: 20 MB each)
        assert sum(sizes) <= ROOM + READERS * (BATCH_BYTES + 4096), sizes
        # a client that reads still gets data: a batch at least
        assert fetched_records_bytes(call(server.port, fetch_frame())) >= BATCH_BYTES
    finally:
        for s in stalled:
            s.close()
