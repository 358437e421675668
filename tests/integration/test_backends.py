"""One behaviour suite, both backends (STYLE.md rule 9).

Every test here runs twice through the ``backend`` fixture: on an embedded
data directory, and on ``kafka://`` pointed at an ``arrowlog serve``
started on an ephemeral 127.0.0.1 port (the stand-in for a Kafka cluster).
The test bodies never look at which backend they got, except where a
feature exists on one side only and the test checks that the other side
says so plainly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
import time
import uuid
import warnings
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

import arrowlog
from arrowlog import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, Producer, TopicPartition
from arrowlog.asyncio import AsyncConsumer, AsyncProducer
from arrowlog.errors import (
    ArrowlogError,
    ConfigError,
    KafkaException,
    MessageSizeTooLargeError,
    UnknownTopicError,
)
from arrowlog.storage import LogDir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop.conftest import ServerProcess  # noqa: E402  (the interop suite's server launcher)

WAIT_S = 20.0   # bounds for waits that normally finish in milliseconds
T0 = 1_700_000_000_000  # a fixed epoch-ms base for explicit timestamps


class Backend:
    """Where a test's log lives, and how to make a topic there."""

    def __init__(self, name: str, where: str):
        self.name = name
        self.where = where

    def conf(self, **extra: object) -> dict:
        out: dict = {"log.dir": self.where}
        out.update({k.replace("_", "."): v for k, v in extra.items()})
        return out

    def create_topic(self, partitions: int = 1) -> str:
        name = "t-" + uuid.uuid4().hex[:12]
        if self.name == "embedded":
            with LogDir(self.where) as d:
                d.create_topic(name, partitions)
        else:
            from arrowlog.backends.kafka.client import create_topic, kafka_config
            create_topic(kafka_config({"log.dir": self.where}, what="test"), name, partitions)
        return name

    def __repr__(self) -> str:
        return self.name


@pytest.fixture(scope="module")
def kafka_server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("backends") / "data")
    yield srv
    assert srv.stop() == 0, srv.log()


@pytest.fixture(params=["embedded", "kafka"])
def backend(request, tmp_path):
    if request.param == "embedded":
        return Backend("embedded", str(tmp_path / "data"))
    srv = request.getfixturevalue("kafka_server")
    return Backend("kafka", f"kafka://{srv.bootstrap}")


def group_name() -> str:
    return "g-" + uuid.uuid4().hex[:12]


def read_all(consumer, n: int) -> list:
    out: list = []
    end = time.monotonic() + WAIT_S
    while len(out) < n and time.monotonic() < end:
        out.extend(m for m in consumer.consume(n - len(out), 0.5) if m.error() is None)
    return out


def produce_numbered(backend: Backend, topic: str, n: int, **extra: object) -> None:
    with Producer(backend.conf(**extra)) as p:
        for i in range(n):
            p.produce(topic, b"v%d" % i, key=b"k%d" % i, timestamp=T0 + i * 1000,
                      headers=[("seq", str(i).encode())])
        assert p.flush() == 0


# -- producer and consumer -------------------------------------------------------------------


def test_produce_then_assign_and_consume_every_field(backend):
    topic = backend.create_topic(3)
    produce_numbered(backend, topic, 30)
    c = Consumer(backend.conf())
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    msgs = read_all(c, 30)
    c.close()
    assert len(msgs) == 30
    for m in msgs:
        i = int(m.value()[1:])
        assert m.topic() == topic
        assert m.key() == b"k%d" % i
        assert m.timestamp() == (arrowlog.TIMESTAMP_CREATE_TIME, T0 + i * 1000)
        assert [(k, v) for k, v in m.headers()] == [("seq", str(i).encode())]
        # keyed records land where murmur2 puts them, on either backend
        assert m.partition() == arrowlog.murmur2_partition(m.key(), 3)
    by_partition: dict = {}
    for m in msgs:
        by_partition.setdefault(m.partition(), []).append(m.offset())
    assert all(offs == list(range(len(offs))) for offs in by_partition.values())


def test_delivery_callbacks_and_len(backend):
    topic = backend.create_topic(1)
    reports = []
    p = Producer(backend.conf())
    for i in range(5):
        p.produce(topic, b"x%d" % i, on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    assert p.flush() == 0
    p.poll(0)
    assert len(p) == 0
    p.close()
    assert sorted(off for _, off in reports) == [0, 1, 2, 3, 4]
    assert all(err is None for err, _ in reports)


def test_purge_drops_what_is_queued_and_a_closed_producer_says_so(backend):
    topic = backend.create_topic(1)
    reports = []
    p = Producer(backend.conf(linger_ms=60_000))
    for i in range(3):
        p.produce(topic, b"x%d" % i, partition=0,
                  on_delivery=lambda err, msg: reports.append((err.code() if err else None, msg.offset())))
    p.purge()
    end = time.monotonic() + WAIT_S
    while len(reports) < 3 and time.monotonic() < end:
        p.poll(0.1)
    assert reports == [(KafkaError._PURGE_QUEUE, None)] * 3
    p.produce(topic, b"kept", partition=0)
    assert p.flush() == 0
    p.close()
    for call in (lambda: p.produce(topic, b"late"), lambda: p.flush(0), lambda: p.poll(0), p.purge):
        with pytest.raises(RuntimeError):
            call()
    c = Consumer(backend.conf())
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    assert [m.value() for m in read_all(c, 1)] == [b"kept"]
    c.close()
    with pytest.raises(RuntimeError):
        c.poll(0)


def test_produce_batch_and_iteration(backend):
    topic = backend.create_topic(1)
    with Producer(backend.conf()) as p:
        table = pa.table({"value": [b"a", b"b", b"c"], "key": [b"1", None, b"3"],
                          "timestamp": pa.array([T0, T0 + 1, T0 + 2], pa.int64())})
        assert p.produce_batch(topic, table) == 3
    with Consumer(backend.conf()) as c:
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        for m in c:
            got.append((m.key(), m.value(), m.timestamp()[1]))
            if len(got) == 3:
                break
    assert got == [(b"1", b"a", T0), (None, b"b", T0 + 1), (b"3", b"c", T0 + 2)]


def test_seek_position_and_watermarks(backend):
    topic = backend.create_topic(1)
    produce_numbered(backend, topic, 10)
    tp = TopicPartition(topic, 0)
    with Consumer(backend.conf()) as c:
        assert c.get_watermark_offsets(tp) == (0, 10)
        c.assign([TopicPartition(topic, 0, 4)])
        assert [m.offset() for m in read_all(c, 2)] == [4, 5]
        assert c.position([tp])[0].offset == 6
        c.seek(TopicPartition(topic, 0, 8))
        assert [m.offset() for m in read_all(c, 2)] == [8, 9]
        c.seek_to_beginning()
        assert read_all(c, 1)[0].offset() == 0
        c.seek_to_end(tp)
        assert c.consume(10, 0.3) == []
        assert c.position([tp])[0].offset == 10


def test_offsets_for_times(backend):
    topic = backend.create_topic(1)
    produce_numbered(backend, topic, 10)
    with Consumer(backend.conf()) as c:
        found = c.offsets_for_times([TopicPartition(topic, 0, T0 + 3500)])
        assert found[0].offset == 4
        assert isinstance(found[0], TopicPartition)
        when = dt.datetime.fromtimestamp((T0 + 7000) / 1000, tz=dt.timezone.utc)
        assert c.offsets_for_times([TopicPartition(topic, 0, when)])[0].offset == 7
        assert c.offsets_for_times([TopicPartition(topic, 0, T0 + 99_000)])[0].offset == OFFSET_END


def test_partition_eof_events_and_pause_resume(backend):
    topic = backend.create_topic(2)
    with Producer(backend.conf()) as p:
        p.produce(topic, b"a", partition=0)
        p.produce(topic, b"b", partition=1)
    with Consumer(backend.conf(enable_partition_eof=True)) as c:
        c.assign([TopicPartition(topic, 0, 0), TopicPartition(topic, 1, 0)])
        c.pause([TopicPartition(topic, 1)])
        got, eofs = [], set()
        end = time.monotonic() + WAIT_S
        while (len(got) < 1 or not eofs) and time.monotonic() < end:
            for m in c.consume(10, 0.2):
                if m.error() is None:
                    got.append((m.partition(), m.value()))
                elif m.error().code() == arrowlog.KafkaError._PARTITION_EOF:
                    eofs.add((m.partition(), m.offset()))
        assert got == [(0, b"a")] and eofs == {(0, 1)}      # the paused partition is silent
        c.resume([TopicPartition(topic, 1)])
        rest = read_all(c, 1)
        assert [(m.partition(), m.value()) for m in rest] == [(1, b"b")]


def test_list_topics(backend):
    topic = backend.create_topic(3)
    with Consumer(backend.conf()) as c:
        meta = c.list_topics()
        assert len(meta.topics[topic].partitions) == 3
        assert sorted(meta.topics[topic].partitions) == [0, 1, 2]


# -- groups ------------------------------------------------------------------------------------


def test_group_subscribe_commit_and_resume(backend):
    topic = backend.create_topic(2)
    produce_numbered(backend, topic, 20)
    group = group_name()
    conf = backend.conf(group_id=group, auto_offset_reset="earliest", enable_auto_commit=False,
                        session_timeout_ms=6000, heartbeat_interval_ms=500)
    assigned = []
    c = Consumer(conf)
    c.subscribe([topic], on_assign=lambda consumer, parts: assigned.extend(parts))
    first = read_all(c, 12)
    assert len(first) == 12
    assert sorted(tp.partition for tp in assigned) == [0, 1]
    assert all(isinstance(tp, TopicPartition) for tp in assigned)
    done = c.commit(asynchronous=False)
    committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)])}
    assert {tp.partition: tp.offset for tp in done if tp.offset >= 0}.items() <= committed.items()
    c.close()
    expected = {}
    for m in first:
        expected[m.partition()] = max(expected.get(m.partition(), 0), m.offset() + 1)
    assert {p: off for p, off in committed.items() if off >= 0} == expected
    # a new member of the group starts where the first one committed
    c2 = Consumer(conf)
    c2.subscribe([topic])
    rest = read_all(c2, 8)
    c2.close()
    seen = {(m.partition(), m.offset()) for m in first}
    again = {(m.partition(), m.offset()) for m in rest}
    assert len(rest) == 8 and not seen & again
    assert len(seen | again) == 20


def test_two_members_split_the_partitions(backend):
    topic = backend.create_topic(4)
    produce_numbered(backend, topic, 40)
    conf = backend.conf(group_id=group_name(), auto_offset_reset="earliest", session_timeout_ms=6000,
                        heartbeat_interval_ms=200)
    members = [Consumer(conf), Consumer(conf)]
    seen: list[list] = [[], []]
    try:
        for c in members:
            c.subscribe([topic])
        end = time.monotonic() + WAIT_S
        while time.monotonic() < end:
            for i, c in enumerate(members):
                seen[i].extend((m.partition(), m.offset()) for m in c.consume(100, 0.1) if m.error() is None)
            owned = [{tp.partition for tp in c.assignment()} for c in members]
            if all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == {0, 1, 2, 3} \
                    and len(set(seen[0]) | set(seen[1])) == 40:
                break
        assert all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == {0, 1, 2, 3}
        assert len(set(seen[0]) | set(seen[1])) == 40
    finally:
        for c in members:
            c.close()


def test_store_offsets_then_commit(backend):
    topic = backend.create_topic(1)
    produce_numbered(backend, topic, 5)
    group = group_name()
    conf = backend.conf(group_id=group, enable_auto_commit=False, enable_auto_offset_store=False)
    with Consumer(conf) as c:
        c.assign([TopicPartition(topic, 0, 0)])
        msgs = read_all(c, 5)
        c.store_offsets(message=msgs[2])
        c.commit(asynchronous=False)
        assert c.committed([TopicPartition(topic, 0)])[0].offset == 3
        c.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
        assert c.committed([TopicPartition(topic, 0)])[0].offset == 5


def poll_until(client, condition, what: str) -> None:
    """Serve the client's callbacks (poll) until ``condition()`` holds."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        client.poll(0.05)


def partition_stats(stats: list, topic: str) -> dict:
    """The newest statistics' partitions of ``topic`` (librdkafka's -1, the
    unassigned-message queue, left out)."""
    for doc in reversed(stats):
        parts = json.loads(doc).get("topics", {}).get(topic, {}).get("partitions", {})
        real = {int(k): v for k, v in parts.items() if int(k) >= 0}
        if real:
            return real
    return {}


def test_the_same_confluent_kafka_program_runs_on_both(backend):
    """A confluent-kafka program with error_cb, stats_cb, logger and
    on_commit, unchanged: only where it points differs."""
    topic = backend.create_topic(2)
    errors_seen: list = []
    producer_stats: list = []
    consumer_stats: list = []
    commits: list = []
    delivered: list = []
    callbacks = {"error_cb": errors_seen.append, "logger": logging.getLogger("test.program"),
                 "statistics.interval.ms": 100}
    p = Producer({**backend.conf(), **callbacks, "stats_cb": producer_stats.append})
    for i in range(20):
        p.produce(topic, b"v%d" % i, key=b"k%d" % i, on_delivery=lambda err, msg: delivered.append(err))
    assert p.flush(WAIT_S) == 0
    assert delivered == [None] * 20
    poll_until(p, lambda: sum(s["txmsgs"] for s in partition_stats(producer_stats, topic).values()) == 20,
               "producer statistics counting 20 records sent")
    p.flush(WAIT_S)

    c = Consumer({**backend.conf(), **callbacks, "stats_cb": consumer_stats.append, "group.id": group_name(),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "on_commit": lambda err, partitions: commits.append((err, partitions))})
    c.subscribe([topic])
    msgs = read_all(c, 20)
    assert sorted(m.value() for m in msgs) == sorted(b"v%d" % i for i in range(20))
    c.commit()   # asynchronous: its result comes to on_commit
    poll_until(c, lambda: commits, "on_commit")
    err, partitions = commits[0]
    assert err is None
    assert sum(tp.offset for tp in partitions if tp.topic == topic) == 20
    poll_until(c, lambda: sum(max(s["committed_offset"], 0) for s in partition_stats(consumer_stats, topic).values())
               == 20, "consumer statistics showing the committed offsets")
    for part in partition_stats(consumer_stats, topic).values():
        assert part["hi_offset"] == part["committed_offset"] and part["consumer_lag"] == 0
    c.close()
    p.flush(WAIT_S)
    assert not [e for e in errors_seen if e.fatal()]


def test_message_max_bytes_is_enforced_the_same_way(backend):
    topic = backend.create_topic(1)
    with Producer(backend.conf(message_max_bytes=1000)) as p:
        with pytest.raises(MessageSizeTooLargeError):
            p.produce(topic, b"x" * 5000)
        p.produce(topic, b"small")
        assert p.flush(WAIT_S) == 0
    with Consumer(backend.conf()) as c:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        assert [m.value() for m in read_all(c, 1)] == [b"small"]


def test_subscribing_to_a_missing_topic_delivers_unknown_topic_event(backend):
    topic = backend.create_topic(1)
    missing = "missing-" + uuid.uuid4().hex[:8]
    produce_numbered(backend, topic, 1)
    with Consumer(backend.conf(group_id=group_name(), auto_offset_reset="earliest")) as c:
        c.subscribe([topic, missing])
        events: list = []
        deadline = time.monotonic() + WAIT_S
        while not (any(m.error() is not None for m in events) and any(m.error() is None for m in events)):
            assert time.monotonic() < deadline, events
            m = c.poll(0.5)
            if m is not None:
                events.append(m)
        errors = [m for m in events if m.error() is not None]
        assert errors[0].error().code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        assert errors[0].topic() == missing
        assert [m.value() for m in events if m.error() is None] == [b"v0"]


def test_commit_without_a_group_says_so(backend):
    topic = backend.create_topic(1)
    with Consumer(backend.conf()) as c:
        c.assign([TopicPartition(topic, 0, 0)])
        with pytest.raises(KafkaException, match="group.id"):
            c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)


def test_unknown_topic_is_unknown_topic_error(backend):
    backend.create_topic(1)  # the data directory exists; the topic asked for does not
    with Consumer(backend.conf()) as c:
        with pytest.raises(UnknownTopicError):
            c.get_watermark_offsets(TopicPartition("no-such-" + uuid.uuid4().hex[:8], 0))
    with pytest.raises(UnknownTopicError):
        arrowlog.replay(backend.where, "no-such-" + uuid.uuid4().hex[:8])


def test_auto_created_topic_has_num_partitions(backend):
    topic = "auto-" + uuid.uuid4().hex[:12]
    with Producer(backend.conf(num_partitions=4)) as p:
        p.produce(topic, b"x", key=b"k")
        p.flush()
        assert len(p.list_topics(topic).topics[topic].partitions) == 4


def test_no_auto_create_means_unknown_topic(backend):
    with Producer(backend.conf(auto_create_topics_enable=False)) as p:
        with pytest.raises(UnknownTopicError):
            p.produce("missing-" + uuid.uuid4().hex[:12], b"x")


# -- replay ------------------------------------------------------------------------------------


def test_replay_whole_topic_into_arrow_pandas_polars(backend):
    topic = backend.create_topic(2)
    produce_numbered(backend, topic, 40)
    r = arrowlog.replay(backend.where, topic)
    table = r.to_arrow()
    assert table.schema.names == ["partition", "offset", "timestamp", "key", "value", "headers"]
    assert table.num_rows == 40 == r.num_records
    rows = table.to_pylist()
    # partition by partition, each in offset order (the same order on both backends)
    assert [(x["partition"], x["offset"]) for x in rows] == sorted((x["partition"], x["offset"]) for x in rows)
    for x in rows:
        i = int(x["value"][1:])
        assert x["key"] == b"k%d" % i
        assert x["headers"] == [{"key": "seq", "value": str(i).encode()}]
        assert x["timestamp"] == dt.datetime.fromtimestamp((T0 + i * 1000) / 1000, tz=dt.timezone.utc)
    assert len(r.to_pandas()) == 40
    assert isinstance(r.to_polars(), pl.DataFrame)
    assert pa.table(r).num_rows == 40                       # the Arrow C stream protocol
    assert sum(b.num_rows for b in r) == 40                 # iteration: every stream is fresh
    assert r.to_reader().read_all().equals(table)


def test_replay_time_and_offset_ranges_and_columns(backend):
    topic = backend.create_topic(1)
    produce_numbered(backend, topic, 20)
    start = dt.datetime.fromtimestamp((T0 + 5000) / 1000, tz=dt.timezone.utc)
    r = arrowlog.replay(backend.where, topic, start=start, end=f"@{T0 + 9000}", columns=["offset", "value"])
    t = r.to_arrow()
    assert t.schema.names == ["offset", "value"]
    assert t.column("offset").to_pylist() == [5, 6, 7, 8]
    assert arrowlog.replay(backend.where, topic, start=15, end="end").to_arrow().column("offset").to_pylist() \
        == list(range(15, 20))
    assert arrowlog.replay(backend.where, topic, start="end").to_arrow().num_rows == 0
    with pytest.raises(ConfigError):
        arrowlog.replay(backend.where, topic, columns=["nope"])


# -- asyncio -------------------------------------------------------------------------------------


def test_async_clients(backend):
    topic = backend.create_topic(1)

    async def main() -> list:
        async with AsyncProducer(backend.conf()) as p:
            futs = [await p.produce(topic, b"a%d" % i) for i in range(5)]
            delivered = [await f for f in futs]
        assert [m.offset() for m in delivered] == [0, 1, 2, 3, 4]
        async with AsyncConsumer(backend.conf(auto_offset_reset="earliest")) as c:
            c.consumer.assign([TopicPartition(topic, 0, 0)])
            got: list = []
            while len(got) < 5:
                got.extend(m.value() for m in await c.consume(5, WAIT_S) if m.error() is None)
        return got

    assert asyncio.run(main()) == [b"a%d" % i for i in range(5)]


# -- what exists on one backend only ---------------------------------------------------------------


def test_fsync_durability_is_refused_on_kafka_and_kept_embedded(backend):
    if backend.name == "kafka":
        with pytest.raises(ConfigError, match="acks=all"):
            Producer(backend.conf(durability="fsync"))
    else:
        Producer(backend.conf(durability="fsync")).close()


def test_cluster_only_and_embedded_only_keys_warn(backend):
    key = "fsync.interval.ms" if backend.name == "kafka" else "security.protocol"
    value = 10 if backend.name == "kafka" else "PLAINTEXT"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Producer(backend.conf(**{key.replace(".", "_"): value})).close()
    assert any(key in str(w.message) for w in caught)


def test_bad_config_is_a_config_error(backend):
    with pytest.raises((ConfigError, ArrowlogError)):
        Producer(backend.conf(linger_ms="soon"))


# -- the kafka:// location and config, without a cluster -------------------------------------------


def test_bootstrap_servers_alone_reaches_the_cluster(kafka_server, tmp_path, monkeypatch):
    """A pasted confluent-kafka config (bootstrap.servers, no log.dir) talks
    to the cluster and creates no local directory."""
    monkeypatch.chdir(tmp_path)
    topic = Backend("kafka", f"kafka://{kafka_server.bootstrap}").create_topic(1)
    conf = {"bootstrap.servers": kafka_server.bootstrap}
    with Producer(conf) as p:
        p.produce(topic, b"pasted")
        assert p.flush(WAIT_S) == 0
    with Consumer({**conf, "group.id": group_name(), "auto.offset.reset": "earliest"}) as c:
        c.subscribe([topic])
        assert [m.value() for m in read_all(c, 1)] == [b"pasted"]
    assert list(tmp_path.iterdir()) == []


def test_kafka_locations_and_config_translation():
    from arrowlog.backends.kafka.client import bootstrap_servers, kafka_config
    from arrowlog.backends.kafka.producer import KafkaProducer

    assert bootstrap_servers("kafka://a:9092,kafka://b:9093") == "a:9092,b:9093"
    assert bootstrap_servers("kafka://a:9092, b:9093/") == "a:9092,b:9093"
    with pytest.raises(ConfigError, match="no broker"):
        bootstrap_servers("kafka://")

    def on_error(err):
        return None

    conf = kafka_config({"log.dir": "kafka://h:1", "acks": "all"}, {"linger_ms": 7, "error_cb": on_error},
                        what="producer")
    assert conf == {"bootstrap.servers": "h:1", "acks": "all", "linger.ms": 7, "error_cb": on_error,
                    "client.id": "arrowlog"}
    assert kafka_config({"bootstrap.servers": "kafka://h:1"}, what="consumer")["bootstrap.servers"] == "h:1"
    with pytest.raises(ConfigError, match="no.such.key"):
        KafkaProducer({"log.dir": "kafka://127.0.0.1:1", "no.such.key": 1})
    # the location picks the backend, which fails fast with nobody listening there
    from arrowlog.backends.kafka.client import ClusterUnreachableError
    with pytest.raises(ClusterUnreachableError, match="cannot reach the Kafka cluster at 127.0.0.1:1"):
        Producer({"log.dir": "kafka://127.0.0.1:1", "socket.connection.setup.timeout.ms": 1000})
