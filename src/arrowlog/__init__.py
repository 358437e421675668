"""arrowlog: event streaming as a library.

An ordered, durable, partitioned, replayable log in a local directory, with
confluent-kafka's Producer/Consumer API and zero-copy replay into Arrow.
"""

from ._native.core import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    TIMESTAMP_NOT_AVAILABLE,
    Message,
    crc32c,
    murmur2,
    murmur2_partition,
)
from ._types import OFFSET_BEGINNING, OFFSET_END, OFFSET_INVALID, OFFSET_STORED, TopicPartition
from .consumer import Consumer
from .dataset import LogDataset, dataset, scan_polars
from .errors import (
    ArrowlogError,
    ConfigError,
    CorruptRecordError,
    InvalidRecordError,
    InvalidTopicError,
    KafkaError,
    KafkaException,
    MessageSizeTooLargeError,
    NotADataDirectoryError,
    OffsetOutOfRangeError,
    StorageError,
    TopicExistsError,
    UnknownPartitionError,
    UnknownTopicError,
)
from .producer import Producer
from .replay import Replay, replay, timestamp_ms
from .storage import LogDir

__version__ = "0.1.0"

__all__ = [
    "Producer", "Consumer", "TopicPartition", "replay", "Replay", "timestamp_ms", "dataset", "scan_polars", "LogDataset",
    "OFFSET_BEGINNING", "OFFSET_END", "OFFSET_INVALID", "OFFSET_STORED",
    "LogDir", "Message", "KafkaError", "KafkaException", "ArrowlogError", "ConfigError", "CorruptRecordError",
    "InvalidTopicError", "InvalidRecordError", "MessageSizeTooLargeError", "NotADataDirectoryError",
    "OffsetOutOfRangeError", "StorageError", "TopicExistsError", "UnknownPartitionError",
    "UnknownTopicError", "TIMESTAMP_CREATE_TIME", "TIMESTAMP_LOG_APPEND_TIME", "TIMESTAMP_NOT_AVAILABLE",
    "crc32c", "murmur2", "murmur2_partition",
]
