"""Connections that have not logged in cannot push out those that have.

At ``max_connections`` the server closes an idle connection to admit a new
one. On a SASL listener anyone who can reach the port may open connections
and stay before the login (ApiVersions is answered there), so a flood of them
closed logged-in clients idle between requests (a producer between batches,
a group member between heartbeats) one after another. A connection that has
not logged in is now closed first; a logged-in one only when no connection
that has not logged in is idle."""

from __future__ import annotations

import socket
import struct

from inproc_server import frame, recv_frame, served

from arrowlog.server import messages as M
from arrowlog.server.security import SecurityConfig
from arrowlog.server.security.scram import make_credential
from arrowlog.server.security.store import CredentialStore
from arrowlog.server.server import Limits
from arrowlog.server.wire import Reader

DEADLINE_S = 60.0


def call(s: socket.socket, api, version: int, body: dict) -> dict:
    s.sendall(frame(api, version, body))
    r = Reader(recv_frame(s))
    assert r.int32() == 1   # the correlation id
    if api.is_flexible(version) and api is not M.API_VERSIONS:   # ApiVersions: response header v0 always
        r.skip_tags()
    return api.decode_response(r, version)


def logged_in(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
    assert call(s, M.SASL_HANDSHAKE, 1, {"mechanism": "PLAIN"})["error_code"] == 0
    assert call(s, M.SASL_AUTHENTICATE, 2, {"auth_bytes": b"\0alice\0alice-secret"})["error_code"] == 0
    return s


def still_open(s: socket.socket) -> bool:
    """Whether the server answers on ``s`` (ApiVersions: answered before a login too)."""
    try:
        return call(s, M.API_VERSIONS, 0, {})["error_code"] == 0
    except (ConnectionError, AssertionError, struct.error):
        return False


def test_connections_that_have_not_logged_in_are_closed_first_to_make_room(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    CredentialStore(str(data)).upsert("alice", "SCRAM-SHA-256",
                                      make_credential("SCRAM-SHA-256", "alice-secret", iterations=4096))
    security = SecurityConfig(listener="SASL_PLAINTEXT", sasl_mechanisms="PLAIN")
    with served(data, security=security, limits=Limits(max_connections=3)) as (server, run):
        alice = logged_in(server.port)      # idle from now on, and the longest inactive
        strangers = []
        for _ in range(10):                 # each finds 3 open: one is closed to admit it
            s = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S)
            assert call(s, M.API_VERSIONS, 0, {})["error_code"] == 0   # answered before a login
            strangers.append(s)
        assert still_open(alice)   # logged in and answered
        assert call(alice, M.METADATA, 4, {"topics": [], "allow_auto_topic_creation": False})["topics"] == []
        assert sum(still_open(s) for s in strangers) == 2   # 8 were closed: they pushed out each other
        for s in strangers:
            s.close()
        alice.close()
