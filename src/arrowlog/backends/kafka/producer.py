"""arrowlog.Producer on a Kafka cluster: the ``kafka://`` backend's producer
(see client.py for what the backend keeps the same as the embedded log)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pyarrow as pa

from ..._optional import require
from ...convert import binary_array, to_epoch_ms
from ...errors import KafkaError, KafkaException, LogClosedError, UnknownTopicError
from .client import ADMIN_TIMEOUT_S, create_topic, kafka_config, new_client, translate

if TYPE_CHECKING:
    import confluent_kafka as ck
else:
    ck = require("confluent_kafka", "a kafka:// location")


class KafkaProducer:
    """arrowlog.Producer on a Kafka cluster (confluent-kafka underneath).

    Embedded-log extras kept: ``produce_batch`` (records go to the cluster
    and are acknowledged before it returns), ``sync()`` (= flush: the
    cluster's acks are its durability), and topic auto-creation with
    ``num.partitions`` partitions (through the admin API, when the topic is
    missing and ``auto.create.topics.enable`` is true, as the embedded
    producer does).
    """

    def __init__(self, config: Any = None, /, **kwargs: Any):
        conf = kafka_config(config, kwargs, what="producer")
        self._auto_create = _truthy(conf.pop("auto.create.topics.enable", True))
        self._num_partitions = int(conf.pop("num.partitions", 1))
        conf.setdefault("partitioner", "murmur2_random")
        conf.setdefault("linger.ms", 5)
        self.config = conf
        self._p = new_client(ck.Producer, conf, "producer")
        self._known: set[str] = set()
        self._closed = False

    def _ensure_topic(self, topic: str) -> None:
        """Create ``topic`` the first time it is produced to, if missing."""
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, not {type(topic).__name__}")
        try:
            present = topic in self._p.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        except ck.KafkaException as exc:
            raise translate(exc) from None
        if not present:
            if not self._auto_create:
                raise UnknownTopicError(f"unknown topic {topic!r} (auto.create.topics.enable is false)")
            create_topic(self.config, topic, self._num_partitions, exist_ok=True)
        self._known.add(topic)

    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int | None = None,
                timestamp: Any = None, headers: Any = None, on_delivery: Callable | None = None) -> None:
        """Queue one record; ``poll()``/``flush()`` serve ``on_delivery(err, msg)``."""
        if self._closed:
            raise LogClosedError("the producer is closed")
        if topic not in self._known:
            self._ensure_topic(topic)
        try:
            # -1 and 0 are librdkafka's "any partition" and "now"
            self._p.produce(topic, value, key, partition=-1 if partition is None else partition,
                            timestamp=0 if timestamp is None else to_epoch_ms(timestamp), headers=headers,
                            on_delivery=on_delivery)
        except ck.KafkaException as exc:
            raise translate(exc, self._p, topic) from None

    def produce_batch(self, topic: str, values: Any, keys: Any = None, timestamps: Any = None,
                      headers: Any = None, partition: int | None = None) -> int:
        """Produce many records (lists, arrays, or a table with a ``value``
        column and optional ``key``, ``timestamp``, ``headers``), then wait
        until the cluster acknowledged them. Returns the number produced."""
        if isinstance(values, (pa.Table, pa.RecordBatch)):
            table = values
            names = table.schema.names
            if "value" not in names:
                raise ValueError("a table given to produce_batch needs a 'value' column")
            values = table.column("value")
            keys = table.column("key") if keys is None and "key" in names else keys
            timestamps = table.column("timestamp") if timestamps is None and "timestamp" in names else timestamps
            headers = table.column("headers") if headers is None and "headers" in names else headers
        vals = binary_array(values, "values").to_pylist()
        n = len(vals)
        ks = binary_array(keys, "keys", n).to_pylist() if keys is not None else None
        ts = _epoch_list(timestamps, n)
        hs = _headers_list(headers, n)
        for i in range(n):
            while True:
                try:
                    self.produce(topic, vals[i], ks[i] if ks is not None else None, partition,
                                 ts[i] if ts is not None else None, hs[i] if hs is not None else None)
                    break
                except BufferError:
                    self._p.poll(0.05)
        left = self.flush()
        if left:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, f"{left} records not acknowledged"))
        return n

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError("the producer is closed")

    def poll(self, timeout: float | None = -1) -> int:
        self._check_open()
        return self._p.poll(-1 if timeout is None else timeout)

    def flush(self, timeout: float | None = -1) -> int:
        self._check_open()
        return self._p.flush(-1 if timeout is None else timeout)

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        """Drop queued records (confluent-kafka's purge(): their reports say _PURGE_QUEUE)."""
        self._check_open()
        self._p.purge(in_queue, in_flight, blocking)

    def sync(self) -> None:
        """flush(): on a cluster, acks (acks=all) are what makes records durable."""
        left = self.flush()
        if left:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, f"{left} records not acknowledged"))

    def __len__(self) -> int:
        return 0 if self._closed else len(self._p)

    def list_topics(self, topic: str | None = None, timeout: float = -1):
        try:
            return self._p.list_topics(topic, timeout)
        except ck.KafkaException as exc:
            raise translate(exc, self._p, topic) from None

    def close(self, timeout: float | None = -1) -> None:
        """Flush and stop."""
        if self._closed:
            return
        try:
            self.flush(timeout)
        finally:
            self._closed = True

    def __enter__(self) -> KafkaProducer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _truthy(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).lower() in ("true", "1", "yes", "on")


def _epoch_list(timestamps: Any, n: int) -> list | None:
    if timestamps is None:
        return None
    if isinstance(timestamps, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_timestamp(timestamps.type):
            timestamps = timestamps.cast(pa.timestamp("ms", tz=timestamps.type.tz)).cast(pa.int64())
        out = timestamps.cast(pa.int64()).to_pylist()
    else:
        out = [to_epoch_ms(t) for t in timestamps]
    if len(out) != n:
        raise ValueError(f"timestamps has {len(out)} entries; values has {n}")
    return out


def _headers_list(headers: Any, n: int) -> list | None:
    if headers is None:
        return None
    if isinstance(headers, (pa.Array, pa.ChunkedArray)):
        headers = [None if h is None else [(e["key"], e["value"]) for e in h] for h in headers.to_pylist()]
    out = list(headers)
    if len(out) != n:
        raise ValueError(f"headers has {len(out)} entries; values has {n}")
    return out
