"""Group membership across processes, held by locks the kernel releases.

A member is a file ``members/<member_id>.member`` (JSON: id, client id, pid,
host, subscription) that its process keeps flock'ed for as long as it is in
the group. It is written under a temporary name, locked, then renamed into
place, so no one ever sees an unlocked member file of a live member. When
the process dies, even by SIGKILL, the kernel drops the lock; the next peer
that probes the file (``flock(LOCK_EX | LOCK_NB)`` succeeds) removes it and
bumps the generation. No session timeout is involved.

A partition is read by the member that holds ``owners/<topic>-<p>.lock``.
Members compute the same target assignment from the same list of live
members; each one releases what it should no longer own (after committing)
and tries to lock what it should own. A lock still held by the previous
owner just means "retry at the next poll", so a partition is never read by
two members at once, whatever the members believe about each other.

flock (not fcntl/POSIX locks) is used on purpose: flock locks belong to the
open file description, so two consumers in one process exclude each other
too, and closing an unrelated descriptor of the same file does not drop them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field

from .._fds import Descriptors
from ..errors import UnknownPartitionError
from ..storage.logdir import validate_topic_name
from .store import GroupDir

OWNER_RECORD = 256   # bytes of the member id written into an owner lock file


@dataclass
class MemberInfo:
    member_id: str
    client_id: str
    pid: int
    host: str
    subscription: list[str]
    joined_ms: int = 0
    strategy: str = "range"
    extra: dict = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({"member_id": self.member_id, "client_id": self.client_id, "pid": self.pid,
                           "host": self.host, "subscription": self.subscription, "joined_ms": self.joined_ms,
                           "strategy": self.strategy}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> MemberInfo:
        d = json.loads(raw)
        return cls(d["member_id"], d.get("client_id", ""), int(d.get("pid", 0)), d.get("host", ""),
                   list(d.get("subscription", [])), int(d.get("joined_ms", 0)), d.get("strategy", "range"))


def safe_name(client_id: str) -> str:
    """A client id as the start of a member id, which is also a file name."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in client_id or "")[:64] or "consumer"


def new_member_id(client_id: str) -> str:
    return f"{safe_name(client_id)}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


class Membership:
    """This process's membership of a group: the locked member file."""

    def __init__(self, gdir: GroupDir, info: MemberInfo):
        self.gdir = gdir
        self.info = info
        self.path = os.path.join(gdir.members_dir, info.member_id + ".member")
        self.fd = -1
        # dropped without leave(): the descriptor is closed (_fds.py) and the lock goes with it,
        # so the others see a member that is gone (as after a kill) and sweep its file
        self._fds = Descriptors(self)

    def join(self) -> None:
        self.gdir.ensure()
        self.info.joined_ms = int(time.time() * 1000)
        tmp = os.path.join(self.gdir.members_dir, f".{self.info.member_id}.tmp")
        for attempt in range(3):
            fd = self._fds.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, self.info.to_json())
                os.rename(tmp, self.path)
                break
            except FileNotFoundError:
                # a peer swept our temporary file between open and flock
                self._fds.close(fd)
                if attempt == 2:
                    raise
            except BaseException:
                self._fds.close(fd)
                raise
        self.fd = fd
        self.gdir.bump_generation()

    def fenced(self) -> bool:
        """True when our member file was removed under us (the group was
        deleted): we are no longer a member."""
        if self.fd < 0:
            return True
        try:
            return os.fstat(self.fd).st_nlink == 0 or not os.path.exists(self.path)
        except OSError:
            return True

    def leave(self) -> None:
        if self.fd < 0:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.fd = self._fds.close(self.fd)
        try:
            self.gdir.bump_generation()
        except OSError:
            pass  # the group was deleted


class MemberRegistry:
    """A view of the group's live members, probing their locks.

    Member files are parsed once per member id; later probes only try the
    lock, one open+flock+close per peer (a few microseconds).
    """

    def __init__(self, gdir: GroupDir):
        self.gdir = gdir
        self._known: dict[str, MemberInfo] = {}
        self.reaped = False     # the last live() removed a dead member

    def live(self, *, reap: bool = True) -> list[MemberInfo]:
        """The live members, sorted by member id. Dead ones are removed
        (and the generation bumped) when ``reap``."""
        try:
            names = os.listdir(self.gdir.members_dir)
        except FileNotFoundError:
            return []
        out = []
        reaped = False
        seen = set()
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                self._sweep_tmp(os.path.join(self.gdir.members_dir, name))
                continue
            if not name.endswith(".member") or name.startswith("."):
                continue
            mid = name[:-len(".member")]
            seen.add(mid)
            path = os.path.join(self.gdir.members_dir, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue
            try:
                if try_lock(fd):
                    # nobody holds it: that member's process is gone
                    if reap:
                        try:
                            if os.fstat(fd).st_nlink:
                                os.unlink(path)
                                reaped = True
                        except FileNotFoundError:
                            pass
                    continue
                info = self._known.get(mid)
                if info is None:
                    try:
                        info = MemberInfo.from_json(os.pread(fd, 1 << 16, 0))
                    except (ValueError, KeyError, TypeError):
                        continue
                    self._known[mid] = info
                out.append(info)
            finally:
                os.close(fd)
        for mid in list(self._known):
            if mid not in seen:
                del self._known[mid]
        self.reaped = reaped
        if reaped:
            self.gdir.bump_generation()
        out.sort(key=lambda m: m.member_id)
        return out


    @staticmethod
    def _sweep_tmp(path: str) -> None:
        """A member file a joiner died before renaming into place."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return
        try:
            if try_lock(fd) and os.fstat(fd).st_nlink:
                os.unlink(path)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)


def owner_path(gdir: GroupDir, topic: str, partition: int) -> str:
    """The lock file of one partition, always a plain name inside owners/: a topic
    name that is not one (``../x``, a ``/``, a NUL) raises InvalidTopicError, a
    partition that is not a number >= 0 UnknownPartitionError."""
    validate_topic_name(topic)
    if not isinstance(partition, int) or isinstance(partition, bool) or partition < 0:
        raise UnknownPartitionError(f"partition {partition!r} of topic {topic!r} has no owner lock: "
                                    "a partition is a number >= 0")
    return os.path.join(gdir.owners_dir, f"{topic}-{partition}.lock")


class OwnerLocks:
    """The partition locks this member holds."""

    def __init__(self, gdir: GroupDir, member_id: str):
        self.gdir = gdir
        self.member_id = member_id
        self.fds: dict[tuple[str, int], int] = {}
        self._fds = Descriptors(self)   # dropped without release_all(): closed, the locks free for the others

    def __contains__(self, tp: tuple[str, int]) -> bool:
        return tp in self.fds

    def __iter__(self):
        return iter(list(self.fds))

    def __len__(self) -> int:
        return len(self.fds)

    def try_acquire(self, tp: tuple[str, int]) -> bool:
        if tp in self.fds:
            return True
        path = owner_path(self.gdir, *tp)
        fd = self._fds.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW)
        if not try_lock(fd):
            self._fds.close(fd)
            return False
        record = self.member_id.encode()[:OWNER_RECORD].ljust(OWNER_RECORD, b" ")
        try:
            os.pwrite(fd, record, 0)
        except BaseException:   # (a full disk): the lock is not kept, nor its descriptor
            self._fds.close(fd)
            raise
        self.fds[tp] = fd
        return True

    def release(self, tp: tuple[str, int]) -> None:
        fd = self.fds.pop(tp, None)
        if fd is not None:
            self._fds.close(fd)

    def release_all(self) -> None:
        for tp in list(self.fds):
            self.release(tp)


def current_owners(gdir: GroupDir) -> dict[tuple[str, int], str]:
    """Member id holding each partition lock right now."""
    try:
        names = os.listdir(gdir.owners_dir)
    except FileNotFoundError:
        return {}
    out = {}
    for name in names:
        if not name.endswith(".lock"):
            continue
        topic, _, p = name[:-len(".lock")].rpartition("-")
        if not topic or not p.isdigit():
            continue
        try:
            fd = os.open(os.path.join(gdir.owners_dir, name), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            continue
        try:
            if try_lock(fd):
                continue   # free (our lock is dropped by close below)
            mid = os.pread(fd, OWNER_RECORD, 0).decode(errors="replace").strip()
            if mid:
                out[(topic, int(p))] = mid
        finally:
            os.close(fd)
    return out


def hostname() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return ""
