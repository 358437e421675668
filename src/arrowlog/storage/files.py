"""File-system helpers the storage layer shares: locks, atomic writes,
durable directory entries, and OSError → StorageError with a reason."""

from __future__ import annotations

import errno
import fcntl
import json
import os
from typing import Any

from ..errors import StorageError


def storage_error(exc: OSError, what: str) -> StorageError:
    """A StorageError that says what failed and why, in words."""
    reasons: dict[int | None, str] = {
        errno.ENOSPC: "the disk is full: free space, then retry (nothing after this error was acknowledged)",
        errno.EROFS: "the file system is read-only",
        errno.EIO: "an I/O error occurred",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EMFILE: ("too many open files: this process reached RLIMIT_NOFILE; raise it (ulimit -n) or open "
                       "fewer partitions at once (arrowlog.storage.handles.set_budget)"),
        errno.ENFILE: "the system's table of open files is full: close files elsewhere or raise fs.file-max",
    }
    reason = reasons.get(exc.errno, exc.strerror or str(exc))
    err = StorageError(exc.errno, f"{what}: {reason}")
    err.__cause__ = exc
    return err


def too_many_open_files(exc: BaseException) -> bool:
    """Whether ``exc`` (or the OSError behind a StorageError) is EMFILE/ENFILE."""
    return isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE)


def open_shared_file(path: str) -> tuple[int, bool]:
    """Open (creating) a lock or state file read-write; on a read-only file
    system open the existing file read-only. Returns (fd, read_only)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600), False
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW), True


def fsync_dir(path: str) -> None:
    """Make a directory's entries (creates, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str, obj: Any) -> None:
    """tmp → fsync → rename → fsync(dir): after a crash the file is the old
    or the new one, never torn."""
    tmp = f"{path}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, json.dumps(obj, indent=1, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_dir(os.path.dirname(path))


class ExclusiveFlock:
    """flock(LOCK_EX) on ``fd`` for a with-block; released on exit."""

    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
