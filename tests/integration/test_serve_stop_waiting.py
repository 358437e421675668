"""Stopping `arrowlog serve` answers the requests that wait (review8): a long-poll Fetch gets its response
(no records) and a JoinGroup waiting for a rebalance gets COORDINATOR_NOT_AVAILABLE, before the connections
close. Each connection gives its handlers 5 s to answer at stop, and these waited them out: a stop with a
consumer polling took 5 s more, and its clients saw the connection closed with no answer."""

from __future__ import annotations

import socket
import struct
import time

from inproc_server import frame, recv_frame
from inproc_server import served as serve_in_thread

from arrowlog.server import errors as E
from arrowlog.server import messages as M
from arrowlog.server.wire import Reader

SUBSCRIPTION = struct.pack(">hih", 0, 1, 1) + b"t" + struct.pack(">i", 0)


def join_body(member_id: str) -> dict:
    return {"group_id": "g", "session_timeout_ms": 30000, "rebalance_timeout_ms": 60000, "member_id": member_id,
            "group_instance_id": None, "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": SUBSCRIPTION}]}


def decoded(api, version: int, data: bytes) -> dict:
    r = Reader(data)
    r.int32()
    if api.is_flexible(version):
        r.skip_tags()
    return api.decode_response(r, version)


def test_stop_answers_a_long_poll_and_a_waiting_join(tmp_path):
    with serve_in_thread(tmp_path / "data", group_initial_rebalance_delay_ms=0) as (server, run):
        first = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        first.sendall(frame(M.CREATE_TOPICS, 7, {"topics": [{"name": "t", "num_partitions": 1,
                                                             "replication_factor": 1}]}))
        recv_frame(first)
        first.sendall(frame(M.JOIN_GROUP, 5, join_body("")))
        assert decoded(M.JOIN_GROUP, 5, recv_frame(first))["error_code"] == E.NONE
        joining = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        joining.sendall(frame(M.JOIN_GROUP, 5, join_body("")))    # waits for the first member to rejoin
        polling = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        polling.sendall(frame(M.FETCH, 12, {
            "replica_id": -1, "max_wait_ms": 60000, "min_bytes": 1, "max_bytes": 1 << 20, "isolation_level": 0,
            "session_id": 0, "session_epoch": -1, "forgotten_topics_data": [], "rack_id": "",
            "topics": [{"topic": "t", "partitions": [{"partition": 0, "fetch_offset": 0,
                                                      "partition_max_bytes": 1 << 20}]}]}))

        async def waiting() -> tuple[int, int]:
            g = server.broker.groups.groups.get("g")
            return server.broker.long_polls, len(g.members) if g else 0

        deadline = time.monotonic() + 60
        while run(waiting()) != (1, 2):
            assert time.monotonic() < deadline, "the Fetch and the JoinGroup did not start waiting"
            time.sleep(0.02)
    # (the server stopped when the block ended)
    joined = decoded(M.JOIN_GROUP, 5, recv_frame(joining))
    assert joined["error_code"] == E.COORDINATOR_NOT_AVAILABLE
    fetched = decoded(M.FETCH, 12, recv_frame(polling))
    part = fetched["responses"][0]["partitions"][0]
    assert part["error_code"] == E.NONE and not part["records"]
    for s in (first, joining, polling):
        s.close()
