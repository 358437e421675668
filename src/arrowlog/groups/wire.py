"""Wire members in the file-based group: how ``arrowlog serve`` makes a Kafka
client and an in-process Consumer with one ``group.id`` one group.

The files under ``groups/<group>/`` are the single source of truth. The
server registers each wire member as an ordinary member file (a
:class:`WireSeat`), flock'ed by the server process, so the member is alive
exactly while the server holds it: a SIGKILLed server's wire members vanish
like a dead process's. Every member, in-process or wire, gets its share from
the one function :func:`arrowlog.groups.assignors.plan` over the live member
files; the server takes the owner lock of each partition it hands a wire
member before answering its SyncGroup and releases it when the member gives
the partition up (rejoins, leaves, or its session expires). In-process
members never read a partition whose lock the server holds, and the other
way round.

:class:`FileGroup` is the server's view of one group's files: the members it
did not register itself (``others``, whose change makes the server rebalance
its wire members) and the planned assignment.

Thread-safety: used from the server's event loop only.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .assignors import Assignment, plan
from .membership import MemberInfo, MemberRegistry, Membership, OwnerLocks, owner_path, try_lock
from .store import GroupDir

log = logging.getLogger("arrowlog.groups.wire")

TopicPart = tuple[str, int]


def file_strategy(protocol_names: list[str]) -> str:
    """The file-based assignor strategy for a wire member's protocols (its first one
    the files know; ``range`` otherwise)."""
    for name in protocol_names:
        if name in ("range", "roundrobin"):
            return name
    return "range"


class WireSeat:
    """One wire member's member file and the owner locks of its partitions."""

    def __init__(self, gdir: GroupDir, member_id: str, client_id: str, host: str,
                 topics: list[str], strategy: str):
        self.gdir = gdir
        self.info = MemberInfo(member_id, client_id, os.getpid(), host, sorted(topics), strategy=strategy)
        self.membership = Membership(gdir, self.info)
        self.locks = OwnerLocks(gdir, member_id)
        self.membership.join()

    @property
    def member_id(self) -> str:
        return self.info.member_id

    def update(self, topics: list[str], strategy: str) -> None:
        """A rejoin with another subscription: rewrite the member file (same id)."""
        if sorted(topics) == self.info.subscription and strategy == self.info.strategy:
            return
        self.membership.leave()
        self.info.subscription, self.info.strategy = sorted(topics), strategy
        self.membership = Membership(self.gdir, self.info)
        self.membership.join()

    def hold(self, parts: set[TopicPart], *, release: bool = True, acquire: bool = True) -> list[TopicPart]:
        """Keep exactly ``parts`` locked: release the others, lock what is missing.
        Returns the partitions still locked by someone else (empty: all held)."""
        if release:
            for tp in [tp for tp in self.locks if tp not in parts]:
                self.locks.release(tp)
        if not acquire:
            return []
        return [tp for tp in sorted(parts) if not self.locks.try_acquire(tp)]

    def owns(self, tp: TopicPart) -> bool:
        return tp in self.locks

    def release_all(self) -> None:
        self.locks.release_all()

    def leave(self) -> None:
        self.locks.release_all()
        self.membership.leave()


class FileGroup:
    """The server's view of one group's files."""

    def __init__(self, groups_dir: str, group: str, logdir: Any):
        self.gdir = GroupDir(groups_dir, group, create=False)
        self.logdir = logdir
        self.registry = MemberRegistry(self.gdir)

    def seat(self, member_id: str, client_id: str, host: str, topics: list[str], strategy: str) -> WireSeat:
        return WireSeat(self.gdir, member_id, client_id, host, topics, strategy)

    def live(self) -> list[MemberInfo]:
        """Every live member (reaping dead ones), sorted by member id."""
        return self.registry.live()

    @staticmethod
    def others(live: list[MemberInfo], own: set[str]) -> tuple:
        """What the server watches of the members it did not register: their ids and
        subscriptions (a change means the wire members must rebalance)."""
        return tuple((m.member_id, tuple(m.subscription)) for m in live if m.member_id not in own)

    def plan(self, live: list[MemberInfo]) -> Assignment:
        return plan(self.logdir, live)

    def held_by_another(self, tp: TopicPart) -> bool:
        """Whether some member (other than the caller's seat) holds ``tp``'s owner lock."""
        try:
            fd = os.open(owner_path(self.gdir, *tp), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        try:
            return not try_lock(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        self.gdir.close()
