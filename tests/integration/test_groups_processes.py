"""Consumer groups across real processes.

Each member is this file run as a script (``python test_groups_processes.py
member ...``): it subscribes, and for every batch writes one line per record
to its own output file (``P <partition> <offset>``, unbuffered, so a SIGKILL
loses nothing written), commits synchronously, then writes ``C <partition>
<next offset>`` lines. So at any moment what a member committed is at most
what it logged as processed, and what it logged as committed is at most what
it committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

import arrowlog
from arrowlog import Consumer, Producer, TopicPartition
from arrowlog.groups import GroupAdmin

HERE = os.path.abspath(__file__)
SRC = os.path.dirname(os.path.dirname(os.path.abspath(arrowlog.__file__)))
WAIT_S = 60          # generous bounds: a broken group fails the test instead of hanging it
PARTITIONS = 6


# -- the member process ---------------------------------------------------------------------


def member_main(data: str, group: str, out_path: str, name: str) -> int:
    from arrowlog.worker import Shutdown

    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    conf = {"log.dir": data, "group.id": group, "client.id": name, "auto.offset.reset": "earliest",
            "enable.auto.commit": False}
    with Shutdown() as stop:
        c = Consumer(conf)
        c.subscribe(["t"])
        os.write(fd, b"S\n")
        while not stop:
            msgs = [m for m in c.consume(200, 0.1) if m.error() is None]
            if not msgs:
                continue
            os.write(fd, b"".join(b"P %d %d\n" % (m.partition(), m.offset()) for m in msgs))
            done = c.commit(asynchronous=False)
            os.write(fd, b"".join(b"C %d %d\n" % (tp.partition, tp.offset) for tp in done))
        c.close()
        os.write(fd, b"E\n")
    return 0


# -- helpers -----------------------------------------------------------------------------------


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = SRC + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


@contextlib.contextmanager
def members(data, group, tmp_path):
    procs = {}

    def start(name):
        out = str(tmp_path / f"{name}.out")
        procs[name] = (subprocess.Popen([sys.executable, HERE, "member", data, group, out, name], env=env(),
                                        stderr=subprocess.PIPE), out)
        return procs[name][0]

    try:
        yield start, procs
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def parse(path):
    processed, committed, lines = [], {}, []
    if not os.path.exists(path):
        return processed, committed, lines
    with open(path) as f:
        for line in f:
            parts = line.split()
            lines.append(parts[0])
            if parts[0] == "P":
                processed.append((int(parts[1]), int(parts[2])))
            elif parts[0] == "C":
                committed[int(parts[1])] = int(parts[2])
    return processed, committed, lines


def wait_for(predicate, what, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def started(out):
    return os.path.exists(out) and os.path.getsize(out) > 0


@pytest.fixture
def data(tmp_path):
    d = str(tmp_path / "data")
    with arrowlog.LogDir(d) as log:
        log.create_topic("t", partitions=PARTITIONS)
    return d


def produce(p, start, n):
    for i in range(start, start + n):
        p.produce("t", b"%d" % i, key=b"k%d" % i)
    p.flush()
    return start + n


def produced_records(data):
    with arrowlog.LogDir(data) as log:
        t = log.topic("t")
        return {(p, o) for p in range(PARTITIONS) for o in range(t.partition(p).high_watermark)}


# -- tests -------------------------------------------------------------------------------------


def test_two_groups_read_one_topic_independently(data, tmp_path):
    with Producer({"log.dir": data}) as p:
        produce(p, 0, 3000)
    everything = produced_records(data)
    with members(data, "ga", tmp_path) as (start_a, procs_a), members(data, "gb", tmp_path) as (start_b, procs_b):
        start_a("a")
        start_b("b")
        for proc, out in (procs_a["a"], procs_b["b"]):
            wait_for(lambda out=out: set(parse(out)[0]) >= everything, "every record in each group")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(WAIT_S) == 0, proc.stderr.read()
    for out in (procs_a["a"][1], procs_b["b"][1]):
        processed, _, lines = parse(out)
        assert sorted(processed) == sorted(everything)       # each group: everything, exactly once
        assert lines[-1] == "E"                               # left cleanly
    admin = GroupAdmin(data)
    for g in ("ga", "gb"):
        d = admin.describe(g)
        assert d.state == "Empty" and d.total_lag == 0


def test_members_split_partitions_survive_sigkill_and_a_joiner(data, tmp_path):
    """3 members on 6 partitions; one SIGKILLed mid-stream; a 4th joins;
    every record is processed at least once, and a record is processed twice
    only if the killed member processed it after its last commit."""
    with Producer({"log.dir": data}) as p, members(data, "g", tmp_path) as (start, procs):
        for name in ("m1", "m2", "m3"):
            start(name)
        n = produce(p, 0, 600)
        admin = GroupAdmin(data)

        def split_three():
            if "g" not in admin.list_groups():
                return False
            d = admin.describe("g")
            return len(d.members) == 3 and all(len(m.assignment) == 2 for m in d.members)
        wait_for(split_three, "three members owning two partitions each")
        for _ in range(10):       # mid-stream: records keep coming while the member dies
            n = produce(p, n, 300)
            time.sleep(0.01)
        victim, victim_out = procs["m2"]
        victim.kill()
        victim.wait()
        for _ in range(10):
            n = produce(p, n, 300)
            time.sleep(0.01)
        start("m4")
        for _ in range(10):
            n = produce(p, n, 300)
            time.sleep(0.01)
        everything = produced_records(data)
        assert len(everything) == n
        outs = [out for _, out in procs.values()]
        wait_for(lambda: set().union(*(set(parse(o)[0]) for o in outs)) >= everything, "every record processed")

        def split_after():
            d = admin.describe("g")
            return len(d.members) == 3 and sorted(len(m.assignment) for m in d.members) == [2, 2, 2]
        wait_for(split_after, "the survivors and the joiner to share the partitions")
        for name, (proc, _) in procs.items():
            if name != "m2":
                proc.send_signal(signal.SIGTERM)
        for name, (proc, _) in procs.items():
            if name != "m2":
                assert proc.wait(WAIT_S) == 0, proc.stderr.read()

    counts = Counter()
    for _, out in procs.values():
        counts.update(parse(out)[0])
    assert set(counts) == everything                            # at least once, no gap
    victim_processed, victim_committed, _ = parse(victim_out)
    assert victim_processed, "the victim was killed before it processed anything"
    uncommitted = {(p, o) for p, o in victim_processed if o >= victim_committed.get(p, 0)}
    duplicates = {r for r, c in counts.items() if c > 1}
    assert duplicates <= uncommitted, sorted(duplicates - uncommitted)[:10]
    for name in ("m1", "m3", "m4"):
        lines = parse(procs[name][1])[2]
        assert lines[-1] == "E", f"{name} did not leave cleanly"
    d = GroupAdmin(data).describe("g")
    assert d.state == "Empty" and d.total_lag == 0                # survivors committed everything


def test_reset_offsets_to_a_timestamp_moves_the_next_reader(data, tmp_path):
    with Producer({"log.dir": data}) as p:
        for i in range(100):
            p.produce("t", b"%d" % i, partition=i % 2, timestamp=1_700_000_000_000 + i * 1000)
    admin = GroupAdmin(data)
    plan = admin.reset_offsets("g", ["t"], to="timestamp", value=1_700_000_050_000, execute=True)
    assert {(r.partition, r.new) for r in plan if r.partition < 2} == {(0, 25), (1, 25)}
    with members(data, "g", tmp_path) as (start, procs):
        proc = start("reader")
        out = procs["reader"][1]
        wait_for(lambda: len(parse(out)[0]) >= 50, "the reader to read the second half")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT_S) == 0
    processed = parse(out)[0]
    assert sorted(processed) == [(p, o) for p in (0, 1) for o in range(25, 50)]


def test_asyncio_consumer_in_a_running_loop_gets_records_from_another_process(data):
    from arrowlog.asyncio import AsyncConsumer

    script = ("import sys, time, arrowlog\n"
              "p = arrowlog.Producer({'log.dir': sys.argv[1]})\n"
              "for i in range(200):\n"
              "    p.produce('t', b'%d' % i, partition=i % 6)\n"
              "    if i % 20 == 19:\n"
              "        p.flush(); time.sleep(0.02)\n"
              "p.close()\n")

    async def main():
        ticks = 0
        got = []

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        t = asyncio.create_task(ticker())
        async with AsyncConsumer({"log.dir": data, "group.id": "aio", "auto.offset.reset": "earliest"}) as c:
            await c.subscribe(["t"])
            # nothing to read yet: the wait happens in the consumer's thread
            assert await c.consume(10, timeout=0.3) == []
            assert ticks >= 5, "the event loop was blocked while the consumer waited"
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, data, env=env())
            async for msg in c:
                got.append(int(msg.value()))
                if len(got) == 200:
                    break
            assert await proc.wait() == 0
            await c.commit(asynchronous=False)
        t.cancel()
        return got

    got = asyncio.run(asyncio.wait_for(main(), WAIT_S))
    assert sorted(got) == list(range(200))
    assert GroupAdmin(data).describe("aio").total_lag == 0


def test_asyncio_producer_delivers_futures(data):
    from arrowlog.asyncio import AsyncProducer

    async def main():
        async with AsyncProducer({"log.dir": data}) as p:
            futs = [await p.produce("t", b"%d" % i, partition=i % 6) for i in range(3000)]
            msgs = await asyncio.gather(*futs)
        return msgs

    msgs = asyncio.run(main())
    assert sorted((m.partition(), m.offset()) for m in msgs) == sorted(produced_records(data))
    c = Consumer({"log.dir": data})
    c.assign([TopicPartition("t", p, 0) for p in range(PARTITIONS)])
    seen = []
    while len(seen) < 3000:
        seen += [int(m.value()) for m in c.consume(1000, 1.0) if m.error() is None]
    c.close()
    assert sorted(seen) == list(range(3000))


if __name__ == "__main__":
    if sys.argv[1] == "member":
        sys.exit(member_main(*sys.argv[2:6]))
