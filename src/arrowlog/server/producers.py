"""Idempotent producers: producer ids and per-partition sequence checks.

Kafka's rule, per (partition, producer id): batches carry a base sequence
that must follow the previous batch's last sequence; a batch equal to one of
the last five is a retry and is answered with its original offsets instead
of being appended again. A higher producer epoch starts over at sequence 0;
a lower one is fenced.

State lives in memory: after a restart the first batch of each producer is
accepted at whatever sequence it carries (Kafka does the same when a
producer's state has been removed). Thread-safety: event loop only.
"""

from __future__ import annotations

import collections
import time

from . import errors as E

# Kafka keeps the metadata of the last 5 batches per producer
# (max.in.flight.requests.per.connection <= 5 with idempotence).
CACHED_BATCHES = 5
_SEQ_MASK = 0x7FFFFFFF


class _ProducerState:
    __slots__ = ("epoch", "batches")

    def __init__(self, epoch: int):
        self.epoch = epoch
        # (first_seq, last_seq, base_offset)
        self.batches: collections.deque = collections.deque(maxlen=CACHED_BATCHES)


class ProducerRegistry:
    def __init__(self):
        # Ids start from the clock so that ids handed out before a restart are not reused.
        self._next_id = int(time.time() * 1000) & 0x3FFFFFFFFFFF
        self._epochs: dict[int, int] = {}
        self._partitions: dict[tuple[str, int], dict[int, _ProducerState]] = {}

    def init_producer_id(self, producer_id: int = -1, producer_epoch: int = -1) -> tuple[int, int, int]:
        """(error_code, producer_id, epoch) for InitProducerId."""
        if producer_id >= 0:
            known = self._epochs.get(producer_id)
            if known is not None and producer_epoch != known:
                return E.INVALID_PRODUCER_EPOCH, -1, -1
            epoch = (producer_epoch + 1) & 0x7FFF
            self._epochs[producer_id] = epoch
            return E.NONE, producer_id, epoch
        pid = self._next_id
        self._next_id += 1
        self._epochs[pid] = 0
        return E.NONE, pid, 0

    def check(self, topic: str, partition: int, producer_id: int, epoch: int, base_seq: int,
              count: int) -> tuple[int, int | None]:
        """(error_code, duplicate_base_offset) for a batch about to be appended."""
        if producer_id < 0:
            return E.NONE, None
        states = self._partitions.get((topic, partition))
        st = states.get(producer_id) if states else None
        if st is None:
            return E.NONE, None
        if epoch < st.epoch:
            return E.INVALID_PRODUCER_EPOCH, None
        if epoch > st.epoch:
            return (E.NONE, None) if base_seq == 0 else (E.OUT_OF_ORDER_SEQUENCE_NUMBER, None)
        last_seq = (base_seq + count - 1) & _SEQ_MASK
        for first, last, base_offset in st.batches:
            if first == base_seq and last == last_seq:
                return E.NONE, base_offset
        if st.batches and base_seq != (st.batches[-1][1] + 1) & _SEQ_MASK:
            return E.OUT_OF_ORDER_SEQUENCE_NUMBER, None
        return E.NONE, None

    def record(self, topic: str, partition: int, producer_id: int, epoch: int, base_seq: int,
               count: int, base_offset: int) -> None:
        if producer_id < 0:
            return
        states = self._partitions.setdefault((topic, partition), {})
        st = states.get(producer_id)
        if st is None or epoch != st.epoch:
            st = states[producer_id] = _ProducerState(epoch)
        st.batches.append((base_seq, (base_seq + count - 1) & _SEQ_MASK, base_offset))

    def forget_topic(self, topic: str) -> None:
        for key in [k for k in self._partitions if k[0] == topic]:
            del self._partitions[key]
