"""``replay("kafka://...", topic, start, end)``: a range of a Kafka topic as Arrow.

The range is resolved once, when the replay is made, exactly as the
embedded log resolves it (``arrowlog.backends.local.replay.resolve_position``): watermarks
for 'beginning'/'end', ``offsets_for_times`` for times. Each stream over
the replay then opens its own consumer (no group membership, nothing
committed) and reads the partitions one after another, so rows come in the
same order as from the embedded log: partition 0 in offset order, then 1...

Records arrive through confluent-kafka's ``consume(num_messages)``, which
returns up to BATCH_RECORDS Message objects per call; their fields are
gathered into one Python list per column and turned into Arrow arrays per
batch, so no Python object outlives its batch and only the requested
columns are extracted at all.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pyarrow as pa

from ..._optional import require
from ...convert import kafka_columns
from ...errors import ConfigError, KafkaException, UnknownTopicError
from ...schema import REPLAY_SCHEMA
from ..local.replay import Replay, resolve_position

if TYPE_CHECKING:
    import confluent_kafka as ck
else:
    ck = require("confluent_kafka", "a kafka:// location")

# Records per consume() call and per yielded batch: large enough that the
# per-call overhead vanishes, small enough (a few MB) to keep memory flat.
BATCH_RECORDS = 10_000
# A partition that returns nothing for this long while records are still
# expected makes the stream fail instead of hanging.
STALL_TIMEOUT_S = 60.0


class _PartitionView:
    """What resolve_position needs of a partition, asked of the cluster."""

    def __init__(self, consumer: Any, topic: str, partition: int):
        self._c, self._topic, self._partition = consumer, topic, partition

    def watermarks(self, *, check: bool = False) -> tuple[int, int]:
        """The broker's (low, high); ``check`` is the embedded log's (a
        broker reports its own damage)."""
        return self._c.get_watermark_offsets(_tp(self._topic, self._partition))

    def offset_for_timestamp(self, ts_ms: int) -> int | None:
        [found] = self._c.offsets_for_times([_tp(self._topic, self._partition, ts_ms)])
        return None if found.offset < 0 else found.offset


def _tp(topic: str, partition: int, offset: int = ck.OFFSET_INVALID) -> Any:
    from ..._types import TopicPartition
    return TopicPartition(topic, partition, offset)


class KafkaReplay(Replay):
    """A range of a Kafka topic, readable as Arrow any number of times.

    A Replay: to_arrow(), to_reader(), to_pandas(), to_polars(), iteration
    and the Arrow C stream are Replay's, over this class's ``_batches()``.
    """

    _owns_log = False  # every stream opens and closes its own consumer

    def __init__(self, config: dict, topic: str, start: Any = "beginning", end: Any = "end",
                 partitions: list[int] | None = None, columns: list[str] | None = None, *,
                 value_format: str = "binary", value_schema: pa.Schema | None = None):
        from .consumer import KafkaConsumer
        self._config = config
        self.topic = topic
        columns = self._value_format(value_format, value_schema, columns, typed=False)
        with KafkaConsumer(self._consumer_config()) as c:
            meta = c.list_topics(topic, 30.0).topics.get(topic)
            if meta is None or meta.error is not None or not meta.partitions:
                raise UnknownTopicError(f"unknown topic {topic!r} on {config['bootstrap.servers']}")
            count = len(meta.partitions)
            self.partitions = list(range(count)) if partitions is None else [int(p) for p in partitions]
            bad = [p for p in self.partitions if not 0 <= p < count]
            if bad:
                from ...errors import UnknownPartitionError
                raise UnknownPartitionError(f"topic {topic!r} has partitions 0..{count - 1}; there is no {bad[0]}")
            self.ranges: dict[int, tuple[int, int]] = {}
            for p in self.partitions:
                view = _PartitionView(c, topic, p)
                lo = resolve_position(view, start, is_end=False)
                hi = resolve_position(view, end, is_end=True)
                self.ranges[p] = (lo, max(lo, hi))
        if columns is not None:
            missing = [name for name in columns if name not in REPLAY_SCHEMA.names]
            if missing:
                raise ConfigError(f"unknown replay column(s) {missing}; available: {REPLAY_SCHEMA.names}")
            self.schema = pa.schema([REPLAY_SCHEMA.field(name) for name in columns])
        else:
            self.schema = REPLAY_SCHEMA
        self.columns = columns
        self._check_columns()

    def _consumer_config(self) -> dict:
        conf = dict(self._config)
        conf.update({"group.id": "arrowlog-replay-" + uuid.uuid4().hex[:12], "enable.auto.commit": False,
                     "enable.auto.offset.store": False, "enable.partition.eof": True,
                     "auto.offset.reset": "earliest"})
        return conf

    def _batches(self) -> Iterator[pa.RecordBatch]:
        todo = [(p, lo, hi) for p, (lo, hi) in self.ranges.items() if hi > lo]
        if not todo:
            return
        from .client import new_client
        consumer = new_client(ck.Consumer, self._consumer_config(), "replay", probe=False)
        try:
            for p, lo, hi in todo:
                yield from self._consumed_batches(consumer, p, lo, hi)
        finally:
            consumer.close()

    def _consumed_batches(self, consumer: Any, p: int, lo: int, hi: int) -> Iterator[pa.RecordBatch]:
        consumer.assign([ck.TopicPartition(self.topic, p, lo)])
        wanted = set(self._raw_schema.names)
        last = lo - 1
        idle_since = time.monotonic()
        while last < hi - 1:
            # consume() waits for all it is asked for: ask for no more than is left
            msgs = consumer.consume(max(1, min(BATCH_RECORDS, hi - 1 - last)), 1.0)
            if time.monotonic() - idle_since > STALL_TIMEOUT_S:
                raise KafkaException(f"{self.topic}-{p}: no records for {STALL_TIMEOUT_S:.0f} s at offset "
                                     f"{last + 1}; expected up to {hi}")
            records = []
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == ck.KafkaError._PARTITION_EOF:
                        if m.offset() >= hi:  # the end moved past us: only control records or deletions left
                            last = hi - 1
                        continue
                    if err.fatal():
                        raise KafkaException(f"{self.topic}-{p}: {err.str()}")
                    continue  # informational: librdkafka retries (the stall timeout bounds it)
                if m.offset() >= hi:
                    last = hi - 1
                    break
                records.append(m)
            if records:
                last = records[-1].offset()
                idle_since = time.monotonic()
                yield self._build(p, records, wanted)
            del msgs, records
        consumer.unassign()

    def _build(self, p: int, msgs: list, wanted: set) -> pa.RecordBatch:
        cols = kafka_columns(msgs, wanted)
        if "partition" in wanted:
            cols["partition"] = pa.array(np.full(len(msgs), p, dtype=np.int32))
        return pa.RecordBatch.from_arrays([cols[name] for name in self._raw_schema.names], schema=self._raw_schema)

    def __repr__(self) -> str:
        return f"<KafkaReplay {self.topic} partitions={self.partitions} records={self.num_records}>"


def kafka_replay(where: str, topic: str, start: Any = "beginning", end: Any = "end",
                 partitions: list[int] | None = None, columns: list[str] | None = None, *,
                 value_format: str = "binary", value_schema: pa.Schema | None = None,
                 **kafka_config: Any) -> KafkaReplay:
    """``arrowlog.replay()`` for a ``kafka://`` location; extra keywords are
    librdkafka config keys (``security_protocol="SSL"``...)."""
    from .client import kafka_config as merge
    conf = merge({"bootstrap.servers": where}, kafka_config, what="replay")
    return KafkaReplay(conf, topic, start, end, partitions, columns, value_format=value_format,
                       value_schema=value_schema)


__all__ = ["KafkaReplay", "kafka_replay"]
