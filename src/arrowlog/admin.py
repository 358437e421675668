"""Topic administration and cluster metadata, shaped like confluent-kafka's."""

from __future__ import annotations

from typing import Any

from .errors import KafkaError, UnknownTopicError
from .storage import LogDir


class PartitionMetadata:
    def __init__(self, partition: int):
        self.id = partition
        self.leader = 0
        self.replicas = [0]
        self.isrs = [0]
        self.error = None

    def __repr__(self) -> str:
        return f"PartitionMetadata({self.id})"


class TopicMetadata:
    def __init__(self, topic: str, partitions: int, error: KafkaError | None = None):
        self.topic = topic
        self.partitions = {i: PartitionMetadata(i) for i in range(partitions)}
        self.error = error

    def __repr__(self) -> str:
        return f"TopicMetadata({self.topic}, {len(self.partitions)} partitions)"


class ClusterMetadata:
    """What ``list_topics()`` returns: one broker (this process), its topics."""

    def __init__(self, cluster_id: str, topics: dict[str, TopicMetadata]):
        self.cluster_id = cluster_id
        self.controller_id = 0
        self.brokers = {0: "embedded"}
        self.topics = topics
        self.orig_broker_id = 0
        self.orig_broker_name = "embedded"


def cluster_metadata(logdir: LogDir, topic: str | None = None) -> ClusterMetadata:
    """Every topic, or just ``topic``; a ``topic`` that does not exist is
    there with no partitions and ``error`` UNKNOWN_TOPIC_OR_PART, as a
    broker that does not create topics answers librdkafka."""
    names = [topic] if topic is not None else logdir.list_topics()
    topics: dict[str, Any] = {}
    for name in names:
        try:
            t = logdir.topic(name)
        except UnknownTopicError:
            if topic is not None:
                topics[name] = TopicMetadata(name, 0, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                                                 f"Broker: Unknown topic or partition ({name!r})"))
            continue
        topics[name] = TopicMetadata(name, t.num_partitions)
    return ClusterMetadata(logdir.path, topics)
