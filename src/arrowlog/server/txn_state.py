"""The transaction state of one data directory (``<data>/transactions/``) and what
readers ask of it: the transactions, the aborted batches and the markers of each
partition, the last stable offset. server/txn_coordinator.py changes it (the
transaction coordinator of ``arrowlog serve`` and of in-process producers alike);
TransactionView (arrowlog/txn.py) and ``arrowlog txn list`` read it.

Persistence (txn_files.py): ``journal``, one JSON line per event written (page
cache, survives kill -9) before what depends on it, fsynced at every periodic
flush of the server and at the end of a transaction; ``snapshot.json`` written
atomically at the server's start-up and shutdown (and when the journal passes
8 MiB), after which the journal is emptied. Every process of the directory
changes the state under its ``lock`` after reading what the others wrote
(``locked()``); a reader reads again when the files changed (``_refresh``).

Thread-safety: ``locked()`` holds an RLock, then the directory's flock.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import struct
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable

from .journal import Journaled
from .txn_files import SharedStateFiles

if TYPE_CHECKING:
    from ..storage.partition import PartitionLog

# partition(topic, index) -> (its PartitionLog, NONE, None), or (None, error code, message)
PartitionLookup = Callable[[str, int], "tuple[PartitionLog | None, int, str | None]"]

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


def _per_log(lookup: PartitionLookup, keys: Iterable[tuple[str, int]],
             of: Callable[[PartitionLog], int]) -> dict[tuple[str, int], int | None]:
    """``of(log)`` for the partition log of each of ``keys``; None where there is none."""
    out: dict[tuple[str, int], int | None] = {}
    for key in keys:
        pl, _, _ = lookup(*key)
        out[key] = None if pl is None else of(pl)
    return out


def _exclusive(method):
    """Run ``method`` holding the coordinator's lock, on the state as every process left it."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.locked():
            return method(self, *args, **kwargs)
    return locked


class TxnState(Journaled):
    """The transaction state of the directory ``data_dir`` (None: in memory only).
    ``partition(topic, index)`` returns (PartitionLog, code, msg), for the log start and
    end offsets the server checks the state against; ``owner``: the server, which does
    that and compacts at start-up and close; ``read_only``: a look from outside
    (nothing written, nothing created)."""

    def __init__(self, data_dir: str | None, partition: PartitionLookup | None = None, *, read_only: bool = False,
                 owner: bool = True):
        self._partition = partition
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
        # per partition: the high watermark at which nothing was open there (the last stable
        # offset was the high watermark); while it has not moved, nothing that matters to a
        # reader of the partition changed (a transactional batch or a marker appends to it)
        self._settled: dict[tuple[str, int], int] = {}
        if self._dir is not None:
            self._load(self._dir, read_only)

    # ------------------------------------------------------------ persistence
    def _load(self, state_dir: str, read_only: bool) -> None:
        """Read the state. The server (``owner``) then forgets what the logs lost and compacts."""
        if read_only and not os.path.isdir(state_dir):
            return
        self._files = SharedStateFiles(state_dir, "transaction state", JOURNAL_COMPACT_BYTES, writable=not read_only)
        if read_only:
            self._refresh()
            return
        if self._owner:
            with self.locked():
                self._forget_beyond_logs()
                self.compact()

    @contextlib.contextmanager
    def locked(self, deadline: float | None = None):
        """Hold the state exclusively (this process's threads, then every process of the
        directory), caught up with what the others wrote. Reentrant. ``deadline``
        (time.monotonic()): TimeoutError if it cannot be had by then; None: wait."""
        if not self._mutex.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
            raise TimeoutError("the transaction state is held by another thread of this process")
        try:
            if self._depth == 0 and self._files is not None:
                with self._files.locked(exclusive=True, deadline=deadline):
                    self._depth = 1
                    try:
                        self._catch_up(self._files)
                        yield
                    finally:
                        self._depth = 0
                return
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
        finally:
            self._mutex.release()

    def _catch_up(self, files: SharedStateFiles) -> None:
        if files.catch_up(self._reset, self._apply_snapshot, self._replay, "open transactions are forgotten"):
            self._firsts = None
            self._settled = {}

    def _refresh(self) -> None:
        """For readers: read what other processes wrote, if they wrote anything."""
        if self._files is None or not self._files.changed():
            return
        with self._mutex:
            if self._depth:
                return   # this thread holds the state: it is current
            with self._files.locked(exclusive=False):
                self._catch_up(self._files)

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
        keys = {*self.aborted, *self.controls, *(key for txn in self.txns.values() for key in txn.partitions)}
        ends = _per_log(self._partition, keys, lambda pl: pl.high_watermark)
        lost = 0
        for key in list(self.aborted):
            hwm = ends[key]
            kept = {o for o in self.aborted[key] if hwm is not None and o < hwm}
            lost += len(self.aborted[key]) - len(kept)
            self.aborted[key] = kept
        for key in list(self.controls):
            hwm = ends[key]
            kept_marks = {o: v for o, v in self.controls[key].items() if hwm is not None and o < hwm}
            lost += len(self.controls[key]) - len(kept_marks)
            self.controls[key] = kept_marks
        for txn in self.txns.values():
            for key, batches in txn.partitions.items():
                hwm = ends[key]
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
            starts = _per_log(self._partition, {*self.aborted, *self.controls}, lambda pl: pl.log_start_offset)
            for key in list(self.aborted):
                start = starts[key]
                if start is None:
                    del self.aborted[key]
                else:
                    self.aborted[key] = {o for o in self.aborted[key] if o >= start}
            for key in list(self.controls):
                start = starts[key]
                if start is None:
                    del self.controls[key]
                else:
                    self.controls[key] = {o: v for o, v in self.controls[key].items() if o >= start}
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

    def _move_batch(self, txn_id: str, topic: str, partition: int, old: int, new: int | None) -> None:
        batches = self.txns[txn_id].partitions.get((topic, partition), [])
        for i, (b, c) in enumerate(batches):
            if b == old:
                if new is None:
                    del batches[i]
                else:
                    batches[i] = [new, c]
                return

    # ------------------------------------------------------------ readers
    def last_stable_offset(self, topic: str, partition: int, high_watermark: int) -> int:
        """The first offset of the partition's oldest open transaction, else ``high_watermark``
        (which must have been read before: the state is read again if it changed)."""
        key = (topic, partition)
        if self._settled.get(key) == high_watermark:
            return high_watermark
        self._refresh()
        if self._firsts is None:
            self._firsts = self._open_firsts()
        first = self._firsts.get(key)
        if first is None:
            self._settled[key] = high_watermark
            return high_watermark
        self._settled.pop(key, None)
        return min(first, high_watermark)

    def _open_firsts(self) -> dict[tuple[str, int], int]:
        """Per partition, the first offset of its oldest open transaction."""
        firsts: dict[tuple[str, int], int] = {}
        for txn in self.txns.values():
            if txn.state in OPEN_STATES:
                for key, batches in txn.partitions.items():
                    if batches:
                        first = min(b for b, _ in batches)
                        firsts[key] = min(first, firsts.get(key, first))
        return firsts

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
                if (t["name"], part["partition_index"]) in pending and part["error_code"] == 0:   # NONE
                    part["error_code"] = UNSTABLE_OFFSET_COMMIT

    def is_aborted(self, topic: str, partition: int, base_offset: int) -> bool:
        s = self.aborted.get((topic, partition))
        return s is not None and base_offset in s

    def control_at(self, topic: str, partition: int, offset: int) -> tuple[int, int] | None:
        m = self.controls.get((topic, partition))
        return m.get(offset) if m else None

    def _drop_topic(self, topic: str) -> None:
        self._settled = {k: v for k, v in self._settled.items() if k[0] != topic}
        for d in (self.aborted, self.controls):
            for key in [k for k in d if k[0] == topic]:
                del d[key]
        for txn in self.txns.values():
            for key in [k for k in txn.partitions if k[0] == topic]:
                del txn.partitions[key]

    def describe(self) -> list[dict]:
        self._refresh()
        return [t.describe() for t in sorted(self.txns.values(), key=lambda t: t.txn_id)]


