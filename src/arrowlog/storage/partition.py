"""PartitionLog: one partition's ordered, durable, append-only log.

A partition is a directory holding its segments (see segment.py) and:

    partition.state   the published state, shared by every process through
                      a mapping (see _native/core/state.pxi)
    append.lock       flock()ed exclusively around every append, roll,
                      retention and recovery: appends from many processes
                      interleave as whole batches
    open.lock         flock()ed shared by every process that has the
                      partition open; the first opener (who can take it
                      exclusively) recovers the log if the last session did
                      not close it cleanly

Contract
--------
Thread-safety: every method may be called from any thread; appends are
serialised in-process by a threading lock and across processes by
append.lock. Readers never take a lock: they read the published state under
a seqlock and only look at data below the published position.

Durability states of a record: *written* (in the mapped segment, visible to
readers in every process once published; survives the writer's crash,
since the page cache belongs to the kernel) → *synced* (fdatasync returned;
survives power loss). ``recovery_point`` is the offset below which the log
is synced. After a power loss, recovery re-checks every frame from the
segment holding the recovery point, truncates at the first bad one and
rebuilds the indexes of what it scanned.

An fsync failure marks the partition failed: the kernel may have dropped
the dirty pages, so nothing more is acknowledged until it is reopened and
recovered (the "fsyncgate" lesson).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import sys
import threading

import pyarrow as pa

from .._native import core
from ..errors import ArrowlogError
from ..schema import ENVELOPE_SCHEMA
from .appending import AppendMixin
from .handles import BUDGET
from .layout_mark import write_mark
from .reading import Frame, ReadMixin
from .recovery import RecoveryMixin
from .retention import RetentionMixin
from .sessions import SessionMixin, take_fds
from .sync import SyncMixin


class PartitionLog(SessionMixin, AppendMixin, RecoveryMixin, SyncMixin, RetentionMixin, ReadMixin):
    """See the module docstring for the contract."""

    def __init__(self, directory: str, topic: str, partition: int, config: dict, *, schema: pa.Schema = ENVELOPE_SCHEMA,
                 notifier: core.PartitionState | None = None, check_crcs: bool = True):
        super().__init__(directory, topic, partition, config, schema=schema, notifier=notifier,
                         check_crcs=check_crcs)
        with self._lock:  # never parked by another thread half-way through its opening
            self._open()

    def __enter__(self) -> PartitionLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PartitionLog {self.topic}-{self.partition} at {self.directory}>"


def _syncfs(fd: int) -> bool:
    """syncfs(2): one flush of the whole file system (data, inodes and
    directory entries) instead of an fsync per file; False if unavailable
    or it failed."""
    return _syncfs_usable() and _LIBC.syncfs(fd) == 0  # type: ignore[union-attr]


def _syncfs_usable() -> bool:
    global _LIBC
    if _LIBC is None:
        _LIBC = _load_syncfs()
    return isinstance(_LIBC, ctypes.CDLL)


def _load_syncfs() -> ctypes.CDLL | bool:
    """The C library, if its syncfs reports writeback errors here; else False."""
    try:
        # before Linux 5.8 syncfs returned 0 even when writeback failed
        # (the error would be lost): use it only where it reports them
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
        if os.uname().sysname != "Linux" or (major, minor) < (5, 8):
            return False
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syncfs  # noqa: B018 - raises AttributeError where missing
        return libc
    except (OSError, AttributeError, ValueError):
        return False


_LIBC: ctypes.CDLL | bool | None = None  # None: not looked up yet; False: unusable here


def _syncfs_at(directory: str) -> bool:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return _syncfs(fd)
    finally:
        os.close(fd)


def sync_many(logs) -> list[tuple[PartitionLog, BaseException]]:
    """sync() of many partitions with one file-system sync for all (a
    Producer's periodic fsync over 1,024 partitions: one syncfs, not four
    fsyncs each): the recovery point of each advances to what was appended
    when its snapshot was taken. Where syncfs is unavailable or fails, each
    log syncs on its own (so an fsync error fails that partition, as
    sync() does). Returns the (log, error) pairs that failed."""
    # (log, its snapshot and unsynced closed segments or None, an error or None)
    todo: list[tuple[PartitionLog, tuple[dict, list[int]] | None, BaseException | None]] = []
    for log in logs:
        try:
            with log._lock:
                if log._closed:
                    continue  # its close syncs it (close_many)
                if log._failed is not None:
                    todo.append((log, None, None))  # sync() raises what is wrong
                    continue
                pending = log._sync_snapshot()
                if pending is not None:
                    todo.append((log, pending, None))
        except (OSError, ArrowlogError) as exc:
            todo.append((log, None, exc))
    failed: list[tuple[PartitionLog, BaseException]] = []
    synced = bool(todo) and _syncfs_at(todo[0][0].directory)
    for log, pending, error in todo:
        try:
            if error is not None:
                raise error
            with log._lock:
                if log._closed:
                    continue  # closed meanwhile (a Producer's close beside its periodic sync): the close synced it
                if pending is not None and synced:
                    log._synced_to(*pending)
                    continue
            log.sync()
        except (OSError, ArrowlogError) as exc:
            if not log._closed:
                failed.append((log, exc))
    return failed


def _synced_already(pending: list) -> bool:
    """Whether every (log, snapshot) pending a clean close has its records
    synced already (by the Producer's last periodic sync, say), so that
    only the clean marks are left, which need no file-system sync."""
    return all(st["recovery_point"] >= st["next_offset"] and not log._dir_dirty for log, st in pending)


def _flush_unmapping(fd: int, pending: list, others: list, idle: list) -> tuple[bool, bytes]:
    """_syncfs(fd) in a helper thread while this thread lets go of what the
    marks do not need (the flush waits for the disk; the munmaps, stats and
    closes, most of a close's CPU, used to follow it): the segments of the
    ``pending`` and ``others`` partitions are unmapped and closed, the
    stats the ``pending`` ones' marks digest taken first (_mark_stats), and
    the ``idle`` ones, which need nothing after the flush, are released
    whole. The pages unmapped stay in the page cache, which the flush
    writes. Returns whether it flushed, and the stats."""
    result: list[bool] = []
    flusher: threading.Thread | None = None
    if not sys.is_finalizing():  # (at interpreter exit a new thread never runs: start() would wait forever)
        flusher = threading.Thread(target=lambda: result.append(_syncfs(fd)), name="arrowlog-close-syncfs")
        flusher.start()  # (the syncfs runs without the GIL)
    try:
        fds: list[int] = []
        try:
            for log in idle:
                log._end_close(fds)
        finally:
            core.close_fds(fds)
        stats = _mark_stats(pending)
        for log in others:
            log._drop_segments()
    finally:
        if flusher is not None:
            flusher.join()
    return bool(result and result[0]) if flusher is not None else _syncfs(fd), stats


def _close_unsynced(pending: list, sync, failed: list) -> None:
    """Where syncfs is unavailable or failed: each partition closes on its
    own, with its own fsyncs (an fsync failure leaves it not clean: the
    next opener recovers it, and for a ``sync`` one is added to ``failed``)."""
    for log, _st in pending:
        if log._writer is not None and log._writer.log is None:  # unmapped for the syncfs
            log._writer.close()
            log._writer = None
        log._closed = False
        fcntl.flock(log._append_fd, fcntl.LOCK_UN)
        if log in sync:
            try:
                log.sync()  # (what _release syncs, but with the error kept)
            except (OSError, ArrowlogError) as exc:
                failed.append((log, exc))
        log._release()
        log._closed = True


def close_many(logs: list, sync=()) -> list[tuple[PartitionLog, BaseException]]:
    """Close many partitions with at most one file-system sync in all
    instead of six fsyncs each (1,024 partitions: tens of ms, not seconds).
    Synced by it: the data and directories of every partition this process
    is the last one out of and changed, and the appends so far of every
    partition in ``sync`` (a Producer's: what it wrote survives power loss
    once its close() returns, even where another process keeps the
    partition open). The flush runs while this thread unmaps the segments
    and releases the partitions that need nothing after it; then the
    recovery points and "clean" marks are published, left to the kernel's
    writeback: a clean mark only saves the next opener its recovery scan,
    so one that a power loss undoes costs that scan and no record. No
    flush at all when everything is synced already. Where syncfs is
    unavailable or fails, each partition closes (and each ``sync`` one
    syncs) on its own. Returns the (log, error) pairs of the ``sync``
    partitions that could not be synced."""
    # the open ones in one batch; parked ones reopen a budget's half at a time
    batches = [[log for log in logs if not log._parked]]
    parked = [log for log in logs if log._parked]
    step = max(1, BUDGET.limit // 2)
    batches += [parked[i:i + step] for i in range(0, len(parked), step)]
    failed: list[tuple[PartitionLog, BaseException]] = []
    for batch in batches:
        held: list[PartitionLog] = []
        pending: list[tuple[PartitionLog, dict]] = []  # last out of a partition it changed: synced, marked clean
        others: list[tuple[PartitionLog, tuple[dict, list[int]]]] = []  # in ``sync``, another process has it open
        idle: list[PartitionLog] = []
        try:
            for log in batch:
                log._lock.acquire()
                held.append(log)
                if log._closed:
                    continue
                st = log._begin_close()
                if st is not None:
                    pending.append((log, st))
                    continue
                if log in sync and not log._parked:
                    try:
                        if log._failed is not None:
                            log._sync(closing=True)  # raises what is wrong
                        snap = log._sync_snapshot()
                    except (OSError, ArrowlogError) as exc:
                        failed.append((log, exc))
                        snap = None
                    if snap is not None:
                        others.append((log, snap))
                        continue
                idle.append(log)
            if not pending and not others:
                continue
            fd = pending[0][0]._state_fd if pending else others[0][0]._state_fd
            flushed, stats = False, b""
            if not _syncfs_usable():
                pass
            elif not others and _synced_already(pending):
                flushed, stats = True, _mark_stats(pending)  # only the marks are left: no flush
            else:
                flushed, stats = _flush_unmapping(fd, pending, [log for log, _ in others], idle)
            if not flushed:
                _close_unsynced(pending, sync, failed)
                pending = []
            for log, snap in others:
                try:
                    if flushed:
                        log._synced_to(*snap)
                    else:
                        log._sync(closing=True)
                except (OSError, ArrowlogError) as exc:
                    failed.append((log, exc))
            _publish_clean(pending, stats)  # the data is durable
        finally:
            _end_close_all(held)
    return failed


def _mark_stats(pending: list) -> bytes:
    """The stats of each pending partition's directory and active segment
    that its clean mark digests, taken in one native pass (core.close_stats)
    before the flush ends: nothing changes them meanwhile (the partition's
    locks are held; a flush changes no file's size or times). Its read
    views and writer go with it: after the flush only the state is written."""
    rows: list[tuple[bytes, int, int, int]] = []
    for log, st in pending:
        log._forget_read_views()
        w, log._writer = log._writer, None
        fds: list[int] = []
        if w is not None:
            w.unmap()
            take_fds(w, ("log_fd", "index_fd", "time_index_fd"), fds)
        if len(fds) != 3 or w.base_offset != st["active_base_offset"]:
            core.close_fds(fds)
            fds = [-1, -1, -1]  # write_mark marks it, by the files' paths
        rows.append((os.fsencode(log.directory), fds[0], fds[1], fds[2]))
    return core.close_stats(rows)


def _publish_clean(pending: list, stats: bytes) -> None:
    """The end of a clean close, once the data is durable (caller holds
    each partition's append lock): each recovery point published, the clean
    word set and the layout mark left, in one native pass for all
    (core.close_marks); layout_mark.write_mark marks the few it leaves
    (a directory with a subdirectory, an impossible state). The marks go
    to disk with the kernel's writeback: one that a power loss undoes only
    costs the next opener a recovery scan, which finds every record synced."""
    rows = [(log.state, st["next_offset"]) for log, st in pending]
    for i in core.close_marks(rows, stats):
        log, st = pending[i]
        st["recovery_point"] = max(st["recovery_point"], st["next_offset"])
        write_mark(log._state_fd, log.directory, st)


def _end_close_all(held: list) -> None:
    """Let go of the partitions close_many holds: their mappings dropped,
    their descriptors (and the flocks they hold) closed in one native pass,
    then their locks released. One that fails to let go does not keep the
    others open."""
    fds: list[int] = []
    error: BaseException | None = None
    for log in held:
        try:
            log._end_close(fds)
        except BaseException as exc:  # (raised once the others are closed)
            error = error or exc
    core.close_fds(fds)
    for log in held:
        log._lock.release()
    if error is not None:
        raise error


__all__ = ["PartitionLog", "Frame", "sync_many", "close_many"]
