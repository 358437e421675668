"""Consumer: confluent-kafka's consumer, reading an embedded log.

A consumer reads at its own pace from the partitions it is assigned
(``assign``) or given by its group (``subscribe``). Reading never takes a
lock: it maps segments read-only and trusts only data below each
partition's published high watermark. When it has read everything, it
sleeps on the watermark's futex word and wakes as soon as a producer in any
process publishes more: no fixed sleep, no CPU while idle.

``consume(n)`` returns Message objects created in C; ``key()``,
``value()`` and ``headers()`` copy out of the mapped segment only when
called.

A consumer never creates a data directory: ``log.dir`` must be one
(NotADataDirectoryError otherwise). As librdkafka does, a subscription to a
topic that does not exist is reported once, as an error event
(``UNKNOWN_TOPIC_OR_PART``) from ``poll()``/``consume()``; the consumer
keeps waiting for the topic. ``on_commit``, ``error_cb`` and ``stats_cb``
are served by ``poll()``, ``consume()`` and ``close()``.

Thread-safety: a Consumer is meant for one thread at a time, like
confluent-kafka's.
"""

from __future__ import annotations

import collections
import numbers
import time
from typing import Any, Iterator

from ... import config as _config
from ..._callbacks import ClientCallbacks
from ..._location import location_of, open_data_dir, split_config, wants_kafka
from ..._native import core
from ..._types import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    OFFSET_STORED,
    TopicPartition,
    check_timeout,
)
from ...convert import to_epoch_ms
from ...errors import (
    ArrowlogError,
    ConfigError,
    InvalidArgumentError,
    KafkaError,
    KafkaException,
    LogClosedError,
    OffsetOutOfRangeError,
    UnknownPartitionError,
    UnknownTopicError,
)
from ...schema import ENVELOPE_SCHEMA
from ...storage.evolution import conform
from ...storage.reader import RangeReader, wait_for_data


class _Fetch:
    """Read state of one assigned partition."""

    __slots__ = ("tp", "log", "reader", "position", "views", "paused", "eof_sent", "topic", "rxmsgs", "follower")

    def __init__(self, topic: str, partition: int, log: Any, position: int, reader: RangeReader):
        self.topic = topic
        self.tp = (topic, partition)
        self.log = log
        self.reader = reader
        self.position = position      # offset of the next record to return
        self.views: collections.deque = collections.deque()  # [BatchView, next row]
        self.paused = False
        self.eof_sent = False
        self.rxmsgs = 0
        # the native reader of the frames after the last read (core/follow.pxi), once one read ended
        # in the active segment: one call from the published state to a BatchView
        self.follower: Any = None


def _timeout(timeout: float | None) -> float:
    check_timeout(timeout)
    return -1.0 if timeout is None or timeout < 0 else float(timeout)


def _partition_arg(what: str, tp: Any) -> TopicPartition:
    """``tp`` if it is a TopicPartition, else the InvalidArgumentError that says so."""
    if not isinstance(tp, TopicPartition):
        raise InvalidArgumentError(f"{what} takes TopicPartition objects, not {type(tp).__name__}")
    return tp


class Consumer:
    """Read records from topics of an embedded log (or a Kafka cluster).

    >>> c = Consumer({"log.dir": "data", "group.id": "billing", "auto.offset.reset": "earliest"})
    >>> c.assign([TopicPartition("orders", 0)])
    >>> for msg in c.consume(1000, timeout=1.0):
    ...     handle(msg.value())
    """

    def __new__(cls, config: Any = None, /, **kwargs: Any):
        given, kw, kafka = wants_kafka(config, kwargs)
        if cls is Consumer and kafka:
            from ..kafka.consumer import KafkaConsumer
            return KafkaConsumer(given, **kw)
        return super().__new__(cls)

    def __init__(self, config: Any = None, /, **kwargs: Any):
        given, kw = split_config(config, kwargs)
        conf = _config.resolve(_config.CONSUMER, given, kw, what="consumer")
        self.config = conf
        self._callbacks = ClientCallbacks(conf, "consumer")
        self._on_commit = conf["on_commit"]
        self._commit_reports: collections.deque = collections.deque()
        self._unknown_subscribed: list[str] = []
        # consume() serves callbacks and unknown-topic events only when set
        self._has_callbacks = self._on_commit is not None or self._callbacks.interval > 0
        self._extras = self._has_callbacks
        self._log = open_data_dir(location_of(conf), create=False)
        from ...txn import TransactionView
        self._txns = TransactionView(self._log.path)
        self._committed_only = conf["isolation.level"] == "read_committed"
        self._fetch_bytes = conf["fetch.max.bytes"]
        self._check_crcs = conf["check.crcs"]
        self._reset = conf["auto.offset.reset"]
        self._eof = conf["enable.partition.eof"]
        self._store_auto = conf["enable.auto.offset.store"]
        self._assigned: dict[tuple[str, int], _Fetch] = {}
        self._order: list[_Fetch] = []
        self._next = 0
        self._closed = False
        self._group = None
        if conf["group.id"] is not None:
            from ...groups import GroupMember
            self._group = GroupMember(self, self._log, conf)
            if self._on_commit is not None:
                self._report_commits(self._group)

    def _report_commits(self, member: Any) -> None:
        """Queue an on_commit report for every asynchronous or automatic
        commit ``member`` writes, served on the application's thread, as
        confluent-kafka does (a synchronous commit() returns its result)."""
        write = member._write

        def write_and_report(offsets: dict, asynchronous: bool) -> None:
            if not asynchronous:
                return write(offsets, asynchronous)
            tps = [TopicPartition(t, p, off, meta) for (t, p), (off, meta) in sorted(offsets.items())]
            try:
                write(offsets, asynchronous)
            except ArrowlogError as exc:
                self._commit_reports.append((KafkaError(KafkaError._FAIL, str(exc)), tps))
                raise
            self._commit_reports.append((None, tps))
        member._write = write_and_report

    def _group_io(self, operation: Any, *args: Any) -> Any:
        """Run a group operation; a raw OSError from the group's files (a
        read-only mount, a full disk) becomes the StorageError that says what
        failed."""
        try:
            return operation(*args)
        except OSError as exc:
            if isinstance(exc, ArrowlogError):
                raise
            raise self._group_files_error(exc) from exc

    def _group_files_error(self, exc: OSError) -> ArrowlogError:
        from ...storage.files import storage_error
        return storage_error(exc, f"consumer group {self.config['group.id']!r} cannot use its files in "
                                  f"{self._log.groups_dir} (a group consumer writes its membership and offsets "
                                  "there; assign() without group.id only reads)")

    def _serve_callbacks(self) -> None:
        """on_commit, error_cb and stats_cb, on the application's thread."""
        while self._commit_reports:
            err, tps = self._commit_reports.popleft()
            self._on_commit(err, tps)
        cbs = self._callbacks
        if cbs.errors:
            cbs.serve_errors()
        if cbs.interval and cbs.stats_due():
            cbs.emit_stats(*self._statistics())

    def _statistics(self) -> tuple[dict, dict]:
        """librdkafka's statistics of a consumer (see _callbacks.py)."""
        topics: dict = {}
        group = self._group
        stored = group._stored if group is not None else {}
        committed = group._last_committed if group is not None else {}
        for f in list(self._order):
            low, high = f.log.watermarks()
            c = committed.get(f.tp, -1001)
            st = stored.get(f.tp, (-1001, None))[0]
            topics.setdefault(f.topic, {})[f.tp[1]] = {
                "leader": 0, "desired": True, "fetch_state": "active" if not f.paused else "stopped",
                "next_offset": f.position, "app_offset": f.position, "stored_offset": st, "committed_offset": c,
                "lo_offset": low, "hi_offset": high, "ls_offset": high, "rxmsgs": f.rxmsgs,
                "consumer_lag": high - c if c >= 0 else -1, "consumer_lag_stored": high - st if st >= 0 else -1}
        totals = {"rxmsgs": sum(f.rxmsgs for f in self._order)}
        return topics, totals

    # -- assignment -------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError("the consumer is closed")

    def _partition_log(self, topic: str, partition: int):
        try:
            t = self._log.topic(topic)
        except UnknownTopicError:
            raise
        return t.partition(partition)

    def _resolve(self, fetch_log: Any, topic: str, partition: int, offset: int) -> int:
        """A logical offset (beginning, end, stored, invalid) as a real one."""
        low, high = fetch_log.watermarks()
        if offset == OFFSET_BEGINNING:
            return low
        if offset == OFFSET_END:
            return high
        if offset in (OFFSET_STORED, OFFSET_INVALID) or offset < 0:
            committed = self._group.committed_offset(topic, partition) if self._group is not None else None
            if committed is not None and committed >= 0:
                if not low <= committed <= high:  # out of range: auto.offset.reset decides
                    return self._reset_position(topic, partition, low, high, committed)
                return committed
            return self._reset_position(topic, partition, low, high, None)
        if offset < low or offset > high:
            return self._reset_position(topic, partition, low, high, offset)
        return offset

    def _reset_position(self, topic: str, partition: int, low: int, high: int, wanted: int | None) -> int:
        if self._reset == "earliest":
            return low
        if self._reset == "latest":
            return high
        where = "no committed offset" if wanted is None else f"offset {wanted} is outside {low}..{high}"
        raise OffsetOutOfRangeError(f"{topic}-{partition}: {where} and auto.offset.reset is 'error'")

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Read exactly these partitions, from each one's offset (a real
        offset, OFFSET_BEGINNING, OFFSET_END, or OFFSET_STORED/INVALID for the
        committed offset or auto.offset.reset)."""
        self._check_open()
        fetches = {}
        for tp in partitions:
            if _partition_arg("assign()", tp).partition < 0:
                raise UnknownPartitionError(f"assign() needs a partition number for {tp.topic!r}")
            log = self._partition_log(tp.topic, tp.partition)
            fetches[(tp.topic, tp.partition)] = self._new_fetch(tp, log)
        self._assigned = fetches
        self._order = list(fetches.values())
        self._next = 0

    def _new_fetch(self, tp: TopicPartition, log: Any) -> _Fetch:
        def on_gap(position: int, low: int) -> int:
            # retention deleted records not read yet: auto.offset.reset decides
            return self._reset_position(tp.topic, tp.partition, low, log.high_watermark, position)

        position = self._resolve(log, tp.topic, tp.partition, tp.offset)
        reader = RangeReader(log, position, check_crc=self._check_crcs, on_gap=on_gap)
        return _Fetch(tp.topic, tp.partition, log, position, reader)

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        """Add these partitions to the assignment. A partition already in it
        is refused (KafkaException _CONFLICT, as librdkafka does) and nothing
        changes: assigning it again would move its position."""
        self._check_open()
        fetches = {}
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if key in self._assigned or key in fetches:
                raise KafkaException(KafkaError(KafkaError._CONFLICT, f"{tp.topic} [{tp.partition}] is already "
                                                "part of the current assignment"))
            fetches[key] = self._new_fetch(tp, self._partition_log(tp.topic, tp.partition))
        self._assigned.update(fetches)
        self._order = list(self._assigned.values())

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        """Remove these partitions from the assignment. One that is not in it
        is passed over (librdkafka refuses the call with _INVALID_ARG): a
        group's revocation unassigns what an on_revoke callback may already
        have unassigned."""
        self._check_open()
        for tp in partitions:
            self._assigned.pop((tp.topic, tp.partition), None)
        self._order = list(self._assigned.values())
        self._next = 0

    def unassign(self) -> None:
        self._check_open()
        self._assigned = {}
        self._order = []
        self._next = 0

    def assignment(self) -> list[TopicPartition]:
        self._check_open()
        return [TopicPartition(t, p) for (t, p) in self._assigned]

    # -- positions ---------------------------------------------------------------

    def _fetch_for(self, tp: TopicPartition) -> _Fetch:
        f = self._assigned.get((tp.topic, tp.partition))
        if f is None:
            raise KafkaException(KafkaError(KafkaError._STATE,
                                            f"{tp.topic}-{tp.partition} is not assigned to this consumer"))
        return f

    def seek(self, partition: TopicPartition) -> None:
        """Make the next record read from ``partition`` the one at its offset."""
        self._check_open()
        f = self._fetch_for(_partition_arg("seek()", partition))
        f.position = self._resolve(f.log, partition.topic, partition.partition, partition.offset)
        f.views.clear()
        f.eof_sent = False

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in self._targets(partitions):
            self.seek(TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING))

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        for tp in self._targets(partitions):
            self.seek(TopicPartition(tp.topic, tp.partition, OFFSET_END))

    def _targets(self, partitions: tuple) -> list[TopicPartition]:
        if len(partitions) == 1 and isinstance(partitions[0], (list, tuple)):
            partitions = tuple(partitions[0])
        return list(partitions) if partitions else self.assignment()

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The offset of the next record each partition will return."""
        self._check_open()
        out = []
        for tp in partitions:
            f = self._assigned.get((_partition_arg("position()", tp).topic, tp.partition))
            out.append(TopicPartition(tp.topic, tp.partition, f.position if f is not None else OFFSET_INVALID))
        return out

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float | None = None,
                              cached: bool = False) -> tuple[int, int]:
        """(low, high): the log start offset and the high watermark."""
        self._check_open()
        _partition_arg("get_watermark_offsets()", partition)
        return self._partition_log(partition.topic, partition.partition).watermarks()

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        """For each partition, the first offset whose timestamp is at or after
        the timestamp (epoch ms) given in ``offset``; -1 (OFFSET_END) when
        there is none."""
        self._check_open()
        out = []
        for tp in partitions:
            ts = tp.offset
            if type(ts) is not int:
                ts = to_epoch_ms(ts)
            topic, partition = tp.topic, tp.partition
            found = self._log.topic(topic).partition(partition).offset_for_timestamp(ts)
            out.append(TopicPartition(topic, partition, OFFSET_END if found is None else found))
        return out

    def pause(self, partitions: list[TopicPartition]) -> None:
        """Stop returning records of these partitions until resume(). A
        partition not assigned is passed over, as librdkafka does."""
        self._set_paused(partitions, True)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self._set_paused(partitions, False)

    def _set_paused(self, partitions: list[TopicPartition], paused: bool) -> None:
        self._check_open()
        for tp in partitions:
            f = self._assigned.get((tp.topic, tp.partition))
            if f is not None:
                f.paused = paused

    # -- reading -----------------------------------------------------------------

    def _fill(self, f: _Fetch, out: list, want: int) -> int:
        """Append up to ``want`` messages of ``f`` to ``out``; returns how many."""
        got = 0
        while got < want:
            if not f.views:
                if not self._load(f):
                    break
            entry = f.views[0]
            view, row = entry
            stop = row + (want - got)
            end = view.fill(out, row, stop)
            got += end - row
            f.rxmsgs += end - row
            if end >= view.num_rows:
                f.views.popleft()
            else:
                entry[1] = end
            f.position = view.offset_at(end)
        return got

    def _load(self, f: _Fetch) -> bool:
        follower = f.follower
        if follower is not None:
            got = follower.next_view(f.position)
            if got is None:
                return False  # nothing new
            if got is not False:
                f.views.append([got, 0])
                return True
            f.follower = None  # not the common case (or a transaction began): the general read answers
        high = f.log.high_watermark   # before the read: see arrowlog.txn
        while True:
            f.reader.position = f.position
            try:
                frames = f.reader.read(self._fetch_bytes)
            except OffsetOutOfRangeError:  # beyond the high watermark (a gap goes through on_gap)
                low, high = f.log.watermarks()
                f.position = self._reset_position(f.topic, f.tp[1], low, high, f.position)
                continue
            if not frames:
                f.position = f.reader.position  # past offsets the cleaner removed, if any
                return False
            frames, skip_to = self._txns.visible(f.topic, f.tp[1], frames, max(high, f.position),
                                                 self._committed_only)
            envelope_for = self._log.topic(f.topic).envelope_for
            for fr in frames:
                # one value schema for every frame: the topic's newest (storage/evolution.py)
                batch = conform(fr.batch, envelope_for(fr.batch.schema))
                f.views.append([core.BatchView(batch, f.topic, f.tp[1], fr.base_offset, fr.next_offset), 0])
            if f.views:
                f.position = f.views[0][0].base_offset
                if not self._txns.begun() and self._log.topic(f.topic).schema.equals(ENVELOPE_SCHEMA):
                    # it stops when the transaction state appears (read after the state: see arrowlog.txn)
                    f.follower = f.log.follower(f.views[-1][0].next_offset, self._check_crcs,
                                                absent=self._txns._dir)
                return True
            if skip_to is None:
                return False  # held back by an open transaction (read_committed)
            f.position = skip_to

    def _gather(self, want: int) -> list:
        out: list = []
        order = self._order
        n = len(order)
        for i in range(n):
            if len(out) >= want:
                break
            f = order[(self._next + i) % n]
            if f.paused:
                continue
            got = self._fill(f, out, want - len(out))
            if got == 0 and self._eof and not f.eof_sent and not f.views:
                f.eof_sent = True
                out.append(core.Message(f.topic, None, None, None,
                                        KafkaError(KafkaError._PARTITION_EOF, f"{f.topic} [{f.tp[1]}] reached end "
                                                   f"at offset {f.position}"), None, f.tp[1], f.position))
            elif got:
                f.eof_sent = False
        if n:
            self._next = (self._next + 1) % n
        return out

    def _wait(self, deadline: float) -> bool:
        """Sleep until some assigned partition may have data or the deadline."""
        left = deadline - time.monotonic() if deadline >= 0 else 1.0
        if left <= 0:
            return False
        if self._group is not None:
            left = min(left, 0.1)  # a member re-checks its group (rebalances) this often
        pending = [(f.log, f.position) for f in self._order if not f.paused]
        return wait_for_data(self._log.notifier, pending, min(left, 1.0), spin_us=self.config["poll.spin.us"])

    def consume(self, num_messages: int = 1, timeout: float | None = -1) -> list:
        """Up to ``num_messages`` messages, waiting up to ``timeout`` seconds
        (negative or None: forever) for the first. ``num_messages=0``
        returns [] at once, as confluent-kafka does."""
        self._check_open()
        if type(num_messages) is not int and not isinstance(num_messages, numbers.Integral):
            raise InvalidArgumentError(f"num_messages must be an int in 0..1000000, not {type(num_messages).__name__}")
        if num_messages < 1 or num_messages > 1_000_000:
            if num_messages == 0:
                return []
            raise InvalidArgumentError("num_messages must be in 0..1000000")
        t = _timeout(timeout)
        deadline = time.monotonic() + t if t >= 0 else -1.0
        group = self._group
        while True:
            if group is not None:
                try:   # inline, not _group_io(): this runs once per poll()
                    group.tick()
                except OSError as exc:
                    if isinstance(exc, ArrowlogError):
                        raise
                    raise self._group_files_error(exc) from exc
            if self._extras:
                self._serve_callbacks()
                if self._unknown_subscribed:
                    return self._unknown_topic_events(num_messages)
            out = self._gather(num_messages)
            if out:
                if self._group is not None:
                    self._group.returned(out)
                return out
            if not self._order:
                if deadline >= 0 and time.monotonic() >= deadline:
                    return []
                time.sleep(min(0.01, max(0.0, deadline - time.monotonic())) if deadline >= 0 else 0.01)
                continue
            if not self._wait(deadline) and deadline >= 0 and time.monotonic() >= deadline:
                return []

    def _unknown_topic_events(self, num_messages: int) -> list:
        """librdkafka's error event for each subscribed topic that does not
        exist (reported once; the subscription stays)."""
        names, self._unknown_subscribed = self._unknown_subscribed[:num_messages], \
            self._unknown_subscribed[num_messages:]
        self._extras = self._has_callbacks or bool(self._unknown_subscribed)
        return [core.Message(t, None, None, None,
                             KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART,
                                        f"Subscribed topic not available: {t}: Broker: Unknown topic or partition "
                                        f"(no topic {t!r} in {self._log.path})"), None, -1, OFFSET_INVALID)
                for t in names]

    def poll(self, timeout: float | None = None) -> core.Message | None:
        """The next message, or None after ``timeout`` seconds (None: forever)."""
        out = self.consume(1, -1 if timeout is None else timeout)
        return out[0] if out else None

    def __iter__(self) -> Iterator[core.Message]:
        """Messages forever (until close()), as kafka-python iterates."""
        while not self._closed:
            yield from self.consume(1000, 1.0)

    # -- groups (see groups.py) ---------------------------------------------------

    def _require_group(self, what: str):
        if self._group is None:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, f"{what} needs a group.id in the consumer config"))
        return self._group

    def subscribe(self, topics: list[str], on_assign=None, on_revoke=None, on_lost=None) -> None:
        self._check_open()
        group = self._require_group("subscribe()")
        self._group_io(group.subscribe, topics, on_assign, on_revoke, on_lost)
        self._unknown_subscribed = [t for t in topics if not t.startswith("^") and not self._topic_exists(t)]
        self._extras = self._has_callbacks or bool(self._unknown_subscribed)

    def _topic_exists(self, topic: str) -> bool:
        try:
            return self._log.has_topic(topic)
        except ArrowlogError:
            return False  # not a legal name: it never exists

    def unsubscribe(self) -> None:
        self._check_open()
        self._unknown_subscribed = []
        self._extras = self._has_callbacks
        if self._group is not None:
            self._group.unsubscribe()

    def commit(self, message: Any = None, offsets: list[TopicPartition] | None = None, asynchronous: bool = True):
        self._check_open()
        return self._group_io(self._require_group("commit()").commit, message, offsets, asynchronous)

    def committed(self, partitions: list[TopicPartition], timeout: float | None = None) -> list[TopicPartition]:
        self._check_open()
        return self._require_group("committed()").committed(partitions)

    def store_offsets(self, message: Any = None, offsets: list[TopicPartition] | None = None) -> None:
        self._check_open()
        self._require_group("store_offsets()").store_offsets(message, offsets)

    def memberid(self) -> str | None:
        self._check_open()
        return self._group.member_id if self._group is not None else None

    def consumer_group_metadata(self):
        """The group, for a transactional Producer's send_offsets_to_transaction()."""
        self._check_open()
        from ...txn import ConsumerGroupMetadata
        group = self._require_group("consumer_group_metadata()")
        return ConsumerGroupMetadata(group.group, group.generation, group.member_id)

    def list_topics(self, topic: str | None = None, timeout: float = -1):
        self._check_open()
        from ...admin import cluster_metadata
        return cluster_metadata(self._log, topic)

    def close(self) -> None:
        """Commit (with auto-commit), leave the group and release the log."""
        if self._closed:
            return
        try:
            if self._group is not None:
                self._group_io(self._group.close)
                if self._on_commit is not None:
                    self._serve_callbacks()
        finally:
            self._closed = True
            self._assigned = {}
            self._order = []
            self._log.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Consumer", "TopicPartition", "OFFSET_BEGINNING", "OFFSET_END", "OFFSET_STORED", "OFFSET_INVALID",
           "ArrowlogError", "ConfigError"]
