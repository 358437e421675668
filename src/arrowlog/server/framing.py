"""One connection's byte stream, read as Kafka frames straight into their buffers.

``FrameStream`` is an ``asyncio.BufferedProtocol``: the transport receives
into memory the stream hands it (``get_buffer``/``buffer_updated``) instead
of into a new bytes object per read. Between frames it hands out a small
staging buffer (``STAGE_BYTES``), so pipelined small requests arrive many to
a read; once a body's size is known and memory is reserved for it, the part
already staged is copied into the body's own buffer and the rest of the body
is received straight into that buffer. asyncio's StreamReader copied every
body twice more (from the received bytes into its buffer, then out of it
into the body), into fresh pages each time (docs/PROTOCOL.md, Tests and
speed).

Body buffers of 64 KiB to 1 MiB come from a ``BodyPool`` shared by the
server's connections and go back to it once the request is answered and
nothing references them any more, so the next body lands in memory whose
pages are already mapped. Larger bodies get an anonymous mapping of their
size, unmapped as soon as they are freed.

Flow control: the stream reads ahead at most one staging buffer; when that
is full, and no body is being received, it pauses the transport. A reader
that is waiting for room in the request memory pool therefore stops the
connection from being read, as before.
"""

from __future__ import annotations

import asyncio
import mmap

# Read-ahead between frames (a pipelined burst of small requests, or the head
# of the next large one), per connection, allocated on its first read.
STAGE_BYTES = 32 * 1024
# Bodies up to this size are received into a bytearray (pooled from POOLED_MIN_BYTES);
# larger ones into an anonymous mapping of their size.
MAPPED_ABOVE = 1 << 20
POOLED_MIN_BYTES = 64 * 1024
# Body buffers kept for reuse, all connections together.
POOL_BYTES = 16 << 20


class BodyPool:
    """Reusable body buffers, one free list per size class (powers of two from
    ``POOLED_MIN_BYTES`` to ``MAPPED_ABOVE``), at most ``limit`` bytes kept."""

    def __init__(self, limit: int = POOL_BYTES):
        self.limit = limit
        self.kept = 0          # bytes in the free lists
        self.allocated = 0     # buffers ever created (statistics, tests)
        self._free: dict[int, list[bytearray]] = {}

    @staticmethod
    def size_class(size: int) -> int:
        return max(POOLED_MIN_BYTES, 1 << (size - 1).bit_length())

    def take(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes (``POOLED_MIN_BYTES`` ≤ size ≤ ``MAPPED_ABOVE``)."""
        cls = self.size_class(size)
        free = self._free.get(cls)
        if free:
            self.kept -= cls
            return free.pop()
        self.allocated += 1
        return bytearray(cls)

    def give(self, buf: bytearray) -> bool:
        """Keep ``buf`` for a later body, if it is one of the pool's sizes, nothing
        reads it any more and the pool has room. Every reader of a body holds a
        buffer export of it (a memoryview, an Arrow buffer over one), and a bytearray
        with an export cannot be resized: popping and re-appending its last byte
        (O(1), no reallocation) succeeds only once the last one is gone."""
        cls = len(buf)
        if (type(buf) is not bytearray or cls != self.size_class(cls) or cls > MAPPED_ABOVE
                or self.kept + cls > self.limit):
            return False
        try:
            buf.append(buf.pop())
        except BufferError:  # still exported: left to be freed with its last reader
            return False
        self._free.setdefault(cls, []).append(buf)
        self.kept += cls
        return True


def free_body(body, pool: BodyPool | None) -> None:
    """Give a body's memory back now rather than when its last reference goes: a
    mapped body is unmapped, a pooled one goes back to ``pool``. One still referenced
    (a memoryview kept by a handler) is left to be freed with that reference."""
    if not isinstance(body, memoryview):
        return
    owner = body.obj
    try:
        body.release()
    except BufferError:  # something holds a buffer of the view itself
        return
    if isinstance(owner, mmap.mmap):
        try:
            owner.close()
        except BufferError:
            pass
    elif pool is not None and type(owner) is bytearray:
        pool.give(owner)


class FrameStream(asyncio.BufferedProtocol):
    """A connection as frames: ``read(4)`` (or ``take(4)`` when ``buffered()``) for
    the size, ``read_body`` for the body, ``write``/``drain`` for responses. ``serve(stream)`` runs as the
    connection's task from ``connection_made``; a lost connection or EOF makes
    a pending or later read raise (``IncompleteReadError`` or ``ConnectionError``)."""

    def __init__(self, serve, pool: BodyPool):
        self._serve = serve
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task | None = None
        self.last_active = 0.0      # loop time of the last request or body bytes
        self._loop = asyncio.get_running_loop()
        self._stage = bytearray()
        self._view = memoryview(self._stage)
        self._start = self._end = 0  # unread bytes: _stage[_start:_end]
        self._target: memoryview | None = None  # the part of a body still to arrive
        self._need = 0               # staged bytes the reader waits for
        self._waiter: asyncio.Future | None = None
        self._eof = False
        self._closed = False
        self._lost: BaseException | None = None   # the error that ended the connection
        self._reading_paused = False
        self._writing_paused = False
        self._drainers: list[asyncio.Future] = []

    # ---------------------------------------------------------------- protocol side

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.last_active = self._loop.time()
        self.task = self._loop.create_task(self._serve(self))

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._target is not None:
            return self._target
        if not self._stage:
            self._stage = bytearray(STAGE_BYTES)
            self._view = memoryview(self._stage)
        if self._end == len(self._stage):
            self._compact()
            if self._end == len(self._stage):
                # Only a transport that reads on after pause_reading() gets here: grow
                # rather than hand out an empty buffer (a fatal error for asyncio).
                self._grow()
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        target = self._target
        if target is not None:
            if nbytes == len(target):
                self._target = None
                self._wake()
            else:
                self._target = target[nbytes:]
            self.last_active = self._loop.time()
            return
        self._end += nbytes
        if self._need and self._end - self._start >= self._need:
            self._wake()
        if self._end - self._start >= len(self._stage):
            self._pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # Keep a plain connection open for the answers to what was read (a half-closed
        # client); a TLS transport closes after close_notify whatever this returns.
        return self.transport is None or self.transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc) -> None:
        self._eof = self._closed = True
        self._lost = exc
        self._wake()
        for fut in self._drainers:
            if not fut.done():
                fut.set_exception(ConnectionResetError("connection lost"))
        self._drainers.clear()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        for fut in self._drainers:
            if not fut.done():
                fut.set_result(None)
        self._drainers.clear()

    # ---------------------------------------------------------------- reader side

    def buffered(self) -> int:
        """Bytes received and not yet read."""
        return self._end - self._start

    def take(self, n: int) -> bytes:
        """``n`` bytes already received (``n <= buffered()``)."""
        start = self._start
        data = bytes(self._view[start:start + n])
        self._consume(n)
        return data

    async def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes (at most ``STAGE_BYTES``)."""
        if self._end - self._start < n:
            await self._wait_staged(n)
        return self.take(n)

    async def read_body(self, size: int) -> bytes | memoryview:
        """The next ``size`` bytes as one body: bytes if they were all staged and fit
        the staging buffer, else a memoryview of exactly ``size`` bytes over a pooled
        buffer or an anonymous mapping (``free_body`` gives it back)."""
        have = self._end - self._start
        if have >= size and size <= STAGE_BYTES:
            return self.take(size)
        if size > MAPPED_ABOVE:
            owner: bytearray | mmap.mmap = mmap.mmap(-1, size)
        elif size >= POOLED_MIN_BYTES:
            owner = self.pool.take(size)
        else:
            owner = bytearray(size)
        body = memoryview(owner)[:size]
        del owner
        try:
            have = min(have, size)
            if have:
                body[:have] = self._view[self._start:self._start + have]
                self._consume(have)
            if have < size:
                await self._receive_into(body[have:])
        except BaseException:
            free_body(body, self.pool)
            raise
        return body

    async def _receive_into(self, target: memoryview) -> None:
        self._target = target
        try:
            self._resume_reading()
            while self._target is not None:
                self._check_open(len(self._target))
                self._waiter = self._loop.create_future()
                await self._waiter
        finally:
            self._waiter = None
            # Every view of the body released, even one a traceback keeps: a mapped
            # body can then be unmapped at once (free_body).
            if self._target is not None:  # failed or cancelled part-way
                self._target.release()
                self._target = None
            target.release()

    async def _wait_staged(self, n: int) -> None:
        self._need = n
        try:
            while self._end - self._start < n:
                self._check_open(n - (self._end - self._start))
                self._resume_reading()
                self._waiter = self._loop.create_future()
                await self._waiter
        finally:
            self._need = 0
            self._waiter = None

    def _check_open(self, missing: int) -> None:
        if self._lost is not None:
            raise ConnectionResetError(f"connection lost: {self._lost}")
        if self._eof:
            raise asyncio.IncompleteReadError(b"", missing)

    def _consume(self, n: int) -> None:
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0
        if self._reading_paused and self._end - self._start < len(self._stage):
            self._resume_reading()

    def _compact(self) -> None:
        start, end = self._start, self._end
        if start:
            self._view[:end - start] = self._view[start:end]
            self._start, self._end = 0, end - start

    def _grow(self) -> None:
        bigger = bytearray(2 * len(self._stage))
        bigger[:self._end] = self._view[:self._end]
        self._view.release()
        self._stage, self._view = bigger, memoryview(bigger)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    # ---------------------------------------------------------------- writer side

    def write(self, data) -> None:
        """One response: bytes-like, or a list of pieces written in order (a Fetch's
        stored batches are not joined into one buffer first)."""
        transport = self.transport
        assert transport is not None
        if isinstance(data, list):
            for piece in data:
                transport.write(piece)
        else:
            transport.write(data)

    def write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if self._closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("connection lost")
        if not self._writing_paused:
            return
        fut = self._loop.create_future()
        self._drainers.append(fut)
        await fut

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
