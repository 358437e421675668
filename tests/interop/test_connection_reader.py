"""The server's connection reader (arrowlog.server.framing) against real sockets:
bodies received into pooled buffers, trickled and half-closed clients, hostile sizes."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from arrowlog.server import Limits
from arrowlog.server import messages as M
from arrowlog.server import server as S
from arrowlog.server.wire import Reader

from .test_hostile import InProcessServer, big_batch, closed_by_server, create_topic, wait_for
from .wireclient import recv_frame, request_frame, still_serving

MiB = 1024 * 1024
API_VERSIONS_V0 = struct.pack(">hhih", 18, 0, 1, 1) + b"x"


@pytest.fixture
def inproc(tmp_path):
    srv = InProcessServer(tmp_path / "inproc", Limits(max_frame_bytes=8 * MiB))
    yield srv
    srv.stop()


def produce_frame(topic: str, records: bytes, correlation_id: int) -> bytes:
    return request_frame(M.PRODUCE, 9, {"transactional_id": None, "acks": -1, "timeout_ms": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": 0, "records": records}]}]}, correlation_id, "x")


def base_offset(frame: bytes) -> tuple[int, int]:
    """(correlation id, base offset) of a Produce v9 response."""
    r = Reader(frame)
    cid = r.int32()
    r.skip_tags()
    resp = M.PRODUCE.decode_response(r, 9)
    part = resp["responses"][0]["partition_responses"][0]
    assert part["error_code"] == 0, part
    return cid, part["base_offset"]


def test_pipelined_large_produces_reuse_their_body_buffers(inproc):
    # 30 pipelined ~440 kB Produce requests, as librdkafka sends them: each body is
    # received into a pooled buffer given back once its response is written, so a
    # few buffers serve them all (asyncio's StreamReader made a new one, and copied
    # the body twice, for every request).
    topic = create_topic(inproc, "pooled")
    records = big_batch(4000, 100)
    with socket.create_connection((inproc.host, inproc.port), timeout=30) as s:
        s.sendall(b"".join(produce_frame(topic, records, cid) for cid in range(30)))
        answers = [base_offset(recv_frame(s)) for _ in range(30)]
    assert answers == [(cid, cid * 4000) for cid in range(30)]
    allocated, kept = inproc.query(lambda srv: (srv._bodies.allocated, srv._bodies.kept))
    print(f"30 pipelined Produce requests of {len(records)} bytes: {allocated} body buffers allocated")
    assert 1 <= allocated <= 8   # a few in flight at once; not one per request
    assert kept >= len(records)


def test_a_client_sending_one_byte_at_a_time_is_answered(inproc):
    topic = create_topic(inproc, "trickle")
    data = struct.pack(">i", len(API_VERSIONS_V0)) + API_VERSIONS_V0 + produce_frame(topic, big_batch(700, 100), 2)
    with socket.create_connection((inproc.host, inproc.port), timeout=30) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            s.send(data[i:i + 1])
        assert struct.unpack(">i", recv_frame(s)[:4])[0] == 1
        assert base_offset(recv_frame(s)) == (2, 0)


def test_requests_that_have_fully_arrived_are_read_without_arming_a_timer(inproc, monkeypatch):
    # Each wait for a request or a body is bounded by a deadline (a timer on the loop);
    # a pipelined request whose bytes are all there and that fits the memory budget
    # needs no wait, so no timer: 50 of them cost the two waits around the burst.
    timers = []

    def counting_timeout_at(deadline):
        timers.append(deadline)
        return asyncio.timeout_at(deadline)

    monkeypatch.setattr(S, "_TIMEOUT_AT", counting_timeout_at)
    with socket.create_connection((inproc.host, inproc.port), timeout=30) as s:
        wait_for(lambda: inproc.query(lambda srv: srv.connection_count) == 1, 30, "the connection")
        s.sendall((struct.pack(">i", len(API_VERSIONS_V0)) + API_VERSIONS_V0) * 50)
        for _ in range(50):
            recv_frame(s)
        assert len(timers) <= 4, f"{len(timers)} timers for 50 pipelined requests"


def test_a_half_closed_client_still_gets_its_answers(inproc):
    # A client that shuts its sending side after its requests (EOF) is answered before
    # the server closes the connection.
    with socket.create_connection((inproc.host, inproc.port), timeout=30) as s:
        for cid in range(3):
            s.sendall(struct.pack(">i", len(API_VERSIONS_V0)) + API_VERSIONS_V0[:4] + struct.pack(">i", cid)
                      + API_VERSIONS_V0[8:])
        s.shutdown(socket.SHUT_WR)
        assert [struct.unpack(">i", recv_frame(s)[:4])[0] for _ in range(3)] == [0, 1, 2]
        assert closed_by_server(s, 30)
    wait_for(lambda: inproc.query(lambda srv: srv.connection_count) == 0, 30, "the connection to close")


@pytest.mark.parametrize("size", [0, 7, -1, -(1 << 31), 8 * MiB + 1, (1 << 31) - 1],
                         ids=["zero", "below-a-header", "minus-one", "wrapped", "one-over-the-limit", "int32-max"])
def test_hostile_sizes_close_the_connection_before_anything_is_reserved(inproc, size):
    with socket.create_connection((inproc.host, inproc.port), timeout=10) as s:
        s.sendall(struct.pack(">i", size) + b"\x00" * 64)
        assert closed_by_server(s, 10)
    assert inproc.query(lambda srv: srv.request_bytes_reserved) == 0
    still_serving(inproc)
