"""/metrics and the console against clients that connect and say nothing, or
connect by the hundred: each connection is closed after the idle timeout, and
past the connection limit a new one is answered 503 and closed, so silent
clients cannot pile up threads and file descriptors in the process (under
``arrowlog serve``, the Kafka server's)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import arrowlog

pytest.importorskip("prometheus_client")

DEADLINE_S = 60.0


def start_metrics(tmp_path, **limits):
    from arrowlog.metrics import LogDirCollector, start_metrics_http

    http = start_metrics_http(LogDirCollector(arrowlog.LogDir(str(tmp_path / "d"))), "127.0.0.1:0", **limits)
    return http, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def start_console(tmp_path, **limits):
    pytest.importorskip("flask")
    pytest.importorskip("duckdb")
    from arrowlog.console.serving import start_console_http

    arrowlog.LogDir(str(tmp_path / "d")).close()
    http = start_console_http(str(tmp_path / "d"), "127.0.0.1:0", **limits)
    return http, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


ENDPOINTS = pytest.mark.parametrize("start", [start_metrics, start_console], ids=["metrics", "console"])


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)


def answer(port: int, request: bytes) -> tuple[int, bytes]:
    """(HTTP status, whole reply) of one request on a new connection."""
    with connect(port) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return int(out.split(b" ", 2)[1]), out


@ENDPOINTS
def test_a_silent_connection_is_closed_after_the_idle_timeout(tmp_path, start):
    http, _ = start(tmp_path, idle_timeout_s=0.2)
    try:
        with connect(http.port) as silent:
            assert silent.recv(100) == b""        # closed by the server, nothing answered
        with connect(http.port) as head_only:    # a request head that never ends
            head_only.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            assert head_only.recv(100) == b""
    finally:
        http.close()


@ENDPOINTS
def test_connections_past_the_limit_are_refused_and_the_endpoint_recovers(tmp_path, start):
    http, request = start(tmp_path, max_connections=3)
    threads_before = threading.active_count()
    try:
        silent = [connect(http.port) for _ in range(3)]
        # accepted in the order they connected: these three hold every slot
        extra = [answer(http.port, request) for _ in range(20)]
        assert [status for status, _ in extra] == [503] * 20, extra[0][1][:200]
        assert threading.active_count() <= threads_before + 3
        for s in silent:
            s.close()
        deadline = time.monotonic() + DEADLINE_S
        while (reply := answer(http.port, request))[0] != 200:
            assert reply[0] == 503, reply[1][:200]
            assert time.monotonic() < deadline, "the slots of closed connections never came back"
    finally:
        http.close()
