"""Sessions of a PartitionLog: opening (and the recovery a not-clean open
runs), parking by the descriptor budget (handles.py), and closing, where
the last process out syncs and marks the partition clean (see partition.py
for the contract)."""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Any

from .._native import core
from ..errors import StorageError
from .cleaner import finish_swaps
from .files import open_shared_file, storage_error, too_many_open_files
from .handles import BUDGET
from .index import NO_TIMESTAMP
from .layout import header_problem
from .layout_mark import clear_mark, mark_holds, write_mark
from .logbase import LogBase
from .precreate import open_precreated
from .segment import LOG_INITIAL_BYTES, Segment


class SessionMixin(LogBase):
    """PartitionLog's open, park and close."""

    def _open(self) -> None:
        """Open the files and join the session, counted in the process's
        descriptor budget; an EMFILE parks other partitions and retries once."""
        BUDGET.admit(self)
        for attempt in (0, 1):
            try:
                self._open_files(self.directory)
                self._open_session()
                return
            except OSError as exc:
                # a full disk (or quota, or I/O error) while a partition is
                # first opened or created: a StorageError, never a raw OSError
                self._close_fds()
                if too_many_open_files(exc) and attempt == 0 and BUDGET.shrink(exclude=self):
                    continue
                BUDGET.forget(self)
                if isinstance(exc, StorageError):
                    raise
                raise storage_error(exc, f"cannot open partition {self.topic}-{self.partition} in "
                                    f"{self.directory}") from exc
            except BaseException:
                self._close_fds()
                BUDGET.forget(self)
                raise

    def _wake(self) -> None:
        with self._lock:
            if self._parked and not self._closed:
                self._open()
                self._parked = False
                self._parked_generation = None

    def _try_park(self) -> bool:
        """Release this partition's descriptors and its shared open.lock but
        keep the object usable (no sync, no clean mark: close() does those);
        False if it is busy in another thread, failed or already parked."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._closed or self._parked or self._failed is not None or self._state is None:
                return False
            self._release(park=True)
            self._parked = True
            self._state = None
            return True
        finally:
            self._lock.release()

    def _open_files(self, directory: str) -> None:
        state_path = f"{directory}/partition.state"  # (os.path.join costs a replay of 1,024 partitions ~5%)
        try:  # the usual existing partition: no look at its directory first
            fd, ro1 = open_shared_file(state_path)
        except FileNotFoundError:
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
            except OSError as exc:
                if exc.errno != errno.EROFS or not os.path.isdir(directory):
                    raise
            fd, ro1 = open_shared_file(state_path)
        self._state_fd = self._fds.adopt(fd)
        # append.lock waits for the first append, recovery or close that
        # needs it (_open_append_lock): a session that only reads never does
        fd, ro3 = open_shared_file(f"{directory}/open.lock")
        self._open_fd = self._fds.adopt(fd)
        self.read_only = ro1 or ro3
        if os.fstat(self._state_fd).st_size < core.STATE_FILE_SIZE:
            if self.read_only:
                raise StorageError(errno.EROFS, f"{directory} was never written and the file system is read-only")
            with self._append_locked():
                if os.fstat(self._state_fd).st_size < core.STATE_FILE_SIZE:
                    try:
                        core.fallocate(self._state_fd, 0, core.STATE_FILE_SIZE)
                    except OSError as exc:
                        raise storage_error(exc, f"cannot allocate {directory}/partition.state") from exc
        self._state = core.PartitionState(core.MappedFile(self._state_fd, core.STATE_FILE_SIZE, not self.read_only,
                                                         state_path))

    def _open_append_lock(self) -> None:
        """Open append.lock (on first need); an EMFILE parks other
        partitions and retries once, then is a StorageError."""
        path = f"{self.directory}/append.lock"
        for attempt in (0, 1):
            try:
                self._append_fd = self._fds.adopt(open_shared_file(path)[0])
                return
            except OSError as exc:
                if too_many_open_files(exc) and attempt == 0 and BUDGET.shrink(exclude=self):
                    continue
                raise storage_error(exc, f"cannot open {path}") from exc

    # -- sessions and recovery ---------------------------------------------

    def _open_session(self) -> None:
        if self.read_only:
            # Nothing can be written or recovered: serve what was published.
            fcntl.flock(self._open_fd, fcntl.LOCK_SH)
            if not self.state.is_initialised():
                raise StorageError(errno.EROFS, f"{self.directory} has no published state and the file system is "
                                   "read-only: mount it read-write once to recover it")
            return
        try:
            fcntl.flock(self._open_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            first = True
        except BlockingIOError:
            first = False
        if first:
            try:
                if mark_holds(self._state_fd, self.directory):
                    # clean, and as its last clean close left it (layout_mark.py):
                    # checked then, and no swap of a cleaner was left half-done
                    self._damage = None
                    return
                with self._append_locked():
                    finish_swaps(self.directory)  # a cleaner that died mid-swap
                self._damage = header_problem(self._state_fd)
                if self._damage is not None:
                    pass  # never rewritten behind the user's back: readers and verify report it
                elif self._resumable():
                    pass  # this process parked it and nobody changed it since: nothing to recover or check
                elif not self.state.is_initialised() and not self._list_bases():
                    self._create_fresh()
                elif open_precreated(self):
                    pass  # made with its topic and never written: nothing to recover (precreate.py)
                elif not self.state.is_initialised() or not self.state.clean or self.state.torn:
                    self.recover()
                else:
                    with self._append_locked():
                        self._check_layout()
                        if self._damage is None:
                            # checked now: the next opener need not (a log
                            # closed before marks existed, or a stale mark)
                            write_mark(self._state_fd, self.directory, self.state.snapshot())
                # The "clean" mark stays until this session first changes the
                # log (_mark_dirty): a session that only reads costs no fsync.
            finally:
                fcntl.flock(self._open_fd, fcntl.LOCK_SH)
        else:
            # Blocks while a first opener is still recovering.
            fcntl.flock(self._open_fd, fcntl.LOCK_SH)
            if not self.state.is_initialised():
                self.recover()

    def _create_fresh(self) -> None:
        """A new partition (no state, no segment): its empty first segment
        and state, without the recovery scan or an fsync. Nothing is
        acknowledged as synced before sync() fsyncs the directory (it does
        on its first call), and a power loss before that leaves a state that
        is not clean or no state at all: the next opener recovers."""
        with self._append_locked():
            seg = Segment.create(self.directory, 0, self.schema, self.compression, self._capacity(), self._now_ms())
            self._writer = seg
            self._dir_dirty = True
            self.state.initialise(
                log_start_offset=0, next_offset=0, active_base_offset=0, active_position=seg.header_size,
                active_max_timestamp=NO_TIMESTAMP, offset_index_entries=0, time_index_entries=0,
                bytes_since_index=0, recovery_point=0, generation=1, segment_created_ms=seg.created_ms)

    def _resumable(self) -> bool:
        """Whether a parked partition reopens as this process left it: the
        recovery a not-clean open runs guards against a crash or power loss
        since the last session, and this process was alive all along, so it
        is skipped unless another session ran meanwhile (a recovery bumps the
        generation) or a writer died half-way through a publish (torn)."""
        gen = self._parked_generation
        if gen is None or self.state.torn or not self.state.is_initialised():
            return False
        try:
            return self.state.snapshot()["generation"] == gen
        except BlockingIOError:
            return False

    def _mark_dirty(self) -> None:
        """Before a session's first change to the log (caller holds the append
        lock): clear the "clean" mark, on disk before anything is
        acknowledged, so a crash or power loss before the next clean close
        makes the next opener recover (a stale mark would hide synced appends)."""
        if self.state.clean:
            self.state.clean = False
            clear_mark(self._state_fd)
            os.fsync(self._state_fd)

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Release this process's hold; the last process out syncs and marks
        the partition clean, so the next open skips recovery."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._parked and not self._state_clean_on_disk():
                # parked with changes since the last clean mark: reopen so the
                # last process out still syncs and marks it clean
                self._closed = False
                self._wake()
                self._closed = True
            BUDGET.forget(self)
            if not self._parked:
                self._release()

    def _release(self, park: bool = False) -> None:
        """close() without forgetting the log (caller holds self._lock).
        Parking closes the read views' descriptors but leaves their
        mappings to any reader still using them (readers take no lock)."""
        last = False
        if not park:
            try:
                fcntl.flock(self._open_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last = True
            except BlockingIOError:
                pass
        if park:
            # parking is no session end: the "clean" mark (and the fsync it
            # needs) waits for close(); _resumable() makes the reopen cheap
            try:
                self._parked_generation = self.state.snapshot()["generation"]
            except BlockingIOError:
                self._parked_generation = None
        elif last and self._failed is None and not self.read_only and not self.state.clean:
            try:
                with self._append_locked():
                    st = self.state.snapshot()
                    if not self.state.torn:
                        seg = self._writer_for(st)
                        self._sync_locked(seg, st)
                        if seg.file_size - st["active_position"] > LOG_INITIAL_BYTES:
                            # an ftruncate costs a journal commit: only worth
                            # it to give back more than a new segment's start
                            seg.trim(st["active_position"], st["offset_index_entries"],
                                     st["time_index_entries"])
                        self.state.publish(recovery_point=st["next_offset"])
                        os.fsync(self._state_fd)
                        self.state.clean = True
                        write_mark(self._state_fd, self.directory, st, seg)
                        os.fsync(self._state_fd)
            except (OSError, StorageError):
                pass
        if park:
            views, self._segments = self._segments, {}
            self._bases, self._bases_key = [], None
            self._read_generation = -1
            self._hint = None
            for seg in views.values():
                seg.release_descriptors()
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        else:
            self._drop_segments()
        self._close_fds()

    def _state_clean_on_disk(self) -> bool:
        """A parked partition's "clean" mark, read without reopening it."""
        try:
            with open(os.path.join(self.directory, "partition.state"), "rb") as f:
                fd = f.fileno()
                st = core.PartitionState(core.MappedFile(fd, core.STATE_FILE_SIZE, False,
                                                         os.path.join(self.directory, "partition.state")))
            return bool(st.clean)
        except (OSError, ValueError):
            return False

    def _close_fds(self) -> None:
        fds = (self._state_fd, self._append_fd, self._open_fd)
        self._state_fd = self._append_fd = self._open_fd = self._fds.close(*fds)

    def _begin_close(self) -> dict | None:
        """First half of close_many() (caller holds self._lock): the
        snapshot to publish as the recovery point when this process is the
        last one out of a partition it changed (the append lock then stays
        held until _end_close), else None."""
        if self._parked and not self._state_clean_on_disk():
            self._closed = False
            self._wake()
        self._closed = True
        BUDGET.forget(self)
        if self._parked:
            return None
        try:
            fcntl.flock(self._open_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if self._failed is not None or self.read_only or self.state.clean:
            return None
        try:
            if self._append_fd < 0:
                self._open_append_lock()
        except StorageError:
            return None  # not marked clean: the next opener recovers it
        fcntl.flock(self._append_fd, fcntl.LOCK_EX)
        st = self.state.snapshot()
        if self.state.torn:
            fcntl.flock(self._append_fd, fcntl.LOCK_UN)
            return None
        seg = self._writer
        if seg is not None and seg.base_offset == st["active_base_offset"] and \
                seg.file_size - st["active_position"] > LOG_INITIAL_BYTES:
            try:
                seg.trim(st["active_position"], st["offset_index_entries"], st["time_index_entries"])
            except StorageError:
                pass
        return st

    def _end_close(self, fds: list[int]) -> None:
        """Last half of close_many() (caller holds self._lock): the mappings
        go and the descriptors (which hold the flocks) are moved to ``fds``,
        which the caller closes with every other partition's in one native
        pass (core.close_fds) before it lets go of the lock."""
        if self._parked:
            return
        self._forget_read_views()
        seg, self._writer = self._writer, None
        if seg is not None:
            seg.unmap()
            take_fds(seg, ("log_fd", "index_fd", "time_index_fd"), fds)
        take_fds(self, ("_state_fd", "_append_fd", "_open_fd"), fds)


def take_fds(owner: Any, attrs: tuple[str, ...], fds: list[int]) -> None:
    """Move the open descriptors in ``owner``'s attributes to ``fds``, detached
    from ``owner._fds`` (the caller closes them; each attribute left at -1);
    an attribute not set yet (a read view's lazy indexes) is left alone."""
    d = owner.__dict__
    held = owner._fds
    for attr in attrs:
        fd = d.get(attr, -1)
        if fd >= 0:
            d[attr] = -1
            if held.detach(fd) >= 0:
                fds.append(fd)
