"""The asyncio server: framing, request/response headers, ordering and limits.

Wire framing: every request and response is an int32 size then that many
bytes. A request header is ``api_key i16, api_version i16, correlation_id
i32, client_id`` (a nullable int16-length string even in flexible versions),
followed by a tagged-field buffer in flexible versions (header v2). A
response header is ``correlation_id i32``, plus a tagged-field buffer for
flexible versions (header v1) - except ApiVersions, whose response header is
always v0.

Per connection, requests are read and started in order and responses are
written in request order (clients match them by position). Handlers that
wait (Fetch, JoinGroup, SyncGroup) do not hold up reading, so a Produce can
run while a Fetch on the same connection long-polls.

Hostile input: the size is checked against ``max_frame_bytes`` before any
buffer is allocated (an HTTP ``GET /`` reads as a 1.2 GB frame and is
refused); unparsable requests, unknown APIs and unsupported versions close
the connection; a connection may hold ``max_inflight_bytes`` of unanswered
requests before reading pauses; idle connections close after
``idle_timeout_s``; at most ``max_connections`` are served at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from . import errors as E
from .broker import Broker, BrokerConfig, RequestContext
from .messages import API_VERSIONS, APIS
from .security import Security, SecurityConfig
from .wire import ProtocolError, Reader, Writer

log = logging.getLogger("arrowlog.server")

# Kafka's socket.request.max.bytes default.
DEFAULT_MAX_FRAME = 100 * 1024 * 1024


class Limits:
    def __init__(self, max_frame_bytes=DEFAULT_MAX_FRAME, max_connections=1000,
                 max_inflight_bytes=256 * 1024 * 1024, idle_timeout_s=600.0, request_read_timeout_s=60.0):
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections
        self.max_inflight_bytes = max_inflight_bytes
        self.idle_timeout_s = idle_timeout_s
        self.request_read_timeout_s = request_read_timeout_s


def encode_response(api_key: int, version: int, correlation_id: int, body: dict) -> bytes:
    api = APIS[api_key]
    w = Writer()
    w.int32(0)  # size, patched below
    w.int32(correlation_id)
    if api.is_flexible(version) and api_key != API_VERSIONS.key:
        w.empty_tags()
    api.encode_response(body, w, version)
    w.buf[0:4] = (len(w.buf) - 4).to_bytes(4, "big")
    return bytes(w.buf)


def _unsupported_api_versions(correlation_id: int) -> bytes:
    """KIP-511: an ApiVersions request above our maximum gets a v0 header and v0
    body with UNSUPPORTED_VERSION and our ApiVersions range, so the client retries lower."""
    return encode_response(API_VERSIONS.key, 0, correlation_id, {
        "error_code": E.UNSUPPORTED_VERSION,
        "api_keys": [{"api_key": API_VERSIONS.key, "min_version": API_VERSIONS.min_version,
                      "max_version": API_VERSIONS.max_version}]})


class _Connection:
    __slots__ = ("peer", "pending", "inflight", "drained", "closing", "security")

    def __init__(self, peer, security=None):
        self.peer = peer
        self.security = security  # ConnectionSecurity: authentication state and principal
        self.pending: asyncio.Queue = asyncio.Queue()
        self.inflight = 0
        self.drained = asyncio.Event()
        self.closing = False


class KafkaServer:
    """A Kafka-protocol listener on an arrowlog data directory (use ``start``/``stop``
    inside a running event loop, or ``serve()`` for a blocking process)."""

    def __init__(self, data_dir: str, host: str = "127.0.0.1", port: int = 9092, *,
                 limits: Limits | None = None, cluster_id: str | None = None,
                 security: SecurityConfig | None = None, **broker_options):
        self.data_dir = str(data_dir)
        self.security = Security(self.data_dir, security)
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self.broker_options = broker_options
        self.cluster_id = cluster_id
        self.broker: Broker | None = None
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        from .cluster import cluster_id_for

        config = BrokerConfig(host=self.host, port=self.port, **self.broker_options)
        self.broker = Broker(self.data_dir, config, self.cluster_id or cluster_id_for(self.data_dir))
        self._server = await asyncio.start_server(self._on_connection, self.host, self.port,
                                                  reuse_address=True, limit=1 << 20,
                                                  ssl=self.security.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        config.port = self.port
        self.broker.start()
        log.info("arrowlog serving %s on %s:%d (cluster %s, listener %s)", self.data_dir, self.host, self.port,
                 self.broker.cluster_id, self.security.config.listener)
        for warning in self.security.startup_warnings(self.host):
            log.warning("%s", warning)

    async def stop(self) -> None:
        """Stop accepting, close connections, flush every written partition (fsync)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self.broker is not None:
            await self.broker.stop()
        if self._server is not None:
            await self._server.wait_closed()
        log.info("arrowlog server stopped")

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._connections) >= self.limits.max_connections:
            log.warning("refusing a connection: %d connections open", len(self._connections))
            writer.close()
            return
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        conn = _Connection(peer, self.security.connection(peer[0] if peer else "",
                                                           writer.get_extra_info("ssl_object")))
        writer_task = asyncio.get_running_loop().create_task(self._write_loop(conn, writer))
        try:
            await self._read_loop(conn, reader)
        except asyncio.CancelledError:
            pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.TimeoutError:
            log.info("closing idle connection from %s", peer)
        except ProtocolError as exc:
            log.warning("closing connection from %s: %s", peer, exc)
        except Exception:
            log.exception("closing connection from %s after an internal error", peer)
        finally:
            conn.pending.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(writer_task), 5.0)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                writer_task.cancel()
            writer.close()
            self._connections.discard(task)

    async def _read_loop(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        limits = self.limits
        broker = self.broker
        host = conn.peer[0] if conn.peer else ""
        while not conn.closing:
            head = await asyncio.wait_for(reader.readexactly(4), limits.idle_timeout_s)
            size = int.from_bytes(head, "big", signed=True)
            if size < 8 or size > limits.max_frame_bytes:
                raise ProtocolError(f"frame size {size} outside 8..{limits.max_frame_bytes} bytes"
                                    + (" (is this an HTTP client?)" if head.startswith((b"GET ", b"POST")) else ""))
            while conn.inflight and conn.inflight + size > limits.max_inflight_bytes:
                conn.drained.clear()
                await conn.drained.wait()
            body = await asyncio.wait_for(reader.readexactly(size), limits.request_read_timeout_s)
            if conn.security.expects_raw_token:  # SaslHandshake v0: a bare SASL token
                conn.inflight += size
                conn.pending.put_nowait((_done(conn.security.raw_token(body)), size))
                continue
            r = Reader(body)
            api_key, version, correlation_id = r.int16(), r.int16(), r.int32()
            api = APIS.get(api_key)
            if api is None:
                raise ProtocolError(f"unsupported API key {api_key}")
            if not api.min_version <= version <= api.max_version:
                if api_key == API_VERSIONS.key and version > api.max_version:
                    conn.inflight += size
                    conn.pending.put_nowait((_done(_unsupported_api_versions(correlation_id)), size))
                    continue
                raise ProtocolError(f"unsupported {api.name} version {version}")
            client_id = r.string(False)
            if api.is_flexible(version):
                r.skip_tags()
            req = api.decode_request(r, version)
            ctx = RequestContext(api_key, version, correlation_id, client_id, host)
            result = self.security.dispatch(conn.security, ctx, req, broker)
            conn.closing |= conn.security.close_after_reply  # a failed login: reply, then close
            if asyncio.iscoroutine(result):
                fut = asyncio.ensure_future(_respond_async(result, ctx))
            else:
                fut = _done(None if result is None else encode_response(api_key, version, correlation_id, result))
            conn.inflight += size
            conn.pending.put_nowait((fut, size))

    async def _write_loop(self, conn: _Connection, writer: asyncio.StreamWriter) -> None:
        while True:
            item = await conn.pending.get()
            if item is None:
                return
            fut, size = item
            try:
                data = await fut
            except Exception:
                log.exception("request handler failed; closing the connection from %s", conn.peer)
                conn.closing = True
                writer.close()
                return
            if data is not None:
                writer.write(data)
                if conn.pending.empty():
                    await writer.drain()
            conn.inflight -= size
            conn.drained.set()


def _done(value) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


async def _respond_async(coro, ctx: RequestContext) -> bytes:
    body = await coro
    return encode_response(ctx.api_key, ctx.version, ctx.correlation_id, body)


async def run_until_signalled(server: KafkaServer, ready=None) -> None:
    await server.start()
    if ready is not None:
        ready(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        log.info("shutting down: flushing partitions")
        await server.stop()
