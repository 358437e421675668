"""GroupMember: a Consumer's part in a consumer group.

The Consumer creates one when ``group.id`` is set and calls it at fixed
points: ``tick()`` at the start of every consume()/poll(), ``returned()``
with what it is about to hand to the application, ``committed_offset()``
when it resolves OFFSET_STORED, plus subscribe/commit/committed/store_offsets
and close. The member drives the consumer's assignment through its public
``incremental_assign``/``incremental_unassign``.

Rebalancing is incremental (Kafka's cooperative protocol): ``on_revoke`` and
``on_assign`` receive only the partitions that move, and partitions that
stay keep their position. A hand-over goes: the old owner calls on_revoke,
commits (with enable.auto.commit), flushes its asynchronous commits and
releases the partition lock; the new owner then locks it, reads the
committed offset and calls on_assign. The new owner therefore starts where
the old one committed: delivery is at-least-once, duplicates only from what
was read but not committed.

Auto-commit follows the Java client: it runs at the start of a poll and
commits the offsets stored for messages returned by *earlier* polls, so a
``for msg in poll(): handle(msg)`` loop never commits a message it has not
handled. With ``enable.auto.offset.store=false`` the application stores
offsets itself (``store_offsets``) after handling.

Timing: a member probes its peers every LIVENESS_INTERVAL_S (during its
polls), so a SIGKILLed peer's partitions move within that plus one poll.

Thread-safety: like the Consumer, one thread at a time; only the committer
thread runs beside it.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any, Callable

from .._types import OFFSET_INVALID, TopicPartition
from ..errors import ArrowlogError, KafkaError, KafkaException
from .assignors import assign, group_inputs
from .membership import MemberInfo, MemberRegistry, Membership, OwnerLocks, hostname, new_member_id
from .store import GroupDir

LIVENESS_INTERVAL_S = 0.1   # peer lock probes: ~5 µs per peer, so 10/s costs nothing and bounds failover
ACQUIRE_RETRY_S = 0.005     # waiting for a previous owner to let go (it does at its next poll)

ILLEGAL_GENERATION = 22     # Kafka's error code for a commit from a member that no longer owns the partition

Callback = Callable[[Any, list], Any] | None


class Committer:
    """Writes commits; asynchronous ones are coalesced and written by a
    background thread, so ``commit(asynchronous=True)`` per message costs a
    dict update, not an fsync."""

    def __init__(self, gdir: GroupDir):
        self.gdir = gdir
        self._pending: dict[tuple[str, int], tuple[int, str | None]] = {}
        self._cond = threading.Condition()
        self._io = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.error: BaseException | None = None
        self.on_commit: Callable[[Any, list], Any] | None = None

    def commit_now(self, offsets: dict) -> None:
        """Write ``offsets`` (and anything pending) before returning."""
        with self._io:
            with self._cond:
                merged, self._pending = self._pending, {}
            merged.update(offsets)
            self.gdir.write_offsets(merged)

    def submit(self, offsets: dict) -> None:
        with self._cond:
            self._pending.update(offsets)
            if self._thread is None:
                # recorded only once started: an exception raised inside start() (the CLI's SIGTERM
                # handler raises SystemExit wherever the main thread is) must not leave close() an
                # unstarted thread to join; a thread started anyway exits on _closing by itself
                thread = threading.Thread(target=self._run, name="arrowlog-committer", daemon=True)
                thread.start()
                self._thread = thread
            self._cond.notify()

    def flush(self) -> None:
        """Write pending asynchronous commits now."""
        with self._io:
            with self._cond:
                merged, self._pending = self._pending, {}
            if merged:
                self.gdir.write_offsets(merged)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing and not self._pending:
                    return
            try:
                self.flush()
            except BaseException as exc:  # reported at the next commit
                self.error = exc

    def raise_error(self) -> None:
        if self.error is not None:
            exc, self.error = self.error, None
            raise KafkaException(KafkaError(KafkaError._FAIL, f"an asynchronous commit failed: {exc}")) from exc

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()


def _topic_partitions(offsets: dict) -> list[TopicPartition]:
    return [TopicPartition(t, p, off, meta) for (t, p), (off, meta) in sorted(offsets.items())]


def _key_of(m: Any) -> tuple[str, int]:
    return (m.topic(), m.partition())


class GroupMember:
    """See the module docstring."""

    def __init__(self, consumer: Any, logdir: Any, conf: dict):
        self.consumer = consumer
        self.logdir = logdir
        self.group = conf["group.id"]
        self.client_id = conf.get("client.id") or "arrowlog"
        self.auto_commit = bool(conf.get("enable.auto.commit", True))
        self.auto_commit_interval = conf.get("auto.commit.interval.ms", 5000) / 1000.0
        self.auto_store = bool(conf.get("enable.auto.offset.store", True))
        self.strategy = str(conf.get("partition.assignment.strategy") or "range")
        self.gdir = GroupDir(logdir.groups_dir, self.group, create=False, journal=True)
        self.committer = Committer(self.gdir)
        self.member_id: str | None = None
        self.generation = -1
        self._stored: dict[tuple[str, int], tuple[int, str | None]] = {}
        self._last_committed: dict[tuple[str, int], int] = {}
        self._subscription: list[str] | None = None
        self._on_assign: Callback = None
        self._on_revoke: Callback = None
        self._on_lost: Callback = None
        self._membership: Membership | None = None
        self._registry = MemberRegistry(self.gdir)
        self._owned: OwnerLocks | None = None
        self._snapshot: dict | None = None
        self._seen_generation = -1
        self._topic_view: tuple = ()
        self._pending = False
        self._next_check = 0.0
        self._next_commit = time.monotonic() + self.auto_commit_interval
        self._closed = False

    # -- called by the Consumer ---------------------------------------------------

    def committed_offset(self, topic: str, partition: int) -> int | None:
        offsets = self._snapshot if self._snapshot is not None else self.gdir.read_offsets()
        e = offsets.get((topic, partition))
        return None if e is None else e.offset

    def tick(self) -> None:
        """Heartbeat: auto-commit when due, notice membership changes and
        hand partitions over. Costs a clock read and a word load when idle."""
        now = time.monotonic()
        if self.auto_commit and now >= self._next_commit:
            self._next_commit = now + self.auto_commit_interval
            self._auto_commit(asynchronous=True)
        if self._membership is not None and (now >= self._next_check
                                             or self.gdir.state.current_word() != self._seen_generation):
            self._heartbeat(now)

    def returned(self, messages: list) -> None:
        """Store the offsets of messages handed to the application."""
        if not self.auto_store or not messages:
            return
        stored = self._stored
        n = len(messages)
        if n < 16:
            for m in messages:
                if m.error() is None:
                    stored[(m.topic(), m.partition())] = (m.offset() + 1, None)
            return
        # The consumer returns each partition's messages as one contiguous
        # run, so only run ends matter: walk back from the end, bisecting for
        # the start of each run (O(runs * log n) instead of n method calls).
        # If runs were ever interleaved this stores an older offset for a
        # partition, which only means a duplicate after a crash, never a gap.
        seen = set()
        hi = n
        while hi > 0:
            last = messages[hi - 1]
            key = _key_of(last)
            lo, top = 0, hi - 1
            while lo < top:
                mid = (lo + top) // 2
                if _key_of(messages[mid]) == key:
                    top = mid
                else:
                    lo = mid + 1
            if key not in seen:
                seen.add(key)
                j = hi - 1
                while j >= lo and messages[j].error() is not None:
                    j -= 1
                if j >= lo:
                    stored[key] = (messages[j].offset() + 1, None)
            hi = lo

    # -- subscription ----------------------------------------------------------------

    def subscribe(self, topics: list[str], on_assign: Callback = None, on_revoke: Callback = None,
                  on_lost: Callback = None) -> None:
        if isinstance(topics, str) or not topics or not all(isinstance(t, str) and t for t in topics):
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG,
                                            "subscribe() takes a non-empty list of topic names (or ^regex)"))
        for t in topics:
            if t.startswith("^"):
                try:
                    re.compile(t)
                except re.error as exc:
                    raise KafkaException(KafkaError(KafkaError._INVALID_ARG, f"bad topic regex {t!r}: {exc}")) from None
        if self._membership is not None:
            self._leave(lost=False)
        self._subscription = list(topics)
        self._on_assign, self._on_revoke, self._on_lost = on_assign, on_revoke, on_lost
        self._join()
        self._next_check = 0.0     # the first poll assigns: callbacks only ever run inside poll/consume/close

    def unsubscribe(self) -> None:
        if self._membership is not None:
            self._leave(lost=False)
        self._subscription = None

    def _join(self) -> None:
        self.member_id = new_member_id(self.client_id)
        info = MemberInfo(self.member_id, self.client_id, os.getpid(), hostname(), list(self._subscription or []),
                          strategy=self.strategy)
        self._owned = OwnerLocks(self.gdir, self.member_id)
        self._membership = Membership(self.gdir, info)
        self._membership.join()
        self._wake_peers()
        self._seen_generation = -1
        self._topic_view = ()

    def _leave(self, *, lost: bool) -> None:
        try:
            if self._owned:
                self._revoke(list(self._owned), lost=lost)
        finally:
            if self._owned is not None:
                self._owned.release_all()
            if self._membership is not None:
                self._membership.leave()
            self._membership = None
            self._owned = None
            self._wake_peers()

    def _wake_peers(self) -> None:
        """Consumers of this data directory waiting for data wake up and
        poll, which runs their tick: a hand-over need not wait out a poll."""
        try:
            self.logdir.notifier.bump()
        except Exception:
            pass

    # -- rebalancing -------------------------------------------------------------

    def _heartbeat(self, now: float) -> None:
        assert self._membership is not None
        if self._membership.fenced():
            # our member file is gone (the group was deleted): we lost our
            # partitions without a chance to commit; join again
            self._leave(lost=True)
            self.gdir.close()      # map the new group.state, not the deleted one
            self._join()
        members = self._registry.live()
        if self._registry.reaped:
            self._wake_peers()
        generation = self.gdir.state.current_word()
        me = self._membership.info.member_id
        subscriptions = {m.member_id: m.subscription for m in members}
        subscriptions.setdefault(me, self._subscription or [])
        subs, counts = group_inputs(self.logdir, subscriptions)
        view = (tuple(sorted((m, tuple(sorted(s))) for m, s in subs.items())), tuple(sorted(counts.items())))
        if generation != self._seen_generation or view != self._topic_view or self._pending:
            self._seen_generation = generation
            self._topic_view = view
            strategy = members[0].strategy if members else self.strategy
            target = set(assign(strategy, subs, counts).get(me, ()))
            self.generation = generation
            try:
                self._reconcile(target)
            except BaseException:
                self._pending = True   # a callback raised: finish the hand-over at the next poll
                raise
        self._next_check = now + (ACQUIRE_RETRY_S if self._pending else LIVENESS_INTERVAL_S)

    def _reconcile(self, target: set[tuple[str, int]]) -> None:
        owned = self._owned
        assert owned is not None
        revoke = [tp for tp in owned if tp not in target]
        if revoke:
            self._revoke(revoke, lost=False)
        want = sorted(tp for tp in target if tp not in owned)
        got = [tp for tp in want if owned.try_acquire(tp)]
        self._pending = len(got) < len(want)
        if got:
            self._assign(got)

    def _assign(self, keys: list[tuple[str, int]]) -> None:
        owned = self._owned
        assert owned is not None
        parts = [TopicPartition(t, p, OFFSET_INVALID) for t, p in keys]
        self._snapshot = self.gdir.read_offsets()
        try:
            if self._on_assign is not None:
                self._on_assign(self.consumer, parts)
            assigned = self.consumer._assigned
            # an on_assign that called assign() itself may have replaced
            # partitions we still own: every owned partition must be read
            missing = [tp for tp in parts if (tp.topic, tp.partition) not in assigned]
            missing += [TopicPartition(t, p, OFFSET_INVALID) for (t, p) in owned
                        if (t, p) not in assigned and (t, p) not in keys]
            if missing:
                self.consumer.incremental_assign(missing)
        except BaseException:
            for tp in keys:
                if tp not in self.consumer._assigned:
                    owned.release(tp)
            self._pending = True
            raise
        finally:
            self._snapshot = None

    def _revoke(self, keys: list[tuple[str, int]], *, lost: bool) -> None:
        owned = self._owned
        assert owned is not None
        parts = [TopicPartition(t, p) for t, p in keys]
        try:
            callback = self._on_lost if lost and self._on_lost is not None else self._on_revoke
            if callback is not None:
                callback(self.consumer, parts)
            if not lost and self.auto_commit:
                self._commit_stored(keys, asynchronous=False)
            self.committer.flush()
        finally:
            self.consumer.incremental_unassign(parts)
            for tp in keys:
                self._stored.pop(tp, None)
                self._last_committed.pop(tp, None)   # another member may commit it before it comes back
                owned.release(tp)
            self._wake_peers()

    # -- commits -------------------------------------------------------------------

    def _owns(self, key: tuple[str, int]) -> bool:
        return self._owned is None or key in self._owned

    def _commit_stored(self, keys: list | None, *, asynchronous: bool) -> dict:
        todo = {}
        for key, (offset, meta) in self._stored.items():
            if (keys is None or key in keys) and self._owns(key) and self._last_committed.get(key) != offset:
                todo[key] = (offset, meta)
        if todo:
            self._write(todo, asynchronous)
        return todo

    def _auto_commit(self, *, asynchronous: bool) -> None:
        self._commit_stored(None, asynchronous=asynchronous)

    def _write(self, offsets: dict, asynchronous: bool) -> None:
        try:
            self.committer.raise_error()
        except KafkaException:
            self._last_committed.clear()   # what the failed write held is not committed
            raise
        if asynchronous:
            self.committer.submit(offsets)
        else:
            self.committer.commit_now(offsets)
        for key, (offset, _) in offsets.items():
            self._last_committed[key] = offset

    def commit(self, message: Any = None, offsets: list[TopicPartition] | None = None,
               asynchronous: bool = True) -> list[TopicPartition] | None:
        """Commit a message's offset + 1, explicit offsets, or (neither
        given) the stored offsets. Returns None when asynchronous, else the
        committed TopicPartitions."""
        if message is not None and offsets is not None:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "commit() takes a message or offsets, not both"))
        if message is not None:
            if message.error() is not None:
                raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "cannot commit an error event"))
            todo: dict[tuple[str, int], tuple[int, str | None]] = {
                (message.topic(), message.partition()): (message.offset() + 1, None)}
        elif offsets is not None:
            todo = {}
            for tp in offsets:
                if tp.offset < 0:
                    raise KafkaException(KafkaError(KafkaError._INVALID_ARG,
                                                    f"cannot commit logical offset {tp.offset} for "
                                                    f"{tp.topic}-{tp.partition}: give the next offset to read"))
                todo[(tp.topic, tp.partition)] = (int(tp.offset), tp.metadata)
        else:
            return self._commit_stored_offsets(asynchronous)
        foreign = [k for k in todo if not self._owns(k)]
        if foreign:
            names = ", ".join(f"{t}-{p}" for t, p in sorted(foreign))
            raise KafkaException(KafkaError(ILLEGAL_GENERATION,
                                            f"commit refused: {names} no longer assigned to member "
                                            f"{self.member_id} of group {self.group!r} (a rebalance moved them)"))
        if offsets is not None:
            self._check_in_range(todo)
        if todo or not asynchronous:
            self._write(todo, asynchronous)
        return None if asynchronous else _topic_partitions(todo)

    def _commit_stored_offsets(self, asynchronous: bool) -> list[TopicPartition] | None:
        """commit() with neither message nor offsets: the stored offsets of the
        partitions this member owns (the common synchronous commit: once per batch)."""
        owned = self._owned
        if owned is None:
            todo = dict(self._stored)
            write = todo
        else:
            # the stored offsets of partitions only this member may commit (it holds their
            # locks): those it already committed (no metadata to add) need no new record;
            # a synchronous commit still waits for pending asynchronous ones
            fds, last = owned.fds, self._last_committed
            todo = {k: v for k, v in self._stored.items() if k in fds}
            write = {k: v for k, v in todo.items() if v[1] is not None or last.get(k) != v[0]}
        if not todo:
            if asynchronous:
                return None
            raise KafkaException(KafkaError(KafkaError._NO_OFFSET, "no stored offsets to commit"))
        if write or not asynchronous:
            self._write(write, asynchronous)
        return None if asynchronous else _topic_partitions(todo)

    def _check_in_range(self, offsets: dict) -> None:
        """Refuse explicit offsets beyond a partition's high watermark: committed, they
        would make the group skip records not yet written (the reader would otherwise
        treat them as out of range and apply auto.offset.reset)."""
        for (topic, partition), (offset, _) in offsets.items():
            try:
                high = self.logdir.topic(topic).partition(partition).high_watermark
            except ArrowlogError:
                continue  # no such partition (or it cannot be opened): nothing to be beyond
            if offset > high:
                raise KafkaException(KafkaError(
                    KafkaError.OFFSET_OUT_OF_RANGE,
                    f"cannot commit offset {offset} for {topic}-{partition}: it is beyond the high watermark "
                    f"{high} (the next offset to be written); commit the offset of the next message to read"))

    def committed(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        self.committer.flush()
        offsets = self.gdir.read_offsets()
        out = []
        for tp in partitions:
            e = offsets.get((tp.topic, tp.partition))
            out.append(TopicPartition(tp.topic, tp.partition, OFFSET_INVALID if e is None else e.offset,
                                      None if e is None else (e.metadata or None)))
        return out

    def store_offsets(self, message: Any = None, offsets: list[TopicPartition] | None = None) -> None:
        if self.auto_store:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "store_offsets() needs "
                                            "enable.auto.offset.store=false in the consumer config"))
        if message is not None:
            if message.error() is not None:
                raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "cannot store the offset of an error event"))
            items: list[tuple[tuple[str, int], int, str | None]] = [
                ((message.topic(), message.partition()), message.offset() + 1, None)]
        elif offsets is not None:
            items = [((tp.topic, tp.partition), int(tp.offset), tp.metadata) for tp in offsets]
        else:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "store_offsets() takes a message or offsets"))
        self._check_in_range({key: (off, meta) for key, off, meta in items})
        for key, off, meta in items:
            if key not in self.consumer._assigned:
                raise KafkaException(KafkaError(KafkaError._STATE, f"{key[0]}-{key[1]} is not assigned to this "
                                                "consumer"))
            self._stored[key] = (off, meta)

    def forget_stored(self, keys: set[tuple[str, int]] | None = None) -> None:
        """Drop stored (not yet committed) offsets, e.g. of a batch whose
        handling failed, so close() and auto-commit do not commit them."""
        if keys is None:
            self._stored.clear()
        else:
            for key in keys:
                self._stored.pop(key, None)

    def rewound(self, positions: dict[tuple[str, int], int]) -> None:
        """The consumer was sought back to ``positions`` because the messages
        from there on were never delivered (a cancelled asyncio call): store
        those positions instead of the offsets of the undelivered messages."""
        if not self.auto_store:
            return
        for key, offset in positions.items():
            self._stored[key] = (offset, None)

    # -- shutdown -------------------------------------------------------------------

    def close(self) -> None:
        """Revoke (on_revoke, then commit with auto-commit), flush commits,
        leave the group."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._membership is not None:
                self._leave(lost=False)
            elif self.auto_commit:
                self._auto_commit(asynchronous=False)
        finally:
            self.committer.close()
            self.gdir.close()
