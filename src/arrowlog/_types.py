"""TopicPartition and the logical offsets, as confluent-kafka names them."""

from __future__ import annotations

import numbers
from functools import total_ordering
from typing import Any

from .errors import InvalidArgumentError

OFFSET_BEGINNING = -2
OFFSET_END = -1
OFFSET_STORED = -1000
OFFSET_INVALID = -1001


def check_timeout(timeout: Any) -> None:
    """A poll/consume/flush timeout is a number of seconds or None; anything
    else is the InvalidArgumentError that says so (not a TypeError from a
    comparison deep inside)."""
    if timeout is not None and type(timeout) is not float and type(timeout) is not int \
            and not isinstance(timeout, numbers.Real):
        raise InvalidArgumentError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")


@total_ordering
class TopicPartition:
    """A topic, a partition and an offset (or a timestamp, for
    offsets_for_times); mutable, hashable by (topic, partition)."""

    __slots__ = ("topic", "partition", "offset", "metadata", "leader_epoch", "error")

    def __init__(self, topic: str, partition: int = -1, offset: int = OFFSET_INVALID, metadata: str | None = None,
                 leader_epoch: int | None = None):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.metadata = metadata
        self.leader_epoch = leader_epoch
        self.error: Any = None

    def _key(self) -> tuple:
        return (self.topic, self.partition)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TopicPartition):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: TopicPartition) -> bool:
        return self._key() < other._key()

    def __repr__(self) -> str:
        extra = f",error={self.error}" if self.error is not None else ""
        return f"TopicPartition{{topic={self.topic},partition={self.partition},offset={self.offset}{extra}}}"
