"""Idempotent producers: producer ids, per-partition sequence checks, and
their state kept across restarts.

Kafka's rule, per (partition, producer id): batches carry a base sequence
that must follow the previous batch's last sequence; a batch equal to one of
the last five is a retry and is answered with its original offsets instead
of being appended again. A higher producer epoch starts over at sequence 0;
a lower one is fenced.

Persistence (``<data>/producers/``), like Kafka's producer-state snapshots
but without reading the log back (stored batches do not carry producer ids):

- ``journal``: one JSON line per event, written (one ``write()``, page cache)
  before the Produce or InitProducerId response goes out: an idempotent
  batch about to be appended ``{"p": [topic, partition, pid, epoch,
  first_seq, last_seq, expected_base_offset, time_ms]}`` and, if it was
  appended at another offset (another process appended meanwhile) or was
  confirmed as a duplicate, ``{"b": [... base_offset ...]}``; a producer id handed out or its epoch
  bumped ``{"i": [pid, epoch, time_ms]}``; a deleted topic ``{"f": topic}``.
  It survives a kill -9 of the server; it is fsynced before the partitions
  at every periodic flush, so a batch acknowledged before a flush starts
  has its producer state as durable as its records once that flush is done.
- ``snapshot.json``: the whole state (the next producer id, epochs, the
  last five batches per partition and producer), replaced atomically (temp
  file, fsync, rename); written at start-up and when the journal passes
  ``JOURNAL_COMPACT_BYTES``, after which the journal is emptied.

Loading reads the snapshot and replays the journal (a torn last line, from a
power loss, is ignored). Then, the first time a partition is produced to,
batches at or beyond its high watermark are dropped: after a power loss the
log may have lost them, and answering their retry as a duplicate would
acknowledge data that is gone. Producer ids are never reused: the next id
is persisted and never below the clock in milliseconds. State of a producer
silent for ``producer.id.expiration.ms`` (Kafka's default: one day) is
dropped at compaction.

A batch with a ``p`` line only is *pending* after a restart: whether it was
appended (the server may have died before or after) is unknown. When it is sent again,
the broker compares it with the stored batch at the expected offset (record
count, keys, values, timestamps): the same records there make it a
duplicate, anything else means it never landed and it is appended.

What is not covered: after a power loss, batches acknowledged after the
last flush started (their records may survive without their state).

One server per data directory owns these files (``lock``, an flock); a
second server on the same directory keeps its producer state in memory only
and says so in a warning.

Thread-safety: event loop only, except ``sync()`` (the flush thread).
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import time

from .._fds import Descriptors
from . import errors as E
from .journal import Journaled, StateFiles

log = logging.getLogger("arrowlog.server")

# Kafka keeps the metadata of the last 5 batches per producer
# (max.in.flight.requests.per.connection <= 5 with idempotence).
CACHED_BATCHES = 5
_SEQ_MASK = 0x7FFFFFFF
_ID_MASK = 0x3FFFFFFFFFFF
JOURNAL_COMPACT_BYTES = 8 << 20
# Kafka's producer.id.expiration.ms default.
PRODUCER_ID_EXPIRATION_MS = 24 * 3600 * 1000
SNAPSHOT_VERSION = 1


def _now_ms() -> int:
    return int(time.time() * 1000)


class _ProducerState:
    __slots__ = ("epoch", "batches", "last_ms")

    def __init__(self, epoch: int, last_ms: int = 0):
        self.epoch = epoch
        self.last_ms = last_ms
        # (first_seq, last_seq, base_offset, confirmed): not confirmed = pending (see above)
        self.batches: collections.deque = collections.deque(maxlen=CACHED_BATCHES)


class ProducerRegistry(Journaled):
    """Producer ids and sequences; ``data_dir=None`` keeps them in memory only."""

    def __init__(self, data_dir: str | None = None, *, expiration_ms: int = PRODUCER_ID_EXPIRATION_MS):
        self.expiration_ms = expiration_ms
        self._next_id = _now_ms() & _ID_MASK
        self._epochs: dict[int, list[int]] = {}        # pid -> [epoch, last_ms]
        self._partitions: dict[tuple[str, int], dict[int, _ProducerState]] = {}
        self._unchecked: set[tuple[str, int]] = set()  # loaded, not yet checked against the log
        self._dir = os.path.join(data_dir, "producers") if data_dir is not None else None
        self._files: StateFiles | None = None
        self._fds = Descriptors(self)   # the lock: closed by close(), or when dropped without it (_fds.py)
        self._lock_fd = -1
        if self._dir is not None:
            self._load(self._dir)

    # ------------------------------------------------------------ persistence
    def _load(self, directory: str) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        # one server per data directory owns the files (a second one would truncate the journal)
        self._lock_fd = self._fds.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fd = self._fds.close(self._lock_fd)
            self._dir = None
            log.warning("another server owns the producer state of this data directory: idempotent-producer "
                        "state of this one is kept in memory only (lost on restart)")
            return
        self._files = StateFiles(directory, "producer state", JOURNAL_COMPACT_BYTES)
        self._files.load(self._apply_snapshot, self._replay, "idempotent producers start over")
        self._unchecked = set(self._partitions)
        self._next_id = max(self._next_id, _now_ms() & _ID_MASK)
        self.compact()

    def _apply_snapshot(self, snap: dict) -> None:
        if snap.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {snap.get('version')!r}, expected {SNAPSHOT_VERSION}")
        self._next_id = max(self._next_id, int(snap["next_producer_id"]))
        for pid, (epoch, last_ms) in snap["epochs"].items():
            self._epochs[int(pid)] = [int(epoch), int(last_ms)]
        for topic, partition, pid, epoch, last_ms, batches in snap["partitions"]:
            st = _ProducerState(int(epoch), int(last_ms))
            for first, last, base, *confirmed in batches[-CACHED_BATCHES:]:
                st.batches.append((int(first), int(last), int(base), bool(confirmed[0]) if confirmed else True))
            self._partitions.setdefault((str(topic), int(partition)), {})[int(pid)] = st

    def _replay(self, ev: dict) -> None:
        if "b" in ev or "p" in ev:
            topic, partition, pid, epoch, first, last, base, ms = ev.get("b") or ev["p"]
            self._remember(str(topic), int(partition), int(pid), int(epoch), int(first), int(last), int(base),
                           int(ms), confirmed="b" in ev)
        elif "i" in ev:
            pid, epoch, ms = ev["i"]
            self._epochs[int(pid)] = [int(epoch), int(ms)]
            self._next_id = max(self._next_id, int(pid) + 1)
        elif "f" in ev:
            self._drop_topic(str(ev["f"]))

    def _snapshot(self) -> dict:
        return {"version": SNAPSHOT_VERSION, "next_producer_id": self._next_id,
                "epochs": {str(pid): v for pid, v in self._epochs.items()},
                "partitions": [[topic, partition, pid, st.epoch, st.last_ms, [list(b) for b in st.batches]]
                               for (topic, partition), states in self._partitions.items()
                               for pid, st in states.items()]}

    def compact(self) -> None:
        """Drop expired producers, write the snapshot atomically, then empty the journal."""
        if self._files is None:
            return
        horizon = _now_ms() - self.expiration_ms
        for key in list(self._partitions):
            states = self._partitions[key]
            for pid in [pid for pid, st in states.items() if st.last_ms < horizon]:
                del states[pid]
            if not states:
                del self._partitions[key]
                self._unchecked.discard(key)
        active = {pid for states in self._partitions.values() for pid in states}
        for pid in [pid for pid, (_, ms) in self._epochs.items() if ms < horizon and pid not in active]:
            del self._epochs[pid]
        super().compact()

    def close(self) -> None:
        self._close_files()
        self._lock_fd = self._fds.close(self._lock_fd)  # releases the flock (once: a reused number is left alone)

    # ------------------------------------------------------------ InitProducerId
    def init_producer_id(self, producer_id: int = -1, producer_epoch: int = -1) -> tuple[int, int, int]:
        """(error_code, producer_id, epoch) for InitProducerId."""
        if producer_id >= 0:
            known = self._epochs.get(producer_id)
            if known is not None and producer_epoch != known[0]:
                return E.INVALID_PRODUCER_EPOCH, -1, -1
            pid, epoch = producer_id, (producer_epoch + 1) & 0x7FFF
        else:
            pid, epoch = self._next_id, 0
            self._next_id += 1
        ms = _now_ms()
        self._epochs[pid] = [epoch, ms]
        self._journal({"i": [pid, epoch, ms]})
        return E.NONE, pid, epoch

    # ------------------------------------------------------------ Produce
    def needs_check(self, topic: str, partition: int) -> bool:
        """True until ``check_log`` was called for a partition with loaded state."""
        return (topic, partition) in self._unchecked

    def check_log(self, topic: str, partition: int, high_watermark: int) -> None:
        """Forget loaded batches the log does not hold (at or beyond its high watermark)."""
        self._unchecked.discard((topic, partition))
        states = self._partitions.get((topic, partition))
        for pid, st in list((states or {}).items()):
            kept = [b for b in st.batches if b[2] < high_watermark]  # pending ones too: never appended
            if len(kept) != len(st.batches):
                log.warning("%s-%d: producer %d's last batches are beyond the log end %d (lost in a crash); "
                            "its next batch may get OUT_OF_ORDER_SEQUENCE_NUMBER", topic, partition, pid,
                            high_watermark)
                st.batches.clear()
                st.batches.extend(kept)

    def check(self, topic: str, partition: int, producer_id: int, epoch: int, base_seq: int,
              count: int) -> tuple[int, int | None, bool]:
        """(error_code, duplicate_base_offset, confirmed) for a batch about to be appended.
        A duplicate that is not confirmed is pending: the caller checks the log at that
        offset (``holds``) and calls ``record`` if it is there."""
        if producer_id < 0:
            return E.NONE, None, True
        states = self._partitions.get((topic, partition))
        st = states.get(producer_id) if states else None
        if st is None:
            return E.NONE, None, True
        if epoch < st.epoch:
            return E.INVALID_PRODUCER_EPOCH, None, True
        if epoch > st.epoch:
            return (E.NONE if base_seq == 0 else E.OUT_OF_ORDER_SEQUENCE_NUMBER), None, True
        last_seq = (base_seq + count - 1) & _SEQ_MASK
        for first, last, base_offset, confirmed in st.batches:
            if first == base_seq and last == last_seq:
                return E.NONE, base_offset, confirmed
        if st.batches and base_seq != (st.batches[-1][1] + 1) & _SEQ_MASK:
            return E.OUT_OF_ORDER_SEQUENCE_NUMBER, None, True
        return E.NONE, None, True

    def begin(self, topic: str, partition: int, producer_id: int, epoch: int, base_seq: int,
              count: int, expected_base: int) -> None:
        """Journal a batch about to be appended at ``expected_base`` (before the append)."""
        if producer_id < 0:
            return
        last_seq = (base_seq + count - 1) & _SEQ_MASK
        self._journal({"p": [topic, partition, producer_id, epoch, base_seq, last_seq, expected_base, _now_ms()]})

    def record(self, topic: str, partition: int, producer_id: int, epoch: int, base_seq: int,
               count: int, base_offset: int, expected_base: int | None = None) -> None:
        """Remember an appended batch (journaled before the response is sent). When it got
        the offset ``begin`` journaled (``expected_base``), the ``p`` line says it all: a
        restart finds it pending and confirms it from the log if it is resent."""
        if producer_id < 0:
            return
        last_seq = (base_seq + count - 1) & _SEQ_MASK
        ms = _now_ms()
        self._remember(topic, partition, producer_id, epoch, base_seq, last_seq, base_offset, ms)
        if base_offset != expected_base:
            self._journal({"b": [topic, partition, producer_id, epoch, base_seq, last_seq, base_offset, ms]})

    def _remember(self, topic, partition, producer_id, epoch, first, last, base_offset, ms,
                  confirmed: bool = True) -> None:
        states = self._partitions.setdefault((topic, partition), {})
        st = states.get(producer_id)
        if st is None or epoch != st.epoch:
            st = states[producer_id] = _ProducerState(epoch)
        if any(b[:2] == (first, last) for b in st.batches):  # a pending batch confirmed, or seen again
            kept = [b for b in st.batches if b[:2] != (first, last)]
            st.batches.clear()
            st.batches.extend(kept)
        st.batches.append((first, last, base_offset, confirmed))
        st.last_ms = ms

    def forget_topic(self, topic: str) -> None:
        self._drop_topic(topic)
        self._journal({"f": topic})

    def _drop_topic(self, topic: str) -> None:
        for key in [k for k in self._partitions if k[0] == topic]:
            del self._partitions[key]
            self._unchecked.discard(key)

    def describe(self, topic: str, partition: int) -> list[dict]:
        """DescribeProducers: the producers with state on the partition, as Kafka lists them."""
        states = self._partitions.get((topic, partition)) or {}
        out = []
        for pid, st in sorted(states.items()):
            last = st.batches[-1] if st.batches else None
            out.append({"producer_id": pid, "producer_epoch": st.epoch,
                        "last_sequence": last[1] if last else -1, "last_timestamp": st.last_ms or -1,
                        "coordinator_epoch": -1, "current_txn_start_offset": -1})
        return out
