"""Configuration: every key arrowlog accepts, declared once.

Keys are Kafka's dotted names; keyword arguments may use underscores
(``linger_ms=5``). confluent-kafka's callback keys keep their underscores
(``error_cb``, ``stats_cb``, ``on_commit``...). An unknown key is an error
that names it and the nearest known key, because a typo in a durability
setting should never be silently ignored. Keys that only mean something to a
Kafka cluster (``security.protocol``...) are accepted with a warning by the
embedded backend; librdkafka's older names (``queue.buffering.max.ms``...)
are aliases of the keys they name.
"""

from __future__ import annotations

import difflib
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError


@dataclass(frozen=True)
class Key:
    name: str
    default: Any
    parse: Callable[[Any], Any]
    doc: str
    choices: tuple = ()


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, bool):
            raise ValueError("expected an integer")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"expected a whole number{'' if hi is None else f' up to {hi}'}, not {v}")
        try:
            n = int(v)
        except (TypeError, ValueError):  # not int()'s "invalid literal for int() with base 10"
            raise ValueError("expected an integer") from None
        if lo is not None and n < lo:
            raise ValueError(f"must be >= {lo}")
        if hi is not None and n > hi:
            raise ValueError(f"must be <= {hi}")
        return n
    return parse


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).lower()
    if s in ("true", "1", "yes", "on"):
        return True
    if s in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _str(v: Any) -> str:
    return str(v)


def _choice(*options: str, aliases: dict | None = None) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        s = str(v).lower()
        s = (aliases or {}).get(s, s)
        if s not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return s
    return parse


def _cleanup_policy(v: Any) -> str:
    """Kafka's cleanup.policy: delete, compact, or both (any order, also a
    list); both are stored as "compact,delete"."""
    parts = v if isinstance(v, (list, tuple)) else str(v).split(",")
    names = {str(p).strip().lower() for p in parts}
    if not names or not names <= {"delete", "compact"}:
        raise ValueError("must be delete, compact or compact,delete")
    return ",".join(sorted(names))


def _ratio(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("expected a number between 0 and 1")
    x = float(v)
    if not 0.0 <= x <= 1.0:
        raise ValueError("must be between 0 and 1")
    return x


def _any(v: Any) -> Any:
    return v


def _callable(v: Any) -> Any:
    if not callable(v):
        raise ValueError(f"expected a function, not {type(v).__name__}")
    return v


def _logger(v: Any) -> Any:
    if not callable(getattr(v, "log", None)):
        raise ValueError(f"expected a logging.Logger, not {type(v).__name__}")
    return v


COMMON = [
    Key("log.dir", None, _str, "Where the log lives: a directory, file:// URL, or kafka://host:port."),
    Key("bootstrap.servers", None, _str, "A Kafka cluster's brokers (host:port,...): without log.dir the client "
        "connects to that cluster, as confluent-kafka does; ignored when log.dir is set."),
    Key("client.id", "arrowlog", _str, "A name for this client in logs and group listings."),
    Key("error_cb", None, _callable, "error_cb(KafkaError): errors not tied to one record (a failed background "
        "append or fsync), served by poll(), flush() and consume() instead of being raised."),
    Key("stats_cb", None, _callable, "stats_cb(json_str): librdkafka-shaped statistics (per-partition queue and "
        "offsets) every statistics.interval.ms, served by poll(), flush() and consume()."),
    Key("statistics.interval.ms", 0, _int(0, 86_400_000), "How often stats_cb is called (0: never)."),
    Key("logger", None, _logger, "A logging.Logger for this client's log lines (default: the 'arrowlog' logger)."),
    Key("throttle_cb", None, _callable, "Accepted for Kafka compatibility; never called, since the embedded log "
        "does not throttle."),
]

PRODUCER = COMMON + [
    Key("linger.ms", 5, _int(0, 900_000), "How long a partition's batch may wait for more records before it is "
        "appended (Kafka's default since 4.0 is 5 ms). Records are appended earlier when batch.size is reached."),
    Key("batch.size", 1_000_000, _int(1, 1 << 30), "Bytes of keys and values that make a partition's batch full "
        "(librdkafka's default, 1,000,000)."),
    Key("batch.num.messages", 1_000_000, _int(1, 100_000_000), "Records that make a batch full."),
    Key("durability", "written", _choice("written", "fsync", aliases={"page-cache": "written", "process": "written",
                                                                      "sync": "fsync", "power": "fsync"}),
        "written: after flush() returns, records survive a crash of this process (they are in the kernel's "
        "page cache), and a background fsync every fsync.interval.ms bounds what power loss can take. "
        "fsync: every batch is fdatasync()ed before it is acknowledged, so after flush() returns, records "
        "survive power loss."),
    Key("fsync.interval.ms", 1000, _int(0, 86_400_000), "With durability=written, how often a background "
        "thread fsyncs what this producer wrote (0: never)."),
    Key("auto.create.topics.enable", True, _bool, "Create a topic on first produce."),
    Key("num.partitions", 1, _int(1, 100_000), "Partitions of an auto-created topic."),
    Key("queue.buffering.max.messages", 10_000_000, _int(1), "produce() raises BufferError beyond this many "
        "queued records."),
    Key("acks", "all", _str, "Accepted for Kafka compatibility; the embedded log acknowledges after append."),
    Key("enable.idempotence", False, _bool, "Accepted for Kafka compatibility; embedded appends are never duplicated."),
    Key("compression.type", None, _any, "Accepted for Kafka compatibility; compression is a topic setting here."),
    Key("partitioner", "murmur2_random", _choice("murmur2_random", "murmur2"), "Keyed records: murmur2 (Kafka's "
        "Java default). Unkeyed: sticky (murmur2_random), or all to the partition of an empty key (murmur2), as "
        "librdkafka's partitioners of those names."),
    Key("message.max.bytes", 1 << 30, _int(1000, 1 << 30), "Largest record (key + value + header bytes) produce() and "
        "produce_batch() accept; a larger one raises MessageSizeTooLargeError. The topic's max.message.bytes "
        "applies too."),
    Key("on_delivery", None, _callable, "Default delivery callback for records produced without one."),
    Key("transactional.id", None, _str, "Makes the producer transactional: init_transactions(), then records "
        "only between begin_transaction() and commit_transaction()/abort_transaction() (docs/CLIENTS.md)."),
    Key("transaction.timeout.ms", 60000, _int(1, (1 << 31) - 1), "A transaction open longer is aborted and its "
        "producer fenced (at most 900000, as Kafka's transaction.max.timeout.ms)."),
    Key("log.cleaner.backoff.ms", 15_000, _int(0, 86_400_000), "How often the producer's background cleaner "
        "looks at the compacted topics it writes (cleaning those past min.cleanable.dirty.ratio); 0: never."),
]

CONSUMER = COMMON + [
    Key("group.id", None, _str, "Consumer group; required for subscribe() and commit()."),
    Key("auto.offset.reset", "latest", _choice("earliest", "latest", "error", aliases={
        "smallest": "earliest", "beginning": "earliest", "largest": "latest", "end": "latest", "none": "error"}),
        "Where to start when there is no committed offset."),
    Key("enable.auto.commit", True, _bool, "Commit stored offsets every auto.commit.interval.ms."),
    Key("auto.commit.interval.ms", 5000, _int(0), "Auto-commit interval."),
    Key("enable.auto.offset.store", True, _bool, "Store the offset of each message returned by poll/consume."),
    Key("enable.partition.eof", False, _bool, "Emit a _PARTITION_EOF event when a partition's end is reached."),
    Key("fetch.max.bytes", 8 << 20, _int(1), "Bytes read from a partition at a time."),
    Key("check.crcs", True, _bool, "Verify each batch's CRC-32C before it is first read (Kafka's check.crcs; "
        "false skips it)."),
    Key("poll.spin.us", 0, _int(0, 1_000_000), "Low-latency mode: poll() and consume() look for new records "
        "for up to this many microseconds before sleeping on the futex (a core busy for the spin; 0: sleep at once). "
        "See docs/CLIENTS.md#latency."),
    Key("session.timeout.ms", 45000, _int(1), "Group session timeout."),
    Key("heartbeat.interval.ms", 3000, _int(1), "Group heartbeat interval."),
    Key("max.poll.interval.ms", 300000, _int(1), "Accepted for Kafka compatibility."),
    Key("isolation.level", "read_committed", _choice("read_committed", "read_uncommitted"), "read_committed "
        "leaves out records of aborted transactions (in-process or through arrowlog serve) and stops at an open one; "
        "transaction markers are never returned."),
    Key("partition.assignment.strategy", "range", _str, "Accepted for Kafka compatibility."),
    Key("group.instance.id", None, _str, "Accepted for Kafka compatibility."),
    Key("on_commit", None, _callable, "on_commit(err, [TopicPartition]): after each asynchronous or automatic "
        "commit, served by poll(), consume() and close() (as in confluent-kafka, a synchronous commit() returns "
        "its result instead)."),
]

TOPIC = [
    Key("partitions", 1, _int(1, 100_000), "Number of partitions."),
    Key("segment.bytes", 1 << 30, _int(4096, (1 << 31) - 1), "Roll a segment beyond this size (Kafka: 1 GiB)."),
    Key("segment.ms", 7 * 86_400_000, _int(1), "Roll a segment older than this (Kafka: 7 days)."),
    Key("retention.ms", -1, _int(-1), "Delete segments whose newest record is older (-1: forever, the default; "
        "Kafka keeps 7 days, 604800000)."),
    Key("retention.bytes", -1, _int(-1), "Delete oldest segments beyond this many bytes per partition (-1: no limit)."),
    Key("index.interval.bytes", 4096, _int(1, 1 << 30), "Bytes of log between offset index entries."),
    Key("compression.type", "none", _choice("none", "zstd", "lz4", aliases={"uncompressed": "none", "producer": "none"}),
        "Arrow IPC buffer compression of stored batches; none keeps replay zero-copy."),
    Key("value.schema", None, _any, "An Arrow schema for values: values are stored as typed columns."),
    Key("max.message.bytes", 1 << 30, _int(1000, 1 << 30), "Largest record (key + value + header bytes) the topic accepts "
        "(Kafka's default is 1 MB; records here are not replicated over a network, so the default is 1 GiB)."),
    Key("cleanup.policy", "delete", _cleanup_policy, "delete: segments go by retention.ms/retention.bytes. "
        "compact: the cleaner keeps the latest record of every key (and tombstones for delete.retention.ms); "
        "unkeyed records are refused. compact,delete: both."),
    Key("min.cleanable.dirty.ratio", 0.5, _ratio, "Clean a compacted partition when this share of its closed "
        "segments' bytes is uncleaned (Kafka: 0.5)."),
    Key("min.compaction.lag.ms", 0, _int(0), "A record stays uncompacted at least this long after it is written."),
    Key("max.compaction.lag.ms", (1 << 63) - 1, _int(1), "A record is compacted at most this long after it is "
        "written, even below min.cleanable.dirty.ratio (default: unbounded)."),
    Key("delete.retention.ms", 86_400_000, _int(0), "How long a tombstone (a keyed record with a null value) "
        "stays readable after the cleaner first passes it (Kafka: 1 day)."),
]

def is_compacted(topic_config: dict) -> bool:
    """Whether a topic's (resolved) config has compaction on."""
    return "compact" in str(topic_config.get("cleanup.policy") or "delete").split(",")

# Kafka-cluster-only keys (librdkafka's): accepted with a warning so configs
# can be shared; they mean nothing to a local directory.
CLUSTER_ONLY = {
    "security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password",
    "sasl.kerberos.service.name", "sasl.kerberos.principal", "sasl.kerberos.keytab", "sasl.oauthbearer.config",
    "sasl.oauthbearer.method", "sasl.oauthbearer.client.id", "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.token.endpoint.url", "sasl.oauthbearer.scope", "ssl.ca.location", "ssl.ca.pem",
    "ssl.certificate.location", "ssl.certificate.pem", "ssl.key.location", "ssl.key.password", "ssl.key.pem",
    "ssl.endpoint.identification.algorithm", "enable.ssl.certificate.verification", "ssl.keystore.location",
    "ssl.keystore.password", "ssl.cipher.suites", "socket.timeout.ms", "socket.keepalive.enable",
    "socket.nagle.disable", "socket.send.buffer.bytes", "socket.receive.buffer.bytes",
    "socket.connection.setup.timeout.ms", "connections.max.idle.ms", "reconnect.backoff.ms",
    "reconnect.backoff.max.ms", "broker.address.family", "broker.address.ttl", "client.dns.lookup", "client.rack",
    "request.timeout.ms", "retries", "message.send.max.retries", "retry.backoff.ms", "retry.backoff.max.ms",
    "message.timeout.ms", "delivery.timeout.ms", "max.in.flight.requests.per.connection", "max.in.flight",
    "metadata.max.age.ms", "topic.metadata.refresh.interval.ms", "api.version.request", "broker.version.fallback",
    "debug", "log_level", "log.connection.close", "receive.message.max.bytes", "fetch.wait.max.ms",
    "fetch.min.bytes", "max.partition.fetch.bytes", "fetch.message.max.bytes", "queued.min.messages",
    "queued.max.messages.kbytes", "queue.buffering.max.kbytes", "compression.level", "allow.auto.create.topics",
    "coordinator.query.interval.ms", "group.protocol", "sticky.partitioning.linger.ms",
    "delivery.report.only.error", "enable.metrics.push", "api.version.request.timeout.ms",
    "api.version.fallback.ms", "socket.max.fails", "topic.metadata.refresh.fast.interval.ms",
    "topic.metadata.refresh.sparse", "topic.metadata.propagation.max.ms", "enable.random.seed",
    "log.queue", "log.thread.name", "plugin.library.paths", "enable.sasl.oauthbearer.unsecure.jwt",
    "sasl.kerberos.kinit.cmd", "sasl.kerberos.min.time.before.relogin", "ssl.crl.location", "ssl.providers",
    "ssl.engine.id", "ssl.sigalgs.list", "ssl.curves.list", "ssl.ca.certificate.stores",
    "fetch.error.backoff.ms", "fetch.queue.backoff.ms", "consume.callback.max.messages",
    "group.remote.assignor", "queue.buffering.backpressure.threshold", "enable.gapless.guarantee",
    "message.copy.max.bytes",
}

# librdkafka's other names for keys arrowlog has.
ALIASES = {
    "queue.buffering.max.ms": "linger.ms",
    "request.required.acks": "acks",
    "compression.codec": "compression.type",
    "metadata.broker.list": "bootstrap.servers",
    "auto.commit.enable": "enable.auto.commit",
}

# Keys confluent-kafka accepts that arrowlog refuses, and why.
REFUSED = {
    "oauth_cb": "it supplies SASL/OAUTHBEARER tokens to a Kafka cluster, and a local directory has no "
                "authentication (give a kafka:// location to use it with a cluster)",
}


def _unknown_key(name: str, spelled: str, table: dict, what: str) -> ConfigError:
    """The error for a key ``what`` does not take (``spelled`` as the
    caller wrote it), with the best hint."""
    if name in REFUSED:
        return ConfigError(f"{what} config key {spelled!r} is not supported: {REFUSED[name]}")
    for role, keys in ROLES.items():
        if role != what and any(k.name == name for k in keys):
            return ConfigError(f"{spelled!r} is a {role} config key; a {what} does not take it")
    candidates = list(table) + sorted(CLUSTER_ONLY) + list(ALIASES)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    if not close:  # the same last word (``lingr.ms`` -> ``linger.ms``)
        close = [k for k in table if k.split(".")[-1] == name.split(".")[-1]]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown {what} config key {spelled!r}{hint}")


def resolve(keys: list[Key], given: dict | None, kwargs: dict | None = None, *, what: str) -> dict:
    """Validate ``given`` and ``kwargs`` against ``keys``; returns every key
    with its value or default."""
    table = {k.name: k for k in keys}
    merged: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for source in (given or {}), (kwargs or {}):
        for raw, value in source.items():
            if not isinstance(raw, str):
                raise ConfigError(f"{what} config keys must be strings, not {raw!r}")
            known = raw in table or raw in CLUSTER_ONLY or raw in REFUSED or raw in ALIASES
            name = raw if known else raw.replace("_", ".")
            name = ALIASES.get(name, name) if ALIASES.get(name) in table else name
            merged[name] = value
            spelled[name] = raw
    out = {k.name: k.default for k in keys}
    for name, value in merged.items():
        key = table.get(name)
        if key is None:
            if name in CLUSTER_ONLY:
                warnings.warn(f"{what} config key {name!r} only applies to a Kafka cluster; ignored by the embedded log",
                              stacklevel=3)
                continue
            raise _unknown_key(name, spelled[name], table, what)
        if value is None:
            out[name] = key.default
            continue
        try:
            out[name] = key.parse(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"invalid value {value!r} for {what} config {spelled[name]!r}: {exc}") from None
    return out


ROLES = {"producer": PRODUCER, "consumer": CONSUMER, "topic": TOPIC}


def describe(keys: list[Key]) -> list[tuple[str, Any, str]]:
    return [(k.name, k.default, k.doc) for k in keys]
