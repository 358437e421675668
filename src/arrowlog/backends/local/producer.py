"""Producer: confluent-kafka's producer, appending to an embedded log.

``produce()`` runs in C (``_native/core/producer.pxi``): it checks the
record, partitions it (murmur2 of the key, or the sticky partition) and
appends it to that partition's accumulator. The check is what keeps a bad
record from failing its batch: a record larger than ``message.max.bytes``
(or the topic's ``max.message.bytes``) raises MessageSizeTooLargeError, and
for a topic with a value schema a value that does not convert raises
InvalidRecordError, both from that ``produce()`` call, before anything is
queued (``record_validator``). A partition's batch is appended to the log as one
frame when it reaches ``batch.size`` bytes, when it has waited ``linger.ms``
(a background thread), or at ``flush()``.

Durability, after ``flush()`` returns (config ``durability``):

* ``written`` (default): every record produced before the call is in the
  log, readable by every process, and survives a crash of this process; a
  background thread fsyncs every ``fsync.interval.ms`` (1 s), which bounds
  what a power loss can take.
* ``fsync``: every batch is fdatasync()ed before it is acknowledged, so
  after ``flush()`` returns the records also survive power loss.

Delivery callbacks ``on_delivery(err, msg)`` are served by ``poll()`` and
``flush()``, as in confluent-kafka. A failed append (disk full, I/O error)
reports the error to the callbacks of the records it held, and raises from
the next ``produce()``, ``poll()`` or ``flush()``: nothing after the error
is acknowledged.

With a ``transactional.id`` the producer has confluent-kafka's transactions
(``init_transactions()`` ... ``commit_transaction()``; transactions.py and
docs/CLIENTS.md#transactions): each batch goes into the open transaction.

Thread-safety: one Producer may be shared by threads (calls hold the GIL;
appends to one partition are serialised). Many producers, in any number of
processes, may write to the same partitions.
"""

from __future__ import annotations

import collections
import threading
import time
import weakref
from typing import Any

import pyarrow as pa

from ... import config as _config
from ..._callbacks import ClientCallbacks
from ..._location import location_of, open_data_dir, split_config, wants_kafka
from ..._native import core
from ..._types import check_timeout
from ...convert import record_validator, to_epoch_ms, typed_values
from ...errors import (
    ArrowlogError,
    InvalidRecordError,
    KafkaError,
    KafkaException,
    LogClosedError,
    MessageSizeTooLargeError,
    QueueFullError,
    UnknownPartitionError,
    UnknownTopicError,
)
from ...storage import validate_topic_name
from ...storage.cleaner import CleanerThread
from ...storage.helper import spare_helper
from ...storage.partition import sync_many
from .batches import produce_batch
from .linger import linger_thread, pending_wait
from .reports import fail_bad_rows, producer_statistics, report_message, report_view, timestamp_bounds
from .transactions import LocalTransactions

# A topic of this many partitions or more stages produce()'s records in one buffer
# (core.RecordStage, _native/core/stage.pxi; docs/SCALING.md, steady produce),
# unless the producer has transactions or durability=fsync, or the topic a value schema.
STAGE_PARTITIONS = 16

# A staged flush of this many bytes or more (two partitions or more) is written by two threads
# at once (ProducerCore._append_staged; docs/SCALING.md, steady produce, round four).
PARALLEL_FLUSH_BYTES = 1 << 20


class Producer(core.ProducerCore):
    """Append records to topics of an embedded log (or a Kafka cluster).

    >>> p = Producer({"log.dir": "data"})
    >>> p.produce("orders", b'{"id": 1}', key=b"customer-7")
    >>> p.flush()
    0
    """

    def __new__(cls, config: Any = None, /, **kwargs: Any):
        given, kw, kafka = wants_kafka(config, kwargs)
        if cls is Producer and kafka:
            from ..kafka.producer import KafkaProducer
            return KafkaProducer(given, **kw)
        return super().__new__(cls)

    def __init__(self, config: Any = None, /, **kwargs: Any):
        given, kw = split_config(config, kwargs)
        conf = _config.resolve(_config.PRODUCER, given, kw, what="producer")
        self.config = conf
        self._callbacks = ClientCallbacks(conf, "producer")
        self._log = open_data_dir(location_of(conf), create=True, logger=conf["logger"])
        self._max_record_bytes = conf["message.max.bytes"]
        self._cleaner_interval_ms = conf["log.cleaner.backoff.ms"]
        self._cleaner: CleanerThread | None = None
        self._default_delivery = conf["on_delivery"]
        self._batch_bytes = conf["batch.size"]
        self._batch_records = conf["batch.num.messages"]
        self._linger = conf["linger.ms"] / 1000.0
        self._fsync = conf["durability"] == "fsync"
        self._fsync_interval = conf["fsync.interval.ms"] / 1000.0
        self._max_queued = conf["queue.buffering.max.messages"]
        self._auto_create = conf["auto.create.topics.enable"]
        self._num_partitions = conf["num.partitions"]
        self._hash_null_keys = conf["partitioner"] == "murmur2"
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._reports: collections.deque = collections.deque()
        self._error = None  # (ProducerCore's: produce() calls _first_in_batch while one is pending)
        self._dirty: set = set()
        self._syncing: set = set()  # what _sync_dirty is syncing
        self._wake = threading.Event()
        self._bg_idle = False  # (ProducerCore's: produce() calls _first_in_batch while it is set)
        self._stop = False
        self._txn = LocalTransactions(self, conf["transactional.id"], conf["transaction.timeout.ms"]) \
            if conf["transactional.id"] else None
        self._thread = threading.Thread(target=linger_thread, args=(weakref.ref(self), self._wake),
                                        name="arrowlog-producer", daemon=True)
        self._thread.start()

    # -- fast-path hooks (called from ProducerCore.produce) ---------------------

    def _open_slot(self, topic: Any) -> core.TopicSlot:
        self._raise_pending()
        if self._txn is not None:
            self._txn.check_produce()
        validate_topic_name(topic)
        try:
            t = self._log.topic(topic)
        except UnknownTopicError:
            if not self._auto_create:
                raise
            t = self._log.create_topic(topic, self._num_partitions, exist_ok=True)
        limit = min(self._max_record_bytes, int(t.config.get("max.message.bytes") or self._max_record_bytes))
        validate = record_validator(topic, t.value_schema) if t.value_schema is not None else None
        slot = core.TopicSlot(topic, t, t.num_partitions, min(self._batch_bytes, 16 << 20), limit, validate)
        slot.keyed_only = _config.is_compacted(t.config)
        existing = self._slots.get(topic)
        if existing is not None:  # another thread opened it meanwhile (GIL released above): one slot
            return existing
        for p in range(t.num_partitions):
            slot.locks[p] = self._locks[(topic, p)] = threading.Lock()
        if (t.num_partitions >= STAGE_PARTITIONS and self._txn is None and not self._fsync
                and t.value_schema is None):
            slot.stage = core.RecordStage(t.num_partitions)
        self._slots[topic] = slot  # (nothing above since the check released the GIL)
        if slot.keyed_only and self._cleaner is None and self._cleaner_interval_ms > 0:
            self._cleaner = CleanerThread(self._compacted_partitions, self._cleaner_interval_ms / 1000,
                                          name="arrowlog-producer-cleaner").start()
        return slot

    def _compacted_partitions(self) -> list:
        """The partitions of the compacted topics this producer writes."""
        return [s.topic.partition(p) for s in list(self._slots.values()) if s.keyed_only
                for p in range(s.partitions)]

    def _bad_partition(self, slot: core.TopicSlot, partition: Any) -> None:
        raise UnknownPartitionError(f"topic {slot.name!r} has partitions 0..{slot.partitions - 1}; "
                                    f"there is no partition {partition!r}")

    def _unkeyed(self, slot: core.TopicSlot, where: str = "") -> None:
        raise InvalidRecordError(f"{where}topic {slot.name!r} is compacted (cleanup.policy="
                                 f"{slot.topic.config.get('cleanup.policy')}): every record needs a key, and this "
                                 "one has none; give it a key (the record was not queued)")

    def _too_large(self, slot: core.TopicSlot, size: int) -> None:
        raise MessageSizeTooLargeError(
            f"a record of {size:,} bytes (key + value + headers) is larger than {slot.max_record_bytes:,}, the limit of topic "
            f"{slot.name!r} (producer message.max.bytes={self._max_record_bytes:,}, topic max.message.bytes="
            f"{slot.topic.config.get('max.message.bytes', 'unset')}): split the record or raise the limit")

    def _coerce_timestamp(self, timestamp: Any) -> int:
        return to_epoch_ms(timestamp)

    def _raise_closed(self) -> None:
        raise LogClosedError("the producer is closed")

    def _batch_full(self, slot: core.TopicSlot, partition: int) -> None:
        if self._queued > self._max_queued:
            raise QueueFullError(f"more than queue.buffering.max.messages={self._max_queued} records queued")
        self._send(slot, partition)

    def _first_in_batch(self, slot: core.TopicSlot, partition: int) -> None:
        if self._error is not None:
            self._raise_pending()
        if self._bg_idle:
            self._wake.set()

    # -- sending ---------------------------------------------------------------

    def _send(self, slot: core.TopicSlot, partition: int) -> int:
        """Append ``partition``'s pending batch (and every staged one); returns records sent."""
        sent = self._send_staged(slot) if slot.stage is not None and slot.stage.count else 0
        return sent + self._send_batch(slot, partition)

    def _send_staged(self, slot: core.TopicSlot) -> int:
        """Append every partition's staged records (ProducerCore._append_staged), opening
        their partitions first (one not open yet would take the general path)."""
        stage = slot.stage
        if stage is not None and None in slot.logs:
            for p in range(slot.partitions):
                if slot.logs[p] is None and stage.pending_of(p)[0]:
                    self._partition_log(slot, p)
        return self._native_send(self._append_staged, slot, spare_helper, PARALLEL_FLUSH_BYTES)

    def _native_send(self, send: Any, slot: core.TopicSlot, *args: Any) -> int:
        """``send(slot, dirty, *args)``, a native loop releasing the GIL as it writes, with a
        ``dirty`` set of its own, added to ``_dirty`` after: a periodic sync swapping
        ``_dirty`` meanwhile never sees its set change under it."""
        dirty: set = set()
        try:
            return send(slot, dirty, *args)
        finally:
            self._dirty.update(dirty)

    def _send_batch(self, slot: core.TopicSlot, partition: int) -> int:
        """Append the batch in ``partition``'s accumulator; returns records sent."""
        key = (slot.name, partition)
        with self._locks[key]:
            acc = slot.accumulators[partition].detach()
            n = acc.count
            if n == 0:
                return 0
            nbytes = acc.nbytes
            callbacks = acc.callbacks
            if not callbacks and slot.topic.value_schema is None:
                # bytes values, no delivery callback: no pyarrow batch (PartitionLog.append_records:
                # the native core writes the frame); the small flush's path, kept short
                if partition == slot.sticky:
                    slot.next_sticky()
                log = slot.logs[partition] or self._partition_log(slot, partition)
                try:
                    if self._txn is None:
                        log.append_records(acc, fsync=self._fsync)
                        slot.accumulators[partition].recycle(acc)  # its memory serves the next batch
                    else:
                        self._txn.append(slot.name, partition, log, n, lambda: log.append_records(acc, fsync=self._fsync))
                finally:
                    self._sent(n)
                self._dirty.add(log)
                slot.count_sent(partition, n, nbytes)
                return n
            min_ts, max_ts = acc.min_timestamp, acc.max_timestamp
            batch = acc.to_batch()
            if slot.topic.value_schema is not None:
                try:
                    try:
                        values = typed_values(batch.column(2), slot.topic.value_schema)
                    except InvalidRecordError:
                        batch, callbacks = fail_bad_rows(self, slot, partition, batch, callbacks)
                        if batch.num_rows == 0:
                            self._sent(n)
                            return 0
                        min_ts, max_ts = timestamp_bounds(batch)
                        values = typed_values(batch.column(2), slot.topic.value_schema)
                    batch = batch.set_column(2, "value", values)
                except (TypeError, ValueError):
                    self._sent(n)
                    raise
            if partition == slot.sticky:
                slot.next_sticky()
            log = slot.topic.partition(partition)
            try:
                base = self._append(slot.name, partition, log, batch, min_ts, max_ts)
            except ArrowlogError as exc:
                self._sent(n)
                if callbacks:
                    err = KafkaError(KafkaError._FAIL, str(exc))
                    for index, cb in callbacks:
                        self._reports.append((cb, err, self._report_message(slot.name, partition, batch, index, -1001)))
                raise
            self._sent(n)
            self._dirty.add(log)
            slot.count_sent(partition, n, nbytes)
            if callbacks:
                view = self._report_view(slot.name, partition, batch, base)
                for index, cb in callbacks:
                    self._reports.append((cb, None, view.message_at(index)))
            return n

    def _partition_log(self, slot: core.TopicSlot, partition: int) -> Any:
        """The PartitionLog of ``partition``, kept in ``slot.logs`` (a topic opens each once)."""
        log = slot.logs[partition] = slot.topic.partition(partition)
        return log

    def _append(self, topic: str, partition: int, log: Any, batch: pa.RecordBatch, min_ts: int, max_ts: int) -> int:
        """Append one frame (inside the open transaction, for a transactional producer)."""
        def append() -> int:
            return log.append(batch, fsync=self._fsync, min_timestamp=min_ts, max_timestamp=max_ts)
        return append() if self._txn is None else self._txn.append(topic, partition, log, batch.num_rows, append)

    _report_view = staticmethod(report_view)
    _report_message = staticmethod(report_message)

    def _send_all(self, only_lingered: bool = False, min_age: float | None = None) -> int:
        """Append pending batches: all of them, or (``only_lingered``) those
        older than ``min_age`` (default linger.ms)."""
        sent = 0
        now = time.monotonic() if only_lingered else 0.0
        age = self._linger if min_age is None else min_age
        locks = self._locks
        for slot in list(self._slots.values()):
            name = slot.name
            if not only_lingered and self._txn is None and not self._fsync and slot.topic.value_schema is None:
                # the common case in one native loop over the partitions; the rest below
                rest: list[int] = []
                sent += self._send_staged(slot) + self._native_send(self._append_ready, slot, rest)
                for p in rest:
                    sent += self._send_batch(slot, p)
                continue
            stage = slot.stage
            if stage is not None and stage.count and (not only_lingered or now - stage.oldest >= age):
                sent += self._send_staged(slot)
            for p, acc in enumerate(slot.accumulators):
                if acc.count:
                    if not only_lingered or now - acc.created >= age:
                        sent += self._send_batch(slot, p)
                elif not only_lingered and locks[(name, p)].locked():
                    # empty, but the linger thread is still appending the batch
                    # it took: taking the lock waits for that append to end
                    sent += self._send_batch(slot, p)
        return sent

    def _time_to_sync(self, last_sync: float) -> bool:
        return (not self._fsync and self._fsync_interval > 0 and bool(self._dirty)
                and time.monotonic() - last_sync >= self._fsync_interval)

    def _sync_dirty(self) -> None:
        # (close() syncs what is being synced here too, rather than wait for it)
        self._syncing, self._dirty = self._dirty, set()
        try:
            for _log, exc in sync_many(self._syncing):  # one file-system sync for all of them
                self._background_error(exc)
        finally:
            self._syncing = set()

    def _background_error(self, exc: BaseException) -> None:
        """An error of the linger or fsync thread: served to error_cb by the
        next poll()/flush() if there is one, else raised by the next call."""
        if not self._callbacks.report(exc):
            self._error = exc

    def _serve_callbacks(self) -> int:
        """error_cb and stats_cb, on the application's thread."""
        cbs = self._callbacks
        served = cbs.serve_errors() if cbs.errors else 0
        if cbs.interval and cbs.stats_due():
            cbs.emit_stats(*self._statistics())
            served += 1
        return served

    _statistics = producer_statistics  # librdkafka's statistics (reports.py)

    def _raise_pending(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    # -- public API ----------------------------------------------------------------

    def poll(self, timeout: float | None = -1) -> int:
        """Serve delivery callbacks; returns how many were served. Waits up
        to ``timeout`` seconds for one when none is ready."""
        if self._closed:
            self._raise_closed()
        check_timeout(timeout)
        self._raise_pending()
        if self._queued:
            self._send_all(only_lingered=True)
        if not self._reports and timeout and timeout > 0 and self._queued:
            deadline = time.monotonic() + timeout
            while not self._reports and self._queued and time.monotonic() < deadline:
                due = pending_wait(self)
                if due is not None and due <= 0:
                    self._send_all(only_lingered=True)
                else:
                    time.sleep(min(0.001, max(0.0, deadline - time.monotonic())))
        return self._serve_reports() + self._serve_callbacks()

    def _serve_reports(self) -> int:
        served = 0
        while self._reports:
            cb, err, msg = self._reports.popleft()
            served += 1
            cb(err, msg)
        return served

    def flush(self, timeout: float | None = -1) -> int:
        """Append everything queued, serve delivery callbacks, and (with
        durability=fsync) make it survive power loss. Returns the number of
        records still queued (0)."""
        if self._closed:
            self._raise_closed()
        check_timeout(timeout)
        if self._queued:  # (counts a batch the linger thread is appending until it is in the log)
            self._send_all()
        if self._reports:
            self._serve_reports()
        cbs = self._callbacks
        if cbs.errors or cbs.interval:
            self._serve_callbacks()
        if self._error is not None:
            self._raise_pending()
        return self._queued + len(self._reports)

    def sync(self) -> None:
        """flush(), then fsync every partition this producer wrote: after it
        returns, what was produced survives power loss, whatever the
        durability setting."""
        self.flush()
        self._sync_dirty()
        self._raise_pending()

    def __len__(self) -> int:
        return self._queued + len(self._reports)

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        """Drop the records queued and not yet appended (``in_queue``): each
        one's delivery report says _PURGE_QUEUE, served by the next poll() or
        flush(), as in confluent-kafka. A record in the log stays there: an
        append is never "in flight" here, so ``in_flight`` and ``blocking``
        change nothing."""
        if self._closed:
            self._raise_closed()
        if in_queue:
            self._purge_queued("purged from the producer's queue (purge())")

    def _purge_queued(self, reason: str) -> None:
        """Drop every queued record (purge(), abort_transaction()): each one
        with a delivery callback gets a _PURGE_QUEUE report."""
        err = KafkaError(KafkaError._PURGE_QUEUE, reason)
        for slot in list(self._slots.values()):
            if slot.stage is not None:
                # staged records (no callbacks) to their accumulators, dropped below; under the
                # GIL, as the stage is taken by a flush (ProducerCore._append_staged)
                slot.stage.drain_into(slot.accumulators)
            for partition in range(slot.partitions):
                with self._locks[(slot.name, partition)]:
                    acc = slot.accumulators[partition].detach()
                    if acc.count == 0:
                        continue
                    self._sent(acc.count)
                    callbacks = acc.callbacks
                    if callbacks:
                        batch = acc.to_batch()
                        for index, cb in callbacks:
                            self._reports.append((cb, err, self._report_message(slot.name, partition, batch,
                                                                                index, -1001)))

    def produce_batch(self, topic: str, values: Any, keys: Any = None, timestamps: Any = None,
                      headers: Any = None, partition: int | None = None) -> int:
        """Append many records at once: ``values`` is a list, numpy array,
        Arrow array, or an Arrow table (or record batch) with a ``value``
        column and optional ``key``, ``timestamp`` and ``headers`` columns.
        Keyed records are partitioned with murmur2, like produce(). The
        records are stored as frames of about 8 MiB (batch.size if larger).
        Returns the number of records appended: they are written (and with
        durability=fsync, synced) when it returns."""
        return produce_batch(self, topic, values, keys, timestamps, headers, partition)

    # -- transactions (backends/local/transactions.py, docs/CLIENTS.md#transactions) --

    def _transactions(self) -> LocalTransactions:
        if self._txn is None:
            raise KafkaException(KafkaError(KafkaError._STATE, "this producer has no transactional.id: give one "
                                            "in its config to use transactions"))
        return self._txn

    def init_transactions(self, timeout: float | None = None) -> None:
        """Take the transactional.id: fence its previous producer (any process) and
        abort the transaction that one left open."""
        self._transactions().init(timeout)

    def begin_transaction(self) -> None:
        self._transactions().begin()

    def send_offsets_to_transaction(self, positions: list, group_metadata: Any, timeout: float | None = None) -> None:
        """Stage ``positions`` (TopicPartitions: the next offset to read) as the group's
        committed offsets: applied by commit_transaction(), dropped by abort_transaction()."""
        self._transactions().send_offsets(positions, group_metadata, timeout)

    def commit_transaction(self, timeout: float | None = None) -> None:
        """Append what is queued, then commit: its records become visible to read_committed
        readers and its staged offsets are committed, all or nothing."""
        self._transactions().commit(timeout)

    def abort_transaction(self, timeout: float | None = None) -> None:
        """Drop what is queued (delivery reports say _PURGE_QUEUE) and abort: readers with
        read_committed never see the transaction's records."""
        self._transactions().abort(timeout)

    def list_topics(self, topic: str | None = None, timeout: float = -1):
        if self._closed:
            self._raise_closed()
        from ...admin import cluster_metadata
        return cluster_metadata(self._log, topic)

    def close(self, timeout: float | None = -1) -> None:
        """Flush, stop the background thread and release the log."""
        if self._closed:
            return
        try:
            if self._txn is not None:
                self._txn.close()
            self.flush()
        finally:
            self._closed = True
            # the closing sync is the data directory's close: one flush for
            # what this producer wrote (and what a periodic sync in flight is
            # syncing: the close runs beside it, not after it) and for the
            # partitions it is the last one out of, while their segments are
            # unmapped
            dirty, self._dirty = self._dirty, set()  # (first: no periodic sync starts now)
            sync = dirty | self._syncing if not self._fsync and self._fsync_interval > 0 else set()
            self._stop = True
            self._wake.set()
            if self._cleaner is not None:
                self._cleaner.stop()
            try:
                failed = self._log.close(sync=sync)
            finally:
                if threading.current_thread() is not self._thread:
                    self._thread.join()
            for _log, exc in failed:
                self._background_error(exc)
            if failed:  # told now: there is no next call to tell it
                self._callbacks.serve_errors()
                self._raise_pending()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # A producer dropped without close(): append what is queued and
        # release the log, as a file object flushes when it is collected.
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass


__all__ = ["Producer"]
