"""The asyncio server: framing, request/response headers, ordering and limits.

Wire framing: every request and response is an int32 size then that many
bytes. A request header is ``api_key i16, api_version i16, correlation_id
i32, client_id`` (a nullable int16-length string even in flexible versions),
followed by a tagged-field buffer in flexible versions (header v2). A
response header is ``correlation_id i32``, plus a tagged-field buffer for
flexible versions (header v1) - except ApiVersions, whose response header is
always v0.

Each connection is a ``FrameStream`` (framing.py): an asyncio buffered protocol
that receives each request body straight into its own (pooled) buffer.
Per connection, requests are read and started in order and responses are
written in request order (clients match them by position). Handlers that
wait (Fetch, JoinGroup, SyncGroup) do not hold up reading, so a Produce can
run while a Fetch on the same connection long-polls.

A connection is admitted in ``_admit`` (where its TLS principal and SASL
state are set up) and every request goes through ``Security.dispatch``
(security/): SASL before anything else on a SASL listener, then the ACL
check, then the broker's handler.

Hostile input (docs/PROTOCOL.md lists every limit; ``Limits`` holds them):

- the size is checked against ``max_frame_bytes`` before any buffer is
  allocated (an HTTP ``GET /`` reads as a 1.2 GB frame and is refused);
- the bytes of requests read but not yet answered are reserved, before the
  body is read, from one pool shared by all connections
  (``queued_max_request_bytes``) and per connection
  (``max_inflight_bytes``, and at most ``max_inflight_requests`` requests,
  whose responses are held until written); a request that does not fit
  waits without being read, and a closing connection gives back everything
  it holds; responses are written with backpressure, so a client that does
  not read its responses stops being read, and a connection has one Fetch
  at a time (a Fetch response can be as large as a stored batch);
- a request may hold at most ``max_request_elements`` array elements in all,
  so no request makes the event loop decode (or answer) millions of items;
- a connection must complete its first request within
  ``first_request_timeout_s`` of being accepted (a partial size prefix
  included), later ones wait at most ``idle_timeout_s`` for the next request
  and ``request_read_timeout_s`` for a body;
- at most ``max_connections`` are open: a new connection closes the idle
  connection (nothing to answer: waiting for a request, or stalled in one)
  inactive the longest, one that has not logged in (SASL) before any that
  has, and is refused only if none is idle;
- unparsable requests, unknown APIs and unsupported versions close the
  connection.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from arrowlog.errors import ConfigError

from . import errors as E
from .broker import Broker, BrokerConfig, RequestContext
from .framing import BodyPool, FrameStream, free_body
from .messages import API_VERSIONS, APIS, FETCH
from .security import Security, SecurityConfig
from .security.sasl import ConnectionSecurity
from .wire import Encoded, ProtocolError, Reader, Writer

log = logging.getLogger("arrowlog.server")

# The largest request (Kafka's socket.request.max.bytes, whose default is 100 MiB).
# Lower here: decoding a frame of tiny records or headers and appending it takes
# up to five times its size (docs/PROTOCOL.md, Limits), which must stay well
# under 512 MiB; Kafka clients send at most 1 MB requests unless configured.
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
# Requests read but not yet answered: all connections together, and one connection.
_DEFAULT_REQUEST_MEMORY = 256 * 1024 * 1024
# Responses queued in the transport beyond this are drained before the next is written.
_WRITE_BUFFER_LIMIT = 1 << 20


class Limits:
    """Every limit the connection layer enforces (names: docs/PROTOCOL.md)."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME, max_connections: int = 1000,
                 max_inflight_bytes: int | None = None, max_inflight_requests: int = 64,
                 queued_max_request_bytes: int | None = None,
                 idle_timeout_s: float = 600.0, first_request_timeout_s: float = 5.0,
                 request_read_timeout_s: float = 30.0, max_request_elements: int = 3_000,
                 queued_max_response_bytes: int = _DEFAULT_REQUEST_MEMORY):
        # The two byte budgets default to 256 MiB, or one frame if frames may be larger.
        if max_inflight_bytes is None:
            max_inflight_bytes = max(_DEFAULT_REQUEST_MEMORY, max_frame_bytes)
        if queued_max_request_bytes is None:
            queued_max_request_bytes = max(_DEFAULT_REQUEST_MEMORY, max_frame_bytes)
        self.max_frame_bytes = max_frame_bytes
        self.max_connections = max_connections
        self.max_inflight_bytes = max_inflight_bytes
        self.max_inflight_requests = max_inflight_requests
        self.queued_max_request_bytes = queued_max_request_bytes
        self.idle_timeout_s = idle_timeout_s
        self.first_request_timeout_s = first_request_timeout_s
        self.request_read_timeout_s = request_read_timeout_s
        self.max_request_elements = max_request_elements
        # Fetch record data written but not yet sent, all connections together (a Fetch
        # gets what is left, and at least one batch: KIP-74)
        self.queued_max_response_bytes = queued_max_response_bytes
        for name, value in vars(self).items():
            if not value > 0:
                raise ConfigError(f"server limit {name} must be positive, not {value!r}")
        if max_frame_bytes > min(max_inflight_bytes, queued_max_request_bytes):
            raise ConfigError(f"--max-frame-bytes ({max_frame_bytes}) must not exceed "
                              f"--queued-max-request-bytes ({queued_max_request_bytes}) or "
                              f"max_inflight_bytes ({max_inflight_bytes}): such a request could "
                              "never be read; raise them together")


class _RequestMemory:
    """Bytes reserved for requests being read or awaiting their response, across
    all connections (Kafka's ``queued.max.request.bytes``)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._freed = asyncio.Event()

    async def reserve(self, n: int) -> None:
        while not self.try_reserve(n):
            self._freed.clear()
            await self._freed.wait()

    def try_reserve(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def release(self, n: int) -> None:
        if n:
            self.used -= n
            self._freed.set()


def encode_response(api_key: int, version: int, correlation_id: int, body: dict) -> list:
    """The response frame as a list of pieces: the record batches of a Fetch are the
    encode cache's own bytes, written to the socket without being joined first."""
    api = APIS[api_key]
    w = Writer(gather=True)
    w.int32(0)  # size, patched below
    w.int32(correlation_id)
    if api.is_flexible(version) and api_key != API_VERSIONS.key:
        w.empty_tags()
    if isinstance(body, Encoded):
        w.buf += body
    else:
        api.encode_response(body, w, version)
    return w.frame()


def _unsupported_api_versions(correlation_id: int) -> bytes:
    """KIP-511: an ApiVersions request above our maximum gets a v0 header and v0
    body with UNSUPPORTED_VERSION and our ApiVersions range, so the client retries lower."""
    return b"".join(encode_response(API_VERSIONS.key, 0, correlation_id, {
        "error_code": E.UNSUPPORTED_VERSION,
        "api_keys": [{"api_key": API_VERSIONS.key, "min_version": API_VERSIONS.min_version,
                      "max_version": API_VERSIONS.max_version}]}))


class _Connection:
    __slots__ = ("peer", "pending", "inflight", "inflight_requests", "answering", "fetch_answered",
                 "drained", "closing", "task", "memory", "accepted", "stream", "requests", "security")

    def __init__(self, peer, task, memory: _RequestMemory, stream: FrameStream):
        self.peer = peer
        self.stream = stream
        self.pending: asyncio.Queue = asyncio.Queue()
        self.inflight = 0               # bytes of this connection's requests not yet answered
        self.inflight_requests = 0      # and how many they are
        self.answering = 0              # requests handed to the broker, response not yet written
        self.fetch_answered = asyncio.Event()   # clear while a Fetch awaits its response
        self.fetch_answered.set()
        self.drained = asyncio.Event()
        self.closing = False
        self.task = task
        self.memory = memory
        self.accepted = stream.last_active = _now()
        self.requests = 0               # requests read completely
        self.security: ConnectionSecurity = None  # type: ignore[assignment]  # set on accept: login state and principal

    @property
    def last_active(self) -> float:
        """When the last request was read or the last body bytes arrived."""
        return self.stream.last_active

    @property
    def idle(self) -> bool:
        """Nothing to answer: waiting for a request, or stalled in the middle of one."""
        return self.answering == 0

    def _over(self, size: int, limits: Limits) -> bool:
        return bool(self.inflight) and (self.inflight + size > limits.max_inflight_bytes
                                        or self.inflight_requests >= limits.max_inflight_requests)

    async def reserve(self, size: int, limits: Limits) -> None:
        while self._over(size, limits):
            self.drained.clear()
            await self.drained.wait()
        await self.memory.reserve(size)
        self.inflight += size
        self.inflight_requests += 1

    def try_reserve(self, size: int, limits: Limits) -> bool:
        """``reserve`` if it need not wait."""
        if self._over(size, limits) or not self.memory.try_reserve(size):
            return False
        self.inflight += size
        self.inflight_requests += 1
        return True

    def release(self, size: int, requests: int = 1) -> None:
        self.inflight -= size
        self.inflight_requests -= requests
        self.memory.release(size)
        self.drained.set()


class KafkaServer:
    """A Kafka-protocol listener on an arrowlog data directory (use ``start``/``stop``
    inside a running event loop, or ``serve()`` for a blocking process)."""

    def __init__(self, data_dir: str, host: str = "127.0.0.1", port: int = 9092, *,
                 limits: Limits | None = None, cluster_id: str | None = None,
                 security: SecurityConfig | None = None, metrics_listen: str | None = None,
                 console_listen: str | None = None, **broker_options):
        self.data_dir = str(data_dir)
        self.metrics_listen = metrics_listen      # HOST:PORT of /metrics (arrowlog.metrics), or None
        self.console_listen = console_listen      # HOST:PORT of the web console, or None
        self.metrics = None                       # arrowlog.metrics.ServerMetrics when metrics are served
        self._observers: list = []
        self.security = Security(self.data_dir, security)
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self.broker_options = broker_options
        self.cluster_id = cluster_id
        self.broker: Broker | None = None
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[_Connection, None] = {}   # in accept order
        self._memory: _RequestMemory | None = None
        self._bodies = BodyPool()

    @property
    def request_bytes_reserved(self) -> int:
        """Bytes of requests being read or awaiting a response, all connections."""
        return self._memory.used if self._memory is not None else 0

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def requests_in_flight(self) -> int:
        """Requests read and not yet answered, all connections."""
        return sum(c.inflight_requests for c in self._connections)

    async def start(self) -> None:
        from .cluster import cluster_id_for

        config = BrokerConfig(host=self.host, port=self.port, **self.broker_options)
        self.broker = Broker(self.data_dir, config, self.cluster_id or cluster_id_for(self.data_dir))
        self.broker.response_room = self._response_room
        self._memory = _RequestMemory(self.limits.queued_max_request_bytes)
        tls = self.security.ssl_context
        # A TLS handshake gets the first request's deadline too (the connection is not
        # admitted, so not counted against max_connections, until it completes).
        self._server = await asyncio.get_running_loop().create_server(
            lambda: FrameStream(self._on_connection, self._bodies), self.host, self.port,
            reuse_address=True, backlog=1024, ssl=tls,
            ssl_handshake_timeout=self.limits.first_request_timeout_s if tls else None)
        self.port = self._server.sockets[0].getsockname()[1]
        config.port = self.port
        self.broker.start()
        if self.metrics_listen or self.console_listen:
            from arrowlog.console.serving import start_observers

            try:
                self._observers = start_observers(self)
            except BaseException:  # e.g. the metrics port is taken: do not serve half
                await self.stop()
                raise
        log.info("arrowlog serving %s on %s:%d (cluster %s, listener %s)", self.data_dir, self.host,
                 self.port, self.broker.cluster_id, self.security.config.listener)
        for warning in self.security.startup_warnings(self.host):
            log.warning("%s", warning)

    def _response_room(self) -> int:
        """Bytes a Fetch response may still take: ``queued_max_response_bytes`` less what the
        connections' transports hold unsent (a client that does not read keeps its share)."""
        unsent = sum(c.stream.write_buffer_size() for c in self._connections)
        return self.limits.queued_max_response_bytes - unsent

    async def stop(self) -> None:
        """Stop accepting, close connections, flush every written partition (fsync)."""
        if self._server is not None:
            self._server.close()
        for observer in self._observers:
            observer.close()
        if self.broker is not None:
            self.broker.answer_waiting()
        tasks = [c.task for c in self._connections]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.broker is not None:
            await self.broker.stop()
        if self._server is not None:
            await self._server.wait_closed()
        log.info("arrowlog server stopped")

    def _admit(self, stream: FrameStream) -> _Connection | None:
        """The one place a connection is accepted: when ``max_connections`` are open,
        the idle connection (nothing to answer) inactive the longest is closed to make
        room, one that has not logged in before any that has (on a SASL listener,
        anyone may connect and wait before the login: a flood of such connections
        must not push out logged-in clients); with none idle, the new one is refused."""
        assert stream.transport is not None, "admitted from connection_made"
        peer = stream.transport.get_extra_info("peername")
        if len(self._connections) >= self.limits.max_connections:
            victim = min((c for c in self._connections if c.idle),
                         key=lambda c: (c.security.authenticated, c.last_active), default=None)
            if victim is None:
                log.warning("refusing a connection from %s: %d connections open, none idle",
                            peer, len(self._connections))
                if self.metrics:
                    self.metrics.connection_refused()
                return None
            log.info("closing the connection from %s, inactive %.1f s, to admit %s (%d connections open)",
                     victim.peer, _now() - victim.last_active, peer, len(self._connections))
            self._drop(victim)
        assert self._memory is not None, "start() creates it before any connection is admitted"
        conn = _Connection(peer, asyncio.current_task(), self._memory, stream)
        conn.security = self.security.connection(peer[0] if peer else "",
                                                 stream.transport.get_extra_info("ssl_object"))
        self._connections[conn] = None
        if self.metrics:
            self.metrics.connection_accepted()
        return conn

    def _drop(self, conn: _Connection) -> None:
        if self._connections.pop(conn, False) is not False:
            conn.closing = True
            conn.task.cancel()

    async def _on_connection(self, stream: FrameStream) -> None:
        conn = self._admit(stream)
        if conn is None:
            stream.close()
            return
        writer_task = asyncio.get_running_loop().create_task(self._write_loop(conn, stream))
        try:
            await self._read_loop(conn, stream)
        except asyncio.CancelledError:
            pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except TimeoutError as exc:
            log.info("closing connection from %s: %s", conn.peer, exc.args[0] if exc.args else "timed out")
        except ProtocolError as exc:
            log.warning("closing connection from %s: %s", conn.peer, exc)
        except Exception:
            log.exception("closing connection from %s after an internal error", conn.peer)
        finally:
            self._connections.pop(conn, None)
            conn.pending.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(writer_task), 5.0)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                writer_task.cancel()
            stream.close()
            conn.release(conn.inflight, conn.inflight_requests)  # never answered: back to the pool

    async def _read_request(self, conn: _Connection, stream: FrameStream) -> tuple[bytes | memoryview, int]:
        """The one place a request is read: its size prefix (within the first-request
        deadline or the idle timeout), memory reserved for it, then its body. Returns the
        body and the bytes reserved (released once the response is written)."""
        limits = self.limits
        if conn.requests == 0:
            deadline = conn.accepted + limits.first_request_timeout_s
            what = f"no complete request within {limits.first_request_timeout_s:g} s of connecting"
        else:
            deadline = _now() + limits.idle_timeout_s
            what = f"idle for {limits.idle_timeout_s:g} s"
        stream.last_active = _now()
        if stream.buffered() >= 4:
            head = stream.take(4)
        else:
            try:
                head = await _before(deadline, stream.read(4))
            except asyncio.TimeoutError:
                raise TimeoutError(what) from None
        size = int.from_bytes(head, "big", signed=True)
        if size < 8 or size > limits.max_frame_bytes:
            raise ProtocolError(f"frame size {size} outside 8..{limits.max_frame_bytes} bytes"
                                + (" (is this an HTTP client?)" if head.startswith((b"GET ", b"POST")) else ""))
        if stream.buffered() >= size and conn.try_reserve(size, limits):
            # all there, and room for it: no wait, so no timer (most small requests)
            body: bytes | memoryview = await stream.read_body(size)
            conn.requests += 1
            stream.last_active = _now()
            return body, size
        start = _now()
        body_deadline = start + limits.request_read_timeout_s
        if conn.requests == 0:
            body_deadline = min(body_deadline, deadline)
        async def reserve_and_read() -> bytes | memoryview:
            await conn.reserve(size, limits)
            try:
                return await stream.read_body(size)
            except BaseException:
                conn.release(size)
                raise

        try:
            body = await _before(body_deadline, reserve_and_read())
        except asyncio.TimeoutError:
            raise TimeoutError(f"a {size}-byte request did not arrive within "
                               f"{body_deadline - start:g} s of its size") from None
        conn.requests += 1
        stream.last_active = _now()
        return body, size

    async def _read_loop(self, conn: _Connection, stream: FrameStream) -> None:
        broker = self.broker
        assert broker is not None, "start() creates it before any connection is read"
        host = conn.peer[0] if conn.peer else ""
        body: bytes | memoryview | None
        while not conn.closing:
            body, size = await self._read_request(conn, stream)
            # One Fetch at a time per connection, as Kafka clients send them: a Fetch
            # response can be as large as a stored batch, so pipelined Fetches must not
            # each build one while the client is not reading.
            fetch = not conn.security.expects_raw_token and int.from_bytes(body[:2], "big") == FETCH.key
            try:
                if fetch:
                    await conn.fetch_answered.wait()
                    conn.fetch_answered.clear()
                fut = self._handle(conn, body, host, broker)
            except BaseException:
                if fetch:
                    conn.fetch_answered.set()
                conn.release(size)
                free_body(body, self._bodies)
                raise
            conn.answering += 1
            # The body goes with its response: freed (a pooled buffer reused) once written.
            conn.pending.put_nowait((fut, size, fetch, body))
            del body  # not kept alive here while this connection waits for its next request

    def _handle(self, conn: _Connection, body, host: str, broker: Broker) -> asyncio.Future:
        if conn.security.expects_raw_token:  # after SaslHandshake v0: a bare SASL token
            return _done(conn.security.raw_token(bytes(body)))
        started = time.perf_counter()
        r = Reader(body, max_elements=self.limits.max_request_elements)
        api_key, version, correlation_id = r.int16(), r.int16(), r.int32()
        api = APIS.get(api_key)
        if api is None:
            raise ProtocolError(f"unsupported API key {api_key}")
        if not api.min_version <= version <= api.max_version:
            if api_key == API_VERSIONS.key and version > api.max_version:
                return _done(_unsupported_api_versions(correlation_id))
            raise ProtocolError(f"unsupported {api.name} version {version}")
        client_id = r.string(False)
        if api.is_flexible(version):
            r.skip_tags()
        req = api.decode_request(r, version)
        ctx = RequestContext(api_key, version, correlation_id, client_id, host)
        result = self.security.dispatch(conn.security, ctx, req, broker)
        conn.closing |= conn.security.close_after_reply  # a failed login: reply, then close
        if asyncio.iscoroutine(result):
            return asyncio.ensure_future(_respond_async(result, ctx, self.metrics, api.name, started))
        if self.metrics:
            self.metrics.request_done(api.name, time.perf_counter() - started)
        return _done(None if result is None else encode_response(api_key, version, correlation_id, result))

    async def _write_loop(self, conn: _Connection, stream: FrameStream) -> None:
        while True:
            item = await conn.pending.get()
            if item is None:
                return
            fut, size, fetch, body = item
            del item
            try:
                data = await fut
            except Exception:
                log.exception("request handler failed; closing the connection from %s", conn.peer)
                conn.closing = True
                conn.answering -= 1
                conn.release(size)
                free_body(body, self._bodies)
                conn.fetch_answered.set()
                stream.close()
                return
            if data is not None:
                stream.write(data)
                if conn.pending.empty() or stream.write_buffer_size() > _WRITE_BUFFER_LIMIT:
                    await stream.drain()
            conn.answering -= 1
            conn.release(size)
            free_body(body, self._bodies)    # its reservation is back in the pool: so is its memory
            del body
            if fetch:
                conn.fetch_answered.set()


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _before(deadline: float, awaitable):
    """Await ``awaitable`` until ``deadline`` (on ``_now()``'s clock), else raise
    asyncio.TimeoutError. Twice per request: on Python 3.11+ ``asyncio.timeout_at``
    (one timer on the connection's own task, 6 µs here) rather than ``wait_for``
    (a task and a future more, 16-18 µs)."""
    if _TIMEOUT_AT is None:
        return await asyncio.wait_for(awaitable, max(0.0, deadline - _now()))
    async with _TIMEOUT_AT(deadline):
        return await awaitable


_TIMEOUT_AT = getattr(asyncio, "timeout_at", None)  # Python 3.11+


def _done(value) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


async def _respond_async(coro, ctx: RequestContext, metrics=None, api_name: str = "",
                         started: float = 0.0) -> list | None:
    body = await coro
    if metrics:
        metrics.request_done(api_name, time.perf_counter() - started)
    if body is None:  # e.g. Produce with acks=0: no response at all
        return None
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
