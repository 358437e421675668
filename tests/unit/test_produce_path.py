"""The server's Produce path (server/produce.py), called on a Broker in-process."""

from __future__ import annotations

import asyncio

import pyarrow as pa

from arrowlog._native.kafka import encode_batch
from arrowlog.server import broker as B
from arrowlog.server import messages as M
from arrowlog.server.wire import Reader, Writer


def request(api, version, body):
    """A request dict as the server decodes it (every field present)."""
    w = Writer()
    api.encode_request(body, w, version)
    return api.decode_request(Reader(bytes(w.buf)), version)


def records(n: int) -> bytes:
    return encode_batch(pa.RecordBatch.from_pydict({
        "offset": pa.array(range(n), pa.int64()),
        "timestamp": pa.array([1_700_000_000_000] * n, pa.timestamp("ms")),
        "key": pa.array([None] * n, pa.binary()),
        "value": pa.array([b"v%d" % i for i in range(n)], pa.binary()),
        "headers": pa.nulls(n, pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
    }))


def produce(broker, topic: str, data: bytes) -> dict:
    ctx = B.RequestContext(M.PRODUCE.key, 9, 1, "test", "127.0.0.1")
    req = request(M.PRODUCE, 9, {"acks": -1, "timeout_ms": 5000, "topic_data": [
        {"name": topic, "partition_data": [{"index": 0, "records": data}]}]})
    return broker.producing.produce(ctx, req)


def test_a_plain_produce_never_takes_the_transaction_state_lock(tmp_path):
    """The transaction state lives in files shared by every server on the directory: each
    entry re-reads them under a file lock. A batch that is not transactional has nothing
    to do there, so a plain producer does not pay that lock per batch."""
    entered = []

    async def scenario():
        broker = B.Broker(str(tmp_path), B.BrokerConfig(), "c1")
        broker.start()
        try:
            assert broker.store.create_topic("t", 1)[0] == 0
            for name in ("check_batch", "begin_batch", "end_batch"):
                real = getattr(broker.txns, name)
                setattr(broker.txns, name, lambda *a, _name=name, _real=real: entered.append(_name) or _real(*a))
            for _ in range(3):
                resp = await produce(broker, "t", records(5))
                assert resp["responses"][0]["partition_responses"][0]["error_code"] == 0
            assert broker._partition("t", 0)[0].high_watermark == 15
        finally:
            await broker.stop()

    asyncio.run(scenario())
    assert entered == []
