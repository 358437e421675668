"""The ``kafka://`` backend: arrowlog's clients on a Kafka cluster.

``Producer({"log.dir": "kafka://host:9092"})``, ``Consumer(...)`` and
``replay("kafka://host:9092", ...)`` land here. They wrap confluent-kafka
(librdkafka), so everything that makes Kafka Kafka (replication, acks,
consumer-group coordination, security) is the cluster's, and this module
only keeps the API the same as the embedded log's:

* config keys are Kafka's and go to librdkafka unchanged, after
  ``log.dir``/``kafka://h:p,h2:p2`` becomes ``bootstrap.servers`` and the
  embedded-only keys are taken out (``durability=fsync`` is refused: a
  cluster's durability is ``acks=all`` plus the topic's replication);
* keyed records use ``partitioner=murmur2_random`` (murmur2 of the key, as
  the embedded log and Kafka's Java client), so a key lands in the same
  partition number on both backends;
* TopicPartition objects in and out are arrowlog's; messages are
  confluent-kafka's, whose methods are the same as arrowlog.Message's;
* librdkafka errors become arrowlog's hierarchy (UnknownTopicError,
  UnknownPartitionError, ConfigError, LogClosedError, or KafkaException
  with the same code), so one ``except`` clause serves both backends;
* librdkafka's log lines go to Python ``logging`` under ``arrowlog.kafka``
  (confluent-kafka's ``logger`` config; a ``logger`` you give is used
  instead), never straight to stderr;
* a client fails fast: it asks the cluster for metadata when it is made and
  raises one ClusterUnreachableError if no broker answers within
  ``socket.connection.setup.timeout.ms`` (10 s unless set), instead of
  retrying forever.

Thread-safety: as confluent-kafka's (a Producer may be shared by threads; a
Consumer is for one thread at a time).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pyarrow as pa

from ..._optional import require
from ..._types import OFFSET_INVALID, TopicPartition
from ...convert import binary_array, to_epoch_ms
from ...errors import (
    ArrowlogError,
    ConfigError,
    KafkaError,
    KafkaException,
    LogClosedError,
    MessageSizeTooLargeError,
    UnknownPartitionError,
    UnknownTopicError,
)

if TYPE_CHECKING:
    import confluent_kafka as ck
else:
    ck = require("confluent_kafka", "a kafka:// location")

# confluent-kafka's Python callbacks keep their underscores (error_cb, ...).
CALLBACK_KEYS = {"error_cb", "stats_cb", "throttle_cb", "oauth_cb", "on_delivery", "on_commit", "logger"}
# Keys that only mean something to the embedded log; ignored with a warning
# so one config serves both backends.
EMBEDDED_ONLY = {"fsync.interval.ms", "check.crcs.on.read", "log.cleaner.backoff.ms"}
# How long metadata and admin calls wait for the cluster before giving up.
ADMIN_TIMEOUT_S = 30.0
# How long a new client waits for the first broker to answer (librdkafka's
# socket.connection.setup.timeout.ms, when set, overrides it).
CONNECT_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_KEY = "socket.connection.setup.timeout.ms"
UNKNOWN_TOPIC_CODES = (ck.KafkaError.UNKNOWN_TOPIC_OR_PART, ck.KafkaError._UNKNOWN_TOPIC)
UNREACHABLE_CODES = (ck.KafkaError._TRANSPORT, ck.KafkaError._TIMED_OUT, ck.KafkaError._ALL_BROKERS_DOWN,
                     ck.KafkaError._RESOLVE)
# librdkafka's log lines: a library never prints; the application's logging decides.
KAFKA_LOG = logging.getLogger("arrowlog.kafka")
KAFKA_LOG.addHandler(logging.NullHandler())


class ClusterUnreachableError(KafkaException):
    """No broker of a ``kafka://`` cluster answered in time (a KafkaException
    with code _ALL_BROKERS_DOWN, so confluent-kafka style handlers catch it)."""

    def __init__(self, message: str):
        super().__init__(KafkaError(KafkaError._ALL_BROKERS_DOWN, message, retriable=True))


# librdkafka retries a refused connection every few ms and logs each try:
# the same line is forwarded once a minute, with how many were held back
REPEAT_WINDOW_S = 60.0
_VARYING = re.compile(r"\d+ms")


class LogTap:
    """What confluent-kafka's ``logger`` config wants (an object with
    ``log(level, msg, *args)``): forwards librdkafka's lines to a Python
    logger, a repeated line (same text but for its timings) at most once
    per REPEAT_WINDOW_S, and keeps the last error line, to say why a cluster
    is unreachable."""

    def __init__(self, target: Any):
        self.target = target
        self.last_error: str | None = None
        self._seen: dict[tuple[int, str], list] = {}   # (level, line) -> [forwarded at, held back]

    def log(self, level: int, msg: str, *args: Any) -> None:
        text = msg % args if args else msg
        if level >= logging.ERROR:
            self.last_error = text
        key, now = (level, _VARYING.sub("", text)), time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < REPEAT_WINDOW_S:
            seen[1] += 1
            return
        held = seen[1] if seen is not None else 0
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = [now, 0]
        self.target.log(level, "%s (%d similar lines held back)" if held else "%s", text, *((held,) if held else ()))


def bootstrap_servers(where: str) -> str:
    """``kafka://h:p,h2:p2`` (or ``kafka://h:p,kafka://h2:p2``) as ``h:p,h2:p2``."""
    hosts = []
    for part in where.split(","):
        part = part.strip()
        if part.startswith("kafka://"):
            part = part[len("kafka://"):]
        part = part.rstrip("/")
        if part:
            hosts.append(part)
    if not hosts:
        raise ConfigError(f"{where!r} names no broker: use kafka://host:port[,host:port]")
    return ",".join(hosts)


def kafka_config(given: dict | None, kwargs: dict | None = None, *, what: str) -> dict:
    """Merge a config dict and keyword arguments into librdkafka's keys."""
    conf: dict[str, Any] = {}
    for source, is_kw in ((given or {}), False), ((kwargs or {}), True):
        for raw, value in source.items():
            if not isinstance(raw, str):
                raise ConfigError(f"{what} config keys must be strings, not {raw!r}")
            name = raw.replace("_", ".") if is_kw and raw not in CALLBACK_KEYS else raw
            if value is not None:
                conf[name] = value
    where = conf.pop("log.dir", None) or conf.get("bootstrap.servers")
    if not where:
        raise ConfigError("say where the cluster is: {'log.dir': 'kafka://host:9092'}")
    conf["bootstrap.servers"] = bootstrap_servers(str(where))
    durability = str(conf.pop("durability", "written")).lower()
    if durability in ("fsync", "sync", "power"):
        raise ConfigError("durability=fsync is a setting of the embedded log; on a Kafka cluster a record is "
                          "durable once acknowledged with acks=all by min.insync.replicas replicas "
                          "(set those instead)")
    for name in sorted(EMBEDDED_ONLY & conf.keys()):
        conf.pop(name)
        warnings.warn(f"{what} config key {name!r} only applies to the embedded log; ignored on a Kafka cluster",
                      stacklevel=4)
    conf.setdefault("client.id", "arrowlog")
    return conf


def connect(client: Any, conf: dict, what: str) -> None:
    """Ask the cluster for metadata once; one ClusterUnreachableError if no
    broker answers within the connect bound (else librdkafka retries forever).
    ``conf`` is the one the client was made with (its ``logger`` a LogTap)."""
    bound = CONNECT_TIMEOUT_S
    if conf.get(CONNECT_TIMEOUT_KEY) is not None:
        bound = int(conf[CONNECT_TIMEOUT_KEY]) / 1000.0
    try:
        client.list_topics(timeout=bound)
    except ck.KafkaException as exc:
        err = exc.args[0] if exc.args and isinstance(exc.args[0], ck.KafkaError) else None
        if err is None or err.code() not in UNREACHABLE_CODES:
            raise translate(exc) from None
        try:
            client.poll(0)  # hands the queued log lines to the logger, so the tap knows why
        except Exception:
            pass
        tap = conf.get("logger")
        why = tap.last_error if isinstance(tap, LogTap) and tap.last_error else err.str()
        why = why.rsplit("]: ", 1)[-1]
        raise ClusterUnreachableError(
            f"cannot reach the Kafka cluster at {conf['bootstrap.servers']} for a {what} within {bound:g} s "
            f"({why}): check the address and that a broker is up, or raise {CONNECT_TIMEOUT_KEY} to wait "
            "longer") from None


def to_ck(tp: Any) -> ck.TopicPartition:
    if isinstance(tp, ck.TopicPartition):
        return tp
    if not isinstance(tp, TopicPartition):
        raise TypeError(f"expected a TopicPartition, not {type(tp).__name__}")
    offset = tp.offset
    if not isinstance(offset, int):
        offset = to_epoch_ms(offset)  # offsets_for_times takes datetimes too
    if tp.metadata is not None:
        return ck.TopicPartition(tp.topic, tp.partition, offset, tp.metadata)
    return ck.TopicPartition(tp.topic, tp.partition, offset)


def from_ck(tp: ck.TopicPartition) -> TopicPartition:
    out = TopicPartition(tp.topic, tp.partition, tp.offset, tp.metadata)
    if tp.error is not None:
        out.error = KafkaError(tp.error.code(), tp.error.str())
    return out


def _to_ck_list(partitions: Any) -> list[ck.TopicPartition]:
    return [to_ck(tp) for tp in partitions]


def _from_ck_list(partitions: Any) -> list[TopicPartition] | None:
    return None if partitions is None else [from_ck(tp) for tp in partitions]


def translate(exc: BaseException, client: Any = None, topic: str | None = None) -> BaseException:
    """A confluent-kafka exception as the error the embedded log raises for
    the same mistake."""
    if not isinstance(exc, ck.KafkaException) or not exc.args or not isinstance(exc.args[0], ck.KafkaError):
        return KafkaException(KafkaError(KafkaError._FAIL, str(exc)))
    err = exc.args[0]
    code, reason = err.code(), err.str()
    if code in UNKNOWN_TOPIC_CODES:
        return UnknownTopicError(f"unknown topic{f' {topic!r}' if topic else ''}: {reason}")
    if code == ck.KafkaError._UNKNOWN_PARTITION and client is not None and topic is not None:
        try:
            known = topic in client.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        except ck.KafkaException:
            known = True
        if not known:
            return UnknownTopicError(f"unknown topic {topic!r}")
        return UnknownPartitionError(f"topic {topic!r} has no such partition: {reason}")
    if code == ck.KafkaError._INVALID_ARG:
        return ConfigError(reason)
    if code == ck.KafkaError.MSG_SIZE_TOO_LARGE:  # as the embedded producer raises it
        return MessageSizeTooLargeError(f"{reason}: the record is larger than message.max.bytes")
    return KafkaException(KafkaError(code, reason, err.fatal(), err.retriable()))


def new_client(factory: Callable[[dict], Any], conf: dict, what: str, *, probe: bool = True) -> Any:
    """A confluent-kafka client whose log lines go to ``arrowlog.kafka`` (or
    the config's ``logger``); with ``probe``, one that reached the cluster
    (see :func:`connect`)."""
    conf = dict(conf)
    if not isinstance(conf.get("logger"), LogTap):
        conf["logger"] = LogTap(conf.get("logger") or KAFKA_LOG)
    try:
        client = factory(conf)
    except (ck.KafkaException, ValueError, TypeError) as exc:
        reason = exc.args[0].str() if isinstance(exc, ck.KafkaException) else str(exc)
        raise ConfigError(f"cannot create a Kafka {what}: {reason}") from None
    if probe:
        try:
            connect(client, conf, what)
        except BaseException:
            if hasattr(client, "close"):  # a Consumer leaves no thread behind
                client.close()
            raise
    return client


class KafkaProducer:
    """arrowlog.Producer on a Kafka cluster (confluent-kafka underneath).

    Embedded-log extras kept: ``produce_batch`` (records go to the cluster
    and are acknowledged before it returns), ``sync()`` (= flush: the
    cluster's acks are its durability), and topic auto-creation with
    ``num.partitions`` partitions (through the admin API, when the topic is
    missing and ``auto.create.topics.enable`` is true, as the embedded
    producer does).
    """

    def __init__(self, config: Any = None, /, **kwargs: Any):
        conf = kafka_config(config, kwargs, what="producer")
        self._auto_create = _truthy(conf.pop("auto.create.topics.enable", True))
        self._num_partitions = int(conf.pop("num.partitions", 1))
        conf.setdefault("partitioner", "murmur2_random")
        conf.setdefault("linger.ms", 5)
        self.config = conf
        self._p = new_client(ck.Producer, conf, "producer")
        self._known: set[str] = set()
        self._closed = False

    def _ensure_topic(self, topic: str) -> None:
        """Create ``topic`` the first time it is produced to, if missing."""
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, not {type(topic).__name__}")
        try:
            present = topic in self._p.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        except ck.KafkaException as exc:
            raise translate(exc) from None
        if not present:
            if not self._auto_create:
                raise UnknownTopicError(f"unknown topic {topic!r} (auto.create.topics.enable is false)")
            create_topic(self.config, topic, self._num_partitions, exist_ok=True)
        self._known.add(topic)

    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int | None = None,
                timestamp: Any = None, headers: Any = None, on_delivery: Callable | None = None) -> None:
        """Queue one record; ``poll()``/``flush()`` serve ``on_delivery(err, msg)``."""
        if self._closed:
            raise LogClosedError("the producer is closed")
        if topic not in self._known:
            self._ensure_topic(topic)
        try:
            # -1 and 0 are librdkafka's "any partition" and "now"
            self._p.produce(topic, value, key, partition=-1 if partition is None else partition,
                            timestamp=0 if timestamp is None else to_epoch_ms(timestamp), headers=headers,
                            on_delivery=on_delivery)
        except ck.KafkaException as exc:
            raise translate(exc, self._p, topic) from None

    def produce_batch(self, topic: str, values: Any, keys: Any = None, timestamps: Any = None,
                      headers: Any = None, partition: int | None = None) -> int:
        """Produce many records (lists, arrays, or a table with a ``value``
        column and optional ``key``, ``timestamp``, ``headers``), then wait
        until the cluster acknowledged them. Returns the number produced."""
        if isinstance(values, (pa.Table, pa.RecordBatch)):
            table = values
            names = table.schema.names
            if "value" not in names:
                raise ValueError("a table given to produce_batch needs a 'value' column")
            values = table.column("value")
            keys = table.column("key") if keys is None and "key" in names else keys
            timestamps = table.column("timestamp") if timestamps is None and "timestamp" in names else timestamps
            headers = table.column("headers") if headers is None and "headers" in names else headers
        vals = binary_array(values, "values").to_pylist()
        n = len(vals)
        ks = binary_array(keys, "keys", n).to_pylist() if keys is not None else None
        ts = _epoch_list(timestamps, n)
        hs = _headers_list(headers, n)
        for i in range(n):
            while True:
                try:
                    self.produce(topic, vals[i], ks[i] if ks is not None else None, partition,
                                 ts[i] if ts is not None else None, hs[i] if hs is not None else None)
                    break
                except BufferError:
                    self._p.poll(0.05)
        left = self.flush()
        if left:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, f"{left} records not acknowledged"))
        return n

    def poll(self, timeout: float | None = -1) -> int:
        return self._p.poll(-1 if timeout is None else timeout) if not self._closed else 0

    def flush(self, timeout: float | None = -1) -> int:
        if self._closed:
            return 0
        return self._p.flush(-1 if timeout is None else timeout)

    def sync(self) -> None:
        """flush(): on a cluster, acks (acks=all) are what makes records durable."""
        left = self.flush()
        if left:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, f"{left} records not acknowledged"))

    def __len__(self) -> int:
        return 0 if self._closed else len(self._p)

    def list_topics(self, topic: str | None = None, timeout: float = -1):
        try:
            return self._p.list_topics(topic, timeout)
        except ck.KafkaException as exc:
            raise translate(exc, self._p, topic) from None

    def close(self, timeout: float | None = -1) -> None:
        """Flush and stop."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            self._closed = True

    def __enter__(self) -> KafkaProducer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _truthy(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).lower() in ("true", "1", "yes", "on")


def _epoch_list(timestamps: Any, n: int) -> list | None:
    if timestamps is None:
        return None
    if isinstance(timestamps, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_timestamp(timestamps.type):
            timestamps = timestamps.cast(pa.timestamp("ms", tz=timestamps.type.tz)).cast(pa.int64())
        out = timestamps.cast(pa.int64()).to_pylist()
    else:
        out = [to_epoch_ms(t) for t in timestamps]
    if len(out) != n:
        raise ValueError(f"timestamps has {len(out)} entries; values has {n}")
    return out


def _headers_list(headers: Any, n: int) -> list | None:
    if headers is None:
        return None
    if isinstance(headers, (pa.Array, pa.ChunkedArray)):
        headers = [None if h is None else [(e["key"], e["value"]) for e in h] for h in headers.to_pylist()]
    out = list(headers)
    if len(out) != n:
        raise ValueError(f"headers has {len(out)} entries; values has {n}")
    return out


class KafkaConsumer:
    """arrowlog.Consumer on a Kafka cluster (confluent-kafka underneath).

    Without a ``group.id`` the consumer can only ``assign()`` (as the
    embedded one); commit() and friends then say they need a group.
    """

    # AsyncConsumer tells the embedded group which records a cancelled fetch
    # never delivered; here librdkafka's seek() moves the stored position.
    _group = None

    def __init__(self, config: Any = None, /, **kwargs: Any):
        conf = kafka_config(config, kwargs, what="consumer")
        self._has_group = conf.get("group.id") is not None
        if not self._has_group:
            # librdkafka wants a group.id even for assign(); this one never commits
            conf["group.id"] = "arrowlog-assign-" + uuid.uuid4().hex[:12]
            conf["enable.auto.commit"] = False
            conf["enable.auto.offset.store"] = False
        self.config = conf
        self._c = new_client(ck.Consumer, conf, "consumer")
        self._sought: dict[tuple[str, int], int] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError("the consumer is closed")

    def _require_group(self, what: str) -> None:
        self._check_open()
        if not self._has_group:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, f"{what} needs a group.id in the consumer config"))

    def _call(self, fn: Callable, *args: Any, topic: str | None = None, **kw: Any) -> Any:
        self._check_open()
        try:
            return fn(*args, **kw)
        except ck.KafkaException as exc:
            raise translate(exc, self._c, topic) from None

    # -- assignment ---------------------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._call(self._c.assign, _to_ck_list(partitions))
        self._sought.clear()
        for tp in partitions:
            self._remember(tp)

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self._call(self._c.incremental_assign, _to_ck_list(partitions))
        for tp in partitions:
            self._remember(tp)

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        self._call(self._c.incremental_unassign, _to_ck_list(partitions))

    def unassign(self) -> None:
        self._call(self._c.unassign)

    def assignment(self) -> list[TopicPartition]:
        return _from_ck_list(self._call(self._c.assignment))

    def subscribe(self, topics: list[str], on_assign: Callable | None = None, on_revoke: Callable | None = None,
                  on_lost: Callable | None = None) -> None:
        """Join the group and read the partitions it gives this member;
        callbacks get ``(consumer, [TopicPartition])`` as on the embedded log."""
        self._require_group("subscribe()")
        kw = {}
        for name, cb in (("on_assign", on_assign), ("on_revoke", on_revoke), ("on_lost", on_lost)):
            if cb is not None:
                kw[name] = self._wrap_rebalance(cb)
        self._call(self._c.subscribe, list(topics), **kw)

    def _wrap_rebalance(self, cb: Callable) -> Callable:
        def call(_consumer: Any, partitions: list) -> None:
            cb(self, _from_ck_list(partitions))
        return call

    def unsubscribe(self) -> None:
        if not self._closed:
            self._call(self._c.unsubscribe)

    # -- positions ---------------------------------------------------------------

    def seek(self, partition: TopicPartition) -> None:
        """Make the next record read from ``partition`` the one at its offset."""
        self._call(self._c.seek, to_ck(partition), topic=partition.topic)
        self._remember(partition)

    def _remember(self, tp: TopicPartition) -> None:
        """Note where ``tp`` will read next, for position() before the first
        record after an assign or seek: librdkafka reports OFFSET_INVALID
        then, the embedded log the offset sought (as kafka-python does)."""
        offset = tp.offset
        if offset in (ck.OFFSET_BEGINNING, ck.OFFSET_END):
            low, high = self.get_watermark_offsets(TopicPartition(tp.topic, tp.partition))
            offset = low if offset == ck.OFFSET_BEGINNING else high
        if isinstance(offset, int) and offset >= 0:
            self._sought[(tp.topic, tp.partition)] = offset
        else:
            self._sought.pop((tp.topic, tp.partition), None)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in self._targets(partitions):
            self.seek(TopicPartition(tp.topic, tp.partition, ck.OFFSET_BEGINNING))

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        for tp in self._targets(partitions):
            self.seek(TopicPartition(tp.topic, tp.partition, ck.OFFSET_END))

    def _targets(self, partitions: tuple) -> list[TopicPartition]:
        if len(partitions) == 1 and isinstance(partitions[0], (list, tuple)):
            partitions = tuple(partitions[0])
        return list(partitions) if partitions else self.assignment()

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The offset of the next record each partition will return."""
        out = _from_ck_list(self._call(self._c.position, _to_ck_list(partitions)))
        for tp in out:
            if tp.offset < 0 and (tp.topic, tp.partition) in self._sought:
                tp.offset = self._sought[(tp.topic, tp.partition)]
        return out

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        """(low, high): the log start offset and the high watermark."""
        t = ADMIN_TIMEOUT_S if timeout is None else timeout
        out = self._call(self._c.get_watermark_offsets, to_ck(partition), t, cached, topic=partition.topic)
        if out is None:  # cached and nothing cached yet
            return (OFFSET_INVALID, OFFSET_INVALID)
        return out

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        """For each partition, the first offset whose timestamp is at or after
        ``offset`` (epoch ms or a datetime); -1 (OFFSET_END) when none is."""
        t = ADMIN_TIMEOUT_S if timeout is None else timeout
        topic = partitions[0].topic if partitions else None
        return _from_ck_list(self._call(self._c.offsets_for_times, _to_ck_list(partitions), t, topic=topic))

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._call(self._c.pause, _to_ck_list(partitions))

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._call(self._c.resume, _to_ck_list(partitions))

    # -- reading ---------------------------------------------------------------------

    def consume(self, num_messages: int = 1, timeout: float | None = -1) -> list:
        """Up to ``num_messages`` messages, waiting up to ``timeout`` seconds
        (negative or None: forever) for the first."""
        if num_messages < 1 or num_messages > 1_000_000:
            raise ValueError("num_messages must be in 1..1000000")
        return self._call(self._c.consume, num_messages, -1 if timeout is None else timeout)

    def poll(self, timeout: float | None = None) -> Any:
        return self._call(self._c.poll, -1 if timeout is None else timeout)

    def __iter__(self) -> Iterator[Any]:
        """Messages forever (until close())."""
        while not self._closed:
            yield from self.consume(1000, 1.0)

    # -- groups -------------------------------------------------------------------------

    def commit(self, message: Any = None, offsets: list[TopicPartition] | None = None, asynchronous: bool = True):
        self._require_group("commit()")
        kw: dict[str, Any] = {"asynchronous": asynchronous}
        if message is not None:
            kw["message"] = message
        if offsets is not None:
            kw["offsets"] = _to_ck_list(offsets)
        try:
            return _from_ck_list(self._c.commit(**kw))
        except ck.KafkaException as exc:
            if exc.args and exc.args[0].code() == ck.KafkaError._NO_OFFSET:
                return None  # nothing to commit, as on the embedded log
            raise translate(exc, self._c) from None

    def committed(self, partitions: list[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        self._require_group("committed()")
        t = ADMIN_TIMEOUT_S if timeout is None else timeout
        return _from_ck_list(self._call(self._c.committed, _to_ck_list(partitions), t))

    def store_offsets(self, message: Any = None, offsets: list[TopicPartition] | None = None) -> None:
        self._require_group("store_offsets()")
        if message is not None:
            self._call(self._c.store_offsets, message=message)
        else:
            self._call(self._c.store_offsets, offsets=_to_ck_list(offsets or []))

    def memberid(self) -> str | None:
        return self._c.memberid() if self._has_group and not self._closed else None

    def list_topics(self, topic: str | None = None, timeout: float = -1):
        return self._call(self._c.list_topics, topic, timeout, topic=topic)

    def close(self) -> None:
        """Commit (with auto-commit) and leave the group."""
        if self._closed:
            return
        self._closed = True
        try:
            self._c.close()
        except ck.KafkaException as exc:
            raise translate(exc) from None
        except RuntimeError:
            pass  # already closed underneath

    def __enter__(self) -> KafkaConsumer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- administration shared by the producer and the mirror -------------------------------

def admin_client(conf: dict) -> Any:
    from confluent_kafka.admin import AdminClient
    keep = {k: v for k, v in conf.items() if k in ("bootstrap.servers", "client.id", "logger")
            or k.startswith(("security.", "sasl.", "ssl.", "socket."))}
    return new_client(AdminClient, keep, "admin client", probe=False)


def create_topic(conf: dict, topic: str, partitions: int, config: dict | None = None, *, exist_ok: bool = False) -> None:
    """Create ``topic`` on the cluster ``conf`` points at."""
    from confluent_kafka.admin import NewTopic
    admin = admin_client(conf)
    new = NewTopic(topic, num_partitions=partitions, config={k: str(v) for k, v in (config or {}).items()})
    try:
        admin.create_topics([new], operation_timeout=ADMIN_TIMEOUT_S)[topic].result(ADMIN_TIMEOUT_S)
    except ck.KafkaException as exc:
        if exist_ok and exc.args and exc.args[0].code() == ck.KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise translate(exc) from None


def topic_partitions(conf: dict, pattern: Callable[[str], bool] | None = None) -> dict[str, int]:
    """{topic: partition count} of the cluster's topics (internal ones left out)."""
    admin = admin_client(conf)
    try:
        meta = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    except ck.KafkaException as exc:
        raise translate(exc) from None
    return {name: len(t.partitions) for name, t in meta.topics.items()
            if not name.startswith("__") and t.error is None and (pattern is None or pattern(name))}


def topic_config(conf: dict, topic: str, keys: tuple = ("retention.ms", "retention.bytes")) -> dict:
    """Some of a topic's config values, or {} when the cluster will not say."""
    from confluent_kafka.admin import ConfigResource
    try:
        res = admin_client(conf).describe_configs([ConfigResource("topic", topic)])
        values = next(iter(res.values())).result(ADMIN_TIMEOUT_S)
    except (ck.KafkaException, ArrowlogError):
        return {}
    return {k: int(values[k].value) for k in keys if k in values and values[k].value is not None}


__all__ = ["KafkaProducer", "KafkaConsumer", "bootstrap_servers", "kafka_config",
           "create_topic", "topic_partitions", "topic_config", "ClusterUnreachableError", "KAFKA_LOG", "new_client"]
