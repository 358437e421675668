"""A group member's commit journal: durable commits at one fdatasync each.

A member that commits synchronously after every batch must not pay a file
replace (write, fsync, rename, directory fsync) per commit, and members of
one group must not queue behind each other's fsyncs. So each committing
``GroupDir`` appends its commits to a journal file of its own,
``journal-<pid>-<random>.log`` in the group directory:

- created once, filled with zeros and fsynced (its size and blocks are then
  durable), its name made durable by a directory fsync, and ``flock``'ed by
  its writer for as long as the writer lives;
- a commit is one record written in place (``pwrite``) and ``fdatasync``ed:
  the blocks are already allocated and written, so no file system metadata
  changes and no journal commit of the file system is waited for;
- records are folded into ``offsets.json`` when the journal is full, when its
  writer closes, and by anyone's next fold once its writer died (its lock is
  free); the file is unlinked after ``offsets.json`` is durable.

Record layout (little-endian, each record starts 8-byte aligned)::

    offset  size
         0     4  magic b"AJR1"
         4     4  payload length
         8     4  crc32c of bytes [12, 20 + length)
        12     8  seq: the commit's place in the group's order (see store.py)
        20     n  payload: JSON list of [topic, partition, offset, metadata,
                  commit_ms, leader_epoch]

Reading stops at the first all-zero record header (the unwritten rest). A
record that fails its checks is a torn tail when no valid record follows it
(a power loss during a commit that never returned: ignored) and damage
otherwise (``GroupError``: a later commit was acknowledged, so the file
cannot be trusted).
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
from typing import Iterator

from .._native import core
from ..errors import GroupError
from ..storage.files import fsync_dir

JOURNAL_PREFIX, JOURNAL_SUFFIX = "journal-", ".log"
JOURNAL_SIZE = 256 * 1024
MAGIC = b"AJR1"
_HEADER = struct.Struct("<4sIIQ")
HEADER_SIZE = _HEADER.size  # 20
_ZERO_HEADER = bytes(HEADER_SIZE)

Entry = tuple[str, int, int, str, int, int]   # topic, partition, offset, metadata, commit_ms, leader_epoch


def is_journal_name(name: str) -> bool:
    return name.startswith(JOURNAL_PREFIX) and name.endswith(JOURNAL_SUFFIX)


def _aligned(n: int) -> int:
    return (n + 7) & ~7


def encode_record(seq: int, entries: list) -> bytes:
    payload = json.dumps(entries, separators=(",", ":")).encode()
    body = struct.pack("<Q", seq) + payload
    return _HEADER.pack(MAGIC, len(payload), core.crc32c(body), seq) + payload


def _record_at(buf: bytes, pos: int) -> tuple[int, list, int] | None:
    """(seq, entries, next position) of a valid record at ``pos``, else None."""
    if pos + HEADER_SIZE > len(buf):
        return None
    magic, length, crc, seq = _HEADER.unpack_from(buf, pos)
    end = pos + HEADER_SIZE + length
    if magic != MAGIC or end > len(buf) or core.crc32c(buf[pos + 12:end]) != crc:
        return None
    try:
        entries = [(str(t), int(p), int(o), str(m), int(ms), int(ep)) for t, p, o, m, ms, ep in json.loads(buf[pos + 20:end])]
    except (ValueError, TypeError):
        return None   # the CRC matched but the payload is not ours: damage, not a torn write
    return seq, entries, _aligned(end)


def read_records(path: str, buf: bytes) -> Iterator[tuple[int, list]]:
    """Every valid record of a journal's bytes, in order: (seq, entries)."""
    pos = 0
    while pos + HEADER_SIZE <= len(buf):
        if buf[pos:pos + HEADER_SIZE] == _ZERO_HEADER:
            return   # the unwritten rest
        rec = _record_at(buf, pos)
        if rec is None:
            if _valid_record_after(buf, pos + 8):
                raise GroupError(f"commit journal {path} is damaged at byte {pos} (a valid record follows a bad "
                                 "one): its commits cannot be trusted; reset the group's offsets or delete the group")
            return   # a torn tail: the last commit never returned
        seq, entries, pos = rec
        yield seq, entries


def _valid_record_after(buf: bytes, pos: int) -> bool:
    pos = _aligned(pos)
    while True:
        pos = buf.find(MAGIC, pos)
        if pos < 0:
            return False
        if pos % 8 == 0 and _record_at(buf, pos) is not None:
            return True
        pos += 1


def read_journal(path: str) -> list[tuple[int, list]] | None:
    """The records of the journal at ``path`` (None when it is gone)."""
    try:
        with open(path, "rb") as f:
            buf = f.read(JOURNAL_SIZE + 1)
    except FileNotFoundError:
        return None
    return list(read_records(path, buf))


def writer_is_alive(path: str) -> bool:
    """Whether the process that writes this journal still holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)   # releases the probe's lock, if it got it
    return False


class Journal:
    """The open journal of one writer (one GroupDir in one process)."""

    def __init__(self, group_path: str):
        self.pid = os.getpid()
        self.name = f"{JOURNAL_PREFIX}{self.pid}-{os.urandom(6).hex()}{JOURNAL_SUFFIX}"
        self.path = os.path.join(group_path, self.name)
        self.pos = 0
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, bytes(JOURNAL_SIZE))   # written, not fallocated: no unwritten extents left to convert
            os.fsync(fd)
            fsync_dir(group_path)
            self.ino = os.fstat(fd).st_ino
        except BaseException:
            os.close(fd)
            _unlink_quiet(self.path)
            raise
        self.fd = fd

    def fits(self, record: bytes) -> bool:
        return self.pos + len(record) <= JOURNAL_SIZE

    def still_here(self) -> bool:
        """False once the file was removed (the group deleted) or this is a forked child."""
        if os.getpid() != self.pid:
            return False
        try:
            return os.stat(self.path).st_ino == self.ino
        except FileNotFoundError:
            return False

    def append(self, record: bytes) -> None:
        """Write one record and make it durable."""
        os.pwrite(self.fd, record, self.pos)
        os.fdatasync(self.fd)
        self.pos = _aligned(self.pos + len(record))

    def close(self, *, unlink: bool) -> None:
        """Close (releasing the writer's lock); ``unlink`` once its records are folded.
        A forked child only closes its copy: the lock stays with its parent."""
        if self.fd < 0:
            return
        if unlink and os.getpid() == self.pid:
            _unlink_quiet(self.path)
        os.close(self.fd)
        self.fd = -1


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
