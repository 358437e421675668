"""arrowlog.server.framing: the connection reader (a buffered protocol) driven by a fake
transport, as asyncio's selector transport drives it: get_buffer, recv_into, buffer_updated."""

from __future__ import annotations

import asyncio
import mmap
import struct

import pytest

from arrowlog.server import framing as F


class FakeTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.paused = False
        self.closed = False
        self.written: list[bytes] = []

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def write(self, data):
        self.written.append(bytes(data))

    def get_write_buffer_size(self):
        return 0

    def get_extra_info(self, name, default=None):
        return default


def feed(stream: F.FrameStream, data: bytes, chunk: int = 1 << 30) -> list:
    """Deliver ``data`` as a socket would, at most ``chunk`` bytes a read (and no more
    than each get_buffer asks for); returns the objects whose memory was handed out."""
    handed = []
    pos = 0
    while pos < len(data):
        assert not stream.transport.paused, "fed while the stream had paused reading"
        buf = stream.get_buffer(-1)
        assert len(buf) > 0
        handed.append(buf.obj)
        n = min(len(buf), chunk, len(data) - pos)
        buf[:n] = data[pos:pos + n]
        pos += n
        stream.buffer_updated(n)
    return handed


def connected(pool: F.BodyPool | None = None) -> F.FrameStream:
    async def serve(stream):
        pass

    stream = F.FrameStream(serve, pool or F.BodyPool())
    stream.connection_made(FakeTransport())
    return stream


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def run(coro):
    return asyncio.get_event_loop_policy().get_event_loop().run_until_complete(coro)


@pytest.fixture(autouse=True)
def loop():
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


def test_a_large_body_is_received_straight_into_its_own_buffer():
    async def scenario():
        stream = connected()
        body = bytes(range(256)) * 2000           # 512,000 bytes
        data = frame(body)
        feed(stream, data[:F.STAGE_BYTES])         # the size and the start of the body, staged
        size = struct.unpack(">i", await stream.read(4))[0]
        reading = asyncio.ensure_future(stream.read_body(size))
        await asyncio.sleep(0)
        handed = feed(stream, data[F.STAGE_BYTES:], chunk=100_000)
        got = await reading
        assert bytes(got) == body
        # every read after the staged head went into the body's own memory, not a copy
        assert all(owner is got.obj for owner in handed)
        assert stream.buffered() == 0
    run(scenario())


def test_pipelined_small_requests_arrive_many_to_a_read():
    async def scenario():
        stream = connected()
        bodies = [b"req%d" % i * 3 for i in range(200)]
        handed = feed(stream, b"".join(frame(b) for b in bodies))
        assert len(handed) == 1                    # one read for all 200
        for b in bodies:
            size = struct.unpack(">i", await stream.read(4))[0]
            assert bytes(await stream.read_body(size)) == b
    run(scenario())


def test_one_byte_at_a_time():
    async def scenario():
        stream = connected()
        body = b"x" * 70_000
        data = frame(b"small") + frame(body)
        got = []

        async def reader():
            for _ in range(2):
                size = struct.unpack(">i", await stream.read(4))[0]
                got.append(bytes(await stream.read_body(size)))

        task = asyncio.ensure_future(reader())
        for i in range(len(data)):
            feed(stream, data[i:i + 1])
            await asyncio.sleep(0)
        await task
        assert got == [b"small", body]
    run(scenario())


def test_a_full_staging_buffer_pauses_reading_until_it_is_read():
    async def scenario():
        stream = connected()
        data = frame(b"y" * 100) * 1000            # 104 kB of frames nobody reads yet
        pos = 0
        while not stream.transport.paused:
            buf = stream.get_buffer(-1)
            n = min(len(buf), len(data) - pos)
            buf[:n] = data[pos:pos + n]
            pos += n
            stream.buffer_updated(n)
        assert stream.buffered() == F.STAGE_BYTES  # read ahead one staging buffer, no more
        await stream.read(4)
        assert not stream.transport.paused         # room again: reading resumes
    run(scenario())


@pytest.mark.parametrize("cut", [0, 2, 4, 1000, 200_000])
def test_eof_part_way_raises_incomplete_read(cut):
    async def scenario():
        stream = connected()
        data = frame(b"z" * 300_000)

        async def reader():
            size = struct.unpack(">i", await stream.read(4))[0]
            await stream.read_body(size)

        task = asyncio.ensure_future(reader())
        for pos in range(0, cut, 10_000):
            feed(stream, data[pos:min(cut, pos + 10_000)])
            await asyncio.sleep(0)
        stream.eof_received()
        with pytest.raises(asyncio.IncompleteReadError):
            await task
    run(scenario())


def test_a_lost_connection_wakes_a_waiting_read_and_gives_the_body_back():
    async def scenario():
        pool = F.BodyPool()
        stream = connected(pool)
        feed(stream, frame(b"w" * 100_000)[:20_000])
        size = struct.unpack(">i", await stream.read(4))[0]
        reading = asyncio.ensure_future(stream.read_body(size))
        await asyncio.sleep(0)
        stream.connection_lost(ConnectionResetError("reset by peer"))
        with pytest.raises(ConnectionError):
            await reading
        assert pool.kept == F.BodyPool.size_class(100_000)   # its buffer is back in the pool
    run(scenario())


def test_a_cancelled_read_of_a_mapped_body_unmaps_it_at_once():
    async def scenario():
        stream = connected()
        feed(stream, struct.pack(">i", 3 << 20) + b"m" * 1000)
        size = struct.unpack(">i", await stream.read(4))[0]
        reading = asyncio.ensure_future(stream.read_body(size))
        await asyncio.sleep(0)
        target = stream.get_buffer(-1)
        assert isinstance(target.obj, mmap.mmap)
        mapping = target.obj
        del target
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert mapping.closed                      # not left for the garbage collector
    run(scenario())


def test_the_pool_reuses_a_buffer_only_once_nothing_refers_to_it():
    pool = F.BodyPool(limit=2 << 20)
    a = pool.take(700_000)
    assert len(a) == 1 << 20 and pool.allocated == 1
    view = memoryview(a)[10:20]                   # e.g. a handler keeps a record's bytes
    assert not pool.give(a)
    del view
    assert pool.give(a) and pool.kept == 1 << 20
    assert pool.take(600_000) is a and pool.kept == 0 and pool.allocated == 1
    assert pool.give(a)
    assert pool.take(900_000) is a                # the same size class
    # the pool keeps at most its limit
    bufs = [pool.take(1 << 20) for _ in range(3)]
    assert [pool.give(x) for x in bufs] == [True, True, False]
    assert not pool.give(bytearray(1000))         # not one of its sizes


def test_free_body_returns_pooled_buffers_and_unmaps_mappings():
    pool = F.BodyPool()
    body = memoryview(pool.take(100_000))[:100_000]
    records = body[50:60]                          # a handler still holds part of it
    F.free_body(body, pool)
    assert pool.kept == 0
    body = memoryview(records.obj)[:100_000]
    del records
    F.free_body(body, pool)
    assert pool.kept == F.BodyPool.size_class(100_000)
    mapping = mmap.mmap(-1, 2 << 20)
    F.free_body(memoryview(mapping)[:2 << 20], pool)
    assert mapping.closed
    F.free_body(b"bytes", pool)                    # a small staged body: nothing to do


def test_drain_waits_while_writing_is_paused_and_fails_once_lost():
    async def scenario():
        stream = connected()
        stream.pause_writing()
        draining = asyncio.ensure_future(stream.drain())
        await asyncio.sleep(0)
        assert not draining.done()
        stream.resume_writing()
        await draining
        stream.pause_writing()
        draining = asyncio.ensure_future(stream.drain())
        await asyncio.sleep(0)
        stream.connection_lost(None)
        with pytest.raises(ConnectionError):
            await draining
    run(scenario())
