"""One error hierarchy for arrowlog, plus confluent-kafka style KafkaError.

Every error a user can cause derives from ArrowlogError and says what was
wrong and what to do. KafkaError / KafkaException mirror confluent-kafka so
that code written for it handles arrowlog's errors unchanged.
"""

from __future__ import annotations

import builtins


class ArrowlogError(Exception):
    """Base class of every arrowlog error."""


class ConfigError(ArrowlogError, ValueError):
    """A configuration key or value is not accepted."""


class InvalidArgumentError(ArrowlogError, TypeError, ValueError):
    """An argument has the wrong type or value (confluent-kafka's
    _INVALID_ARG). It is also a TypeError and a ValueError, so code written
    for Python's (and confluent-kafka's) errors catches it unchanged."""


class QueueFullError(ArrowlogError, BufferError):
    """More records are queued than queue.buffering.max.messages allows;
    a BufferError, as confluent-kafka raises: poll() or flush(), then retry."""


class InvalidTopicError(ArrowlogError, ValueError):
    """A topic name is not allowed (it must match [A-Za-z0-9._-]{1,249})."""


class UnknownTopicError(ArrowlogError, KeyError):
    """The topic does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown topic"


class TopicExistsError(ArrowlogError):
    """The topic already exists."""


class UnknownPartitionError(ArrowlogError, ValueError):
    """The partition does not exist in the topic."""


class OffsetOutOfRangeError(ArrowlogError):
    """The offset lies below the log start offset (deleted by retention) or
    beyond the high watermark."""


class InvalidRecordError(ArrowlogError, ValueError):
    """A record does not fit its topic (for example its value schema)."""


class MessageSizeTooLargeError(InvalidRecordError):
    """A record is larger than the producer's message.max.bytes or the
    topic's max.message.bytes (Kafka's MESSAGE_TOO_LARGE)."""


class CorruptRecordError(ArrowlogError):
    """Stored data failed its checksum or structure checks."""


class StorageError(ArrowlogError, OSError):
    """The file system refused an operation (disk full, read-only, I/O
    error). The partition stays consistent: nothing after the error was
    acknowledged."""


class NotADataDirectoryError(StorageError):
    """A path given as log.dir is not an arrowlog data directory (and the
    client will not make it one)."""


class PartitionFailedError(StorageError):
    """A previous fsync failed: the partition refuses writes until it is
    reopened, since the kernel may have dropped the unsynced pages."""


class LogClosedError(ArrowlogError, RuntimeError):
    """The producer, consumer or log has been closed (also a RuntimeError,
    which confluent-kafka raises for a call on a closed client)."""


class GroupError(ArrowlogError):
    """A consumer group operation failed."""


class KafkaError:
    """confluent_kafka.KafkaError's shape: code(), name(), str(), fatal(),
    retriable()."""

    _PARTITION_EOF = -191
    _TIMED_OUT = -185
    _STATE = -172
    _CONFLICT = -173
    _INVALID_ARG = -186
    _UNKNOWN_TOPIC = -188
    _UNKNOWN_PARTITION = -190
    _MSG_TIMED_OUT = -192
    _FAIL = -196
    _ALL_BROKERS_DOWN = -187
    _NO_OFFSET = -168
    _PURGE_QUEUE = -152
    OFFSET_OUT_OF_RANGE = 1
    CORRUPT_MESSAGE = 2
    UNKNOWN_TOPIC_OR_PART = 3
    MSG_SIZE_TOO_LARGE = 10
    ILLEGAL_GENERATION = 22
    UNKNOWN_MEMBER_ID = 25
    REBALANCE_IN_PROGRESS = 27
    INVALID_RECORD = 87
    INVALID_PRODUCER_EPOCH = 47
    INVALID_TXN_STATE = 48
    INVALID_TRANSACTION_TIMEOUT = 50
    CONCURRENT_TRANSACTIONS = 51
    PRODUCER_FENCED = 90
    UNKNOWN = -1
    NO_ERROR = 0

    _NAMES = {
        -191: "_PARTITION_EOF", -185: "_TIMED_OUT", -172: "_STATE", -186: "_INVALID_ARG",
        -188: "_UNKNOWN_TOPIC", -190: "_UNKNOWN_PARTITION", -173: "_CONFLICT", -192: "_MSG_TIMED_OUT", -196: "_FAIL",
        -187: "_ALL_BROKERS_DOWN", -168: "_NO_OFFSET", 1: "OFFSET_OUT_OF_RANGE", 2: "CORRUPT_MESSAGE",
        3: "UNKNOWN_TOPIC_OR_PART", 10: "MSG_SIZE_TOO_LARGE", 22: "ILLEGAL_GENERATION", 25: "UNKNOWN_MEMBER_ID",
        27: "REBALANCE_IN_PROGRESS", 87: "INVALID_RECORD", -1: "UNKNOWN", 0: "NO_ERROR", -152: "_PURGE_QUEUE",
        47: "INVALID_PRODUCER_EPOCH", 48: "INVALID_TXN_STATE", 50: "INVALID_TRANSACTION_TIMEOUT",
        51: "CONCURRENT_TRANSACTIONS", 90: "PRODUCER_FENCED",
    }

    def __init__(self, code: int, reason: str | None = None, fatal: bool = False, retriable: bool = False,
                 txn_requires_abort: bool = False):
        self._code = code
        self._reason = reason or self._NAMES.get(code, str(code))
        self._fatal = fatal
        self._retriable = retriable
        self._txn_requires_abort = txn_requires_abort

    def code(self) -> int:
        return self._code

    def name(self) -> str:
        return self._NAMES.get(self._code, str(self._code))

    def str(self) -> str:
        return self._reason

    def fatal(self) -> bool:
        return self._fatal

    def retriable(self) -> bool:
        return self._retriable

    def txn_requires_abort(self) -> bool:
        return self._txn_requires_abort

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KafkaError):
            return self._code == other._code
        if isinstance(other, int):
            return self._code == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._code)

    def __repr__(self) -> builtins.str:
        return f"KafkaError{{code={self.name()},val={self._code},str=\"{self._reason}\"}}"

    __str__ = __repr__


class KafkaException(ArrowlogError):
    """confluent_kafka.KafkaException: ``args[0]`` is the KafkaError."""

    def __init__(self, error: KafkaError | str, *args: object):
        if not isinstance(error, KafkaError):
            error = KafkaError(KafkaError._FAIL, str(error))
        super().__init__(error, *args)

    def __str__(self) -> str:
        return self.args[0].str()
