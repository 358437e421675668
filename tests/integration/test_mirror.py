"""``arrowlog mirror``: both directions between a data directory and Kafka
(an ``arrowlog serve`` on an ephemeral 127.0.0.1 port), resumption after a
kill -9 with no duplicate and no gap, and --follow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import arrowlog
from arrowlog import Consumer, Producer, TopicPartition
from arrowlog import mirror as mirror_mod
from arrowlog.mirror import MirrorError, mirror
from arrowlog.storage import LogDir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop.conftest import SRC, ServerProcess  # noqa: E402  (the interop suite's server launcher)

WAIT_S = 120.0  # generous: an upper bound on a loaded 2-core CI machine, never a pause
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("mirror") / "data")
    yield f"kafka://{srv.bootstrap}"
    assert srv.stop() == 0, srv.log()


def new_topic(where: str, partitions: int, prefix: str = "m") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    if where.startswith("kafka://"):
        from arrowlog.backends.kafka.client import create_topic, kafka_config
        create_topic(kafka_config({"log.dir": where}, what="test"), name, partitions)
    else:
        with LogDir(where) as d:
            d.create_topic(name, partitions)
    return name


def produce(where: str, topic: str, start: int, n: int) -> None:
    """Records start..start+n-1: every third unkeyed, every second with headers."""
    with Producer({"log.dir": where}) as p:
        for i in range(start, start + n):
            key = None if i % 3 == 0 else b"key-%d" % (i % 17)
            headers = [("i", str(i).encode()), ("empty", None)] if i % 2 == 0 else None
            p.produce(topic, b"value-%d" % i, key=key, partition=i % 3 if key is None else None,
                      timestamp=T0 + i, headers=headers)


def rows(where: str, topic: str) -> list:
    return arrowlog.replay(where, topic).to_arrow().to_pylist()


def count(where: str, topic: str, partitions: int) -> int:
    try:  # the destination directory may not exist yet
        with Consumer({"log.dir": where}) as c:
            return sum(c.get_watermark_offsets(TopicPartition(topic, p))[1] for p in range(partitions))
    except arrowlog.ArrowlogError:
        return 0


def wait_for(predicate, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            said = f"; the mirror said:\n{log.read_text()}" if log is not None else ""
            pytest.fail(f"timed out waiting for {what}{said}")
        time.sleep(0.05)


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arrowlog", "mirror", *args], env=_env(), capture_output=True,
                          text=True, timeout=120, **kw)


def follow_uncheckpointed(src: str, dst: str, topic: str, log: Path) -> subprocess.Popen:
    """A ``mirror --follow`` that checkpoints only when it starts and stops
    (stderr in ``log``)."""
    with open(log, "w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "arrowlog", "mirror", src, dst, "--topics", topic, "--follow",
                                 "--checkpoint-ms", "600000"], env=_env(), stderr=stderr)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("direction", ["dir-to-kafka", "kafka-to-dir"])
def test_copy_keeps_every_field_and_partition_then_resumes(direction, kafka, tmp_path):
    data = str(tmp_path / "data")
    src, dst = (data, kafka) if direction == "dir-to-kafka" else (kafka, data)
    prefix = "c" + uuid.uuid4().hex[:6]
    topic = new_topic(src, 3, prefix=prefix)
    other = new_topic(src, 1, prefix="other")
    produce(src, topic, 0, 300)
    produce(src, other, 0, 5)
    lines: list = []
    stats = mirror(src, dst, prefix + "-.*", progress=lines.append)
    assert stats.copied == 300 and stats.topics == [topic]
    assert rows(dst, topic) == rows(src, topic)       # partition, offset, timestamp, key, value, headers
    assert lines[-1].startswith("mirror: done, 300 records copied")
    with Consumer({"log.dir": dst}) as c:
        assert other not in c.list_topics().topics
    # nothing new: nothing copied; new records: only those
    assert mirror(src, dst, prefix + "-.*", progress=lines.append).copied == 0
    produce(src, topic, 300, 50)
    assert mirror(src, dst, prefix + "-.*", progress=lines.append).copied == 50
    assert rows(dst, topic) == rows(src, topic)


def test_directory_to_directory_and_back_to_a_new_directory(kafka, tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    topic = new_topic(a, 2)
    produce(a, topic, 0, 100)
    mirror(a, kafka, topic, progress=lambda line: None)
    mirror(kafka, b, topic, progress=lambda line: None)
    assert rows(b, topic) == rows(a, topic)
    assert os.path.exists(mirror_mod.default_state_path(kafka, b))


@pytest.mark.parametrize("direction", ["dir-to-kafka", "kafka-to-dir"])
def test_kill_9_in_the_middle_then_restart_copies_each_record_once(direction, kafka, tmp_path):
    data = str(tmp_path / "data")
    src, dst = (data, kafka) if direction == "dir-to-kafka" else (kafka, data)
    topic = new_topic(src, 2)
    produce(src, topic, 0, 2000)
    # run 1 follows, and checkpoints only at the start: all it copies is
    # beyond its checkpoint when it is killed
    log = tmp_path / "mirror.log"
    proc = follow_uncheckpointed(src, dst, topic, log)
    try:
        wait_for(lambda: count(dst, topic, 2) >= 2000, "the first copy", log)
        produce(src, topic, 2000, 300)
        wait_for(lambda: count(dst, topic, 2) > 2000, "some live records", log)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # what run 1 copied is in the destination but not in its checkpoint
    checkpoint = json.load(open(mirror_mod.default_state_path(src, dst)))
    assert sum(e["destination"] for e in checkpoint["partitions"].values()) == 0
    already = count(dst, topic, 2)
    assert already > 2000
    produce(src, topic, 2300, 200)
    # run 2 resumes with frequent checkpoints and is killed again mid-copy
    produce(src, topic, 2500, 3000)
    with open(log, "a") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "arrowlog", "mirror", src, dst, "--topics", topic,
                                 "--checkpoint-ms", "5"], env=_env(), stderr=stderr)

    def checkpointed() -> int:
        try:
            with open(mirror_mod.default_state_path(src, dst)) as f:
                return sum(e["destination"] for e in json.load(f)["partitions"].values())
        except (OSError, ValueError, KeyError):
            return 0

    try:
        # kill by progress, not after a guessed time: once run 2 has copied
        # and checkpointed records beyond what run 1 left
        wait_for(lambda: checkpointed() > already, "run 2 to copy and checkpoint some records", log)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    at_kill = checkpointed()
    assert already < at_kill < 5500, f"the kill did not land mid-copy (checkpoint at {at_kill} of 5500)"
    # run 3 finishes: nothing missing, nothing twice, same order and partitions
    done = run_cli(src, dst, "--topics", topic)
    said = log.read_text() + done.stderr
    assert done.returncode == 0, said
    assert "mirror: done" in done.stderr
    got, want = rows(dst, topic), rows(src, topic)
    values = Counter((r["partition"], r["value"]) for r in got)
    twice = sorted(k for k, n in values.items() if n > 1)
    missing = sorted({(r["partition"], r["value"]) for r in want} - set(values))
    assert not twice and not missing, f"{len(twice)} twice {twice[:5]}, {len(missing)} missing {missing[:5]}\n{said}"
    assert len(got) == len(want) == 5500
    assert got == want


def test_restart_skips_what_the_destination_already_has(kafka, tmp_path):
    """The watermark check, without a kill: records appended after the last
    checkpoint are counted, not copied again."""
    src, dst = kafka, str(tmp_path / "data")
    topic = new_topic(src, 1)
    produce(src, topic, 0, 40)
    state = str(tmp_path / "state.json")
    mirror(src, dst, topic, state=state, progress=lambda line: None)
    doc = json.load(open(state))
    assert doc["partitions"][f"{topic}/0"] == {"source": 40, "destination": 40}
    produce(src, topic, 40, 10)
    # a crash after writing 10 records and before checkpointing them
    with LogDir(dst) as d:
        part = d.topic(topic).partition(0)
        later = [r for r in rows(src, topic) if r["offset"] >= 40]
        part.append(pa.RecordBatch.from_pylist(
            [{k: r[k] for k in ("timestamp", "key", "value", "headers")} for r in later],
            schema=arrowlog.schema.PRODUCE_SCHEMA))
    stats = mirror(src, dst, topic, state=state, progress=lambda line: None)
    assert (stats.copied, stats.skipped) == (0, 10)
    assert rows(dst, topic) == rows(src, topic)
    # a destination that lost records is refused, not silently duplicated
    doc["partitions"][f"{topic}/0"]["destination"] = 99
    json.dump(doc, open(state, "w"))
    with pytest.raises(MirrorError, match="truncated or recreated"):
        mirror(src, dst, topic, state=state, progress=lambda line: None)
    # a checkpoint of another pair of logs is refused
    with pytest.raises(MirrorError, match="another --state"):
        mirror(src, str(tmp_path / "elsewhere"), topic, state=state, progress=lambda line: None)


def test_follow_copies_live_records_and_new_topics(kafka, tmp_path, monkeypatch):
    monkeypatch.setattr(mirror_mod, "DISCOVER_INTERVAL_S", 0.1)
    src, dst = str(tmp_path / "data"), kafka
    prefix = "f" + uuid.uuid4().hex[:6]
    first = new_topic(src, 1, prefix=prefix)
    stop = threading.Event()
    result: dict = {}

    def run() -> None:
        result["stats"] = mirror(src, dst, prefix + "-.*", follow=True, stop=stop, progress=lambda line: None,
                                 checkpoint_interval=0.05)

    t = threading.Thread(target=run)
    t.start()
    try:
        produce(src, first, 0, 20)
        wait_for(lambda: count(dst, first, 1) == 20, "live records")
        second = new_topic(src, 2, prefix=prefix)
        produce(src, second, 0, 30)
        wait_for(lambda: count(dst, second, 2) == 30, "a new topic")
    finally:
        stop.set()
        t.join(WAIT_S)
    assert not t.is_alive()
    assert result["stats"].copied == 50
    assert rows(dst, second) == rows(src, second)


def test_cli_errors_are_one_line(kafka, tmp_path):
    data = str(tmp_path / "data")
    new_topic(data, 3)
    bad = run_cli(data, kafka, "--topics", "(")
    assert bad.returncode == 2 and "regular expression" in bad.stderr
    both = run_cli(kafka, kafka + ",127.0.0.1:1", "--topics", ".*")
    assert both.returncode == 2 and "--state" in both.stderr
    smaller = new_topic(kafka, 1)
    with LogDir(data) as d:
        d.create_topic(smaller, 3)
    produce(data, smaller, 0, 3)
    fewer = run_cli(data, kafka, "--topics", smaller)
    assert fewer.returncode == 1 and "partition numbers cannot be kept" in fewer.stderr
    assert "Traceback" not in bad.stderr + both.stderr + fewer.stderr


def test_sigterm_records_progress_and_exits_143(kafka, tmp_path):
    src, dst = kafka, str(tmp_path / "data")
    topic = new_topic(src, 2)
    produce(src, topic, 0, 500)
    log = tmp_path / "mirror.log"
    proc = follow_uncheckpointed(src, dst, topic, log)
    try:
        wait_for(lambda: count(dst, topic, 2) == 500, "the copy", log)
        proc.send_signal(signal.SIGTERM)
        proc.wait(WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, log.read_text()
    checkpoint = json.load(open(mirror_mod.default_state_path(src, dst)))
    assert sum(e["destination"] for e in checkpoint["partitions"].values()) == 500
    assert sum(e["source"] for e in checkpoint["partitions"].values()) == 500


def test_group_offsets_carry_over_as_docs_show(kafka, tmp_path):
    """docs/SCALING.md step 3: offsets are equal on both sides after a
    mirror, so a group's commits copy over by value."""
    data = str(tmp_path / "data")
    topic = new_topic(data, 3)
    produce(data, topic, 0, 60)
    group = "g-" + uuid.uuid4().hex[:10]
    with Consumer({"log.dir": data, "group.id": group, "enable.auto.commit": False}) as old:
        old.assign([TopicPartition(topic, p, 0) for p in range(3)])
        seen = []
        while len(seen) < 30:
            seen.extend(old.consume(30 - len(seen), 1.0))
        old.commit(asynchronous=False)
    mirror(data, kafka, topic, progress=lambda line: None)
    old = Consumer({"log.dir": data, "group.id": group})
    new = Consumer({"log.dir": kafka, "group.id": group})
    tps = [TopicPartition(topic, p) for p in range(3)]
    new.commit(offsets=[tp for tp in old.committed(tps) if tp.offset >= 0], asynchronous=False)
    old.close()
    new.close()
    resumed = Consumer({"log.dir": kafka, "group.id": group, "auto.offset.reset": "earliest"})
    resumed.subscribe([topic])
    rest: list = []
    deadline = time.monotonic() + WAIT_S
    while len(rest) < 30 and time.monotonic() < deadline:
        rest.extend(m for m in resumed.consume(30, 0.5) if m.error() is None)
    resumed.close()
    assert len(rest) == 30
    assert not {(m.partition(), m.offset()) for m in seen} & {(m.partition(), m.offset()) for m in rest}


def test_a_run_without_follow_stops_at_the_start_time_end_even_across_offset_gaps():
    """Records past the end a run started with are left for the next run,
    also when a Kafka source's offsets have gaps (compaction)."""
    from arrowlog.mirror import Chunk
    batch = pa.RecordBatch.from_pylist([{"value": b"x"}] * 3)
    gappy = Chunk("t", 0, batch, 11, np.array([5, 6, 10], dtype=np.int64))
    assert [gappy.rows_before(e) for e in (5, 6, 8, 10, 11)] == [0, 1, 2, 2, 3]
    dense = Chunk("t", 0, batch, 13)
    assert [dense.rows_before(e) for e in (10, 12, 13)] == [0, 2, 3]


@pytest.mark.parametrize("direction", ["dir-to-kafka", "kafka-to-dir"])
def test_an_unreachable_cluster_ends_the_mirror_at_the_connect_bound_with_one_line(direction, tmp_path):
    """The mirror gives up after the client's connect bound (it does not retry
    forever as librdkafka would): run_cli's 120 s timeout fails a mirror that
    hangs, and the error names the bound it waited, rather than the test timing
    the run (a loaded machine adds seconds of interpreter start-up)."""
    import socket

    from arrowlog.backends.kafka.client import CONNECT_TIMEOUT_S

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    nowhere = f"kafka://127.0.0.1:{s.getsockname()[1]}"
    s.close()  # nobody listens there now: every connection is refused
    data, copy = str(tmp_path / "data"), str(tmp_path / "copy")
    produce(data, new_topic(data, 3), 0, 10)
    src, dst = (data, nowhere) if direction == "dir-to-kafka" else (nowhere, copy)
    r = run_cli(src, dst, "--topics", ".*")
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr  # no librdkafka log lines, one arrowlog error
    assert r.stderr.startswith("arrowlog: error: cannot reach the Kafka cluster at 127.0.0.1:")
    assert f" within {CONNECT_TIMEOUT_S:g} s " in r.stderr, r.stderr
    assert not os.path.exists(copy)


def test_a_following_mirror_survives_a_cluster_that_does_not_answer_for_a_while(kafka, tmp_path, monkeypatch, capfd):
    """Looking for topics to copy (list + describe the source's topics) can
    time out on a busy cluster: a following mirror says so and asks again
    at the next round instead of ending (it printed 'arrowlog: error: '
    and exited)."""
    from arrowlog.backends.kafka import client

    monkeypatch.setattr(mirror_mod, "DISCOVER_INTERVAL_S", 0.1)
    real = client.topic_config
    refusals = [2]

    def slow_cluster(conf, topic, keys=()):
        if refusals[0]:
            refusals[0] -= 1
            raise client.ClusterUnreachableError(f"the cluster did not describe topic {topic!r}'s config within 30 s")
        return real(conf, topic, keys)

    monkeypatch.setattr(client, "topic_config", slow_cluster)
    src, dst = kafka, str(tmp_path / "data")
    topic = new_topic(src, 2)
    produce(src, topic, 0, 40)
    stop = threading.Event()
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(stats=mirror(src, dst, topic, follow=True, stop=stop,
                                                                   progress=lambda line: None)))
    t.start()
    try:
        wait_for(lambda: count(dst, topic, 2) == 40, "the copy after the cluster answered again")
    finally:
        stop.set()
        t.join(WAIT_S)
    assert not t.is_alive() and result["stats"].copied == 40
    assert refusals == [0]
    assert "looking for topics to copy: " in capfd.readouterr().err


def test_an_admin_call_that_times_out_is_said_not_taken_for_no_config(monkeypatch):
    """Future.result(timeout) raises a TimeoutError without words; the
    cluster helpers say which call did not answer (retriable)."""
    from arrowlog.backends.kafka import client

    class Future:
        def result(self, timeout):
            raise TimeoutError()

    class Admin:
        def describe_configs(self, resources):
            return {resources[0]: Future()}

        def create_topics(self, topics, operation_timeout):
            return {topics[0].topic: Future()}

    monkeypatch.setattr(client, "admin_client", lambda conf: Admin())
    with pytest.raises(client.ClusterUnreachableError, match="did not describe topic 't'.s config within") as e:
        client.topic_config({}, "t")
    assert e.value.args[0].retriable()
    with pytest.raises(client.ClusterUnreachableError, match="did not answer creating topic 't' within"):
        client.create_topic({}, "t", 1)
