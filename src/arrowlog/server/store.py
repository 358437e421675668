"""The server's view of a data directory: arrowlog.storage.LogDir behind the
few calls the Kafka handlers make, with arrowlog errors mapped to Kafka
error codes.
"""

from __future__ import annotations

import errno
import uuid
from typing import Any

from arrowlog import errors as AE
from arrowlog.storage import LogDir, validate_topic_name

from . import errors as E


def valid_topic_name(name: str | None) -> bool:
    """The storage's one topic-name rule, as a yes/no for protocol replies."""
    try:
        validate_topic_name(name)
    except AE.InvalidTopicError:
        return False
    return True


class Store:
    def __init__(self, data_dir: str, cluster_id: str):

        self.data_dir = data_dir
        self.log = LogDir(data_dir)
        self._ns = uuid.uuid5(uuid.NAMESPACE_URL, "arrowlog:" + cluster_id)

    def topic_id(self, name: str) -> bytes:
        """The topic's UUID as stored by the log (random at creation), or, for a
        topic without one, a stable UUID derived from the cluster id and the name."""
        t = self.topic(name)
        tid = t.topic_id if t is not None else None
        if tid:
            try:
                return bytes.fromhex(tid)
            except ValueError:
                pass
        return uuid.uuid5(self._ns, name).bytes

    def topic_by_id(self, topic_id: bytes) -> str | None:
        for name in self.list_topics():
            if self.topic_id(name) == topic_id:
                return name
        return None

    def list_topics(self) -> list[str]:
        return sorted(self.log.list_topics())

    def topic(self, name: str):
        """The Topic, or None if it does not exist. A topic whose metadata is damaged raises
        StorageError (an OSError: its callers answer KAFKA_STORAGE_ERROR for that topic)."""
        if not valid_topic_name(name):
            return None
        try:
            return self.log.topic(name)
        except (AE.UnknownTopicError, AE.InvalidTopicError):
            return None
        except AE.CorruptRecordError as exc:   # (a damaged topic.json: every Metadata request failed)
            raise AE.StorageError(errno.EIO, str(exc)) from exc

    def create_topic(self, name: str, partitions: int, config: dict | None = None,
                     validate_only: bool = False) -> tuple[int, str | None]:
        """(error_code, message)."""
        if not valid_topic_name(name):
            return E.INVALID_TOPIC_EXCEPTION, f"invalid topic name {name!r}"
        if partitions < 1:
            return E.INVALID_PARTITIONS, "the number of partitions must be at least 1"
        if self.topic(name) is not None:
            return E.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists"
        if validate_only:
            return E.NONE, None
        try:
            self.log.create_topic(name, partitions=partitions, config=config or {})
        except AE.TopicExistsError as exc:
            return E.TOPIC_ALREADY_EXISTS, str(exc)
        except AE.InvalidTopicError as exc:
            return E.INVALID_TOPIC_EXCEPTION, str(exc)
        except AE.ConfigError as exc:
            return E.INVALID_CONFIG, str(exc)
        except OSError as exc:  # StorageError included: disk full, read-only, I/O error
            return E.KAFKA_STORAGE_ERROR, f"cannot create topic {name!r}: {exc}"
        return E.NONE, None

    def alter_topic(self, name: str, config: dict) -> tuple[int, str | None]:
        """Change topic configs the storage honours (a None value resets one to its default)."""
        if self.topic(name) is None:
            return E.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}"
        return self._change(name, "alter", E.INVALID_CONFIG, self.log.alter_topic, config)

    def add_partitions(self, name: str, total: int, staged=None) -> tuple[int, str | None]:
        """Grow a topic to ``total`` partitions; ``staged``: stage_partitions' for the same."""
        t = self.topic(name)
        if t is None or total <= t.num_partitions:
            if staged is not None:
                staged.discard()
            if t is None:
                return E.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}"
            return E.INVALID_PARTITIONS, (f"topic {name!r} has {t.num_partitions} partitions; "
                                          f"the new count {total} must be larger")
        return self._change(name, "add partitions to", E.INVALID_PARTITIONS,
                            lambda n, c: self.log.add_partitions(n, c, staged), total)

    def stage_partitions(self, name: str, total: int) -> tuple[int, str | None, Any]:
        """(error_code, message, what add_partitions takes): the slow half of growing
        a topic, its new partitions' files made with no lock held (any thread)."""
        staged = []
        code, msg = self._change(name, "add partitions to", E.INVALID_PARTITIONS,
                                 lambda n, c: staged.append(self.log.stage_partitions(n, c)), total)
        return code, msg, staged[0] if staged else None

    @staticmethod
    def _change(name: str, what: str, refused: int, change, arg) -> tuple[int, str | None]:
        """Run one storage change of a topic, its errors as (error_code, message)."""
        try:
            change(name, arg)
        except AE.ConfigError as exc:
            return refused, str(exc)
        except AE.UnknownTopicError as exc:
            return E.UNKNOWN_TOPIC_OR_PARTITION, str(exc)
        except OSError as exc:
            return E.KAFKA_STORAGE_ERROR, f"cannot {what} topic {name!r}: {exc}"
        return E.NONE, None

    def delete_topic(self, name: str) -> tuple[int, str | None]:
        if self.topic(name) is None:
            return E.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}"
        try:
            self.log.delete_topic(name)
        except AE.UnknownTopicError as exc:
            return E.UNKNOWN_TOPIC_OR_PARTITION, str(exc)
        except OSError as exc:
            return E.KAFKA_STORAGE_ERROR, f"cannot delete topic {name!r}: {exc}"
        return E.NONE, None

    def close(self) -> None:
        self.log.close()
