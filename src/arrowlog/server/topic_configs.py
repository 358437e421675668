"""Kafka topic configs as ``arrowlog serve`` takes them (CreateTopics, AlterConfigs,
IncrementalAlterConfigs, DescribeConfigs).

Every topic config Kafka defines is accepted with its type checked. The ones arrowlog's
storage honours (``HONOURED``) are stored in the topic's metadata and validated again
by the storage layer; the others mean nothing on one node with one copy of the data
(``min.insync.replicas``, ``unclean.leader.election.enable``, throttles, tiered storage)
and are kept beside the data directory (``kafka-topic-configs.json``) only so that
DescribeConfigs reports what a client set. An unknown name is INVALID_CONFIG, as in Kafka.
See docs/PROTOCOL.md.
"""

from __future__ import annotations

import json
import os
import threading

from arrowlog.config import TOPIC as TOPIC_KEYS
from arrowlog.storage.files import write_json_atomic

from .journal import UNREADABLE

# The topic configs the storage layer stores and applies: the Kafka-named keys of
# arrowlog.config.TOPIC (one list for the library, the CLI and the wire).
HONOURED = {k.name for k in TOPIC_KEYS} - {"partitions", "value.schema"}
# arrowlog's own topic configs a Kafka client may set: the schema registry subject
# whose schema types the topic (docs/REGISTRY.md), taken by the registry's topic store.
ARROWLOG_TOPIC_CONFIGS = {"value.schema.subject"}

_LONG, _INT, _BOOL, _DOUBLE, _STRING, _LIST = "long", "int", "boolean", "double", "string", "list"

# Kafka's topic configs (LogConfig), by type; those in HONOURED are checked by storage too.
KAFKA_TOPIC_CONFIGS = {
    "cleanup.policy": _LIST, "compression.type": _STRING, "compression.gzip.level": _INT,
    "compression.lz4.level": _INT, "compression.zstd.level": _INT, "delete.retention.ms": _LONG,
    "file.delete.delay.ms": _LONG, "flush.messages": _LONG, "flush.ms": _LONG,
    "follower.replication.throttled.replicas": _LIST, "index.interval.bytes": _INT,
    "leader.replication.throttled.replicas": _LIST, "local.retention.bytes": _LONG,
    "local.retention.ms": _LONG, "max.compaction.lag.ms": _LONG, "max.message.bytes": _INT,
    "message.downconversion.enable": _BOOL, "message.format.version": _STRING,
    "message.timestamp.after.max.ms": _LONG, "message.timestamp.before.max.ms": _LONG,
    "message.timestamp.difference.max.ms": _LONG, "message.timestamp.type": _STRING,
    "min.cleanable.dirty.ratio": _DOUBLE, "min.compaction.lag.ms": _LONG, "min.insync.replicas": _INT,
    "preallocate": _BOOL, "remote.storage.enable": _BOOL, "remote.log.copy.disable": _BOOL,
    "remote.log.delete.on.disable": _BOOL, "retention.bytes": _LONG, "retention.ms": _LONG,
    "segment.bytes": _INT, "segment.index.bytes": _INT, "segment.jitter.ms": _LONG, "segment.ms": _LONG,
    "unclean.leader.election.enable": _BOOL,
}

# Kafka's defaults, reported by DescribeConfigs for what a topic does not set.
KAFKA_DEFAULTS = {
    "cleanup.policy": "delete", "compression.type": "producer", "delete.retention.ms": "86400000",
    "file.delete.delay.ms": "60000", "flush.messages": "9223372036854775807",
    "flush.ms": "9223372036854775807", "index.interval.bytes": "4096", "max.compaction.lag.ms":
    "9223372036854775807", "max.message.bytes": "1048588", "message.timestamp.type": "CreateTime",
    "min.cleanable.dirty.ratio": "0.5", "min.compaction.lag.ms": "0", "min.insync.replicas": "1",
    "preallocate": "false", "retention.bytes": "-1", "retention.ms": "604800000",
    "segment.bytes": "1073741824", "segment.index.bytes": "10485760", "segment.jitter.ms": "0",
    "segment.ms": "604800000", "unclean.leader.election.enable": "false",
}

_INT_RANGE = (-(1 << 31), (1 << 31) - 1)
_LONG_RANGE = (-(1 << 63), (1 << 63) - 1)


def check(name: str, value: str | None) -> str | None:
    """Why ``name=value`` is not a valid Kafka topic config, or None. A None value
    (reset to the default) is always valid for a known name."""
    if name in ARROWLOG_TOPIC_CONFIGS:
        return None
    kind = KAFKA_TOPIC_CONFIGS.get(name)
    if kind is None:
        return f"unknown topic config name {name!r} (Kafka's topic configs are accepted; see docs/PROTOCOL.md)"
    if value is None:
        return None
    if kind in (_INT, _LONG):
        lo, hi = _INT_RANGE if kind == _INT else _LONG_RANGE
        try:
            n = int(value.strip())
        except ValueError:
            return f"invalid value {value!r} for topic config {name!r}: expected an integer"
        if not lo <= n <= hi:
            return f"invalid value {value!r} for topic config {name!r}: out of range for a Kafka {kind}"
    elif kind == _BOOL and value.strip().lower() not in ("true", "false"):
        return f"invalid value {value!r} for topic config {name!r}: expected true or false"
    elif kind == _DOUBLE:
        try:
            float(value)
        except ValueError:
            return f"invalid value {value!r} for topic config {name!r}: expected a number"
    elif name == "compression.type" and value not in KAFKA_COMPRESSION:
        return (f"invalid value {value!r} for topic config {name!r}: expected one of "
                f"{', '.join(sorted(KAFKA_COMPRESSION))}")
    elif name == "message.timestamp.type" and value not in ("CreateTime", "LogAppendTime"):
        return f"invalid value {value!r} for topic config {name!r}: expected CreateTime or LogAppendTime"
    return None


# Kafka's compression.type values; storage compresses its Arrow buffers with zstd or lz4
# only, so gzip and snappy are stored uncompressed (and reported as set).
KAFKA_COMPRESSION = {"uncompressed", "zstd", "lz4", "snappy", "gzip", "producer",
                     "none"}   # arrowlog's name for uncompressed, as DescribeConfigs reports it
_STORED_AS_NONE = {"gzip", "snappy"}


def split(configs: dict) -> tuple[dict, dict, str | None]:
    """(honoured, ignored, problem): ``configs`` split into what storage takes and what
    is only kept for DescribeConfigs (a None value there: forget it), or the first
    invalid entry's problem."""
    honoured, ignored = {}, {}
    for name, value in configs.items():
        problem = check(name, value)
        if problem:
            return {}, {}, problem
        if name == "compression.type":
            stored_as_none = value in _STORED_AS_NONE
            honoured[name] = "none" if stored_as_none else value
            ignored[name] = value if stored_as_none else None
        else:
            (honoured if name in HONOURED or name in ARROWLOG_TOPIC_CONFIGS else ignored)[name] = value
    return honoured, ignored, None


class IgnoredConfigs:
    """The accepted-but-not-applied topic configs, in ``<data>/kafka-topic-configs.json``
    ({topic: {name: value}}), replaced atomically on each change (broker_configs.py keeps
    the broker's in another file the same way)."""

    def __init__(self, data_dir: str, filename: str = "kafka-topic-configs.json"):
        self.path = os.path.join(data_dir, filename)
        self._lock = threading.Lock()
        try:
            with open(self.path) as f:
                loaded = json.load(f)
            self._all = {t: {k: str(v) for k, v in c.items()} for t, c in loaded.items()
                         if isinstance(c, dict)} if isinstance(loaded, dict) else {}
        except (FileNotFoundError, *UNREADABLE):
            self._all = {}

    def get(self, topic: str) -> dict:
        return dict(self._all.get(topic, {}))

    def set(self, topic: str, configs: dict) -> None:
        """Replace the topic's ignored configs (None values removed)."""
        with self._lock:
            kept = {k: v for k, v in configs.items() if v is not None}
            if kept == self._all.get(topic, {}):
                return
            if kept:
                self._all[topic] = kept
            else:
                self._all.pop(topic, None)
            write_json_atomic(self.path, self._all)

    def forget(self, topic: str) -> None:
        self.set(topic, {})

