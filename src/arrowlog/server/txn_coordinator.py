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

Persistence (``<data>/transactions/``, txn_files.py): ``journal``, one JSON line
per event written (page cache, survives kill -9) before what depends on it,
fsynced at every periodic flush of the server and at EndTxn; ``snapshot.json``
written atomically at the server's start-up and shutdown (and when the journal
passes 8 MiB), after which the journal is emptied. Every process of the
directory changes the state under its ``lock`` after reading what the others
wrote, so the server and in-process producers share one coordinator. A
transaction found half-ended (prepare written, its writer gone) is completed by
the next ``expire`` or start-up: writing its markers and offsets twice is harmless.

Thread-safety: every public method holds the coordinator's lock (an RLock, then
the directory's flock), so threads of one process may share it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import struct
import threading
import time

from . import errors as E
from .journal import Journaled
from .txn_files import SharedStateFiles

log = logging.getLogger("arrowlog.server")

# Kafka error codes of the transactional APIs.
INVALID_TXN_STATE = 48
INVALID_PRODUCER_ID_MAPPING = 49
INVALID_TRANSACTION_TIMEOUT = 50
CONCURRENT_TRANSACTIONS = 51
UNSTABLE_OFFSET_COMMIT = 88
PRODUCER_FENCED = 90

# Kafka's broker defaults.
TRANSACTION_MAX_TIMEOUT_MS = 900_000
# Kafka's transactional.id.expiration.ms: an id with no open transaction, unused this
# long, is forgotten (a producer that comes back with it starts at a new producer id).
TRANSACTIONAL_ID_EXPIRATION_MS = 7 * 24 * 3600 * 1000
CONTROL_HEADER = "arrowlog.control"
SNAPSHOT_VERSION = 1
JOURNAL_COMPACT_BYTES = 8 << 20

EMPTY, ONGOING, PREPARE_COMMIT, PREPARE_ABORT, COMPLETE_COMMIT, COMPLETE_ABORT = (
    "Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort")
OPEN_STATES = (ONGOING, PREPARE_COMMIT, PREPARE_ABORT)


def _now_ms() -> int:
    return int(time.time() * 1000)


def control_record_columns(commit: bool, coordinator_epoch: int = 0) -> dict:
    """The stored columns of one control record (a dict for pyarrow.RecordBatch.from_pydict)."""
    return {"key": [struct.pack(">hh", 0, 1 if commit else 0)],
            "value": [struct.pack(">hi", 0, coordinator_epoch)],
            "headers": [[{"key": CONTROL_HEADER, "value": b"COMMIT" if commit else b"ABORT"}]]}


def is_control_headers(headers) -> bool:
    """Whether a stored record's headers (list of {key, value}) mark it as a control record."""
    return bool(headers) and any(h.get("key") == CONTROL_HEADER for h in headers)


class Txn:
    __slots__ = ("txn_id", "pid", "epoch", "timeout_ms", "state", "partitions", "groups", "offsets",
                 "start_ms", "last_ms")

    def __init__(self, txn_id: str, pid: int, epoch: int, timeout_ms: int):
        self.txn_id = txn_id
        self.pid = pid
        self.epoch = epoch
        self.timeout_ms = timeout_ms
        self.state = EMPTY
        self.partitions: dict[tuple[str, int], list[list[int]]] = {}   # -> [[base, count], ...]
        self.groups: set[str] = set()
        self.offsets: dict[str, dict[str, dict[int, dict]]] = {}     # group -> topic -> p -> entry
        self.start_ms = 0
        self.last_ms = _now_ms()

    def to_json(self) -> dict:
        return {"id": self.txn_id, "pid": self.pid, "epoch": self.epoch, "timeout": self.timeout_ms,
                "state": self.state, "start": self.start_ms, "last": self.last_ms,
                "partitions": [[t, p, b] for (t, p), b in self.partitions.items()],
                "groups": sorted(self.groups),
                "offsets": {g: {t: {str(p): e for p, e in ps.items()} for t, ps in ts.items()}
                            for g, ts in self.offsets.items()}}

    @classmethod
    def from_json(cls, d: dict) -> Txn:
        t = cls(str(d["id"]), int(d["pid"]), int(d["epoch"]), int(d["timeout"]))
        t.state, t.start_ms, t.last_ms = str(d["state"]), int(d["start"]), int(d["last"])
        t.partitions = {(str(tp), int(p)): [[int(b), int(c)] for b, c in bs] for tp, p, bs in d["partitions"]}
        t.groups = set(d["groups"])
        t.offsets = {g: {tp: {int(p): e for p, e in ps.items()} for tp, ps in ts.items()}
                     for g, ts in d["offsets"].items()}
        return t

    def describe(self) -> dict:
        first = {f"{t}-{p}": min(b[0] for b in bs) for (t, p), bs in self.partitions.items() if bs}
        return {"transactional_id": self.txn_id, "producer_id": self.pid, "producer_epoch": self.epoch,
                "state": self.state, "timeout_ms": self.timeout_ms, "start_ms": self.start_ms,
                "partitions": sorted(f"{t}-{p}" for t, p in self.partitions), "first_offsets": first,
                "groups": sorted(self.groups)}


# In-process producers have no ProducerRegistry (the server owns it): their producer
# ids come from here, above any id the registry hands out (those start at the clock
# in milliseconds, below 2**46), so the two never collide.
LOCAL_PID_BASE = 1 << 62


def _exclusive(method):
    """Run ``method`` holding the coordinator's lock, on the state as every process left it."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.locked():
            return method(self, *args, **kwargs)
    return locked


class TransactionCoordinator(Journaled):
    """The transactions of one data directory. ``partition(topic, index)`` returns
    (PartitionLog, code, msg) like Broker._partition; ``appended(pl)`` is told about
    every marker written; ``offsets`` is the GroupOffsetStore; ``producers`` the
    server's ProducerRegistry (None in a library process). ``owner``: the server,
    which checks the state against the logs and compacts it at start-up and close;
    ``read_only``: a look from outside (nothing written, nothing created)."""

    def __init__(self, data_dir: str | None, producers, offsets, partition, appended, *, read_only: bool = False,
                 owner: bool = True):
        self.producers = producers
        self.offsets = offsets
        self._partition = partition
        self._appended = appended
        self._owner = owner and not read_only
        self.txns: dict[str, Txn] = {}
        self._by_pid: dict[int, str] = {}
        # per partition: base offsets of aborted batches, control record offsets -> (pid, epoch)
        self.aborted: dict[tuple[str, int], set[int]] = {}
        self.controls: dict[tuple[str, int], dict[int, tuple[int, int]]] = {}
        self._dir = os.path.join(data_dir, "transactions") if data_dir is not None else None
        self._files: SharedStateFiles | None = None
        self._firsts: dict[tuple[str, int], int] | None = None   # open transactions' first offsets, cached
        self._mutex = threading.RLock()
        self._depth = 0
        if self._dir is not None:
            self._load(read_only)

    # ------------------------------------------------------------ persistence
    def _load(self, read_only: bool) -> None:
        """Read the state. The server (``owner``) then forgets what the logs lost,
        compacts, and completes the transactions found half-ended."""
        if read_only and not os.path.isdir(self._dir):
            return
        self._files = SharedStateFiles(self._dir, "transaction state", JOURNAL_COMPACT_BYTES, writable=not read_only)
        if read_only:
            self._refresh()
            return
        with self.locked():
            if self._owner:
                self._forget_beyond_logs()
                self.compact()
                for txn in list(self.txns.values()):   # half-ended when their writer died: end them now
                    if txn.state in (PREPARE_COMMIT, PREPARE_ABORT):
                        log.info("completing transaction %r left in %s", txn.txn_id, txn.state)
                        self._complete(txn)

    @contextlib.contextmanager
    def locked(self):
        """Hold the state exclusively (this process's threads, then every process of the
        directory), caught up with what the others wrote. Reentrant."""
        with self._mutex:
            if self._depth == 0 and self._files is not None:
                with self._files.locked(exclusive=True):
                    self._depth = 1
                    try:
                        self._catch_up()
                        yield
                    finally:
                        self._depth = 0
                return
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1

    def _catch_up(self) -> None:
        if self._files.catch_up(self._reset, self._apply_snapshot, self._replay, "open transactions are forgotten"):
            self._firsts = None

    def _refresh(self) -> None:
        """For readers: read what other processes wrote, if they wrote anything."""
        if self._files is None or not self._files.changed():
            return
        with self._mutex:
            if self._depth:
                return   # this thread holds the state: it is current
            with self._files.locked(exclusive=False):
                self._catch_up()

    def _reset(self) -> None:
        self.txns, self._by_pid, self.aborted, self.controls = {}, {}, {}, {}

    def _apply_snapshot(self, snap: dict) -> None:
        if snap.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {snap.get('version')!r}, expected {SNAPSHOT_VERSION}")
        for d in snap["txns"]:
            self._put(Txn.from_json(d))
        for t, p, bases in snap["aborted"]:
            self.aborted[(str(t), int(p))] = {int(b) for b in bases}
        for t, p, marks in snap["controls"]:
            self.controls[(str(t), int(p))] = {int(o): (int(pid), int(ep)) for o, pid, ep in marks}

    def _replay(self, ev: dict) -> None:
        if "x" in ev:
            self._put(Txn.from_json(ev["x"]))
        elif "a" in ev:
            txn_id, topic, p, base, count = ev["a"]
            txn = self.txns[txn_id]
            txn.partitions.setdefault((topic, int(p)), []).append([int(base), int(count)])
        elif "m" in ev:
            txn_id, topic, p, old, new = ev["m"]
            self._move_batch(txn_id, topic, int(p), int(old), None if new is None else int(new))
        elif "ab" in ev:
            topic, p, bases = ev["ab"]
            self.aborted.setdefault((topic, int(p)), set()).update(int(b) for b in bases)
        elif "ua" in ev:
            topic, p, base = ev["ua"]
            self.aborted.get((topic, int(p)), set()).discard(int(base))
        elif "c" in ev:
            topic, p, off, pid, ep = ev["c"]
            self.controls.setdefault((topic, int(p)), {})[int(off)] = (int(pid), int(ep))
        elif "f" in ev:
            self._drop_topic(ev["f"])

    def _forget_beyond_logs(self) -> None:
        """At start-up: forget offsets at or beyond a partition's end. After a power loss the
        log may have lost batches and markers the journal kept; their offsets will be
        reused by new records, which must not be taken for markers or aborted batches."""
        if self._partition is None:
            return
        ends: dict[tuple[str, int], int | None] = {}

        def end(key):
            if key not in ends:
                pl, _, _ = self._partition(*key)
                ends[key] = None if pl is None else pl.high_watermark
            return ends[key]

        lost = 0
        for key in list(self.aborted):
            hwm = end(key)
            kept = {o for o in self.aborted[key] if hwm is not None and o < hwm}
            lost += len(self.aborted[key]) - len(kept)
            self.aborted[key] = kept
        for key in list(self.controls):
            hwm = end(key)
            kept_marks = {o: v for o, v in self.controls[key].items() if hwm is not None and o < hwm}
            lost += len(self.controls[key]) - len(kept_marks)
            self.controls[key] = kept_marks
        for txn in self.txns.values():
            for key, batches in txn.partitions.items():
                hwm = end(key)
                kept_batches = [b for b in batches if hwm is not None and b[0] < hwm]
                lost += len(batches) - len(kept_batches)
                txn.partitions[key] = kept_batches
        if lost:
            log.warning("transaction state: %d batch(es) or marker(s) beyond the end of their partition "
                        "(lost in a crash) forgotten", lost)

    @_exclusive
    def compact(self) -> None:
        """Forget expired transactional ids and what the log no longer holds (markers and
        aborted batches below a partition's log start), then write the snapshot."""
        horizon = _now_ms() - TRANSACTIONAL_ID_EXPIRATION_MS
        for txn in [t for t in self.txns.values() if t.state not in OPEN_STATES and t.last_ms < horizon]:
            del self.txns[txn.txn_id]
            if self._by_pid.get(txn.pid) == txn.txn_id:
                del self._by_pid[txn.pid]
        if self._partition is not None:
            for index in (self.aborted, self.controls):
                for key in list(index):
                    pl, _, _ = self._partition(*key)
                    if pl is None:
                        del index[key]
                        continue
                    start = pl.log_start_offset
                    gone = [o for o in index[key] if o < start]
                    for o in gone:
                        if isinstance(index[key], dict):
                            del index[key][o]
                        else:
                            index[key].discard(o)
        self._firsts = None
        super().compact()

    def _snapshot(self) -> dict:
        return {"version": SNAPSHOT_VERSION, "txns": [t.to_json() for t in self.txns.values()],
                "aborted": [[t, p, sorted(b)] for (t, p), b in self.aborted.items()],
                "controls": [[t, p, [[o, *v] for o, v in sorted(m.items())]] for (t, p), m in self.controls.items()]}

    def _journal(self, event: dict, fsync: bool = False) -> None:
        self._firsts = None   # every change is journaled: the cached first offsets may be stale
        super()._journal(event, fsync)

    def _save(self, txn: Txn, fsync: bool = False) -> None:
        txn.last_ms = _now_ms()
        self._journal({"x": txn.to_json()}, fsync)

    def close(self) -> None:
        """Compact (the server) and release the files."""
        if self._owner:
            self._compact_logged()
        if self._files is not None:
            self._files.close()

    def _put(self, txn: Txn) -> None:
        old = self.txns.get(txn.txn_id)
        if old is not None and self._by_pid.get(old.pid) == txn.txn_id:
            del self._by_pid[old.pid]
        self.txns[txn.txn_id] = txn
        self._by_pid[txn.pid] = txn.txn_id

    # ------------------------------------------------------------ checks
    def _check(self, txn_id: str | None, pid: int, epoch: int) -> tuple[int, Txn | None]:
        txn = self.txns.get(txn_id or "")
        if txn is None or txn.pid != pid:
            return INVALID_PRODUCER_ID_MAPPING, None
        if epoch < txn.epoch:
            return PRODUCER_FENCED, None
        if epoch > txn.epoch:
            return E.INVALID_PRODUCER_EPOCH, None
        return E.NONE, txn

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
        code, txn = self._check(txn_id, pid, epoch)
        if code == E.NONE:
            code = self._begin(txn)
        out = {}
        missing = [tp for tp in partitions if not exists(*tp)]
        for tp in partitions:
            if code != E.NONE:
                out[tp] = code
            elif missing:   # Kafka adds none when one is unknown
                out[tp] = E.UNKNOWN_TOPIC_OR_PARTITION if tp in missing else 55  # OPERATION_NOT_ATTEMPTED
            else:
                txn.partitions.setdefault(tp, [])
                out[tp] = E.NONE
        if code == E.NONE and not missing:
            self._save(txn)
        return out

    @_exclusive
    def add_offsets(self, txn_id, pid, epoch, group: str) -> int:
        code, txn = self._check(txn_id, pid, epoch)
        if code == E.NONE:
            code = self._begin(txn)
        if code == E.NONE:
            txn.groups.add(group)
            self._save(txn)
        return code

    @_exclusive
    def txn_offset_commit(self, txn_id, pid, epoch, group: str, updates: dict) -> int:
        """Stage ``{topic: {partition: {"offset", "metadata", "leader_epoch"}}}`` for ``group``."""
        code, txn = self._check(txn_id, pid, epoch)
        if code == E.NONE and (txn.state != ONGOING or group not in txn.groups):
            code = INVALID_TXN_STATE
        if code == E.NONE:
            staged = txn.offsets.setdefault(group, {})
            for topic, parts in updates.items():
                staged.setdefault(topic, {}).update(parts)
            self._save(txn)
        return code

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

    def _move_batch(self, txn_id: str, topic: str, partition: int, old: int, new: int | None) -> None:
        batches = self.txns[txn_id].partitions.get((topic, partition), [])
        for i, (b, c) in enumerate(batches):
            if b == old:
                if new is None:
                    del batches[i]
                else:
                    batches[i] = [new, c]
                return

    # ------------------------------------------------------------ EndTxn
    @_exclusive
    def end_txn(self, txn_id, pid, epoch, commit: bool) -> int:
        code, txn = self._check(txn_id, pid, epoch)
        if code != E.NONE:
            return code
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
            pl, pcode, msg = self._partition(topic, p)
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
    def _write_marker(pl, commit: bool) -> int:
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

    # ------------------------------------------------------------ readers
    def last_stable_offset(self, topic: str, partition: int, high_watermark: int) -> int:
        """The first offset of the partition's oldest open transaction, else ``high_watermark``
        (which must have been read before: the state is read again if it changed)."""
        self._refresh()
        if self._firsts is None:
            firsts: dict[tuple[str, int], int] = {}
            for txn in self.txns.values():
                if txn.state in OPEN_STATES:
                    for key, batches in txn.partitions.items():
                        if batches:
                            first = min(b for b, _ in batches)
                            firsts[key] = min(first, firsts.get(key, first))
            self._firsts = firsts
        first = self._firsts.get((topic, partition))
        return high_watermark if first is None else min(first, high_watermark)

    def mark_unstable(self, group: str, topics: list) -> None:
        """OffsetFetch with ``require_stable`` (KIP-447): a partition whose offsets an open
        transaction has staged for ``group`` answers UNSTABLE_OFFSET_COMMIT (retriable), so
        a consumer does not start from an offset that transaction is about to replace."""
        self._refresh()
        pending = {(t, p) for txn in self.txns.values() if txn.state in OPEN_STATES
                   for t, parts in txn.offsets.get(group, {}).items() for p in parts}
        if not pending:
            return
        for t in topics:
            for part in t["partitions"]:
                if (t["name"], part["partition_index"]) in pending and part["error_code"] == E.NONE:
                    part["error_code"] = UNSTABLE_OFFSET_COMMIT

    def is_aborted(self, topic: str, partition: int, base_offset: int) -> bool:
        s = self.aborted.get((topic, partition))
        return bool(s) and base_offset in s

    def control_at(self, topic: str, partition: int, offset: int) -> tuple[int, int] | None:
        m = self.controls.get((topic, partition))
        return m.get(offset) if m else None

    @_exclusive
    def forget_topic(self, topic: str) -> None:
        self._drop_topic(topic)
        self._journal({"f": topic})

    def _drop_topic(self, topic: str) -> None:
        for d in (self.aborted, self.controls):
            for key in [k for k in d if k[0] == topic]:
                del d[key]
        for txn in self.txns.values():
            for key in [k for k in txn.partitions if k[0] == topic]:
                del txn.partitions[key]

    def describe(self) -> list[dict]:
        self._refresh()
        return [t.describe() for t in sorted(self.txns.values(), key=lambda t: t.txn_id)]


