"""The server's Fetch long poll sleeps on the data directory's notifier: an
append by another process wakes it, and nothing re-reads the log on a timer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import arrowlog
from arrowlog._native import core
from arrowlog.server.broker import Broker, BrokerConfig
from arrowlog.storage import LogDir

SRC = str(Path(arrowlog.__file__).resolve().parent.parent)

APPENDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from arrowlog._native import core
    from arrowlog.storage import LogDir
    def batch(value):
        acc = core.RecordAccumulator()
        acc.append_record(b"k", value, core.wall_clock_ms())
        return acc.take()
    with LogDir(sys.argv[2]) as d:
        d.topic(sys.argv[3]).partition(1).append(batch(b"warm-up"))   # a process's first append is slow
        log, data = d.topic(sys.argv[3]).partition(0), batch(b"from another process")
        started = time.monotonic()   # CLOCK_MONOTONIC: the same clock in every process
        log.append(data)
        print(started, flush=True)
""")


def fetch_request(topic: str, offset: int, max_wait_ms: int) -> dict:
    return {"max_wait_ms": max_wait_ms, "min_bytes": 1, "max_bytes": 1 << 20, "topics": [
        {"topic": topic, "partitions": [{"partition": 0, "fetch_offset": offset, "partition_max_bytes": 1 << 20}]}]}


def records_of(resp: dict) -> bytes:
    return bytes(b"".join(resp["responses"][0]["partitions"][0]["records"]))


async def long_poll(data_dir: str, topic: str, *, max_wait_ms: int,
                    append: bool) -> tuple[dict, int, float | None, float]:
    """One Fetch at the end of partition 0 of ``topic``; returns (response, times the log was
    read, when the other process began its append, when the Fetch returned)."""
    broker = Broker(data_dir, BrokerConfig(), "test-cluster")
    broker.start()
    reads = 0
    fetch_once = broker.fetching._fetch_once

    def counting(req):
        nonlocal reads
        reads += 1
        return fetch_once(req)

    broker.fetching._fetch_once = counting
    try:
        task = asyncio.ensure_future(broker.fetching.fetch(None, fetch_request(topic, 1, max_wait_ms)))
        returned: list[float] = []
        task.add_done_callback(lambda _: returned.append(time.monotonic()))
        while reads == 0:  # the Fetch looked once and found nothing: it is waiting now
            await asyncio.sleep(0)
        appended = None
        if append:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", APPENDER, SRC, data_dir, topic,
                                                        stdout=subprocess.PIPE)
            out, _ = await proc.communicate()
            assert proc.returncode == 0
            appended = float(out.decode())
        resp = await task
        return resp, reads, appended, returned[0]
    finally:
        await broker.stop()


def make_topic(data_dir: str) -> str:
    """Topic "wake": two partitions, one record in partition 0."""
    with LogDir(data_dir) as d:
        acc = core.RecordAccumulator()
        acc.append_record(b"k", b"first", core.wall_clock_ms())
        d.create_topic("wake", 2).partition(0).append(acc.take())
    return "wake"


def test_fetch_long_poll_wakes_on_an_append_by_another_process(tmp_path):
    data_dir = str(tmp_path / "data")
    topic = make_topic(data_dir)
    t0 = time.monotonic()
    resp, reads, appended, returned = asyncio.run(long_poll(data_dir, topic, max_wait_ms=120_000, append=True))
    assert b"from another process" in records_of(resp)
    assert returned - t0 < 60  # woken by the append, long before max_wait_ms
    print(f"fetch wake-up latency from another process's append() call: {(returned - appended) * 1000:.1f} ms")


def test_an_idle_long_poll_reads_the_log_once_not_on_a_timer(tmp_path):
    data_dir = str(tmp_path / "data")
    topic = make_topic(data_dir)
    t0 = time.monotonic()
    resp, reads, _, _ = asyncio.run(long_poll(data_dir, topic, max_wait_ms=600, append=False))
    assert time.monotonic() - t0 >= 0.55 and records_of(resp) == b""
    # once when it came in, once when max_wait_ms ran out; a 50 ms timer would read ~12 times
    assert reads <= 2


def test_appends_wake_the_event_loop_only_for_a_waiting_fetch(tmp_path):
    """The server's own Produce requests bump the notifier too: with no Fetch running, the
    watcher sees the append and leaves the event loop alone; with a Fetch waiting, the same
    appends wake the loop, each counted. Both counts are read at a barrier (the watcher has
    handled the notifier's current word, and the loop has run what it scheduled), never
    after waiting for time: a late wake-up cannot hide."""
    data_dir = str(tmp_path / "data")
    topic = make_topic(data_dir)

    async def append_and_catch_up(broker: Broker) -> None:
        """Another process appends (partition 1, then 0); returns once the watcher thread
        has handled every bump and the loop has run the callbacks it scheduled."""
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", APPENDER, SRC, data_dir, topic,
                                                    stdout=subprocess.PIPE)
        await proc.communicate()
        assert proc.returncode == 0
        notifier = broker.store.log.notifier
        deadline = time.monotonic() + 60
        while broker.watched_word != notifier.current_word():
            assert time.monotonic() < deadline, "the append watcher never saw the other process's appends"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)   # call_soon_threadsafe's callbacks are ahead of this task in the ready queue

    async def run() -> tuple[tuple[int, int, int], tuple[int, int, int], bytes]:
        broker = Broker(data_dir, BrokerConfig(), "test-cluster")
        broker.start()
        notified = reads = 0
        notify, fetch_once = broker._notify_data, broker.fetching._fetch_once

        def counting_notify() -> None:
            nonlocal notified
            notified += 1
            notify()

        def counting_fetch(req):
            nonlocal reads
            reads += 1
            return fetch_once(req)

        broker._notify_data = counting_notify
        broker.fetching._fetch_once = counting_fetch
        try:
            await append_and_catch_up(broker)   # nobody waits: offset 1 of partition 0 written
            idle = broker.appends_seen, broker.loop_wakes, notified
            task = asyncio.ensure_future(broker.fetching.fetch(None, fetch_request(topic, 2, 120_000)))
            while reads == 0:   # the Fetch looked once and found nothing: it is waiting now
                await asyncio.sleep(0)
            await append_and_catch_up(broker)   # a Fetch waits at offset 2: these appends wake the loop
            resp = await asyncio.wait_for(task, 60)
            return idle, (broker.appends_seen, broker.loop_wakes, notified), records_of(resp)
        finally:
            await broker.stop()

    (seen, wakes, notified), (seen2, wakes2, notified2), records = asyncio.run(run())
    assert seen >= 1 and wakes == 0 and notified == 0
    assert seen2 > seen and 1 <= wakes2 <= seen2 - seen and notified2 == wakes2
    assert b"from another process" in records
