"""Group commits as Kafka does them: a member that gives partitions up during a
rebalance commits them (librdkafka does exactly then), so a clean leave mid-stream
costs no duplicate."""

from __future__ import annotations

import collections
import os
import subprocess
import time

import pytest
from fds import readable

from arrowlog.server import messages as M

from .wireclient import call, still_serving

ck = pytest.importorskip("confluent_kafka")

RECORDS = 20_000
PARTITIONS = 4
DEADLINE_S = 90.0  # generous: a loaded 2-core CI machine


def produce_records(server, topic, n=RECORDS, partitions=PARTITIONS, prefix=b"r"):
    resp = call(server, M.CREATE_TOPICS, 7, {"topics": [{"name": topic, "num_partitions": partitions,
                                                         "replication_factor": 1}]})
    assert resp["topics"][0]["error_code"] == 0
    p = ck.Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce(topic, prefix + b"%06d" % i, partition=i % partitions)
        if i % 1000 == 999:
            p.poll(0)
    assert p.flush(30) == 0


def test_member_leaving_cleanly_mid_stream_costs_no_duplicate(server, topic, group):
    produce_records(server, topic)
    conf = {"bootstrap.servers": server.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": True, "auto.commit.interval.ms": 60_000,  # only the rebalance commits
            "heartbeat.interval.ms": 100, "session.timeout.ms": 10_000,
            "fetch.max.bytes": 4096, "message.max.bytes": 4096, "max.partition.fetch.bytes": 1024,
            "queued.max.messages.kbytes": 16}
    a, b = ck.Consumer(conf), ck.Consumer(conf)
    try:
        read_with_a_clean_leave(a, b, topic)
    finally:
        a.close()
        b.close()


def read_with_a_clean_leave(a, b, topic):
    a.subscribe([topic])
    b.subscribe([topic])
    counts = collections.Counter()
    by = {"a": 0, "b": 0}
    deadline = time.monotonic() + DEADLINE_S
    # both read until each has read something and about a third is done
    while (by["a"] == 0 or by["b"] == 0 or sum(by.values()) < RECORDS // 3) and time.monotonic() < deadline:
        for c, name in ((a, "a"), (b, "b")):
            for m in c.consume(20, 0.05):
                if m.error() is None:
                    counts[m.value()] += 1
                    by[name] += 1
    assert by["a"] and by["b"], f"both members should have read: {by}"
    assert len(counts) < RECORDS, "the leave must happen mid-stream"
    b.close()  # a clean leave: b commits what it read, a rebalances and commits what it gives up
    while len(counts) < RECORDS and time.monotonic() < deadline:
        for m in a.consume(500, 0.1):
            if m.error() is None:
                counts[m.value()] += 1
    assert len(counts) == RECORDS, f"{RECORDS - len(counts)} records never read"
    twice = {v: n for v, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} records read more than once, e.g. {sorted(twice)[:5]}"


class KcatMember:
    """``kcat -G`` printing one value per line into a pipe that the test reads:
    kcat blocks on the full pipe, so the test sets the pace."""

    def __init__(self, kcat, server, group, topic):
        self.proc = subprocess.Popen(
            [kcat, "-b", server.bootstrap, "-G", group, "-X", "auto.offset.reset=earliest", "-f", "%s\n", "-q", "-u",
             "-X", "heartbeat.interval.ms=100", "-X", "auto.commit.interval.ms=60000",
             "-X", "queued.max.messages.kbytes=16", "-X", "fetch.max.bytes=4096",
             "-X", "message.max.bytes=4096", "-X", "max.partition.fetch.bytes=1024", topic],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.tail = b""
        self.read = 0

    def take(self, counts, max_bytes=8192) -> bool:
        """Read what kcat printed (at most max_bytes); False at end of output."""
        try:
            chunk = os.read(self.proc.stdout.fileno(), max_bytes)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        *lines, self.tail = (self.tail + chunk).split(b"\n")
        for line in lines:
            counts[line] += 1
        self.read += len(lines)
        return True

    def stop(self, counts, deadline):
        """SIGTERM: kcat closes its consumer (commit, LeaveGroup); read the rest of its output."""
        self.proc.terminate()
        while time.monotonic() < deadline:
            readable(self.proc.stdout, timeout=0.1)
            if not self.take(counts, 1 << 20):
                break
        assert self.proc.wait(30) == 0, self.proc.stderr.read().decode(errors="replace")[-2000:]


def test_kcat_balanced_consumer_leaving_cleanly_costs_no_duplicate(kcat, server, topic, group):
    produce_records(server, topic, prefix=b"x" * 200)  # long lines: a pipe buffer holds ~300
    a, b = KcatMember(kcat, server, group, topic), KcatMember(kcat, server, group, topic)
    counts = collections.Counter()
    deadline = time.monotonic() + DEADLINE_S
    try:
        while (a.read == 0 or b.read == 0 or a.read + b.read < RECORDS // 3) and time.monotonic() < deadline:
            readable(a.proc.stdout, b.proc.stdout, timeout=0.05)
            a.take(counts, 2048)
            b.take(counts, 2048)
            # pace the readers: the stream must still be flowing at the leave (slower while b joins)
            time.sleep(0.001 if b.read else 0.02)
        assert a.read and b.read, f"both members should have read: {a.read}, {b.read}"
        assert len(counts) < RECORDS, "the leave must happen mid-stream"
        b.stop(counts, deadline)
        while len(counts) < RECORDS and time.monotonic() < deadline:
            readable(a.proc.stdout, timeout=0.1)
            a.take(counts, 1 << 20)
        assert len(counts) == RECORDS, f"{RECORDS - len(counts)} records never read"
        twice = {v: n for v, n in counts.items() if n > 1}
        assert not twice, f"{len(twice)} records read more than once, e.g. {sorted(v[-6:] for v in twice)[:3]}"
        a.stop(counts, time.monotonic() + 30)
    finally:
        for m in (a, b):
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait()


@pytest.mark.parametrize("group_id", ["", "g" * 201, "/" * 100])
def test_group_ids_the_store_cannot_hold_are_refused_not_dropped(server, topic, group_id):
    produce_records(server, topic, n=1, partitions=1)
    fetched = call(server, M.OFFSET_FETCH, 6, {"group_id": group_id, "topics": None})
    assert fetched["error_code"] == 24  # INVALID_GROUP_ID, and the connection stays up
    committed = call(server, M.OFFSET_COMMIT, 8, {"group_id": group_id, "generation_id": -1, "member_id": "",
                                                  "topics": [{"name": topic, "partitions": [
                                                      {"partition_index": 0, "committed_offset": 1,
                                                       "committed_metadata": ""}]}]})
    assert committed["topics"][0]["partitions"][0]["error_code"] == 24
    joined = call(server, M.JOIN_GROUP, 5, {
        "group_id": group_id, "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000, "member_id": "",
        "group_instance_id": None, "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": b""}]})
    assert joined["error_code"] == 24
    still_serving(server)
