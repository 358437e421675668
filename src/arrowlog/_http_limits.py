"""The limits of arrowlog's threaded HTTP servers: ``/metrics`` and the console.

Both run on a thread-per-connection server (wsgiref's under prometheus_client,
Werkzeug's under Flask), and neither of those closes a connection that sends
nothing: a client that opens a connection and stays silent, or trickles its
request head, held a thread and a file descriptor for as long as it liked, and
any number of such clients were served. Under ``arrowlog serve`` those
descriptors are the Kafka server's own: enough idle HTTP connections would leave
it unable to accept a client or open a segment.

So each connection's socket reads and writes time out after
``IDLE_TIMEOUT_S`` (the schema registry's idle timeout, registry/app.py), and
at most ``MAX_CONNECTIONS`` are served at once; one more is answered 503 and
closed by the accepting thread, which never waits on it. A client that trickles
a byte within every timeout keeps its connection, but holds only one of
``MAX_CONNECTIONS`` slots: it can delay this endpoint, not the process.

Thread-safety: a server's slot count is a semaphore taken on the accepting
thread and given back by the connection's own thread.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

log = logging.getLogger("arrowlog.http")

# A scraper sends its request at once and a browser re-opens a connection it
# finds closed: 30 s of silence is no client's normal pace.
IDLE_TIMEOUT_S = 30.0
# Prometheus scrapes on one connection and a browser opens about 6 per host;
# 64 leaves room for many of both, and bounds the threads (and descriptors) an
# endpoint can hold at 64.
MAX_CONNECTIONS = 64
_BUSY_BODY = b"too many connections: try again later\r\n"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
         b"Connection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))
_WARN_EVERY_S = 60.0


class ConnectionLimits:
    """Mixin, placed before ``socketserver.ThreadingMixIn``: at most
    ``max_connections`` connections served at once. The handler class sets the
    idle timeout (``timeout = IDLE_TIMEOUT_S``: socketserver applies it to the
    connection's socket)."""

    max_connections = MAX_CONNECTIONS

    def __init__(self, *args, **kwargs):
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._warned_at = float("-inf")
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self._refuse(request, client_address)
            return
        try:
            super().process_request(request, client_address)  # type: ignore[misc]
        except BaseException:
            self._slots.release()  # no thread started to give it back
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            self._slots.release()

    def _refuse(self, request, client_address) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning("refusing HTTP connections (the first from %s): %d are open, the limit",
                        client_address[0] if client_address else "?", self.max_connections)
        try:
            request.setblocking(False)
            request.send(_BUSY)  # small enough for an empty socket buffer; never waits
        except OSError:
            pass
        self.shutdown_request(request)  # type: ignore[attr-defined]


def limited(server_class: type, handler_class: type, idle_timeout_s: float = IDLE_TIMEOUT_S,
            max_connections: int = MAX_CONNECTIONS) -> tuple[Any, Any]:
    """Subclasses of a threaded ``socketserver`` server class and its handler class
    that keep these limits: (server class, handler class)."""
    server = type(server_class.__name__, (ConnectionLimits, server_class), {"max_connections": max_connections})
    handler = type(handler_class.__name__, (handler_class,), {"timeout": idle_timeout_s})
    return server, handler


def address_family(host: str, port: int) -> socket.AddressFamily:
    """The family to listen on ``host`` with (AF_INET6 for an IPv6 address)."""
    try:
        return socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    except socket.gaierror:
        return socket.AF_INET
