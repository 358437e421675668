"""The group's commit journal: durable commits that share fdatasyncs.

A member that commits synchronously after every batch must not pay a file
replace (write, fsync, rename, directory fsync) per commit, and members of
one group must not queue for an fsync each. So in-process members append
their commits to one journal per group, ``journal-<gen>.log``:

- a journal is created filled with zeros and fsynced, and its name made
  durable by a directory fsync: its size and blocks are then on disk, so a
  record written in place (``pwrite``) needs only ``fdatasync`` to be durable,
  with no file system metadata to commit and no directory fsync;
- *claim*: under the flock of ``.seq`` (a small mapped file holding the
  group's commit counter, the current journal generation, its tail and how
  far it is durable) a committer takes the next seq and writes its record
  at the tail;
- *group commit*: a committer then waits until the journal is durable
  past its record. ``.sync`` (a mapped partition-state file) holds the
  durable mark, (generation, position) as one number, and a futex word.
  If the mark covers my record, I am done. Else, if nobody holds the sync
  lock (flock of ``.sync``, taken with LOCK_NB), I become the syncer: read
  the tail under the claim lock (every record written so far, by anyone;
  while the group's counter still reads my record's seq, my record is the
  tail and no lock is needed), one fdatasync, publish the mark, release the
  lock, wake the waiters. Else
  a sync is running, perhaps begun before my write: I wait on the futex
  word until it ends and look again; one of the waiters becomes the next
  syncer and covers everyone who wrote meanwhile. So N members committing
  at once share one device flush instead of queueing N of them. A syncer
  killed mid-sync releases its flock with its death; the waiters' futex
  waits are bounded (``SYNC_WAIT_S``), so they look again and one of them
  takes over. The mark is only ever published after an fdatasync that
  began after the records it covers were written.
- a full journal is retired: it is fdatasynced (so the mark may move to
  the next generation with records of the old one still awaited), the
  next generation is created (under the claim lock, so no record goes to
  the old one afterwards), the old one is
  folded into ``offsets.json`` and unlinked (store.py).

A handle is checked for staleness where it costs nothing: a forked
child's handles are not its own (a fork counter, no ``getpid`` per
commit), and ``GroupDir.remove`` writes ``REMOVED`` over the boot id in
``.seq`` under the claim lock before it renames the directory away, so a
handle of another process or thread finds it at its next claim, whose state
read it is anyway (``JournalRemoved``: the commit goes to the directory
there now). A commit no longer ``stat``s ``.seq`` (≈ 6 µs of CPU with the
path join, a fifth of a commit's Python).

``.seq`` and ``.sync`` are not fsynced: a durable mark was true when it
was published, and stays true after a power loss. ``.seq`` records the boot
it belongs to; after a reboot (power loss: it may be stale) the first
committer starts a new generation and raises the counter past every seq on
disk.

Record layout (little-endian, each record starts 8-byte aligned)::

    offset  size
         0     4  magic b"AJR1"
         4     4  payload length n
         8     4  crc32c of bytes [12, 28 + n)
        12     8  seq: the commit's place in the group's order
        20     8  hint: how far this journal was durable when it was claimed, as
                  far as the durable mark said (a lower bound)
        28     n  payload: JSON list of [topic, partition, offset, metadata,
                  commit_ms, leader_epoch]

Reading stops at the first all-zero record header (the unwritten rest). A
record that fails its checks ends the journal: a power loss tore a commit
that never returned, and none after it returned either. Unless a valid
record after it says (hint) that the journal was durable beyond it: then a
returned commit was damaged, and ``GroupError`` says the journal cannot be
trusted.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import struct
import threading
from typing import Iterator

from .._fds import Descriptors
from .._native import core
from ..errors import GroupError
from ..storage.files import fsync_dir

JOURNAL_PREFIX, JOURNAL_SUFFIX = "journal-", ".log"
JOURNAL_SIZE = 256 * 1024
STATE_FILE = ".seq"
MAGIC = b"AJR1"
_HEADER = struct.Struct("<4sIIQQ")
HEADER_SIZE = _HEADER.size  # 28
_ZERO_HEADER = bytes(HEADER_SIZE)
# .seq: boot id, seq, generation, tail, durable generation, durable position
_STATE = struct.Struct("<16sQQQQQ")
_STATE_GEN, _STATE_GEN_AT = struct.Struct("<Q"), 24   # its generation alone
_STATE_SEQ, _STATE_SEQ_AT = _STATE_GEN, 16            # its counter alone
# .sync: a partition-state file whose next_offset holds the durable mark, whose
# futex word a syncer bumps when its sync ends, and whose flock is the sync lock
SYNC_FILE = ".sync"
SYNC_WAIT_S = 0.05   # a waiter looks again this often (a syncer killed mid-sync wakes nobody)
_POS_MASK = (1 << 32) - 1
# .seq's boot id once the group is being removed (GroupDir.remove writes it under the
# claim lock before it renames the directory away): a handle that finds it is stale
REMOVED = b"\xffremoved-group\xff\xff"
_SEQ_HINT = struct.Struct("<QQ")
_RECORD_PREFIX = struct.Struct("<4sII")

_fork_epoch = 0


def _after_fork_in_child() -> None:
    global _fork_epoch
    _fork_epoch += 1   # every handle made before the fork is the parent's (its locks too)


os.register_at_fork(after_in_child=_after_fork_in_child)


class JournalRemoved(GroupError):
    """The group's directory was removed under this handle (GroupDir.remove):
    open a new one."""


def _mark(gen: int, pos: int) -> int:
    """A journal position as one number that orders like (generation, position)."""
    return gen << 32 | pos


def open_state_file(path: str) -> tuple[core.PartitionState, int]:
    """A mapped partition-state file (created when missing) and a descriptor of it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        if os.fstat(fd).st_size < core.STATE_FILE_SIZE:
            core.fallocate(fd, 0, core.STATE_FILE_SIZE)   # no SIGBUS on a full disk
        return core.PartitionState(core.MappedFile(fd, core.STATE_FILE_SIZE, True, path)), fd
    except BaseException:
        os.close(fd)
        raise


def _boot_id() -> bytes:
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return bytes.fromhex(f.read().strip().replace(b"-", b"").decode())[:16].ljust(16, b"\0")
    except (OSError, ValueError):
        return b"\1" * 16   # no boot id (not Linux): never matches a zeroed file


BOOT_ID = _boot_id()


def journal_name(gen: int) -> str:
    return f"{JOURNAL_PREFIX}{gen:012d}{JOURNAL_SUFFIX}"


def journal_gen(name: str) -> int | None:
    """The generation of a journal file name, None if it is not one."""
    if not (name.startswith(JOURNAL_PREFIX) and name.endswith(JOURNAL_SUFFIX)):
        return None
    digits = name[len(JOURNAL_PREFIX):-len(JOURNAL_SUFFIX)]
    return int(digits) if digits.isdigit() else None


def _aligned(n: int) -> int:
    return (n + 7) & ~7


def encode_record(seq: int, hint: int, payload: bytes) -> bytes:
    body = _SEQ_HINT.pack(seq, hint) + payload
    return _RECORD_PREFIX.pack(MAGIC, len(payload), core.crc32c(body)) + body


def _record_at(buf: bytes, pos: int) -> tuple[int, int, list, int] | None:
    """(seq, hint, entries, next position) of a valid record at ``pos``, else None."""
    if pos + HEADER_SIZE > len(buf):
        return None
    magic, length, crc, seq, hint = _HEADER.unpack_from(buf, pos)
    end = pos + HEADER_SIZE + length
    if magic != MAGIC or end > len(buf) or core.crc32c(buf[pos + 12:end]) != crc:
        return None
    try:
        entries = [(str(t), int(p), int(o), str(m), int(ms), int(ep))
                   for t, p, o, m, ms, ep in json.loads(buf[pos + HEADER_SIZE:end])]
    except (ValueError, TypeError):
        return None   # the CRC matched a payload that is not ours
    return seq, hint, entries, _aligned(end)


def read_records(path: str, buf: bytes) -> Iterator[tuple[int, list]]:
    """The records of a journal's bytes, in order: (seq, entries)."""
    pos = 0
    while pos + HEADER_SIZE <= len(buf):
        if buf[pos:pos + HEADER_SIZE] == _ZERO_HEADER:
            return   # the unwritten rest
        rec = _record_at(buf, pos)
        if rec is None:
            if _durable_beyond(buf, pos):
                raise GroupError(f"commit journal {path} is damaged at byte {pos}: a later record says the journal "
                                 "was durable beyond it, so a returned commit was lost; its commits cannot be "
                                 "trusted: reset the group's offsets or delete the group")
            return   # a torn tail: commits that never returned
        seq, _hint, entries, pos = rec
        yield seq, entries


def _durable_beyond(buf: bytes, bad: int) -> bool:
    """Whether a valid record after ``bad`` was claimed once the journal was durable past it."""
    pos = _aligned(bad + 1)
    while True:
        pos = buf.find(MAGIC, pos)
        if pos < 0:
            return False
        if pos % 8 == 0:
            rec = _record_at(buf, pos)
            if rec is not None and rec[1] > bad:
                return True
        pos += 1


def read_journal(path: str) -> list[tuple[int, list]]:
    """The records of the journal at ``path`` ([] when it is gone)."""
    try:
        with open(path, "rb") as f:
            buf = f.read(JOURNAL_SIZE)
    except FileNotFoundError:
        return []
    return list(read_records(path, buf))


def create_journal(group_path: str, gen: int) -> None:
    """A new journal of zeros, durable with its name."""
    path = os.path.join(group_path, journal_name(gen))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, bytes(JOURNAL_SIZE))   # written, not fallocated: no unwritten extents to convert later
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(group_path)


class _Flock:
    """flock on a file plus a thread lock (flock does not exclude threads sharing the open file)."""

    __slots__ = ("fd", "_lock")

    def __init__(self, fd: int):
        self.fd = fd
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()

    def try_enter(self) -> bool:
        """Take the lock if nobody holds it; False at once otherwise (then do not __exit__)."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.release()
            return False
        except BaseException:
            self._lock.release()
            raise
        return True


class GroupJournal:
    """One process's handle on the group's journal and its shared state."""

    def __init__(self, group_path: str, max_seq_on_disk):
        """``max_seq_on_disk()``: the highest seq in offsets.json and the
        journals, read when the state must be rebuilt after a reboot."""
        self.path = group_path
        self._epoch = _fork_epoch
        self._max_seq_on_disk = max_seq_on_disk
        state_path = os.path.join(group_path, STATE_FILE)
        self._fds = Descriptors(self)   # dropped without close(): closed (the mapping goes with its object)
        self._state_fd = self._fds.open(state_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW)
        self.fd = -1
        self.gen = 0
        self._map: mmap.mmap | None = None
        try:
            st = os.fstat(self._state_fd)
            if st.st_size < _STATE.size:
                os.ftruncate(self._state_fd, _STATE.size)
            self._map = mmap.mmap(self._state_fd, _STATE.size)
        except BaseException:
            self.close()
            raise
        self._claim = _Flock(self._state_fd)
        self._commit_lock = threading.Lock()
        self._sync_fd = -1
        self._sync_state: core.PartitionState | None = None
        try:
            self._sync_state, sync_fd = open_state_file(os.path.join(group_path, SYNC_FILE))
            self._sync_fd = self._fds.adopt(sync_fd)
        except BaseException:
            self.close()
            raise
        self._syncer = _Flock(self._sync_fd)

    def usable(self) -> bool:
        """False in a forked child (the locks are shared with the parent) or once
        closed. (A group directory removed under this handle is found under the
        claim lock, where the state is read anyway: ``JournalRemoved``.)"""
        return self._epoch == _fork_epoch and self._map is not None

    # -- the shared state (callers hold the claim lock) -------------------------------

    @property
    def _mm(self) -> mmap.mmap:
        if self._map is None:
            raise GroupError(f"the commit journal of {self.path} is closed")
        return self._map

    @property
    def _sync(self) -> core.PartitionState:
        if self._sync_state is None:
            raise GroupError(f"the commit journal of {self.path} is closed")
        return self._sync_state

    def _read_state(self) -> tuple[bytes, int, int, int, int, int]:
        return _STATE.unpack_from(self._mm)

    def _set(self, seq: int, gen: int, tail: int, dgen: int, dpos: int) -> None:
        _STATE.pack_into(self._mm, 0, BOOT_ID, seq, gen, tail, dgen, dpos)

    def _current(self) -> tuple[int, int, int, int, int]:
        """(seq, gen, tail, durable gen, durable pos), checked against the disk
        whenever this handle has not written the current generation yet."""
        boot, seq, gen, tail, dgen, dpos = self._read_state()
        if boot != BOOT_ID or gen == 0:
            if boot == REMOVED:
                raise JournalRemoved(f"the consumer group directory {self.path} was removed")
            return self._rebuild(seq, gen)   # a new group, or the first use since a reboot
        if gen != self.gen:
            if not self._state_matches_disk(gen, tail):
                return self._rebuild(seq, gen)
            seq = max(seq, self._max_seq_on_disk())
            self._set(seq, gen, tail, dgen, dpos)
        return seq, gen, tail, dgen, dpos

    def _state_matches_disk(self, gen: int, tail: int) -> bool:
        """Whether the (never fsynced) state is not older than the disk: no
        newer journal, nothing written beyond the tail. A file system that
        lost power without a reboot (a shut-down or unplugged disk) comes
        back with older state than its journals."""
        if any((g or 0) > gen for g in map(journal_gen, os.listdir(self.path))):
            return False
        try:
            with open(os.path.join(self.path, journal_name(gen)), "rb") as f:
                f.seek(tail)
                rest = f.read(JOURNAL_SIZE)
        except FileNotFoundError:
            return False
        return len(rest) == JOURNAL_SIZE - tail and not rest.strip(b"\0")

    def _rebuild(self, seq: int, gen: int) -> tuple[int, int, int, int, int]:
        """Start a new generation past every journal on disk, its counter past every seq."""
        gen = max([g for g in map(journal_gen, os.listdir(self.path)) if g is not None] + [gen]) + 1
        seq = max(seq, self._max_seq_on_disk())
        create_journal(self.path, gen)
        self._set(seq, gen, 0, gen, 0)
        return seq, gen, 0, gen, 0

    def next_seq(self, at_least: int = 0) -> tuple[int, int]:
        """(a new seq ≥ at_least, the current generation) for a fold."""
        with self._claim:
            boot, seq, gen, tail, dgen, dpos = self._read_state()
            seq = max(seq + 1, at_least)
            if boot == BOOT_ID:
                self._set(seq, gen, tail, dgen, dpos)
            else:
                _STATE.pack_into(self._mm, 0, boot, seq, gen, tail, dgen, dpos)
                gen = 0   # not this boot's: no generation is current yet
            return seq, gen

    # -- committing ---------------------------------------------------------------------

    def commit(self, payload: bytes) -> int | None:
        """Append one record and return once it is durable: the generation it
        retired when it found the journal full (0: none), None when the record
        cannot fit in a journal."""
        if HEADER_SIZE + len(payload) > JOURNAL_SIZE:
            return None
        with self._commit_lock:
            retired, gen, end, seq = self._append(payload)
            self._wait_durable(_mark(gen, _aligned(end)), seq)
            return retired

    def _durable(self) -> int:
        """The shared durable mark; -1 while a syncer that died mid-publish left
        it torn, or when it is not one a sync could have published (beyond the
        journal's size, or in a generation not started yet): the next sync
        replaces it, and no commit takes it for a sync."""
        try:
            mark = self._sync.next_offset()
        except BlockingIOError:
            return -1
        if mark & _POS_MASK > JOURNAL_SIZE or mark >> 32 > _STATE_GEN.unpack_from(self._mm, _STATE_GEN_AT)[0]:
            return -1
        return mark

    def _wait_durable(self, mine: int, seq: int) -> None:
        """Return once the durable mark covers ``mine`` (the end of our record,
        whose seq is ``seq``): a sync that began after our write made it so,
        ours or another member's (group commit)."""
        state = self._sync
        syncer = self._syncer
        word = state.current_word()
        while True:
            # (the mark is not looked at before the first try: a record just
            # written is almost never covered yet, and the syncer looks anyway)
            if syncer.try_enter():
                try:
                    if self._durable() < mine:   # (a sync may have ended since we wrote)
                        self._sync_all(mine, seq)
                finally:
                    syncer.__exit__()
                state.bump()   # after the release: a waiter our sync missed finds the lock free
                return   # (our sync read the tail after our write: it covered us)
            # a sync is running; it may have read the tail before our write: wait
            # for it to end, then look again (the bound: a syncer killed mid-sync)
            state.wait_word(word, SYNC_WAIT_S)
            word = state.current_word()
            if self._durable() >= mine:
                return

    def _sync_all(self, mine: int, seq: int) -> None:
        """One fdatasync covering every record written so far, by anyone, then
        publish how far it reached (the caller holds the sync lock).

        ``mine``/``seq``: the end and seq of our own record, the last one we
        wrote. While the group's counter still reads ``seq`` nobody has
        claimed a record since ours, so ours is the tail and the claim lock
        (two flock calls) is not needed to read it. Read without the lock the
        counter is only a hint: whatever it says, ``mine`` ends a record
        written before this fdatasync begins, and so does every record before
        it (they were written under the claim lock before ours); a record
        claimed meanwhile is left to the next sync."""
        if _STATE_SEQ.unpack_from(self._mm, _STATE_SEQ_AT)[0] == seq and mine >> 32 == self.gen:
            mark = mine
        else:
            with self._claim:
                _boot, _seq, gen, tail, _dgen, _dpos = self._read_state()
                if self.gen != gen:
                    self._open(gen)
            mark = _mark(gen, tail)
        os.fdatasync(self.fd)
        state = self._sync
        if state.torn:   # a syncer died while publishing
            state.repair_seq()
        if mark > self._durable():
            state.publish(next_offset=mark)

    def _append(self, payload: bytes) -> tuple[int, int, int, int]:
        """Write one record at the tail: (generation retired or 0, its generation, its end, its seq)."""
        retired = 0
        with self._claim:
            seq, gen, tail, _dgen, _dpos = self._current()
            durable = max(self._durable(), 0)
            dgen, dpos = durable >> 32, durable & _POS_MASK
            if tail + HEADER_SIZE + len(payload) > JOURNAL_SIZE:
                self._retire(gen)
                retired, gen, tail = gen, gen + 1, 0
                create_journal(self.path, gen)
            if self.gen != gen:
                self._open(gen)
            seq += 1
            record = encode_record(seq, dpos if dgen == gen else 0, payload)
            os.pwrite(self.fd, record, tail)
            end = tail + len(record)
            self._set(seq, gen, _aligned(end), dgen, dpos)
        return retired, gen, end, seq

    def _retire(self, gen: int) -> None:
        """Make every record of a full journal durable before the next one
        starts: the durable mark then moves to the next generation, and a
        member still waiting for its record in this one is covered by it."""
        if self.gen != gen:
            self._open(gen)
        os.fdatasync(self.fd)

    def _open(self, gen: int) -> None:
        fd = self._fds.open(os.path.join(self.path, journal_name(gen)), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        self._fds.close(self.fd)
        self.fd, self.gen = fd, gen

    def close(self) -> None:
        """Close this handle (a forked child's copy too: the parent's locks stay its own)."""
        m, self._map = self._map, None
        if m is not None:
            m.close()
        self._sync_state = None   # (the mapping goes with its last reference)
        self.fd = self._state_fd = self._sync_fd = self._fds.close(self.fd, self._state_fd, self._sync_fd)
