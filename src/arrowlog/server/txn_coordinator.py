"""The transaction coordinator of one data directory: the state machine of Kafka
transactions and its durable state, used by ``arrowlog serve``
(server/transactions.py: the wire handlers) and by transactional in-process
producers (backends/local/transactions.py) alike.

A ``transactional.id`` maps to one producer id and its epoch. InitProducerId
bumps the epoch (fencing the previous producer) and aborts the transaction the
previous one left open. AddPartitionsToTxn / AddOffsetsToTxn / TxnOffsetCommit
record what the transaction touches; each transactional batch's offsets are
recorded (``begin_batch`` before the append, ``end_batch`` after); EndTxn writes
one control record into every partition of the transaction and, on commit,
applies the staged group offsets. A transaction open longer than its
``transaction.timeout.ms`` is aborted and its producer's epoch bumped (``expire``).

Control records (docs/FORMAT.md): one stored record in a batch of its own, key
Kafka's control key (int16 version 0, int16 type: 0 ABORT, 1 COMMIT), value
int16 version 0 + int32 coordinator epoch, and the header ``arrowlog.control``
(``COMMIT`` or ``ABORT``), which readers use to skip it.

Isolation: aborted batches stay in the log; ``read_committed`` readers leave them
out (their base offsets are here) and stop at the last stable offset, the first
offset of the oldest open transaction on the partition (the high watermark when
none is open).

The state and its persistence are txn_state.py: every process of the directory
changes it under its lock after reading what the others wrote, so the server
and in-process producers share one coordinator. A transaction found half-ended
(prepare written, its writer gone) is completed by the next ``expire`` or the
server's start-up: writing its markers and offsets twice is harmless.

Thread-safety: every public method holds the coordinator's lock (an RLock, then
the directory's flock), so threads of one process may share it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import errors as E
from .txn_state import (
    COMPLETE_ABORT,
    COMPLETE_COMMIT,
    CONCURRENT_TRANSACTIONS,
    INVALID_PRODUCER_ID_MAPPING,
    INVALID_TRANSACTION_TIMEOUT,
    INVALID_TXN_STATE,
    ONGOING,
    OPEN_STATES,
    PREPARE_ABORT,
    PREPARE_COMMIT,
    PRODUCER_FENCED,
    TRANSACTION_MAX_TIMEOUT_MS,
    PartitionLookup,
    Txn,
    TxnState,
    _exclusive,
    _now_ms,
    control_record_columns,
)

if TYPE_CHECKING:
    from ..storage.partition import PartitionLog

log = logging.getLogger("arrowlog.server")

# In-process producers have no ProducerRegistry (the server owns it): their producer
# ids come from here, above any id the registry hands out (those start at the clock
# in milliseconds, below 2**46), so the two never collide.
LOCAL_PID_BASE = 1 << 62
OPERATION_NOT_ATTEMPTED = 55   # Kafka's code for the partitions of a request refused for another one


class TransactionCoordinator(TxnState):
    """The transactions of one data directory. ``partition(topic, index)`` returns
    (PartitionLog, code, msg) like Broker._partition; ``appended(pl)`` is told about
    every marker written; ``offsets`` is the GroupOffsetStore; ``producers`` the
    server's ProducerRegistry (None in a library process). ``owner``: the server,
    which checks the state against the logs and compacts it at start-up and close,
    and completes the transactions found half-ended; ``read_only``: a look from outside."""

    def __init__(self, data_dir: str | None, producers, offsets, partition: PartitionLookup, appended, *,
                 read_only: bool = False, owner: bool = True):
        self.producers = producers
        self.offsets = offsets
        self._logs = partition   # the markers' partitions (TxnState's lookup may be None: this one may not)
        self._appended = appended
        super().__init__(data_dir, partition, read_only=read_only, owner=owner)
        if self._owner:
            with self.locked():
                for txn in list(self.txns.values()):   # half-ended when their writer died: end them now
                    if txn.state in (PREPARE_COMMIT, PREPARE_ABORT):
                        log.info("completing transaction %r left in %s", txn.txn_id, txn.state)
                        self._complete(txn)

    # ------------------------------------------------------------ checks
    def _check(self, txn_id: str | None, pid: int, epoch: int) -> Txn | int:
        """The transaction of ``txn_id`` if ``pid`` and ``epoch`` are its producer's, else the error code."""
        txn = self.txns.get(txn_id or "")
        if txn is None or txn.pid != pid:
            return INVALID_PRODUCER_ID_MAPPING
        if epoch < txn.epoch:
            return PRODUCER_FENCED
        if epoch > txn.epoch:
            return E.INVALID_PRODUCER_EPOCH
        return txn

    def _begin(self, txn: Txn) -> int:
        if txn.state in (PREPARE_COMMIT, PREPARE_ABORT):
            return CONCURRENT_TRANSACTIONS
        if txn.state != ONGOING:
            txn.state, txn.start_ms = ONGOING, _now_ms()
            txn.partitions, txn.groups, txn.offsets = {}, set(), {}
        return E.NONE

    # ------------------------------------------------------------ InitProducerId
    @_exclusive
    def init_producer_id(self, txn_id: str, timeout_ms: int, pid: int = -1, epoch: int = -1) -> tuple[int, int, int]:
        """(error_code, producer_id, epoch) for InitProducerId with a transactional id."""
        if not txn_id:
            return E.INVALID_REQUEST, -1, -1
        if not 0 < timeout_ms <= TRANSACTION_MAX_TIMEOUT_MS:
            return INVALID_TRANSACTION_TIMEOUT, -1, -1
        txn = self.txns.get(txn_id)
        if txn is not None and pid >= 0 and (pid != txn.pid or epoch != txn.epoch):
            return PRODUCER_FENCED, -1, -1
        if txn is not None and txn.state in OPEN_STATES:
            log.info("transaction %r (producer %d epoch %d) aborted: a producer with its id started",
                     txn_id, txn.pid, txn.epoch)
            if txn.state == ONGOING:
                txn.state = PREPARE_ABORT
            self._complete(txn)
        code, new_pid, new_epoch = self._next_producer(txn)
        if code != E.NONE:
            return code, -1, -1
        fresh = Txn(txn_id, new_pid, new_epoch, timeout_ms)
        self._put(fresh)
        self._save(fresh)
        return E.NONE, new_pid, new_epoch

    def _next_producer(self, txn: Txn | None) -> tuple[int, int, int]:
        """(error_code, producer id, epoch) for the next producer of ``txn``'s id: the
        same producer id one epoch up, or (a new id, or the epoch at its end) a new one."""
        if txn is not None and txn.epoch < 0x7FFE:
            if self.producers is not None:
                code, pid, epoch = self.producers.init_producer_id(txn.pid, txn.epoch)
                if code == E.NONE:
                    return code, pid, epoch
            return E.NONE, txn.pid, txn.epoch + 1   # no registry, or it forgot or disagrees: from ours
        if self.producers is not None:
            return self.producers.init_producer_id(-1, -1)
        local = [t.pid + 1 for t in self.txns.values() if t.pid >= LOCAL_PID_BASE]
        return E.NONE, max([LOCAL_PID_BASE + _now_ms(), *local]), 0

    # ------------------------------------------------------------ AddPartitionsToTxn / AddOffsetsToTxn
    @_exclusive
    def add_partitions(self, txn_id, pid, epoch, partitions: list[tuple[str, int]], exists) -> dict:
        """{(topic, partition): error_code}; ``exists(topic, p)`` says whether a partition exists."""
        txn = self._check(txn_id, pid, epoch)
        if isinstance(txn, int):
            return dict.fromkeys(partitions, txn)
        missing = [tp for tp in partitions if not exists(*tp)]
        if missing:   # Kafka adds none when one is unknown, and begins nothing
            return {tp: E.UNKNOWN_TOPIC_OR_PARTITION if tp in missing else OPERATION_NOT_ATTEMPTED for tp in partitions}
        code = self._begin(txn)
        if code != E.NONE:
            return dict.fromkeys(partitions, code)
        for tp in partitions:
            txn.partitions.setdefault(tp, [])
        self._save(txn)
        return dict.fromkeys(partitions, E.NONE)

    @_exclusive
    def add_offsets(self, txn_id, pid, epoch, group: str) -> int:
        txn = self._check(txn_id, pid, epoch)
        if isinstance(txn, int):
            return txn
        code = self._begin(txn)
        if code != E.NONE:
            return code
        txn.groups.add(group)
        self._save(txn)
        return E.NONE

    @_exclusive
    def txn_offset_commit(self, txn_id, pid, epoch, group: str, updates: dict) -> int:
        """Stage ``{topic: {partition: {"offset", "metadata", "leader_epoch"}}}`` for ``group``."""
        txn = self._check(txn_id, pid, epoch)
        if isinstance(txn, int):
            return txn
        if txn.state != ONGOING or group not in txn.groups:
            return INVALID_TXN_STATE
        staged = txn.offsets.setdefault(group, {})
        for topic, parts in updates.items():
            staged.setdefault(topic, {}).update(parts)
        self._save(txn)
        return E.NONE

    # ------------------------------------------------------------ Produce
    @_exclusive
    def check_batch(self, topic: str, partition: int, pid: int, epoch: int) -> int:
        """Error code for a transactional batch about to be appended. A partition not yet
        added to an ongoing transaction is added (KIP-890's implicit AddPartitionsToTxn)."""
        txn = self.txns.get(self._by_pid.get(pid, ""))
        if txn is None or txn.pid != pid:
            return INVALID_PRODUCER_ID_MAPPING
        if epoch != txn.epoch:
            return E.INVALID_PRODUCER_EPOCH
        if txn.state != ONGOING:
            if txn.state in (PREPARE_COMMIT, PREPARE_ABORT):
                return CONCURRENT_TRANSACTIONS
            self._begin(txn)
            self._save(txn)
        if (topic, partition) not in txn.partitions:
            txn.partitions[(topic, partition)] = []
            self._save(txn)
        return E.NONE

    @_exclusive
    def begin_batch(self, topic: str, partition: int, pid: int, expected_base: int, count: int) -> None:
        """A transactional batch is about to be appended, at ``expected_base`` if nothing else
        appends first. Journaled before the append: a reader of the directory that sees the
        batch in the log finds it here too, at that offset or before (the log only grows),
        so the last stable offset it computes is never beyond the batch."""
        txn = self.txns.get(self._by_pid.get(pid, ""))
        if txn is None:
            return
        txn.partitions.setdefault((topic, partition), []).append([expected_base, count])
        self._journal({"a": [txn.txn_id, topic, partition, expected_base, count]})

    @_exclusive
    def end_batch(self, topic: str, partition: int, pid: int, expected_base: int, base: int | None) -> None:
        """The batch ``begin_batch`` announced was appended at ``base`` (None: it was not).
        Another process may have aborted its transaction (a timeout, a fencing producer)
        while it was appended: it was counted as aborted at ``expected_base``, and is
        then moved there too."""
        if base == expected_base:
            return
        txn = self.txns.get(self._by_pid.get(pid, ""))
        key = (topic, partition)
        if txn is not None and txn.state == ONGOING and any(b == expected_base for b, _ in txn.partitions.get(key, [])):
            self._move_batch(txn.txn_id, topic, partition, expected_base, base)
            self._journal({"m": [txn.txn_id, topic, partition, expected_base, base]})
        elif expected_base in self.aborted.get(key, ()):
            self.aborted[key].discard(expected_base)
            self._journal({"ua": [topic, partition, expected_base]})
            if base is not None:
                self.aborted[key].add(base)
                self._journal({"ab": [topic, partition, [base]]})

    # ------------------------------------------------------------ EndTxn
    @_exclusive
    def end_txn(self, txn_id, pid, epoch, commit: bool) -> int:
        txn = self._check(txn_id, pid, epoch)
        if isinstance(txn, int):
            return txn
        if txn.state == (COMPLETE_COMMIT if commit else COMPLETE_ABORT):
            return E.NONE   # a retry of the EndTxn that did it
        if txn.state == (PREPARE_COMMIT if commit else PREPARE_ABORT):
            return self._complete(txn)   # a retry after its markers or offsets failed
        if txn.state != ONGOING:
            return INVALID_TXN_STATE
        txn.state = PREPARE_COMMIT if commit else PREPARE_ABORT
        self._save(txn, fsync=True)
        return self._complete(txn)

    @_exclusive
    def abort(self, txn_id: str, fence: bool = True) -> bool:
        """Abort ``txn_id``'s open transaction (the CLI and the timeout); with ``fence``
        the producer's epoch is bumped so the producer that opened it cannot go on."""
        txn = self.txns.get(txn_id)
        if txn is None or txn.state not in OPEN_STATES:
            return False
        if txn.state == ONGOING:
            txn.state = PREPARE_ABORT
        self._save(txn, fsync=True)
        self._complete(txn)
        if fence:
            _, pid, txn.epoch = self._next_producer(txn)
            if pid != txn.pid:   # the epoch ran out: a new producer id
                del self._by_pid[txn.pid]
                txn.pid = pid
                self._put(txn)
            self._save(txn)
        return True

    def _complete(self, txn: Txn) -> int:
        commit = txn.state == PREPARE_COMMIT
        code = E.NONE
        for (topic, p), batches in txn.partitions.items():
            pl, _, msg = self._logs(topic, p)
            if pl is None:
                log.warning("transaction %r: cannot write its marker to %s-%d: %s", txn.txn_id, topic, p, msg)
                continue
            if not commit and batches:
                bases = [b for b, _ in batches]
                self.aborted.setdefault((topic, p), set()).update(bases)
                self._journal({"ab": [topic, p, bases]})
            try:
                off = self._write_marker(pl, commit)
            except Exception as exc:  # storage refused: the markers are retried after a restart
                log.error("transaction %r: writing its marker to %s-%d failed: %s", txn.txn_id, topic, p, exc)
                code = E.KAFKA_STORAGE_ERROR
                continue
            self.controls.setdefault((topic, p), {})[off] = (txn.pid, txn.epoch)
            self._journal({"c": [topic, p, off, txn.pid, txn.epoch]})
            self._appended(pl)
        if code != E.NONE:
            return code
        if commit:
            for group, updates in txn.offsets.items():
                try:
                    self.offsets.commit(group, updates)
                except OSError as exc:
                    log.error("transaction %r: committing the offsets of group %s failed: %s",
                              txn.txn_id, group, exc)
                    return E.COORDINATOR_NOT_AVAILABLE
        txn.state = COMPLETE_COMMIT if commit else COMPLETE_ABORT
        self._save(txn, fsync=True)
        return E.NONE

    @staticmethod
    def _write_marker(pl: PartitionLog, commit: bool) -> int:
        import pyarrow as pa

        from arrowlog.schema import PRODUCE_SCHEMA

        cols = control_record_columns(commit)
        cols["timestamp"] = [_now_ms()]
        batch = pa.RecordBatch.from_pydict(cols, schema=PRODUCE_SCHEMA)
        return pl.append(batch)

    # ------------------------------------------------------------ timeouts
    @_exclusive
    def expire(self, now_ms: int | None = None) -> list[str]:
        """Abort (and fence) every transaction open longer than its timeout."""
        now_ms = _now_ms() if now_ms is None else now_ms
        done = []
        for txn in list(self.txns.values()):
            if txn.state == ONGOING and now_ms - txn.start_ms > txn.timeout_ms:
                log.info("transaction %r (producer %d) timed out after %d ms: aborted", txn.txn_id, txn.pid,
                         txn.timeout_ms)
                self.abort(txn.txn_id, fence=True)
                done.append(txn.txn_id)
            elif txn.state in (PREPARE_COMMIT, PREPARE_ABORT):   # its writer died ending it (or storage failed)
                log.info("completing transaction %r left in %s", txn.txn_id, txn.state)
                self._complete(txn)
                done.append(txn.txn_id)
        return done

    @_exclusive
    def forget_topic(self, topic: str) -> None:
        self._drop_topic(topic)
        self._journal({"f": topic})

