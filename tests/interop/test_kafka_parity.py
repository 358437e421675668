"""The same client code, two backends: arrowlog's Producer/Consumer on a
local directory and confluent-kafka's through ``arrowlog serve``.

Each scenario below is written once against confluent-kafka's API and run
twice: with ``arrowlog`` as the client module on a directory of its own, and
with ``confluent_kafka`` against the session's server. It returns what a user
observes (delivered offsets, delivery-report errors, message fields,
positions, commits, the errors raised and their codes) and the two must be
equal. Where the backends differ on purpose, docs/CLIENTS.md ("Where the
local backend differs from confluent-kafka") says so and the scenario leaves
that call out.

Scenarios wait for progress (a record arriving, a rebalance assigning), with
a generous deadline only so that a failure ends.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

import pytest

import arrowlog
from arrowlog.storage import LogDir

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

DEADLINE_S = 20.0
BASE_TS = 1_700_000_000_000


class Side:
    """One backend: the client module, its config and how a topic is created."""

    def __init__(self, name: str, mod: Any, conf: dict, create: Callable[[str, int], None]):
        self.name, self.mod, self.conf, self._create = name, mod, conf, create

    def create(self, topic: str, partitions: int) -> None:
        self._create(topic, partitions)

    def producer(self, **conf: Any) -> Any:
        c = dict(self.conf)
        if self.name == "kafka":
            # arrowlog partitions keyed records with murmur2, Kafka's Java default;
            # librdkafka's default is consistent_random (CRC32), so this is the setting
            # under which the same key goes to the same partition through both
            c["partitioner"] = "murmur2_random"
        c.update(conf)
        return self.mod.Producer(c)

    def consumer(self, **conf: Any) -> Any:
        c = dict(self.conf, **{"group.id": "g-" + uuid.uuid4().hex[:10], "enable.auto.commit": False})
        c.update(conf)
        return self.mod.Consumer(c)

    def tp(self, topic: str, partition: int, offset: int | None = None) -> Any:
        return self.mod.TopicPartition(topic, partition) if offset is None else \
            self.mod.TopicPartition(topic, partition, offset)

    def outcome(self, call: Callable[[], Any]) -> tuple:
        """("ok", value) or ("raised", kinds, KafkaError name): what a caller
        written for confluent-kafka can tell apart."""
        try:
            return ("ok", call())
        except Exception as exc:  # noqa: BLE001 (the kind is the observation)
            kinds = tuple(k.__name__ for k in (RuntimeError, TypeError, ValueError, BufferError)
                          if isinstance(exc, k))
            if kinds[-2:] == ("TypeError", "ValueError"):
                kinds = kinds[:-2] + ("ValueError",)  # arrowlog's InvalidArgumentError is both on purpose
            if isinstance(exc, self.mod.KafkaException):
                return ("raised", ("KafkaException",) + kinds, exc.args[0].name())
            return ("raised", kinds, None)


@pytest.fixture
def sides(server, tmp_path):
    local = str(tmp_path / "data")

    def create_local(topic: str, partitions: int) -> None:
        d = LogDir(local, create=True)
        try:
            d.create_topic(topic, partitions)
        finally:
            d.close()

    def create_wire(topic: str, partitions: int) -> None:
        admin = AdminClient({"bootstrap.servers": server.bootstrap})
        for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            fut.result(10)

    LogDir(local, create=True).close()
    return (Side("local", arrowlog, {"log.dir": local}, create_local),
            Side("kafka", ck, {"bootstrap.servers": server.bootstrap}, create_wire))


def msg(m: Any) -> tuple | None:
    if m is None:
        return None
    err = m.error()
    if err is not None:
        return ("event", err.name(), m.topic(), m.partition(), m.offset())
    return (m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.headers(), m.timestamp())


def tps(parts: Any) -> Any:
    if not isinstance(parts, list):
        return parts
    return sorted((t.topic, t.partition, t.offset, t.error.name() if t.error else None) for t in parts)


def take(c: Any, n: int, until: Callable[[list], bool] | None = None) -> list:
    """Messages (and events) until ``n`` arrived (or ``until`` says so)."""
    out: list = []
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and (len(out) < n if until is None else not until(out)):
        out.extend(c.consume(max(1, n - len(out)), 0.2))
    return out


def produce_and_report(s: Side, topic: str) -> dict:
    """Delivery reports, keyed partitioning, flush() and len() of a producer."""
    s.create(topic, 7)
    p = s.producer(**{"linger.ms": 5})
    reports: list = []

    def report(err: Any, m: Any) -> None:
        reports.append((err.name() if err else None, m.topic(), m.partition(), m.offset(), m.key(), m.timestamp()))

    for i in range(30):
        p.produce(topic, value=b"v%d" % i, key=b"key-%d" % i, timestamp=BASE_TS + i, on_delivery=report)
    p.produce(topic, value=b"empty key", key=b"", timestamp=BASE_TS, on_delivery=report)
    p.produce(topic, value=b"to 6", partition=6, timestamp=BASE_TS, callback=report)
    queued = len(p)
    return {"queued": queued, "flush": p.flush(10), "after": len(p), "poll": p.poll(0),
            "reports": sorted(reports, key=repr)}


def unkeyed_murmur2(s: Side, topic: str) -> dict:
    """partitioner=murmur2: records without a key all go where an empty key goes."""
    s.create(topic, 6)
    p = s.producer(partitioner="murmur2")
    partitions: list = []
    for i in range(12):
        p.produce(topic, b"%d" % i, on_delivery=lambda err, m: partitions.append(m.partition()))
        if i % 4 == 3:
            assert p.flush(10) == 0  # a new batch: a sticky partitioner would move on
    assert p.flush(10) == 0
    return {"partitions": partitions}


def fields(s: Side, topic: str) -> list:
    """Keys, values, headers (order, repeats, null values) and timestamps as stored."""
    s.create(topic, 1)
    p = s.producer()
    p.produce(topic, value=b"x", headers=[("a", b"1"), ("n", None), ("a", b"2")], timestamp=BASE_TS)
    p.produce(topic, value=None, key=b"k", timestamp=BASE_TS + 1)
    p.produce(topic, value=b"", key=b"", timestamp=BASE_TS + 2)
    p.produce(topic, value="text", key="str key", headers={"d": b"1"}, timestamp=BASE_TS + 3)
    p.produce(topic, value=b"now")
    assert p.flush(10) == 0
    c = s.consumer()
    c.assign([s.tp(topic, 0, 0)])
    got = take(c, 5)
    c.close()
    now = time.time() * 1000
    last = got[-1]
    return [msg(m) for m in got[:-1]] + [(last.timestamp()[0], abs(last.timestamp()[1] - now) < 600_000)]


def positions(s: Side, topic: str) -> dict:
    """assign, poll, seek, commit, committed, watermarks, offsets_for_times,
    incremental_assign, pause/resume, consume's limits."""
    s.create(topic, 2)
    p = s.producer()
    for i in range(10):
        p.produce(topic, value=b"%d" % i, partition=i % 2, timestamp=BASE_TS + i * 1000)
    assert p.flush(10) == 0
    c = s.consumer(**{"auto.offset.reset": "earliest"})
    r: dict = {"committed before": s.outcome(lambda: tps(c.committed([s.tp(topic, 0)], 10)))}
    c.assign([s.tp(topic, 0, 1)])
    r["assignment"] = [(t.topic, t.partition) for t in c.assignment()]
    r["first"] = msg(c.poll(DEADLINE_S))
    r["position"] = tps(c.position([s.tp(topic, 0)]))
    r["seek 3"] = s.outcome(lambda: c.seek(s.tp(topic, 0, 3)))
    r["at 3"] = msg(c.poll(DEADLINE_S))
    r["seek beginning"] = s.outcome(lambda: c.seek(s.tp(topic, 0, s.mod.OFFSET_BEGINNING)))
    r["at 0"] = msg(c.poll(DEADLINE_S))
    r["commit()"] = s.outcome(lambda: tps(c.commit(asynchronous=False)))
    r["committed"] = tps(c.committed([s.tp(topic, 0), s.tp(topic, 1)], 10))
    r["commit(offsets)"] = s.outcome(lambda: tps(c.commit(offsets=[s.tp(topic, 0, 4)], asynchronous=False)))
    r["commit(message)"] = s.outcome(lambda: tps(c.commit(message=c.poll(DEADLINE_S), asynchronous=False)))
    r["seek unassigned"] = s.outcome(lambda: c.seek(s.tp(topic, 1, 0)))
    r["store unassigned"] = s.outcome(lambda: c.store_offsets(offsets=[s.tp(topic, 1, 1)]))
    r["watermarks"] = s.outcome(lambda: c.get_watermark_offsets(s.tp(topic, 0), 10))
    r["watermarks cached"] = s.outcome(lambda: c.get_watermark_offsets(s.tp(topic, 0), 10, cached=True))
    # partition 0 holds BASE_TS + 0, 2000, ...; partition 1 BASE_TS + 1000, 3000, ...
    r["offsets_for_times"] = s.outcome(lambda: tps(c.offsets_for_times(
        [s.tp(topic, 0, BASE_TS + 2000), s.tp(topic, 1, BASE_TS + 2500)], 10)))
    r["offsets_for_times past the end"] = s.outcome(lambda: tps(c.offsets_for_times(
        [s.tp(topic, 0, BASE_TS + 10**9), s.tp(topic, 1, 0)], 10)))
    r["incremental_assign"] = s.outcome(lambda: c.incremental_assign([s.tp(topic, 1, 4)]))
    r["incremental_assign again"] = s.outcome(lambda: c.incremental_assign([s.tp(topic, 1, 0)]))
    r["assignment 2"] = sorted((t.topic, t.partition) for t in c.assignment())
    r["pause"] = s.outcome(lambda: c.pause([s.tp(topic, 0)]))
    r["pause unassigned"] = s.outcome(lambda: c.pause([s.tp(topic + "-none", 0)]))
    r["seek 0 paused"] = s.outcome(lambda: c.seek(s.tp(topic, 0, 0)))
    # partition 1 from offset 4 (not moved by the refused second assign); nothing of paused 0
    r["while paused"] = [msg(m) for m in take(c, 1)]
    r["resume"] = s.outcome(lambda: c.resume([s.tp(topic, 0)]))
    r["after resume"] = msg(c.poll(DEADLINE_S))
    r["consume(0)"] = s.outcome(lambda: c.consume(0, 0))
    r["consume(-1)"] = s.outcome(lambda: c.consume(-1, 0))
    # (a seek to a logical offset is resolved asynchronously by librdkafka: a seek
    # to the beginning right after one to the end raced it and read nothing, so
    # the seek to the end comes last, with nothing after it that depends on it)
    r["seek end"] = s.outcome(lambda: c.seek(s.tp(topic, 0, s.mod.OFFSET_END)))
    r["poll(0) at end"] = msg(c.poll(0))
    r["unassign"] = s.outcome(c.unassign)
    r["assignment 3"] = c.assignment()
    r["poll(0) unassigned"] = s.outcome(lambda: c.poll(0))
    c.close()
    for name, call in (("poll", lambda: c.poll(0)), ("consume", lambda: c.consume(1, 0)),
                       ("assign", lambda: c.assign([s.tp(topic, 0)])), ("assignment", c.assignment),
                       ("commit", lambda: c.commit(asynchronous=False)), ("committed", lambda: c.committed([s.tp(topic, 0)])),
                       ("position", lambda: c.position([s.tp(topic, 0)])), ("seek", lambda: c.seek(s.tp(topic, 0, 0))),
                       ("watermarks", lambda: c.get_watermark_offsets(s.tp(topic, 0))),
                       ("offsets_for_times", lambda: c.offsets_for_times([s.tp(topic, 0, 0)])),
                       ("list_topics", lambda: c.list_topics(topic)), ("unsubscribe", c.unsubscribe),
                       ("pause", lambda: c.pause([s.tp(topic, 0)])), ("memberid", c.memberid)):
        r["closed " + name] = s.outcome(call)[:2]
    r["close again"] = s.outcome(c.close)
    return r


def stored_offsets(s: Side, topic: str) -> dict:
    """store_offsets with auto commit off the poll path, read back by the next member."""
    s.create(topic, 1)
    p = s.producer()
    for i in range(5):
        p.produce(topic, value=b"%d" % i, timestamp=BASE_TS + i)
    assert p.flush(10) == 0
    group = "g-" + uuid.uuid4().hex[:10]
    c = s.consumer(**{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": True,
                      "enable.auto.offset.store": False})
    c.assign([s.tp(topic, 0)])
    got = take(c, 5)
    r: dict = {"read": [m.offset() for m in got]}
    r["store message"] = s.outcome(lambda: c.store_offsets(message=got[1]))
    r["store offsets"] = s.outcome(lambda: c.store_offsets(offsets=[s.tp(topic, 0, 3)]))
    c.close()  # commits what is stored
    again = s.consumer(**{"group.id": group})
    r["committed"] = tps(again.committed([s.tp(topic, 0)], 10))
    again.assign([s.tp(topic, 0)])
    r["resumes at"] = msg(again.poll(DEADLINE_S))
    r["commit"] = s.outcome(lambda: tps(again.commit(asynchronous=False)))
    again.close()
    fresh = s.consumer()
    fresh.assign([s.tp(topic, 0)])
    r["commit with nothing stored"] = s.outcome(lambda: fresh.commit(asynchronous=False))
    fresh.close()
    return r


def purge(s: Side, topic: str) -> dict:
    """purge() drops what is queued; each record's report says _PURGE_QUEUE."""
    s.create(topic, 1)
    p = s.producer(**{"linger.ms": 60_000})
    reports: list = []
    for i in range(3):
        p.produce(topic, b"%d" % i, partition=0, on_delivery=lambda err, m: reports.append(
            (err.name() if err else None, m.value(), m.partition(), m.offset())))
    r: dict = {"purge": s.outcome(p.purge)}
    deadline = time.monotonic() + DEADLINE_S
    while len(reports) < 3 and time.monotonic() < deadline:
        p.poll(0.1)
    r["reports"], r["len"], r["flush"] = reports, len(p), p.flush(10)
    p.produce(topic, b"kept")
    r["flush kept"] = p.flush(10)
    c = s.consumer()
    c.assign([s.tp(topic, 0, 0)])
    r["in the log"] = msg(c.poll(DEADLINE_S))[2:5]
    c.close()
    return r


def closed_producer(s: Side, topic: str) -> dict:
    s.create(topic, 1)
    p = s.producer()
    p.produce(topic, b"x")
    p.flush(10)
    p.close()
    return {name: s.outcome(call)[:2] for name, call in (
        ("produce", lambda: p.produce(topic, b"x")), ("flush", lambda: p.flush(0)),
        ("poll", lambda: p.poll(0)), ("purge", p.purge), ("list_topics", lambda: p.list_topics(topic)))}


def callbacks(s: Side, topic: str) -> list:
    """on_delivery (config), on_delivery= and callback= (both given: callback)."""
    s.create(topic, 1)
    seen: list = []
    p = s.producer(on_delivery=lambda err, m: seen.append(("config", m.value(), m.offset())))
    p.produce(topic, b"a")
    p.produce(topic, b"b", on_delivery=lambda err, m: seen.append(("on_delivery", m.value(), m.offset())))
    p.produce(topic, b"c", callback=lambda err, m: seen.append(("callback", m.value(), m.offset())))
    p.produce(topic, b"d", callback=lambda err, m: seen.append(("callback", m.value(), m.offset())),
              on_delivery=lambda err, m: seen.append(("on_delivery", m.value(), m.offset())))
    assert p.flush(10) == 0
    return seen


def group_subscribe(s: Side, topic: str) -> dict:
    """subscribe: the assignment, every record once, end-of-partition events, commit()."""
    s.create(topic, 2)
    p = s.producer()
    for i in range(6):
        p.produce(topic, value=b"%d" % i, partition=i % 2)
    assert p.flush(10) == 0
    assigned: list = []
    c = s.consumer(**{"auto.offset.reset": "earliest", "enable.partition.eof": True,
                      "heartbeat.interval.ms": 200, "session.timeout.ms": 6000})
    c.subscribe([topic], on_assign=lambda consumer, parts: assigned.append(
        sorted((t.topic, t.partition) for t in parts)))
    got = take(c, 8, until=lambda out: sum(1 for m in out if m.error() is not None) >= 2)
    r = {"assigned": assigned, "messages": sorted(msg(m)[:5] for m in got)}
    r["commit"] = s.outcome(lambda: tps(c.commit(asynchronous=False)))
    r["commit async"] = s.outcome(lambda: c.commit(asynchronous=True))
    c.close()
    return r


def unknown_topics(s: Side, topic: str) -> dict:
    """A subscription to a topic that does not exist; list_topics of one."""
    c = s.consumer(**({"allow.auto.create.topics": False} if s.name == "kafka" else {}))
    r: dict = {}
    meta = c.list_topics(topic, 10).topics[topic]
    r["list_topics"] = (meta.error.name() if meta.error else None, len(meta.partitions))
    c.subscribe([topic])
    got = take(c, 1)
    r["event"] = [(m.error().name(), m.error().code(), m.topic(), m.offset(), m.error().fatal(),
                   m.error().retriable()) for m in got]
    c.close()
    return r


SCENARIOS = [produce_and_report, unkeyed_murmur2, fields, positions, stored_offsets, purge, closed_producer, callbacks,
             group_subscribe, unknown_topics]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f.__name__ for f in SCENARIOS])
def test_same_code_same_observations(sides, scenario):
    topic = "parity-" + uuid.uuid4().hex[:10]
    local, kafka = (scenario(side, topic) for side in sides)
    if isinstance(local, dict):
        assert list(local) == list(kafka)
        different = {k: (local[k], kafka[k]) for k in local if repr(local[k]) != repr(kafka[k])}
        assert different == {}, "local directory vs Kafka protocol: " + repr(different)
    else:
        assert repr(local) == repr(kafka)
