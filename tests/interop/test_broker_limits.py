"""The broker's limits on what one request may cost: large produces off the event loop,
a compressed batch's inflation bounded by its topic, auto-creation per Metadata request,
the size of a Fetch response, and memory given back after a large produce."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pyarrow as pa
import pytest
from rss import status_kib

from arrowlog._native.kafka import encode_batch
from arrowlog.server import admin as A
from arrowlog.server import broker as B
from arrowlog.server import messages as M
from arrowlog.server import produce as P
from arrowlog.server.wire import Reader, Writer

from .conftest import ServerProcess
from .wireclient import call, make_batch, produce

MiB = 1 << 20


def request(api, version, body):
    """A request dict as the server decodes it (every field present)."""
    w = Writer()
    api.encode_request(body, w, version)
    return api.decode_request(Reader(bytes(w.buf)), version)


def ctx(api, version=None):
    return B.RequestContext(api.key, api.max_version if version is None else version, 1, "test", "127.0.0.1")


def value_batch(n: int, size: int, codec: int = 0) -> bytes:
    batch = pa.RecordBatch.from_pydict({
        "offset": pa.array(range(n), pa.int64()),
        "timestamp": pa.array([1_700_000_000_000] * n, pa.timestamp("ms")),
        "key": pa.array([None] * n, pa.binary()),
        "value": pa.array([b"\x00" * size] * n, pa.binary()),
        "headers": pa.nulls(n, pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
    })
    return encode_batch(batch, codec)


def produce_req(topic, records, partition=0):
    return request(M.PRODUCE, 9, {"acks": -1, "timeout_ms": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": partition, "records": records}]}]})


def test_a_large_produce_is_decoded_off_the_event_loop(tmp_path, monkeypatch):
    started, release = threading.Event(), threading.Event()
    real = P.decode_record_set

    def slow_decode(*args, **kwargs):
        started.set()
        assert release.wait(60), "the test never released the decoder"
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "decode_record_set", slow_decode)

    async def scenario():
        broker = B.Broker(str(tmp_path), B.BrokerConfig(), "c1")
        broker.start()
        try:
            body = value_batch(2, P.OFFLOAD_PRODUCE_BYTES)   # above the offload threshold
            task = asyncio.ensure_future(broker.producing.produce(ctx(M.PRODUCE), produce_req("big", body)))
            broker.metadata(ctx(M.METADATA), request(M.METADATA, 12, {"topics": [{"name": "big"}]}))
            while not started.is_set():            # the decoder is running, in its thread
                await asyncio.sleep(0.01)
            # the loop still answers other requests meanwhile
            meta = broker.metadata(ctx(M.METADATA), request(M.METADATA, 12, {"topics": None}))
            assert "big" in [t["name"] for t in meta["topics"]]
            assert not task.done()
            release.set()
            resp = await asyncio.wait_for(task, 60)
            assert resp["responses"][0]["partition_responses"][0]["error_code"] == 0
        finally:
            release.set()
            await broker.stop()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("limits") / "data")
    yield server
    assert server.stop() == 0, server.log()


def create(server, name, configs=()):
    resp = call(server, M.CREATE_TOPICS, 7, {"topics": [
        {"name": name, "num_partitions": 1, "replication_factor": 1,
         "configs": [{"name": k, "value": v} for k, v in configs]}]})
    assert resp["topics"][0]["error_code"] == 0, resp
    return name


def test_a_compressed_batch_may_inflate_to_its_topics_max_message_bytes(srv):
    # 16 MiB of 1 KiB records in one zstd batch of a few KB: within the server's 32 MiB
    # cap on a default topic, beyond a topic whose max.message.bytes is 1 MiB.
    bomb = value_batch(16 * 1024, 1024, codec=4)
    assert len(bomb) < MiB
    roomy = create(srv, "inflate-" + uuid.uuid4().hex[:8])
    assert produce(srv, roomy, bomb)["error_code"] == 0
    small = create(srv, "inflate-" + uuid.uuid4().hex[:8], [("max.message.bytes", str(MiB))])
    r = produce(srv, small, bomb)
    assert r["error_code"] != 0 and r["base_offset"] == -1
    assert produce(srv, small, value_batch(16, 1024, codec=4))["error_code"] == 0


def test_one_metadata_request_auto_creates_a_bounded_number_of_topics(srv):
    prefix = "auto-" + uuid.uuid4().hex[:8]
    names = [f"{prefix}-{i}" for i in range(B.MAX_AUTO_CREATE_PER_REQUEST + 20)]
    body = {"topics": [{"name": n} for n in names], "allow_auto_topic_creation": True}
    first = {t["name"]: t["error_code"] for t in call(srv, M.METADATA, 12, body)["topics"]}
    assert sorted(first.values()).count(0) == B.MAX_AUTO_CREATE_PER_REQUEST
    assert sorted(first.values()).count(5) == 20      # LEADER_NOT_AVAILABLE: retriable
    second = {t["name"]: t["error_code"] for t in call(srv, M.METADATA, 12, body)["topics"]}
    assert set(second.values()) == {0}                # the client's retry creates the rest


def test_a_fetch_response_is_capped_at_the_servers_fetch_max_bytes(tmp_path):
    async def scenario():
        broker = B.Broker(str(tmp_path), B.BrokerConfig(fetch_max_bytes=2 * MiB), "c1")
        broker.start()
        try:
            await broker.admin.create_topics(ctx(M.CREATE_TOPICS), request(M.CREATE_TOPICS, 7, {"topics": [
                {"name": "wide", "num_partitions": 1, "replication_factor": 1}]}))
            for _ in range(8):
                r = await broker.producing.produce(ctx(M.PRODUCE), produce_req("wide", value_batch(1, MiB)))
                assert r["responses"][0]["partition_responses"][0]["error_code"] == 0
            resp = await broker.fetching.fetch(ctx(M.FETCH), request(M.FETCH, 12, {
                "max_wait_ms": 0, "min_bytes": 1, "max_bytes": 1 << 30, "topics": [
                    {"topic": "wide", "partitions": [{"partition": 0, "fetch_offset": 0,
                                                      "partition_max_bytes": 1 << 30}]}]}))
            chunks = resp["responses"][0]["partitions"][0]["records"]
            size = sum(len(c) for c in chunks)
            assert 1 <= len(chunks) < 8 and size <= 2 * MiB + 4096, (len(chunks), size)
        finally:
            await broker.stop()

    asyncio.run(scenario())


def test_memory_goes_back_down_after_a_large_produce(srv):
    topic = create(srv, "rss-" + uuid.uuid4().hex[:8])
    pid = srv.proc.pid
    assert produce(srv, topic, make_batch(3))["error_code"] == 0
    base = status_kib(pid, "RssAnon")
    records = value_batch(60 * 1024, 900)             # a 55 MB body of small records
    assert produce(srv, topic, records)["error_code"] == 0
    deadline = time.monotonic() + 30
    while status_kib(pid, "RssAnon") > base + 40 * 1024:   # the body alone is 55 MB
        assert time.monotonic() < deadline, (
            f"anonymous RSS stayed at {status_kib(pid, 'RssAnon') >> 10} MiB (was {base >> 10} MiB)")
        time.sleep(0.1)


def test_creating_thousands_of_topics_lets_other_connections_in(tmp_path):
    # One CreateTopics of 2,000 topics took the event loop for seconds: every other
    # client waited. It now yields between slices: a ticker runs while it works.
    async def scenario():
        broker = B.Broker(str(tmp_path), B.BrokerConfig(), "c1")
        broker.start()
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        try:
            tick = asyncio.ensure_future(ticker())
            n = 20 * A.TOPICS_PER_SLICE
            r = await broker.admin.create_topics(ctx(M.CREATE_TOPICS), request(M.CREATE_TOPICS, 7, {"topics": [
                {"name": f"many-{i}", "num_partitions": 1, "replication_factor": 1} for i in range(n)]}))
            done = True
            await tick
            assert [t["error_code"] for t in r["topics"]] == [0] * n
            assert ticks >= 19, f"the loop ran other work {ticks} times while {n} topics were created"
        finally:
            await broker.stop()

    asyncio.run(scenario())
