"""Transactions of the in-process Producer: confluent-kafka's five methods on a
data directory (docs/CLIENTS.md#transactions).

The coordinator is the directory's own (server/txn_coordinator.py): the state in
``<data>/transactions/`` that ``arrowlog serve`` and every transactional producer
of the directory share, changed under its lock. A ``transactional.id`` has one
producer id; ``init_transactions`` bumps its epoch, which fences the producer
that had it (in any process, over the wire or in-process: its next call raises a
fatal PRODUCER_FENCED) and aborts what it left open. Each batch of a transaction
is recorded in the state before it is appended, holding the lock until it is
(so an abort from another process never misses it); commit and abort write a
COMMIT or ABORT marker into every partition the transaction wrote, and commit
applies the offsets ``send_offsets_to_transaction`` staged.

The transaction timeout (``transaction.timeout.ms``) is enforced by whoever
comes next: the running server (every 0.2 s) if there is one, else every
transactional operation of any producer on the directory (``init_transactions``,
``begin_transaction``, ``send_offsets_to_transaction``, commit, abort) aborts
the transactions open longer than their timeout and fences their producers;
``arrowlog txn abort`` does it by hand.

``send_offsets_to_transaction`` checks the consumer's group metadata against the
group's current generation (KIP-447, server/txn_groups.py). A call's ``timeout``
bounds its wait for the directory's transaction lock.

Errors are KafkaException with confluent-kafka's flags: fenced (PRODUCER_FENCED)
is fatal; a failed append inside a transaction, or offsets of a consumer a
rebalance left behind (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID), make it abortable
(``txn_requires_abort()``); a timeout is a retriable ``_TIMED_OUT``; a call out of
order is ``_STATE``.

Thread-safety: the coordinator serialises; the methods are meant for the thread
that produces, as in confluent-kafka.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from ..._types import TopicPartition
from ...errors import ArrowlogError, KafkaError, KafkaException, StorageError

NONE = 0
# coordinator answers that mean this producer was replaced (or timed out and was fenced)
_FENCED_CODES = (KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH, 49)   # 49: INVALID_PRODUCER_ID_MAPPING


def _state_error(reason: str) -> KafkaException:
    return KafkaException(KafkaError(KafkaError._STATE, reason))


def deadline_of(timeout: float | None) -> float | None:
    """The time.monotonic() by which a call given ``timeout`` seconds must be done
    (None or negative: no limit, as in confluent-kafka)."""
    return None if timeout is None or timeout < 0 else time.monotonic() + timeout


class LocalTransactions:
    """The transactional state of one Producer (``producer``), for ``txn_id``."""

    def __init__(self, producer: Any, txn_id: str, timeout_ms: int):
        self._producer = producer
        self.txn_id = txn_id
        self.timeout_ms = timeout_ms
        self._coord: Any = None
        self.pid = -1
        self.epoch = -1
        self.in_txn = False
        self._touched = False               # this transaction wrote a batch or staged offsets
        self._fatal: KafkaException | None = None
        self._abortable: KafkaException | None = None
        self._parked: dict = {}              # the producer's topic slots between transactions

    # -- the coordinator ----------------------------------------------------------

    def _coordinator(self) -> Any:
        if self._coord is None:
            from ...server.offsets import GroupOffsetStore
            from ...server.txn_coordinator import TransactionCoordinator

            path = self._producer._log.path
            try:
                self._coord = TransactionCoordinator(path, None, GroupOffsetStore(path), self._partition,
                                                     self._producer._dirty.add, owner=False)
            except OSError as exc:
                raise StorageError(exc.errno, f"transactional.id={self.txn_id!r}: cannot open the transaction "
                                   f"state {path}/transactions ({exc.strerror or exc}): transactions need a "
                                   "writable data directory") from None
        return self._coord

    def _partition(self, topic: str, index: int) -> tuple:
        try:
            return self._producer._log.topic(topic).partition(index), NONE, None
        except ArrowlogError as exc:   # a deleted topic: no marker to write there
            return None, 3, str(exc)

    def _fail(self, code: int, what: str) -> KafkaException:
        """The exception for a coordinator error ``code`` met by ``what``."""
        if code in _FENCED_CODES:
            self._fatal = KafkaException(KafkaError(
                KafkaError.PRODUCER_FENCED, f"{what}: producer fenced: another producer with transactional.id "
                f"{self.txn_id!r} called init_transactions(), or this one's transaction outlived "
                f"transaction.timeout.ms={self.timeout_ms} and was aborted; create a new Producer", fatal=True))
            return self._fatal
        retriable = code in (KafkaError.CONCURRENT_TRANSACTIONS, 15, 56)   # COORDINATOR_NOT_AVAILABLE, STORAGE
        return KafkaException(KafkaError(code, f"{what} failed: {KafkaError._NAMES.get(code, code)}"
                                         f"{' (retry it)' if retriable else ''}", retriable=retriable))

    @contextlib.contextmanager
    def _locked(self, deadline: float | None, what: str) -> Iterator[Any]:
        """The coordinator, held; confluent-kafka's retriable _TIMED_OUT if another process
        (or thread) still holds it at ``deadline``: the call may be made again."""
        coord = self._coordinator()
        try:
            with coord.locked(deadline):
                yield coord
        except TimeoutError as exc:
            raise KafkaException(KafkaError(
                KafkaError._TIMED_OUT, f"{what} timed out: {exc} (an append or a transaction's end in "
                "progress, or a stopped process): call it again, or with a longer timeout", retriable=True)) from None

    def _usable(self, what: str, in_txn: bool | None = True) -> Any:
        """The coordinator, after the checks every call makes: no fatal error, init done,
        inside (``in_txn``) or outside (False) a transaction."""
        if self._fatal is not None:
            raise self._fatal
        if self.pid < 0:
            raise _state_error(f"{what}: call init_transactions() first")
        if in_txn is True and not self.in_txn:
            raise _state_error(f"{what}: no transaction is begun (call begin_transaction() first)")
        if in_txn is False and self.in_txn:
            raise _state_error(f"{what}: a transaction is already begun; commit or abort it first")
        return self._coordinator()

    def _check_not_fenced(self, coord: Any, what: str) -> None:
        """(holding the coordinator) raise if our producer id and epoch are no longer the id's."""
        coord.expire()
        txn = coord.txns.get(self.txn_id)
        if txn is None or txn.pid != self.pid or txn.epoch != self.epoch:
            raise self._fail(KafkaError.PRODUCER_FENCED, what)

    # -- the five methods -------------------------------------------------------

    def init(self, timeout: float | None = None) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self.pid >= 0:
            raise _state_error("init_transactions() was already called on this producer")
        with self._locked(deadline_of(timeout), "init_transactions()") as coord:
            coord.expire()
            code, pid, epoch = coord.init_producer_id(self.txn_id, self.timeout_ms)
        if code != NONE:
            raise self._fail(code, "init_transactions()")
        self.pid, self.epoch = pid, epoch
        self._park()

    def begin(self) -> None:
        coord = self._usable("begin_transaction()", in_txn=False)
        with coord.locked():
            self._check_not_fenced(coord, "begin_transaction()")
        self.in_txn, self._touched, self._abortable = True, False, None
        slots = self._producer._slots
        self._producer._slots = {**self._parked, **slots}
        self._parked = {}

    def send_offsets(self, offsets: list[TopicPartition], group_metadata: Any, timeout: float | None = None) -> None:
        self._usable("send_offsets_to_transaction()")
        group = getattr(group_metadata, "group_id", None)
        if not isinstance(group, str) or not group:
            raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "send_offsets_to_transaction() needs the "
                                            "consumer's consumer_group_metadata()"))
        updates: dict = {}
        for tp in offsets:
            if not isinstance(tp, TopicPartition) or not isinstance(tp.offset, int) or tp.offset < 0:
                raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "send_offsets_to_transaction(): "
                                                f"every offset must be a TopicPartition with an offset >= 0, not {tp!r}"))
            updates.setdefault(tp.topic, {})[tp.partition] = {"offset": tp.offset, "metadata": tp.metadata,
                                                              "leader_epoch": tp.leader_epoch or -1}
        self._check_member(group_metadata, group)
        with self._locked(deadline_of(timeout), "send_offsets_to_transaction()") as coord:
            coord.expire()
            code = coord.add_offsets(self.txn_id, self.pid, self.epoch, group)
            if code == NONE and updates:
                code = coord.txn_offset_commit(self.txn_id, self.pid, self.epoch, group, updates)
        if code != NONE:
            raise self._fail(code, "send_offsets_to_transaction()")
        self._touched = True

    def _check_member(self, group_metadata: Any, group: str) -> None:
        """KIP-447: the consumer whose metadata this is must still be a member of the
        group's current generation, else the transaction must be aborted."""
        from ...server.txn_groups import local_member_problem

        generation = getattr(group_metadata, "generation_id", -1)
        member = getattr(group_metadata, "member_id", None)
        code = local_member_problem(self._producer._log.groups_dir, group,
                                    generation if isinstance(generation, int) else -1, member)
        if code != NONE:
            self._abortable = KafkaException(KafkaError(
                code, f"send_offsets_to_transaction(): {KafkaError._NAMES.get(code, code)}: consumer {member!r} "
                f"of generation {generation} is no longer a member of group {group!r}'s current generation "
                "(a rebalance happened): call abort_transaction(), poll() the consumer again and retry",
                txn_requires_abort=True))
            raise self._abortable

    def commit(self, timeout: float | None = None) -> None:
        deadline = deadline_of(timeout)
        self._usable("commit_transaction()")
        if self._abortable is not None:
            raise self._abortable
        with self._locked(deadline, "commit_transaction()"):
            pass   # the coordinator is free now: what is queued can be appended (not holding it)
        try:
            self._producer._send_all()
            self._producer._raise_pending()
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise
            self._abortable = self._needs_abort(exc)
            raise self._abortable from None
        except ArrowlogError as exc:
            self._abortable = self._needs_abort(exc)
            raise self._abortable from None
        self._end(True, deadline)
        self._producer._serve_reports()

    def abort(self, timeout: float | None = None) -> None:
        deadline = deadline_of(timeout)
        self._usable("abort_transaction()")
        self._producer._purge_queued("purged: the transaction was aborted")
        self._end(False, deadline)
        self._producer._serve_reports()

    def _end(self, commit: bool, deadline: float | None) -> None:
        what = "commit_transaction()" if commit else "abort_transaction()"
        with self._locked(deadline, what) as coord:
            coord.expire()
            if self._touched:
                code = coord.end_txn(self.txn_id, self.pid, self.epoch, commit)
                if code != NONE:
                    raise self._fail(code, what)
            else:
                self._check_not_fenced(coord, what)
        self.in_txn = False
        self._abortable = None
        self._park()

    def _needs_abort(self, exc: BaseException) -> KafkaException:
        return KafkaException(KafkaError(KafkaError._FAIL, f"commit_transaction(): a batch of the transaction "
                                         f"failed ({exc}): call abort_transaction()", txn_requires_abort=True))

    def _park(self) -> None:
        """Between transactions the producer has no topic slots, so produce() asks
        ``check_produce`` (through _open_slot) and is refused."""
        self._parked.update(self._producer._slots)
        self._producer._slots = {}

    def check_produce(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self.pid < 0:
            raise _state_error(f"transactional.id={self.txn_id!r}: call init_transactions(), then "
                               "begin_transaction(), before produce()")
        if not self.in_txn:
            raise _state_error(f"transactional.id={self.txn_id!r}: produce only between begin_transaction() and "
                               "commit_transaction() or abort_transaction()")

    # -- batches ----------------------------------------------------------------

    def append(self, topic: str, partition: int, log: Any, count: int, do_append: Any) -> int:
        """Append one batch of the transaction (``do_append()``), recorded in the state first."""
        if self._fatal is not None:
            raise self._fatal
        if not self.in_txn:
            raise _state_error(f"transactional.id={self.txn_id!r}: a batch was queued outside a transaction")
        coord = self._coordinator()
        with coord.locked():
            code = coord.check_batch(topic, partition, self.pid, self.epoch)
            if code != NONE:
                raise self._fail(code, f"appending to {topic}-{partition}")
            expected = log.high_watermark
            coord.begin_batch(topic, partition, self.pid, expected, count)
            base = None
            try:
                base = do_append()
            finally:
                coord.end_batch(topic, partition, self.pid, expected, base)
        self._touched = True
        return base

    def close(self) -> None:
        """The producer closes: an open transaction is aborted (nothing else would end it
        before its timeout), and the coordinator's files and its group journals are released."""
        try:
            if self.in_txn and self._fatal is None:
                self.abort()
        finally:
            coord, self._coord = self._coord, None
            if coord is not None:
                try:
                    coord.close()
                finally:
                    coord.offsets.close()
