"""Worker helpers (signals, run loop) and the asyncio clients, in one process."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

import arrowlog
from arrowlog import OFFSET_INVALID, Consumer, Producer, TopicPartition
from arrowlog.asyncio import AsyncConsumer, AsyncProducer
from arrowlog.errors import LogClosedError
from arrowlog.worker import Shutdown, run


@pytest.fixture
def data(tmp_path):
    d = str(tmp_path / "data")
    with arrowlog.LogDir(d) as log:
        log.create_topic("t", partitions=2)
    with Producer({"log.dir": d}) as p:
        for i in range(100):
            p.produce("t", b"%d" % i, partition=i % 2)
    return d


def group_consumer(data, **conf):
    c = {"log.dir": data, "group.id": "w", "auto.offset.reset": "earliest"}
    c.update(conf)
    return Consumer(c)


def committed(data):
    c = group_consumer(data)
    try:
        return {tp.partition: tp.offset for tp in c.committed([TopicPartition("t", 0), TopicPartition("t", 1)])}
    finally:
        c.close()


def test_shutdown_flag_is_set_by_sigterm_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with Shutdown() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5) and stop.received == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_second_sigint_interrupts():
    with Shutdown([signal.SIGINT]) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(5)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_run_commits_each_handled_batch_and_leaves(data):
    stop = Shutdown()
    seen = []

    def handle(batch):
        seen.extend(int(m.value()) for m in batch)
        if len(seen) >= 100:
            stop.set()

    c = group_consumer(data, **{"enable.auto.commit": False})
    assert run(c, handle, topics=["t"], stop=stop, timeout=0.05) == 100
    assert sorted(seen) == list(range(100))
    assert committed(data) == {0: 50, 1: 50}
    assert arrowlog.groups.GroupAdmin(data).describe("w").state == "Empty"


def test_run_does_not_commit_a_batch_whose_handler_failed(data):
    stop = Shutdown()
    calls = []

    def handle(batch):
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("boom")

    c = group_consumer(data, **{"enable.auto.commit": True})   # close() would commit stored offsets
    with pytest.raises(RuntimeError):
        run(c, handle, stop=stop, timeout=0.05, batch_size=10, topics=["t"])
    got = committed(data)
    assert sorted(got.values()) == [OFFSET_INVALID, 10]      # only the first batch (of one partition)


def test_async_consumer_cancelled_fetch_loses_nothing(data):
    async def main():
        async with AsyncConsumer({"log.dir": data, "group.id": "a", "auto.offset.reset": "earliest"}) as c:
            await c.assign([TopicPartition("t", 0, 0), TopicPartition("t", 1, 0)])
            task = asyncio.create_task(c.consume(100, 1.0))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            got = []
            while len(got) < 100:
                got += [int(m.value()) for m in await c.consume(100, 1.0) if m.error() is None]
            await c.commit(asynchronous=False)
        return got

    got = asyncio.run(main())
    assert sorted(got) == list(range(100))
    c = Consumer({"log.dir": data, "group.id": "a"})
    assert sum(tp.offset for tp in c.committed([TopicPartition("t", 0), TopicPartition("t", 1)])) == 100
    c.close()


def test_async_consumer_close_does_not_commit_unyielded_messages(data):
    async def main():
        c = AsyncConsumer({"log.dir": data, "group.id": "b", "auto.offset.reset": "earliest"}, batch_size=100)
        await c.assign([TopicPartition("t", 0, 0)])
        it = c.__aiter__()
        first = await it.__anext__()          # fetched 50, yielded 1
        await c.close()                        # auto-commit on close
        with pytest.raises(LogClosedError):
            await c.consume(1, 0)
        return first

    first = asyncio.run(main())
    c = Consumer({"log.dir": data, "group.id": "b"})
    assert c.committed([TopicPartition("t", 0)])[0].offset == first.offset() + 1
    c.close()


def test_async_producer_reports_errors_on_the_future(data):
    async def main():
        async with AsyncProducer({"log.dir": data, "auto.create.topics.enable": False}) as p:
            ok = await p.produce("t", b"x", partition=1)
            bad = await p.produce("no-such-topic", b"x")
            msg = await ok
            with pytest.raises(arrowlog.ArrowlogError):
                await bad
            return msg

    msg = asyncio.run(main())
    assert msg.partition() == 1 and msg.offset() == 50


def test_async_producer_without_delivery_reports_resolves_after_append(data):
    async def main():
        async with AsyncProducer({"log.dir": data}, delivery_reports=False) as p:
            futs = [await p.produce("t", b"%d" % i, partition=0) for i in range(500)]
            return await asyncio.gather(*futs)

    assert asyncio.run(main()) == [None] * 500
    with arrowlog.LogDir(data) as log:
        assert log.topic("t").partition(0).high_watermark == 550
