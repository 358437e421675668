"""A KafkaServer on its own event-loop thread in the test process (its state can be looked at between
requests), and the bytes of a request to send it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading

from arrowlog.server import KafkaServer
from arrowlog.server.wire import Writer


@contextlib.contextmanager
def served(data_dir, **options):
    """Yield (server, run): ``run(coro)`` runs ``coro`` on the server's loop and returns its result."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    server = KafkaServer(str(data_dir), "127.0.0.1", 0, **options)
    run(server.start())
    try:
        yield server, run
    finally:
        run(server.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def frame(api, version: int, body: dict, correlation_id: int = 1) -> bytes:
    """``body`` as one request of ``api`` (its size, the header, the body)."""
    w = Writer()
    api.encode_request(body, w, version)
    header = struct.pack(">hhih", api.key, version, correlation_id, 1) + b"c" + b"\x00" * api.is_flexible(version)
    return struct.pack(">i", len(header) + len(w.buf)) + header + bytes(w.buf)


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        assert chunk, "connection closed"
        buf += chunk
    return bytes(buf)


def recv_frame(s: socket.socket) -> bytes:
    return recv_exact(s, struct.unpack(">i", recv_exact(s, 4))[0])
