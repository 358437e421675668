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
from .errors import (
    ArrowlogError,
    ConfigError,
    CorruptRecordError,
    InvalidTopicError,
    KafkaError,
    KafkaException,
    OffsetOutOfRangeError,
    StorageError,
    TopicExistsError,
    UnknownPartitionError,
    UnknownTopicError,
)
from .storage import LogDir

__version__ = "0.1.0"

__all__ = [
    "LogDir", "Message", "KafkaError", "KafkaException", "ArrowlogError", "ConfigError", "CorruptRecordError",
    "InvalidTopicError", "OffsetOutOfRangeError", "StorageError", "TopicExistsError", "UnknownPartitionError",
    "UnknownTopicError", "TIMESTAMP_CREATE_TIME", "TIMESTAMP_LOG_APPEND_TIME", "TIMESTAMP_NOT_AVAILABLE",
    "crc32c", "murmur2", "murmur2_partition",
]
