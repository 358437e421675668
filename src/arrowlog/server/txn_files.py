"""The transaction state's files, shared by every process of one data directory.

``<data>/transactions/`` (snapshot.json + journal, see journal.py) is written by
``arrowlog serve`` and by every transactional ``arrowlog.Producer`` on the
directory, so there is one transaction coordinator state per directory:

- ``lock`` (an flock): a writer holds it exclusively while it reads what the
  others wrote, changes the state and journals the change (and while it
  compacts); a reader holds it shared while it reads.
- each process follows the journal from where it last read (complete lines
  only); a new snapshot (another process compacted) makes it read everything
  again. ``changed()`` tells, with two stats and no lock, whether anything was
  written since: every change appends to the journal or replaces the snapshot.

Thread-safety: callers serialise (TransactionCoordinator holds its own lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time

from .journal import UNREADABLE, StateFiles

log = logging.getLogger("arrowlog.server")


def _identity(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _flock_until(fd: int, mode: int, deadline: float, where: str) -> None:
    """flock ``fd`` (``mode``) before ``deadline``, else TimeoutError. flock has no timed
    wait: the lock is tried again with a growing pause (1 ms up to 50 ms)."""
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the lock of {where} is held by another process") from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)


class SharedStateFiles(StateFiles):
    """StateFiles that several processes write, under ``lock``. ``writable=False``:
    a reader that never writes (and creates nothing)."""

    def __init__(self, directory: str, what: str, compact_bytes: int, writable: bool = True):
        super().__init__(directory, what, compact_bytes)
        self.writable = writable
        self._lock_fd = -1
        self._snapshot_id: tuple | None = None   # the snapshot the state was read from
        self._pos = 0                             # journal bytes read (complete lines)
        if writable:
            os.makedirs(directory, exist_ok=True)
            self._lock_fd = self._fds.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
            self._fd = self._fds.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC)

    @property
    def lock_path(self) -> str:
        return os.path.join(self.dir, "lock")

    @contextlib.contextmanager
    def _lock_file(self):
        """The lock file's descriptor (-1: a reader of a directory without one). A writer keeps
        its own open; a reader holds no descriptor between its looks (a Consumer or a replay
        closed, or dropped, leaves nothing open), so it opens the file for each."""
        if self.writable:
            yield self._lock_fd
            return
        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        try:
            yield fd
        finally:
            if fd >= 0:
                os.close(fd)

    @contextlib.contextmanager
    def locked(self, exclusive: bool, deadline: float | None = None):
        """Hold the directory's transaction lock (holders keep it for one change, a
        marker or a batch append). ``deadline`` (time.monotonic()): TimeoutError if the
        lock is still held by another process then; None: wait as long as it takes."""
        with self._lock_file() as fd:
            if fd < 0:
                yield
                return
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            if deadline is None:
                fcntl.flock(fd, mode)
            else:
                _flock_until(fd, mode, deadline, self.dir)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def changed(self) -> bool:
        """Whether another process may have written since the last ``catch_up``."""
        if _identity(self.snapshot_path) != self._snapshot_id:
            return True
        journal = _identity(self.journal_path)
        return (journal[1] if journal else 0) != self._pos

    def catch_up(self, reset, apply_snapshot, apply_event, lost: str) -> bool:
        """Read what was written since the last call (hold the lock): everything again
        (``reset()`` first) after a compaction, else the journal's new lines. True when
        anything was read."""
        snap = _identity(self.snapshot_path)
        if snap != self._snapshot_id or self._journal_shrank():
            reset()
            self._snapshot_id, self._pos = snap, 0
            if snap is not None:
                try:
                    with open(self.snapshot_path, "rb") as f:
                        apply_snapshot(json.loads(f.read()))
                except UNREADABLE as exc:
                    log.error("%s snapshot %s is unreadable (%s): %s", self.what, self.snapshot_path, exc, lost)
            self._tail(apply_event)
            return True
        return self._tail(apply_event)

    def _journal_shrank(self) -> bool:
        journal = _identity(self.journal_path)
        return (journal[1] if journal else 0) < self._pos

    def _tail(self, apply) -> bool:
        try:
            with open(self.journal_path, "rb") as f:
                f.seek(self._pos)
                data = f.read()
        except FileNotFoundError:
            return False
        end = data.rfind(b"\n") + 1          # a line still being written is read next time
        if end <= 0:
            return False
        for line in data[:end].split(b"\n"):
            if not line:
                continue
            try:
                apply(json.loads(line))
            except UNREADABLE:
                log.warning("%s journal: an unreadable line at byte %d skipped", self.what, self._pos)
        self._pos += end
        return True

    def write(self, event: dict, fsync: bool = False) -> bool:
        full = super().write(event, fsync)
        self._pos = os.fstat(self._fd).st_size if self._fd >= 0 else self._pos   # our line: read already
        return full

    def compact(self, snapshot: dict) -> None:
        super().compact(snapshot)
        self._snapshot_id, self._pos = _identity(self.snapshot_path), 0

    def close(self) -> None:
        super().close()
        self._lock_fd = self._fds.close(self._lock_fd)

