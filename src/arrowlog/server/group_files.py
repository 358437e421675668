"""The coordinator's side of one group for every client (docs/GROUPS.md).

The server's wire members are members of the file-based group under
``<data>/groups/<group>/`` (arrowlog.groups.wire): each gets a member file
held by this process, and the partitions it is given are locked in the
group's owner files. When the group also has members the server did not
register (in-process Consumers), the server ignores the leader's assignment
and hands every wire member its share of the one assignment every member
computes (arrowlog.groups.assignors.plan); a change of those members makes
the server rebalance its wire members (Heartbeat answers
REBALANCE_IN_PROGRESS).

Wire clients use the eager protocol: a member that rejoins has given up
everything, so its owner locks are released at JoinGroup (for a
``cooperative-sticky`` group, at SyncGroup, of what it no longer gets).

The partitions locked are only those of the assignment that exist: the
leader's assignment is a client's bytes, and its topic names become owner
file names (a topic ``../../x`` created files outside the group's directory,
and two million partitions of one topic as many lock files).

Thread-safety: the server's event loop only. File-system errors are logged
and leave the group working as a wire-only group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from arrowlog.errors import ArrowlogError
from arrowlog.groups.wire import FileGroup, WireSeat, file_strategy

from .consumer_protocol import consumer_subscription, decode_assignment, encode_assignment, owned_partitions
from .store import valid_topic_name

log = logging.getLogger("arrowlog.server.groups")

LOCK_RETRY_S = 0.01   # waiting for an in-process member to let a partition go (it does at its next poll)
COOPERATIVE = "cooperative-sticky"


def subscription_of(protocols: list[tuple[str, bytes]]) -> list[str]:
    """The topics a wire member subscribes to, as its member file records them: only
    valid topic names (in-process members would read ``^...`` as a regex)."""
    for _, meta in protocols:
        topics = {t for t in consumer_subscription(meta) if valid_topic_name(t)}
        if topics:
            return sorted(topics)
    return []


class FileBridge:
    def __init__(self, groups_dir: str | None, logdir: Any):
        self.groups_dir = groups_dir
        self.logdir = logdir

    @property
    def enabled(self) -> bool:
        return self.groups_dir is not None and self.logdir is not None

    def files(self, g) -> FileGroup | None:
        if self.groups_dir is None or self.logdir is None:
            return None
        if g.files is None:
            g.files = FileGroup(self.groups_dir, g.group_id, self.logdir)
        return g.files

    def existing(self, parts: set[tuple[str, int]]) -> set[tuple[str, int]]:
        """The (topic, partition)s of ``parts`` this data directory has (see the module docstring)."""
        counts: dict[str, int] = {}
        out = set()
        for topic, p in parts:
            if topic not in counts:
                try:
                    counts[topic] = self.logdir.topic(topic).num_partitions if valid_topic_name(topic) else 0
                except ArrowlogError:   # unknown (or deleted meanwhile)
                    counts[topic] = 0
            if 0 <= p < counts[topic]:
                out.add((topic, p))
        return out

    # ------------------------------------------------------------ JoinGroup
    def joined(self, g, m) -> None:
        """Member ``m`` (re)joined: register or update its member file; an eager member
        has given up its partitions."""
        files = self.files(g)
        if files is None or m.protocol_type != "consumer":
            return
        topics = subscription_of(m.protocols)
        strategy = file_strategy([name for name, _ in m.protocols])
        try:
            if m.seat is None:
                if topics:
                    m.seat = files.seat(m.member_id, m.client_id, m.client_host, topics, strategy)
            else:
                kept = owned_partitions(m.metadata_for(COOPERATIVE)) if g.protocol_name == COOPERATIVE else None
                m.seat.hold(kept or set(), acquire=False)   # it gave up everything it does not still own
                m.seat.update(topics, strategy)
        except OSError as exc:
            log.warning("group %s: cannot register member %s in %s: %s", g.group_id, m.member_id,
                        files.gdir.path, exc)

    def left(self, m) -> None:
        if m.seat is not None:
            try:
                m.seat.leave()
            except OSError as exc:
                log.warning("cannot remove the member file of %s: %s", m.member_id, exc)
            m.seat = None

    def close(self, g) -> None:
        for m in g.members.values():
            self.left(m)
        if g.files is not None:
            g.files.close()
            g.files = None

    # ------------------------------------------------------------ rebalance
    def _own(self, g) -> set[str]:
        return {m.seat.member_id for m in g.members.values() if m.seat is not None}

    def plan(self, g) -> None:
        """At the end of a join: note the other members; when there are any, plan
        every wire member's assignment (``m.planned``) instead of the leader's."""
        g.others = ()
        for m in g.members.values():
            m.planned = None
        files = g.files
        if files is None or not any(m.seat is not None for m in g.members.values()):
            return
        try:
            live = files.live()
        except OSError as exc:
            log.warning("group %s: cannot list its member files: %s", g.group_id, exc)
            return
        g.others = files.others(live, self._own(g))
        if not g.others:
            return
        target = files.plan(live)
        held = {tp: m.seat.member_id for m in g.members.values() if m.seat is not None for tp in m.seat.locks}
        for m in g.members.values():
            if m.seat is None:
                m.planned = encode_assignment([])   # not in the files (no valid subscription): nothing
            else:
                mine = target.get(m.seat.member_id, [])
                if g.protocol_name == COOPERATIVE:
                    # cooperative: a partition another wire member still reads is given once that
                    # member has revoked it (its assignment lacks it, so it revokes and rejoins)
                    mine = [tp for tp in mine if held.get(tp, m.seat.member_id) == m.seat.member_id]
                m.planned = encode_assignment(mine)

    def others_changed(self, g) -> bool:
        """Whether the members the server did not register changed since the join
        (one joined, left, died or changed its subscription)."""
        files = g.files
        if files is None or not any(m.seat is not None for m in g.members.values()):
            return False
        try:
            return files.others(files.live(), self._own(g)) != g.others
        except OSError:
            return False

    async def hold(self, g, generation: int, deadline: float) -> bool:
        """Lock the partitions of every wire member's assignment, waiting for in-process
        members to let them go. False when the group moved on or the deadline passed."""
        while True:
            if g.generation_id != generation or g.state != "CompletingRebalance":
                return False
            missing = []
            try:
                for m in g.members.values():
                    if m.seat is not None:
                        # a cooperative member still reads what it loses until it revokes and
                        # rejoins: those locks go at its JoinGroup
                        missing += m.seat.hold(self.existing(decode_assignment(m.assignment)),
                                               release=g.protocol_name != COOPERATIVE)
            except OSError as exc:
                log.warning("group %s: cannot lock its partitions: %s", g.group_id, exc)
                return True
            if not missing:
                return True
            if time.monotonic() >= deadline or self.others_changed(g):
                log.info("group %s: %d partition(s) still held by other members, e.g. %s-%d; rebalancing",
                         g.group_id, len(missing), *missing[0])
                return False
            await asyncio.sleep(LOCK_RETRY_S)

    # ------------------------------------------------------------ commits / describe
    def commit_allowed(self, g, m, topic: str, partition: int) -> bool:
        """A wire member commits a partition it holds, or one nobody holds (Kafka lets a
        member of the generation commit while a rebalance is prepared)."""
        seat: WireSeat | None = m.seat
        if seat is None or seat.owns((topic, partition)) or g.files is None:
            return True
        try:
            return not g.files.held_by_another((topic, partition))
        except OSError:
            return True

    def other_members(self, g) -> list[dict]:
        """The members the server did not register, for DescribeGroups."""
        files = self.files(g)
        if files is None:
            return []
        try:
            live = files.live()
        except OSError:
            return []
        own = self._own(g)
        return [{"member_id": i.member_id, "group_instance_id": None, "client_id": i.client_id,
                 "client_host": i.host, "member_metadata": b"", "member_assignment": b""}
                for i in live if i.member_id not in own]
