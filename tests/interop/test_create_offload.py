"""arrowlog serve makes a created topic's (or added partitions') files in a worker
thread (server/admin.py): while a CreateTopics or CreatePartitions of many
partitions is held at one partition by a hook, other clients' Metadata and
ApiVersions are answered; the creating connection's answers stay in order."""

from __future__ import annotations

import socket
import struct
import threading

from arrowlog.server import messages as M
from arrowlog.storage import precreate

from .test_hostile import inproc  # noqa: F401 (a fixture)
from .wireclient import call, recv_frame, request_frame, still_serving

DEADLINE = 120.0  # seconds: reached only when the loop is blocked
MARKER = 86_400_000 + 7  # retention.ms of the held creation only


def hold(monkeypatch, at: int) -> tuple[threading.Event, threading.Event]:
    """create_partition stops before partition ``at`` of a topic whose retention.ms is MARKER."""
    reached, release = threading.Event(), threading.Event()
    real = precreate.create_partition

    def hooked(directory: str, config: dict, schema) -> bool:
        if directory.endswith(f"/{at}") and config.get("retention.ms") == MARKER:
            reached.set()
            release.wait(DEADLINE)
        return real(directory, config, schema)

    monkeypatch.setattr(precreate, "create_partition", hooked)
    return reached, release




def others_served_while_held(server, reached: threading.Event, release: threading.Event) -> None:
    assert reached.wait(DEADLINE), "the creation never reached the hook"
    try:
        still_serving(server)  # ApiVersions, on its own connection (10 s socket timeout)
        resp = call(server, M.METADATA, 4, {"topics": None, "allow_auto_topic_creation": False})
        assert "big" not in {t["name"] for t in resp["topics"]}  # not made yet: not shown
    finally:
        release.set()


def test_a_large_create_topics_does_not_stall_other_clients(inproc, monkeypatch):  # noqa: F811
    reached, release = hold(monkeypatch, 600)
    create = request_frame(M.CREATE_TOPICS, 7, {"topics": [{
        "name": "big", "num_partitions": 1000, "replication_factor": 1,
        "configs": [{"name": "retention.ms", "value": str(MARKER)}]}], "timeout_ms": 60000}, 1)
    with socket.create_connection((inproc.host, inproc.port), timeout=DEADLINE) as s:
        # pipelined on one connection: the ApiVersions answer waits for the CreateTopics one
        s.sendall(create + request_frame(M.API_VERSIONS, 0, {}, 2))
        others_served_while_held(inproc, reached, release)
        first, second = recv_frame(s), recv_frame(s)
    assert struct.unpack(">i", first[:4])[0] == 1 and struct.unpack(">i", second[:4])[0] == 2
    resp = call(inproc, M.METADATA, 4, {"topics": [{"name": "big"}], "allow_auto_topic_creation": False})
    assert resp["topics"][0]["error_code"] == 0 and len(resp["topics"][0]["partitions"]) == 1000


def test_a_large_create_partitions_does_not_stall_other_clients(inproc, monkeypatch):  # noqa: F811
    resp = call(inproc, M.CREATE_TOPICS, 7, {"topics": [{
        "name": "grow", "num_partitions": 1, "replication_factor": 1,
        "configs": [{"name": "retention.ms", "value": str(MARKER)}]}], "timeout_ms": 60000})
    assert resp["topics"][0]["error_code"] == 0, resp
    reached, release = hold(monkeypatch, 300)
    grow = request_frame(M.CREATE_PARTITIONS, 2, {"topics": [{"name": "grow", "count": 500, "assignments": None}],
                                          "timeout_ms": 60000, "validate_only": False}, 3)
    with socket.create_connection((inproc.host, inproc.port), timeout=DEADLINE) as s:
        s.sendall(grow)
        others_served_while_held(inproc, reached, release)
        answer = recv_frame(s)
    assert struct.unpack(">i", answer[:4])[0] == 3
    resp = call(inproc, M.METADATA, 4, {"topics": [{"name": "grow"}], "allow_auto_topic_creation": False})
    assert resp["topics"][0]["error_code"] == 0 and len(resp["topics"][0]["partitions"]) == 500
