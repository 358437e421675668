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

The clients are in producer.py (KafkaProducer) and consumer.py
(KafkaConsumer); this module holds what they and the mirror share: the
config translation, connecting, error translation and the admin calls.

Thread-safety: as confluent-kafka's (a Producer may be shared by threads; a
Consumer is for one thread at a time).
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable

from ..._optional import require
from ..._types import TopicPartition
from ...convert import to_epoch_ms
from ...errors import (
    ArrowlogError,
    ConfigError,
    KafkaError,
    KafkaException,
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


def to_ck_list(partitions: Any) -> list[ck.TopicPartition]:
    return [to_ck(tp) for tp in partitions]


def from_ck_list(partitions: Any) -> list[TopicPartition]:
    return [from_ck(tp) for tp in partitions]


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
    except TimeoutError:
        raise ClusterUnreachableError(f"the cluster did not answer creating topic {topic!r} within "
                                      f"{ADMIN_TIMEOUT_S:g} s") from None
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
    except TimeoutError:   # (Future.result's, without words): said, not taken for "no config"
        raise ClusterUnreachableError(f"the cluster did not describe topic {topic!r}'s config within "
                                      f"{ADMIN_TIMEOUT_S:g} s") from None
    except (ck.KafkaException, ArrowlogError):
        return {}
    return {k: int(values[k].value) for k in keys if k in values and values[k].value is not None}


__all__ = ["bootstrap_servers", "kafka_config",
           "create_topic", "topic_partitions", "topic_config", "ClusterUnreachableError", "KAFKA_LOG", "new_client"]
