"""Durability of a PartitionLog: fdatasync of what was written, and the
recovery point (see partition.py for the contract)."""

from __future__ import annotations

import errno
import os

from ..errors import PartitionFailedError, StorageError
from .files import fsync_dir
from .logbase import LogBase
from .segment import Segment, segment_path


class SyncMixin(LogBase):
    """PartitionLog's sync(): written -> synced."""

    # -- durability ----------------------------------------------------------------

    def flush(self, fsync: bool = False) -> None:
        """Appends are written when append() returns; ``fsync`` also makes
        them survive power loss and advances the recovery point."""
        if fsync:
            self.sync()

    def sync(self) -> None:
        """fdatasync every segment written since the recovery point, then
        publish the new recovery point. The append lock is held only to
        take a snapshot and to publish, not during the fdatasync itself, so
        a periodic background sync never stalls appends for a disk flush."""
        self._sync()

    def _sync(self, closing: bool = False) -> None:
        """sync(); ``closing``: also while close_many closes it."""
        with self._lock:
            if self._failed is not None:
                raise PartitionFailedError(errno.EIO, f"partition {self.topic}-{self.partition} has failed")
            if self._closed and not closing:
                raise StorageError(errno.EBADF, f"partition {self.topic}-{self.partition} is closed (the last "
                                   "process out syncs it as it closes)")
            with self._append_locked():
                if self.state.torn:
                    self._recover_locked()
                st = self.state.snapshot()
                if st["recovery_point"] >= st["next_offset"]:
                    return
                seg = self._writer_for(st)
                fds = [os.dup(fd) for fd in (seg.log_fd, seg.index_fd, seg.time_index_fd) if fd >= 0]
                older = self._unsynced_closed_segments(st)
                dir_dirty = self._dir_dirty or not self._synced_bases
                self._dir_dirty = False
        try:
            for base in older:
                try:
                    fd = os.open(segment_path(self.directory, base), os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:  # deleted by retention meanwhile
                    continue
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
            for fd in fds:
                os.fdatasync(fd)
            if dir_dirty:
                fsync_dir(self.directory)
        except OSError as exc:
            self._failed = exc
            raise PartitionFailedError(exc.errno or errno.EIO,
                                       f"fsync of {self.topic}-{self.partition} failed ({exc.strerror}); the "
                                       "partition refuses writes until reopened") from exc
        finally:
            for fd in fds:
                os.close(fd)
        with self._lock, self._append_locked():
            self._synced_bases.update(older)
            cur = self.state.snapshot()
            # a recovery in between may have cut the log below what was synced
            if cur["generation"] == st["generation"] and cur["recovery_point"] < st["next_offset"]:
                self.state.publish(recovery_point=st["next_offset"])

    def _sync_snapshot(self) -> tuple[dict, list[int]] | None:
        """The first half of a sync whose flush is shared with other
        partitions (sync_many, close_many; caller holds self._lock): the
        snapshot the flush will cover and the closed segments rolled since
        the last sync, or None when everything appended is synced already.
        Take it before the flush starts: only what was written by then is
        covered."""
        with self._append_locked():
            if self.state.torn:
                self._recover_locked()
            st = self.state.snapshot()
            if st["recovery_point"] >= st["next_offset"]:
                return None
            return st, self._unsynced_closed_segments(st)

    def _synced_to(self, st: dict, older: list[int]) -> None:
        """The second half, once the shared flush returned (caller holds
        self._lock): the recovery point advances to the snapshot's end."""
        with self._append_locked():
            self._synced_bases.update(older)
            self._dir_dirty = False
            cur = self.state.snapshot()
            # a recovery in between may have cut the log below what was synced
            if cur["generation"] == st["generation"] and cur["recovery_point"] < st["next_offset"]:
                self.state.publish(recovery_point=st["next_offset"])

    def _unsynced_closed_segments(self, st: dict) -> list[int]:
        """Closed segments that may hold data above the recovery point (rolled
        since the last sync, possibly by another process)."""
        if st["active_base_offset"] <= st["recovery_point"]:
            return []  # every closed segment ends below the recovery point: synced (no listdir)
        out = []
        for base in self._list_bases():
            if base >= st["active_base_offset"]:
                break
            if base < st["recovery_point"] and base in self._synced_bases:
                continue
            nxt = self._next_base(base)
            if nxt is not None and nxt <= st["recovery_point"]:
                continue
            out.append(base)
        return out

    def _sync_locked(self, active: Segment, st: dict | None = None) -> None:
        """fdatasync under the append lock (durability=fsync appends)."""
        st = st or self.state.snapshot()
        try:
            for base in self._unsynced_closed_segments(st):
                fd = os.open(segment_path(self.directory, base), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fdatasync(fd)
                finally:
                    os.close(fd)
                self._synced_bases.add(base)
            active.sync()
            if self._dir_dirty or not self._synced_bases:
                fsync_dir(self.directory)
                self._dir_dirty = False
        except OSError as exc:
            self._failed = exc
            raise PartitionFailedError(exc.errno or errno.EIO,
                                       f"fsync of {self.topic}-{self.partition} failed ({exc.strerror}); the "
                                       "partition refuses writes until reopened") from exc

    def _next_base(self, base: int) -> int | None:
        later = [b for b in self._list_bases() if b > base]
        return later[0] if later else None
