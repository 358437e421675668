"""Issue 12 items 1-3: hostile requests and connections against `arrowlog serve`.

Each finding of the issue is a case here, with its figure: the server stays
up and answers (an error reply, or closing only the offending connection),
its peak RSS (VmHWM of the server process, reset before each case) stays
under 512 MiB, and the event loop of an in-process server never stalls more
than 100 ms on a single request (a probe task ticks every 5 ms and records
the largest gap). Waits poll a condition with a generous deadline.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import socket
import struct
import subprocess
import threading
import time
import zlib

import pyarrow as pa
import pytest
import zstandard
from kafka_batch_craft import claiming, with_block
from rss import reset_peak, status_kib

from arrowlog._native import kafka as K
from arrowlog.server import KafkaServer, Limits
from arrowlog.server import messages as M
from arrowlog.server.wire import Writer

from .conftest import ServerProcess
from .wireclient import call, make_batch, produce, recv_frame, still_serving

MiB = 1024 * 1024
RSS_LIMIT_KIB = 512 * 1024
STALL_LIMIT_S = 0.100


# ------------------------------------------------------------------ helpers

def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"this test needs {needed} file descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def zstd_bomb() -> bytes:
    """33 KB inflating to 1 GiB: 16 zstd frames of 64 MiB of zeros."""
    return with_block(4, zstandard.ZstdCompressor(level=3).compress(b"\x00" * (64 * MiB)) * 16)


def gzip_bomb() -> bytes:
    """522 KB inflating to 512 MiB."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\x00" * MiB
    return with_block(1, b"".join(c.compress(zeros) for _ in range(512)) + c.flush())


def huge_count_batch() -> bytes:
    """Issue 12's SIGSEGV: record_count 2^30 + 1 with 20,000 real records."""
    return claiming(make_batch(20_000), (1 << 30) + 1)


def tiny_batch_claiming_many() -> bytes:
    """69 bytes claiming 268,435,455 records."""
    return claiming(make_batch(1)[:61] + b"\x00" * 8, 268_435_455)


HOSTILE_BATCHES = {
    "count-2^30+1-with-20000-records": (huge_count_batch, K.INVALID_RECORD),
    "count-2^31-1": (lambda: claiming(make_batch(20_000), (1 << 31) - 1), K.INVALID_RECORD),
    "69-bytes-claiming-268435455": (tiny_batch_claiming_many, K.INVALID_RECORD),
    "zstd-33KB-to-1GiB": (zstd_bomb, K.CORRUPT_MESSAGE),
    "gzip-522KB-to-512MiB": (gzip_bomb, K.CORRUPT_MESSAGE),
}


def metadata_listing(names: int) -> bytes:
    """A Metadata v1 request body listing ``names`` empty topic names (2 bytes each)."""
    header = struct.pack(">hhih", 3, 1, 11, 1) + b"x"
    return header + struct.pack(">i", names) + b"\x00\x00" * names


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">i", len(payload)) + payload)


def closed_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def create_topic(server, name: str) -> str:
    resp = call(server, M.CREATE_TOPICS, 7, {"topics": [
        {"name": name, "num_partitions": 1, "replication_factor": 1}]})
    assert resp["topics"][0]["error_code"] in (0, 36)  # created, or already there
    return name


def served_within(server, seconds: float) -> float:
    t0 = time.monotonic()
    still_serving(server)
    took = time.monotonic() - t0
    assert took < seconds, f"another client waited {took:.2f} s"
    return took


# --------------------------------------------------------- a server process

@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # Kafka's 100 MiB frame limit, as in the figures (the default is 64 MiB).
    server = ServerProcess(tmp_path_factory.mktemp("hostile") / "data", "--max-frame-bytes", str(100 * MiB))
    yield server
    assert server.stop() == 0, server.log()


@pytest.mark.parametrize("case", list(HOSTILE_BATCHES))
def test_hostile_batch_gets_an_error_reply_within_the_memory_limit(srv, case):
    make, code = HOSTILE_BATCHES[case]
    records = make()
    topic = create_topic(srv, "hostile-batches")
    pid = srv.proc.pid
    reset_peak(pid)
    r = produce(srv, topic, records)
    peak = status_kib(pid, "VmHWM")
    print(f"{case}: {len(records)} bytes -> error {r['error_code']}, server peak RSS {peak // 1024} MiB")
    assert r["error_code"] == code and r["base_offset"] == -1
    assert peak < RSS_LIMIT_KIB
    assert srv.proc.poll() is None
    still_serving(srv)


def empty_records(size: int) -> bytes:
    """One valid batch of ``size`` bytes of the smallest records (no key, value or header)."""
    record = b"\x0c\x00\x00\x00\x01\x01\x00"
    return with_block(0, record * (size // len(record)), size // len(record))


def empty_headers(size: int) -> bytes:
    """One valid batch: a record with ``size / 2`` headers of an empty key and null value."""
    count = size // 2
    record = b"\x00\x00\x00\x01\x01" + bytes(K.encode_varint(count)) + b"\x00\x01" * count
    return with_block(0, bytes(K.encode_varint(len(record))) + record, 1)


@pytest.mark.parametrize("make", [empty_records, empty_headers], ids=["records", "headers"])
def test_largest_default_frame_of_the_smallest_items_stays_within_the_memory_limit(srv, make):
    # Valid, but each 7-byte record (or 2-byte header) decodes to about 17 (or 9) bytes of
    # Arrow buffers and is then appended: the frame limit bounds what one request takes.
    records = make(60 * MiB)
    topic = create_topic(srv, "smallest-items")
    pid = srv.proc.pid
    reset_peak(pid)
    base = status_kib(pid, "VmRSS")
    r = produce(srv, topic, records)
    peak = status_kib(pid, "VmHWM")
    print(f"{make.__name__} in {len(records) >> 20} MiB: appended, server RSS {base >> 10} -> peak {peak >> 10} MiB")
    assert r["error_code"] == 0
    assert peak < RSS_LIMIT_KIB


def test_metadata_listing_2_000_000_topics_closes_only_that_connection(srv):
    body = metadata_listing(2_000_000)
    assert len(body) > 4_000_000
    t0 = time.monotonic()
    with socket.create_connection((srv.host, srv.port), timeout=30) as s:
        send_frame(s, body)
        assert closed_by_server(s, 30)
    took = time.monotonic() - t0
    print(f"4 MB Metadata with 2,000,000 topics refused in {took:.2f} s")
    assert took < 5  # was 26 s of a blocked server
    assert "more than 3000 array elements" in srv.log()
    served_within(srv, 2)


def _stall_sender(sock: socket.socket, payload: memoryview, piece: int, sent: list, i: int) -> None:
    """Send ``payload`` a piece at a time until done or until the server stops
    reading (no progress for 5 s)."""
    sock.settimeout(5)
    try:
        for start in range(0, len(payload), piece):
            sock.sendall(payload[start:start + piece])
            sent[i] = start + piece
    except (TimeoutError, OSError):
        pass


def _stall(socks: list[socket.socket], payload: memoryview) -> int:
    """Send ``payload`` on every socket at once until each is done or stalled;
    the bytes sent in all."""
    sent = [0] * len(socks)
    threads = [threading.Thread(target=_stall_sender, args=(s, payload, MiB, sent, i))
               for i, s in enumerate(socks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return sum(sent)


def test_ten_connections_stalling_in_99_of_100_mib_frames(srv):
    # Issue 12: RSS 100 -> 1,090 MiB, and it stayed after they closed.
    pid = srv.proc.pid
    baseline = status_kib(pid, "VmRSS")
    reset_peak(pid)
    frame = 100 * MiB
    payload = memoryview(struct.pack(">i", frame) + bytes(99 * MiB))
    socks = [socket.create_connection((srv.host, srv.port), timeout=10) for _ in range(10)]
    sent = _stall(socks, payload)
    peak = status_kib(pid, "VmHWM")
    print(f"10 x 99 MiB stalled: {sent // MiB} MiB sent, server RSS {baseline // 1024} -> "
          f"peak {peak // 1024} MiB")
    assert sent >= 2 * 99 * MiB   # the pool (256 MiB) admitted two of them
    assert peak < RSS_LIMIT_KIB
    served_within(srv, 2)
    for s in socks:
        s.close()
    after = wait_for(lambda: (rss := status_kib(pid, "VmRSS")) < baseline + 64 * 1024 and rss,
                     30, "the server to give the stalled frames' memory back")
    print(f"after closing: RSS {after // 1024} MiB")
    still_serving(srv)


def test_stalled_frames_after_a_first_request_are_given_back_round_after_round(tmp_path):
    # QA finding 1: ApiVersions first (so the 5 s first-request deadline does not
    # apply), then 63 of a 64 MiB Produce frame, stalled, on 10 connections: RSS
    # 165 -> 756 -> 1,412 -> 1,940 MiB over three rounds, kept after they closed
    # (a failed read's buffer lived until the garbage collector freed its traceback).
    server = ServerProcess(tmp_path / "data")   # default limits: 64 MiB frames, 256 MiB pool
    try:
        pid = server.proc.pid
        still_serving(server)
        baseline = status_kib(pid, "VmRSS")
        reset_peak(pid)
        frame = 64 * MiB - 100
        produce_header = struct.pack(">hhih", 0, 9, 7, -1)
        payload = memoryview(struct.pack(">i", frame) + produce_header + bytes(63 * MiB))
        for rnd in range(3):
            socks = [socket.create_connection((server.host, server.port), timeout=10) for _ in range(10)]
            for i, s in enumerate(socks):
                send_frame(s, struct.pack(">hhih", 18, 0, i, -1))   # ApiVersions v0
                assert recv_frame(s)[:4] == struct.pack(">i", i)
            sent = _stall(socks, payload)
            peak = status_kib(pid, "VmHWM")
            print(f"round {rnd + 1}: {sent // MiB} MiB sent, server RSS {baseline // 1024} -> "
                  f"peak {peak // 1024} MiB")
            assert sent >= 4 * 63 * MiB   # the pool (256 MiB) admitted four of them
            for s in socks:
                s.close()
            after = wait_for(lambda: (rss := status_kib(pid, "VmRSS")) < baseline + 64 * 1024 and rss,
                             30, f"the server to give round {rnd + 1}'s stalled frames back")
            print(f"round {rnd + 1} closed: RSS {after // 1024} MiB")
            peak = status_kib(pid, "VmHWM")
            assert peak < RSS_LIMIT_KIB, f"round {rnd + 1}: peak RSS {peak // 1024} MiB"
            still_serving(server)
    finally:
        assert server.stop() == 0, server.log()


# ------------------------------------------------------- 1,000 connections

@pytest.fixture
def patient(tmp_path):
    """A server whose first-request deadline (60 s) is far beyond the test, so only
    closing the oldest idle connection can make room."""
    raise_fd_limit(4096)
    server = ServerProcess(tmp_path / "patient", "--first-request-timeout", "60",
                           "--max-connections", "1000")
    yield server
    assert server.stop() == 0, server.log()


@pytest.mark.parametrize("opening", [b"", b"\x00\x00"], ids=["idle", "2-of-4-size-bytes"])
def test_1000_idle_connections_do_not_lock_others_out(patient, opening):
    # Issue 12: 1,000 idle sockets (or 1,000 that sent 2 of the 4 size bytes) locked
    # every other client out for 600 s.
    socks = []
    try:
        for _ in range(1000):
            s = socket.create_connection((patient.host, patient.port), timeout=10)
            if opening:
                s.sendall(opening)
            socks.append(s)
        # The server has admitted all 1,000 when one more makes the oldest give way.
        took = served_within(patient, 2)
        print(f"1,000 connections open ({'idle' if not opening else 'half a size prefix'}): "
              f"another client served in {took * 1000:.0f} ms")
        assert closed_by_server(socks[0], 10)  # the oldest made room
        assert "to admit" in patient.log()
        assert patient.proc.poll() is None
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------- an in-process server

class InProcessServer:
    """KafkaServer on its own event loop thread, with a probe task that ticks every
    5 ms and records the largest gap between ticks: how long the loop was kept from
    running it. The gap is taken twice, in the loop thread's CPU time (the work that
    held the loop, which a loaded machine's scheduler does not inflate) and in wall
    time (which it does)."""

    TICK = 0.005

    def __init__(self, data_dir, limits: Limits):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = KafkaServer(str(data_dir), "127.0.0.1", 0, limits=limits)
        self.run(self.server.start())
        self.host, self.port = "127.0.0.1", self.server.port
        self.max_cpu = self.max_wall = 0.0
        self._probe_task = self.run(self._start_probe())

    def run(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start_probe(self):
        return asyncio.ensure_future(self._probe())

    async def _probe(self):
        wall, cpu = self.loop.time(), time.thread_time()
        while True:
            await asyncio.sleep(self.TICK)
            now_wall, now_cpu = self.loop.time(), time.thread_time()
            self.max_wall = max(self.max_wall, now_wall - wall - self.TICK)
            self.max_cpu = max(self.max_cpu, now_cpu - cpu)
            wall, cpu = now_wall, now_cpu

    def measure(self):
        """Reset the stall figures (after the loop has ticked, so nothing earlier counts)."""
        async def reset():
            await asyncio.sleep(self.TICK * 2)
            self.max_cpu = self.max_wall = 0.0
        self.run(reset())

    def stall(self) -> tuple[float, float]:
        """The largest stall since ``measure()`` (CPU, wall), once the probe has ticked
        again (a stall that just ended is only seen on the probe's next tick)."""
        async def read():
            await asyncio.sleep(self.TICK * 3)
            return self.max_cpu, self.max_wall
        return self.run(read())

    def query(self, fn):
        async def q():
            return fn(self.server)
        return self.run(q())

    def stop(self):
        async def stop():
            self._probe_task.cancel()
            await self.server.stop()
        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


def check_stall(inproc: InProcessServer, action, what: str) -> None:
    """The event loop is held at most 100 ms (CPU) while ``action`` runs, and at most
    1 s of wall time however loaded the machine (the findings were 15 and 26 s).

    The objects the rest of the test session left in this process are frozen
    first: a full collection over them, triggered by the request's allocations,
    would count against the loop (230 ms seen at the end of a whole-suite run)
    although a served process holds only the server's own heap."""
    gc.collect()
    gc.freeze()
    try:
        inproc.measure()
        action()
        cpu, wall = inproc.stall()
    finally:
        gc.unfreeze()
    print(f"{what}: event loop held at most {cpu * 1000:.0f} ms (CPU), {wall * 1000:.0f} ms (wall)")
    assert cpu < STALL_LIMIT_S
    assert wall < 1.0


@pytest.fixture
def inproc(tmp_path):
    srv = InProcessServer(tmp_path / "inproc", Limits(max_frame_bytes=8 * MiB, max_inflight_bytes=8 * MiB,
                                                      queued_max_request_bytes=20 * MiB,
                                                      max_connections=8, request_read_timeout_s=60))
    yield srv
    srv.stop()


@pytest.mark.parametrize("case", list(HOSTILE_BATCHES))
def test_no_hostile_batch_stalls_the_event_loop(inproc, case):
    make, code = HOSTILE_BATCHES[case]
    records = make()
    topic = create_topic(inproc, "stall")

    def refused():
        r = produce(inproc, topic, records)
        assert r["error_code"] == code

    check_stall(inproc, refused, case)


def test_metadata_with_2_000_000_topics_does_not_stall_the_event_loop(inproc):
    # Issue 12: one 4 MB Metadata request blocked the event loop for 26 s.
    body = metadata_listing(2_000_000)

    def refused():
        with socket.create_connection((inproc.host, inproc.port), timeout=30) as s:
            send_frame(s, body)
            assert closed_by_server(s, 30)

    check_stall(inproc, refused, "4 MB Metadata, 2,000,000 topics")
    # Within the budget it is served as usual, and quickly.
    names = [{"name": f"t{i}"} for i in range(3_000)]

    def answered():
        resp = call(inproc, M.METADATA, 4, {"topics": names, "allow_auto_topic_creation": False})
        assert len(resp["topics"]) == 3_000

    check_stall(inproc, answered, "Metadata listing 3,000 topics (the limit)")


def test_request_memory_is_shared_and_given_back_on_close(inproc):
    # 20 MiB for all connections: two 8 MiB frames fit, the third waits unread.
    socks = []
    for expected in (8 * MiB, 16 * MiB, 16 * MiB):
        s = socket.create_connection((inproc.host, inproc.port), timeout=10)
        s.sendall(struct.pack(">i", 8 * MiB) + bytes(MiB))
        socks.append(s)
        wait_for(lambda n=expected: inproc.query(lambda srv: srv.request_bytes_reserved) == n, 30,
                 f"{expected // MiB} MiB to be reserved")
    wait_for(lambda: inproc.query(lambda srv: srv.connection_count) == 3, 30, "3 connections")
    # The third is not admitted into the pool while the others hold it...
    assert inproc.query(lambda srv: srv.request_bytes_reserved) == 16 * MiB
    # ...but a small request still fits and is answered.
    still_serving(inproc)
    socks[0].close()
    # The first gives its reservation back; the waiting third takes it.
    wait_for(lambda: inproc.query(lambda srv: srv.request_bytes_reserved) == 16 * MiB
             and inproc.query(lambda srv: srv.connection_count) == 2, 30,
             "the closed connection's bytes to pass to the waiting one")
    for s in socks[1:]:
        s.close()
    wait_for(lambda: inproc.query(lambda srv: srv.request_bytes_reserved) == 0, 30,
             "every reservation to be given back")


def test_connections_stalled_in_a_request_body_make_room(inproc):
    # 8 connections (the limit), each stalled 10 bytes into a 100-byte request: nothing
    # to answer, so the one inactive the longest makes room for a new client.
    socks = []
    for i in range(8):
        s = socket.create_connection((inproc.host, inproc.port), timeout=10)
        s.sendall(struct.pack(">i", 100) + b"\x00" * 10)
        socks.append(s)
        wait_for(lambda n=i + 1: inproc.query(lambda srv: srv.request_bytes_reserved) == 100 * n, 30,
                 "the size prefix to be read")
    took = served_within(inproc, 2)
    print(f"8 of 8 connections stalled mid-request: another client served in {took * 1000:.0f} ms")
    assert closed_by_server(socks[0], 10)
    for s in socks:
        s.close()


def test_full_of_connections_with_requests_to_answer_refuses_a_new_one(inproc):
    # 8 connections (the limit), each waiting for a long-poll Fetch: none may be closed to
    # make room, so the ninth is refused, and the eight are still answered.
    topic = create_topic(inproc, "long-poll")
    w = Writer()
    M.FETCH.encode_request({"max_wait_ms": 10_000, "min_bytes": 1, "max_bytes": MiB, "topics": [
        {"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0,
                                         "partition_max_bytes": MiB}]}]}, w, 4)
    payload = struct.pack(">hhih", M.FETCH.key, 4, 5, 1) + b"x" + bytes(w.buf)
    socks = []
    for i in range(8):
        s = socket.create_connection((inproc.host, inproc.port), timeout=30)
        send_frame(s, payload)
        socks.append(s)
        wait_for(lambda n=i + 1: inproc.query(lambda srv: srv.requests_in_flight) == n, 30,
                 "the Fetch to be read")
    extra = socket.create_connection((inproc.host, inproc.port), timeout=10)
    assert closed_by_server(extra, 10)
    extra.close()
    # A Produce pipelined on the first connection wakes the long polls.
    w = Writer()
    M.PRODUCE.encode_request({"transactional_id": None, "acks": 1, "timeout_ms": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": 0, "records": make_batch(2)}]}]}, w, 7)
    send_frame(socks[0], struct.pack(">hhih", M.PRODUCE.key, 7, 6, 1) + b"x" + bytes(w.buf))
    for s in socks:
        assert struct.unpack(">i", recv_frame(s)[:4])[0] == 5
    assert struct.unpack(">i", recv_frame(socks[0])[:4])[0] == 6
    for s in socks:
        s.close()
    wait_for(lambda: inproc.query(lambda srv: srv.connection_count) == 0, 30, "the connections to close")


def test_pipelined_requests_still_answered_in_order(inproc):
    req = struct.pack(">hhih", 18, 0, 1, 1) + b"x"
    with socket.create_connection((inproc.host, inproc.port), timeout=10) as s:
        for cid in range(1, 6):
            s.sendall(struct.pack(">i", len(req)) + req[:4] + struct.pack(">i", cid) + req[8:])
        assert [struct.unpack(">i", recv_frame(s)[:4])[0] for _ in range(5)] == [1, 2, 3, 4, 5]
    wait_for(lambda: inproc.query(lambda srv: srv.request_bytes_reserved) == 0, 30,
             "answered requests to give their bytes back")


def fetch_frame(topic: str, correlation_id: int) -> bytes:
    w = Writer()
    M.FETCH.encode_request({"max_wait_ms": 0, "min_bytes": 0, "max_bytes": 4 * MiB, "topics": [
        {"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0,
                                         "partition_max_bytes": 4 * MiB}]}]}, w, 12)
    header = struct.pack(">hhih", M.FETCH.key, 12, correlation_id, 1) + b"x" + b"\x00"
    payload = header + bytes(w.buf)
    return struct.pack(">i", len(payload)) + payload


def test_a_client_that_never_reads_its_responses_stops_being_read(inproc):
    # 50,000 pipelined ApiVersions requests (about 10 MB of answers) from a client that
    # does not read: once the socket buffers are full, the server stops reading at
    # max_inflight_requests instead of answering (and holding) everything.
    req = struct.pack(">hhih", 18, 0, 1, 1) + b"x"
    frames = struct.pack(">i", len(req)) + req
    total = 50_000
    limit = inproc.query(lambda srv: srv.limits.max_inflight_requests)
    with socket.create_connection((inproc.host, inproc.port), timeout=60) as s:
        sender = threading.Thread(target=s.sendall, args=(frames * total,), daemon=True)
        sender.start()
        wait_for(lambda: inproc.query(lambda srv: srv.requests_in_flight) == limit, 60,
                 f"{limit} requests awaiting their responses")
        for _ in range(20):  # and no more are read while the client does not read
            assert inproc.query(lambda srv: srv.requests_in_flight) <= limit
        for _ in range(total):
            recv_frame(s)
        sender.join(60)
    wait_for(lambda: inproc.query(lambda srv: srv.requests_in_flight) == 0, 30, "all answered")


def test_tagged_fields_count_against_the_element_budget(inproc):
    # An ApiVersions v3 request (flexible) whose header claims 5,000 empty tagged fields:
    # each is walked in Python, so they are elements like any array's.
    tags = bytes([0x88, 0x27]) + b"\x00\x00" * 5000  # uvarint 5000, then (tag 0, size 0) each
    header = struct.pack(">hhih", 18, 3, 1, 1) + b"x" + tags
    with socket.create_connection((inproc.host, inproc.port), timeout=10) as s:
        send_frame(s, header + b"\x02t\x021\x00")
        assert closed_by_server(s, 10)
    still_serving(inproc)


def big_batch(records: int, value_size: int) -> bytes:
    return K.encode_batch(pa.RecordBatch.from_pydict({
        "offset": pa.array(range(records), pa.int64()),
        "timestamp": pa.array([1_700_000_000_000] * records, pa.timestamp("ms")),
        "key": pa.array([None] * records, pa.binary()),
        "value": pa.array([b"x" * value_size] * records, pa.binary()),
        "headers": pa.nulls(records, pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
    }))


def test_pipelined_fetches_build_one_response_at_a_time(inproc):
    # 64 pipelined Fetches of a 4 MiB batch from a client that does not read: each would
    # hold its own copy of the batch (a server process reached 1,219 MiB with 16 MiB
    # batches); one Fetch at a time per connection, as Kafka clients send them.
    topic = create_topic(inproc, "fetched")
    assert produce(inproc, topic, big_batch(1024, 4096))["error_code"] == 0
    with socket.create_connection((inproc.host, inproc.port), timeout=30) as s:
        s.sendall(b"".join(fetch_frame(topic, cid) for cid in range(64)))
        # The first is answered (the client does not read it), the second waits for that.
        wait_for(lambda: inproc.query(lambda srv: srv.requests_in_flight) == 2, 30,
                 "the second Fetch to wait for the first")
        for _ in range(20):
            assert inproc.query(lambda srv: srv.requests_in_flight) == 2
        answers = [struct.unpack(">i", recv_frame(s)[:4])[0] for _ in range(64)]
    assert answers == list(range(64))


@pytest.fixture
def tls_server(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", "server.key", "-out", "server.pem", "-days", "1",
                    "-subj", "/CN=localhost"], cwd=tmp_path, check=True, capture_output=True)
    server = ServerProcess(tmp_path / "tls", "--listener", "SSL", "--ssl-cert", str(tmp_path / "server.pem"),
                           "--ssl-key", str(tmp_path / "server.key"), "--allow-everyone-if-no-acl-found",
                           "--first-request-timeout", "1")
    yield server
    assert server.stop() == 0, server.log()


def test_a_tls_handshake_that_never_starts_is_closed_at_the_first_request_deadline(tls_server):
    # asyncio's own TLS handshake timeout is 60 s; such a socket has not been admitted yet,
    # so it is not even counted against --max-connections.
    with socket.create_connection((tls_server.host, tls_server.port), timeout=10) as s:
        t0 = time.monotonic()
        assert closed_by_server(s, 30)
        took = time.monotonic() - t0
    print(f"silent socket on a TLS listener closed after {took:.1f} s")
    assert took < 10
