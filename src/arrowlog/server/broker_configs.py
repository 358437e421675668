"""Broker configs over the wire: AlterConfigs and IncrementalAlterConfigs on a BROKER
resource, and what DescribeConfigs reports for one.

Kafka splits its broker configs into static ones (read at start) and dynamic ones
(KIP-226: changed at run time, per broker or as the cluster-wide default ``""``). It
refuses a static one with INVALID_REQUEST ("Cannot update these configs dynamically")
and keeps the dynamic ones, custom names included. ``arrowlog serve`` does the same
with its own split: the settings it has are its command-line options (options.py, with
their Kafka names) and are static here; every other name is accepted, type-checked
where it is a broker-wide topic default (``log.cleanup.policy`` is checked as
``cleanup.policy``), kept in ``<data>/kafka-broker-configs.json`` and reported by
DescribeConfigs, but not applied: on one node with no Kerberos, no replication and
no thread pools to size they mean nothing, and a topic's own configs come from
CreateTopics and the topic's configs. See docs/PROTOCOL.md.
"""

from __future__ import annotations

from . import errors as E
from . import topic_configs as TC
from .options import OPTIONS

# Broker configs that are the server's own settings (fixed at start) or describe how
# it was started: Kafka's names of arrowlog serve's options, and the ones DescribeConfigs
# reports read-only.
STATIC = {o.config.split("=")[0] for o in OPTIONS if o.config} | {
    "broker.id", "log.dirs", "log.dir", "num.partitions", "auto.create.topics.enable", "listeners",
    "process.roles", "controller.quorum.voters", "controller.listener.names"}
# Broker-wide defaults of topic configs (Kafka's synonyms), checked as the topic config.
TOPIC_DEFAULTS = {
    "log.cleanup.policy": "cleanup.policy", "log.retention.ms": "retention.ms",
    "log.retention.bytes": "retention.bytes", "log.segment.bytes": "segment.bytes", "log.roll.ms": "segment.ms",
    "log.cleaner.delete.retention.ms": "delete.retention.ms", "log.cleaner.min.compaction.lag.ms":
    "min.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms": "max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio": "min.cleanable.dirty.ratio", "message.max.bytes": "max.message.bytes",
    "log.message.timestamp.type": "message.timestamp.type", "compression.type": "compression.type",
    "min.insync.replicas": "min.insync.replicas", "unclean.leader.election.enable":
    "unclean.leader.election.enable", "log.preallocate": "preallocate", "log.flush.interval.ms": "flush.ms",
    "log.flush.interval.messages": "flush.messages", "log.index.interval.bytes": "index.interval.bytes",
}


def is_list(name: str) -> bool:
    """Whether APPEND and SUBTRACT apply to broker config ``name``."""
    return TC.KAFKA_TOPIC_CONFIGS.get(TOPIC_DEFAULTS.get(name, "")) == "list"


class BrokerConfigs:
    """The dynamic broker configs set over the wire, {resource name: {name: value}}
    ("" is the cluster-wide default, the node id this broker), replaced atomically."""

    def __init__(self, data_dir: str, node_id: int):
        self.node_id = node_id
        self._kept = TC.IgnoredConfigs(data_dir, "kafka-broker-configs.json")

    def check_resource(self, name: str) -> tuple[int, str | None]:
        if name in ("", str(self.node_id)):
            return E.NONE, None
        return E.INVALID_REQUEST, (f"unexpected broker id {name!r}: this server is one node, broker "
                                   f"{self.node_id}; name it or use \"\" for the cluster-wide default")

    def get(self, name: str) -> dict:
        return self._kept.get(name)

    def apply(self, name: str, changes: dict, validate_only: bool) -> tuple[int, str | None]:
        """Apply ``changes`` ({config: value, or None to delete}) to broker resource ``name``."""
        code, msg = self.check_resource(name)
        if code != E.NONE:
            return code, msg
        static = sorted(k for k in changes if k in STATIC)
        if static:
            return E.INVALID_REQUEST, (f"Cannot update these configs dynamically: {', '.join(static)} (they are "
                                       "arrowlog serve's options: restart it with them, see arrowlog serve --help)")
        for k, v in changes.items():
            if k in TOPIC_DEFAULTS and v is not None:
                problem = TC.check(TOPIC_DEFAULTS[k], v)
                if problem:
                    return E.INVALID_CONFIG, f"broker config {k!r}: {problem}"
        if validate_only:
            return E.NONE, None
        self._kept.set(name, {**self._kept.get(name), **changes})   # None values: deleted
        return E.NONE, None

    def describe(self, name: str, static: dict, keys: set | None) -> list[dict]:
        """DescribeConfigs entries of broker resource ``name``: the static settings
        (STATIC_BROKER_CONFIG, 4, read-only), then the cluster-wide dynamic defaults
        (DYNAMIC_DEFAULT_BROKER_CONFIG, 3) and this broker's own (DYNAMIC_BROKER_CONFIG, 2)."""
        entries = {k: (v, 4, True) for k, v in static.items()} if name else {}
        entries.update({k: (v, 3, False) for k, v in self.get("").items()})
        if name:
            entries.update({k: (v, 2, False) for k, v in self.get(name).items()})
        return [{"name": k, "value": v, "read_only": ro, "config_source": src, "is_sensitive": False,
                 "synonyms": []} for k, (v, src, ro) in sorted(entries.items()) if keys is None or k in keys]
