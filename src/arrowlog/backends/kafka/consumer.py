"""arrowlog.Consumer on a Kafka cluster: the ``kafka://`` backend's consumer
(see client.py for what the backend keeps the same as the embedded log)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..._optional import require
from ..._types import OFFSET_INVALID, TopicPartition
from ...errors import KafkaError, KafkaException, LogClosedError
from .client import ADMIN_TIMEOUT_S, from_ck_list, kafka_config, new_client, to_ck, to_ck_list, translate

if TYPE_CHECKING:
    import confluent_kafka as ck
else:
    ck = require("confluent_kafka", "a kafka:// location")


class KafkaConsumer:
    """arrowlog.Consumer on a Kafka cluster (confluent-kafka underneath).

    Without a ``group.id`` the consumer can only ``assign()`` (as the
    embedded one); commit() and friends then say they need a group.
    """

    # AsyncConsumer tells the embedded group which records a cancelled fetch
    # never delivered; here librdkafka's seek() moves the stored position.
    _group = None

    def __init__(self, config: Any = None, /, **kwargs: Any):
        conf = kafka_config(config, kwargs, what="consumer")
        self._has_group = conf.get("group.id") is not None
        if not self._has_group:
            # librdkafka wants a group.id even for assign(); this one never commits
            conf["group.id"] = "arrowlog-assign-" + uuid.uuid4().hex[:12]
            conf["enable.auto.commit"] = False
            conf["enable.auto.offset.store"] = False
        self.config = conf
        self._c = new_client(ck.Consumer, conf, "consumer")
        self._sought: dict[tuple[str, int], int] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError("the consumer is closed")

    def _require_group(self, what: str) -> None:
        self._check_open()
        if not self._has_group:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, f"{what} needs a group.id in the consumer config"))

    def _call(self, fn: Callable, *args: Any, topic: str | None = None, **kw: Any) -> Any:
        self._check_open()
        try:
            return fn(*args, **kw)
        except ck.KafkaException as exc:
            raise translate(exc, self._c, topic) from None

    # -- assignment ---------------------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._call(self._c.assign, to_ck_list(partitions))
        self._sought.clear()
        for tp in partitions:
            self._remember(tp)

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self._call(self._c.incremental_assign, to_ck_list(partitions))
        for tp in partitions:
            self._remember(tp)

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        self._call(self._c.incremental_unassign, to_ck_list(partitions))

    def unassign(self) -> None:
        self._call(self._c.unassign)

    def assignment(self) -> list[TopicPartition]:
        return from_ck_list(self._call(self._c.assignment))

    def subscribe(self, topics: list[str], on_assign: Callable | None = None, on_revoke: Callable | None = None,
                  on_lost: Callable | None = None) -> None:
        """Join the group and read the partitions it gives this member;
        callbacks get ``(consumer, [TopicPartition])`` as on the embedded log."""
        self._require_group("subscribe()")
        kw: dict[str, Any] = {}
        for name, cb in (("on_assign", on_assign), ("on_revoke", on_revoke), ("on_lost", on_lost)):
            if cb is not None:
                kw[name] = self._wrap_rebalance(cb)
        self._call(self._c.subscribe, list(topics), **kw)

    def _wrap_rebalance(self, cb: Callable) -> Callable:
        def call(_consumer: Any, partitions: list) -> None:
            cb(self, from_ck_list(partitions))
        return call

    def unsubscribe(self) -> None:
        if not self._closed:
            self._call(self._c.unsubscribe)

    # -- positions ---------------------------------------------------------------

    def seek(self, partition: TopicPartition) -> None:
        """Make the next record read from ``partition`` the one at its offset."""
        self._call(self._c.seek, to_ck(partition), topic=partition.topic)
        self._remember(partition)

    def _remember(self, tp: TopicPartition) -> None:
        """Note where ``tp`` will read next, for position() before the first
        record after an assign or seek: librdkafka reports OFFSET_INVALID
        then, the embedded log the offset sought (as kafka-python does)."""
        offset = tp.offset
        if offset in (ck.OFFSET_BEGINNING, ck.OFFSET_END):
            low, high = self.get_watermark_offsets(TopicPartition(tp.topic, tp.partition))
            offset = low if offset == ck.OFFSET_BEGINNING else high
        if isinstance(offset, int) and offset >= 0:
            self._sought[(tp.topic, tp.partition)] = offset
        else:
            self._sought.pop((tp.topic, tp.partition), None)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in self._targets(partitions):
            self.seek(TopicPartition(tp.topic, tp.partition, ck.OFFSET_BEGINNING))

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        for tp in self._targets(partitions):
            self.seek(TopicPartition(tp.topic, tp.partition, ck.OFFSET_END))

    def _targets(self, partitions: tuple) -> list[TopicPartition]:
        if len(partitions) == 1 and isinstance(partitions[0], (list, tuple)):
            partitions = tuple(partitions[0])
        return list(partitions) if partitions else self.assignment()

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The offset of the next record each partition will return."""
        out = from_ck_list(self._call(self._c.position, to_ck_list(partitions)))
        for tp in out:
            if tp.offset < 0 and (tp.topic, tp.partition) in self._sought:
                tp.offset = self._sought[(tp.topic, tp.partition)]
        return out

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        """(low, high): the log start offset and the high watermark."""
        t = ADMIN_TIMEOUT_S if timeout is None else timeout
        out = self._call(self._c.get_watermark_offsets, to_ck(partition), t, cached, topic=partition.topic)
        if out is None:  # cached and nothing cached yet
            return (OFFSET_INVALID, OFFSET_INVALID)
        return out

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        """For each partition, the first offset whose timestamp is at or after
        ``offset`` (epoch ms or a datetime); -1 (OFFSET_END) when none is."""
        t = ADMIN_TIMEOUT_S if timeout is None else timeout
        topic = partitions[0].topic if partitions else None
        return from_ck_list(self._call(self._c.offsets_for_times, to_ck_list(partitions), t, topic=topic))

    def pause(self, partitions: list[TopicPartition]) -> None:
        self._call(self._c.pause, to_ck_list(partitions))

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._call(self._c.resume, to_ck_list(partitions))

    # -- reading ---------------------------------------------------------------------

    def consume(self, num_messages: int = 1, timeout: float | None = -1) -> list:
        """Up to ``num_messages`` messages, waiting up to ``timeout`` seconds
        (negative or None: forever) for the first."""
        if num_messages < 1 or num_messages > 1_000_000:
            raise ValueError("num_messages must be in 1..1000000")
        return self._call(self._c.consume, num_messages, -1 if timeout is None else timeout)

    def poll(self, timeout: float | None = None) -> Any:
        return self._call(self._c.poll, -1 if timeout is None else timeout)

    def __iter__(self) -> Iterator[Any]:
        """Messages forever (until close())."""
        while not self._closed:
            yield from self.consume(1000, 1.0)

    # -- groups -------------------------------------------------------------------------

    def commit(self, message: Any = None, offsets: list[TopicPartition] | None = None, asynchronous: bool = True):
        self._require_group("commit()")
        kw: dict[str, Any] = {"asynchronous": asynchronous}
        if message is not None:
            kw["message"] = message
        if offsets is not None:
            kw["offsets"] = to_ck_list(offsets)
        try:
            committed = self._c.commit(**kw)
            return None if committed is None else from_ck_list(committed)  # asynchronous: None
        except ck.KafkaException as exc:
            if exc.args and exc.args[0].code() == ck.KafkaError._NO_OFFSET:
                return None  # nothing to commit, as on the embedded log
            raise translate(exc, self._c) from None

    def committed(self, partitions: list[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        self._require_group("committed()")
        t = ADMIN_TIMEOUT_S if timeout is None else timeout
        return from_ck_list(self._call(self._c.committed, to_ck_list(partitions), t))

    def store_offsets(self, message: Any = None, offsets: list[TopicPartition] | None = None) -> None:
        self._require_group("store_offsets()")
        if message is not None:
            self._call(self._c.store_offsets, message=message)
        else:
            self._call(self._c.store_offsets, offsets=to_ck_list(offsets or []))

    def memberid(self) -> str | None:
        return self._c.memberid() if self._has_group and not self._closed else None

    def list_topics(self, topic: str | None = None, timeout: float = -1):
        return self._call(self._c.list_topics, topic, timeout, topic=topic)

    def close(self) -> None:
        """Commit (with auto-commit) and leave the group."""
        if self._closed:
            return
        self._closed = True
        try:
            self._c.close()
        except ck.KafkaException as exc:
            raise translate(exc) from None
        except RuntimeError:
            pass  # already closed underneath

    def __enter__(self) -> KafkaConsumer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
