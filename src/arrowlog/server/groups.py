"""The group coordinator: Kafka's classic consumer-group protocol, in memory.

States, as Kafka names them::

    Empty --join--> PreparingRebalance --all joined--> CompletingRebalance
      ^                  ^     |                              | leader syncs
      |                  |     +------------------------------+----> Stable
      +--last leaves-----+---------- join / leave / expiry ----------+

A rebalance completes when every current member has (re)joined, or when the
longest rebalance timeout has passed (members that did not rejoin are
dropped). The first member to join an empty group is the leader; the leader
gets every member's subscription and sends the assignments in SyncGroup,
which other members wait for. Members that send nothing (no heartbeat, join,
sync or commit) for their session timeout are expelled and the group
rebalances. Committed offsets go through ``GroupOffsetStore``.

Membership is shared with in-process Consumers of the same data directory
through the group's files (group_files.py): each wire member is also a member
file, its partitions are owner-locked, and in a group with in-process members
the server assigns every wire member its share of the one file-based plan.

Thread-safety: everything runs on the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from arrowlog.errors import GroupError
from arrowlog.groups.membership import safe_name

from . import errors as E
from .consumer_protocol import consumer_subscription
from .group_files import FileBridge
from .offsets import group_id_problem

log = logging.getLogger("arrowlog.server.groups")

EMPTY, PREPARING, COMPLETING, STABLE = "Empty", "PreparingRebalance", "CompletingRebalance", "Stable"

# Kafka's group.min/max.session.timeout.ms defaults.
MIN_SESSION_TIMEOUT_MS = 1000
MAX_SESSION_TIMEOUT_MS = 30 * 60 * 1000


class Member:
    __slots__ = ("member_id", "group_instance_id", "client_id", "client_host", "session_timeout_ms",
                 "rebalance_timeout_ms", "protocol_type", "protocols", "assignment", "join_future",
                 "sync_future", "last_seen", "seat", "planned")

    def __init__(self, member_id, client_id, client_host):
        self.member_id = member_id
        self.group_instance_id = None
        self.client_id = client_id
        self.client_host = client_host
        self.session_timeout_ms = 10000
        self.rebalance_timeout_ms = 10000
        self.protocol_type = ""
        self.protocols: list[tuple[str, bytes]] = []
        self.assignment = b""
        self.join_future: asyncio.Future | None = None
        self.sync_future: asyncio.Future | None = None
        self.last_seen = time.monotonic()
        self.seat = None       # its member file and partition locks (group_files.py)
        self.planned: bytes | None = None   # its share of the file-based plan, in a mixed group

    def metadata_for(self, protocol: str | None) -> bytes:
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        return b""


class Group:
    def __init__(self, group_id: str):
        self.group_id = group_id
        self.state = EMPTY
        self.generation_id = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.rebalance_deadline = 0.0
        self.join_not_before = 0.0
        self.rebalance_task: asyncio.Task | None = None
        self.static: dict[str, str] = {}  # group.instance.id -> its current member id
        self.files = None      # arrowlog.groups.wire.FileGroup, the group's files
        self.others: tuple = ()  # the in-process members at the last join (group_files.py)


class GroupCoordinator:
    def __init__(self, offset_store, initial_rebalance_delay_ms: int = 100, logdir=None,
                 max_members: int | None = None):
        """``logdir`` (the served LogDir) makes wire members share the file-based groups
        of ``offset_store.groups_dir`` with in-process Consumers. ``max_members``: the
        members of all groups together; a JoinGroup that would add one more gets
        GROUP_MAX_SIZE_REACHED (None: no limit)."""
        self.store = offset_store
        self.max_members = max_members
        self._full_logged = 0.0
        self.files = FileBridge(getattr(offset_store, "groups_dir", None), logdir)
        self.groups: dict[str, Group] = {}
        self.initial_rebalance_delay = initial_rebalance_delay_ms / 1000.0
        self._reaper: asyncio.Task | None = None

    # ------------------------------------------------------------ lifecycle
    def answer_waiting(self) -> None:
        """Answer every JoinGroup and SyncGroup still waiting COORDINATOR_NOT_AVAILABLE (the
        server stops: its clients find the coordinator again)."""
        for g in self.groups.values():
            for mid, m in g.members.items():
                for fut in (m.join_future, m.sync_future):
                    if fut is not None and not fut.done():
                        fut.set_result({"error_code": E.COORDINATOR_NOT_AVAILABLE, "member_id": mid})

    def start(self) -> None:
        self._reaper = asyncio.get_running_loop().create_task(self._expire_loop())

    async def stop(self) -> None:
        if self._reaper:
            self._reaper.cancel()
        self.answer_waiting()   # not left pending when the loop closes
        for g in self.groups.values():
            if g.rebalance_task:
                g.rebalance_task.cancel()
            self.files.close(g)
        close = getattr(self.store, "close", None)
        if close is not None:
            close()   # the journal handles kept open for commits

    def group(self, group_id: str) -> Group:
        g = self.groups.get(group_id)
        if g is None:
            g = self.groups[group_id] = Group(group_id)
        return g

    # ------------------------------------------------------------ JoinGroup
    async def join(self, req: dict, client_id: str, client_host: str, version: int) -> dict:
        group_id = req["group_id"]
        if group_id_problem(group_id):  # its offsets could not be stored
            return {"error_code": E.INVALID_GROUP_ID, "member_id": req["member_id"]}
        timeout = req["session_timeout_ms"]
        if not MIN_SESSION_TIMEOUT_MS <= timeout <= MAX_SESSION_TIMEOUT_MS:
            return {"error_code": E.INVALID_SESSION_TIMEOUT, "member_id": req["member_id"]}
        if not req["member_id"] and group_id not in self.groups and self._full(group_id):
            return {"error_code": E.GROUP_MAX_SIZE_REACHED, "member_id": ""}   # (not even an empty group kept)
        g = self.group(group_id)
        protocols = [(p["name"], bytes(p["metadata"])) for p in req["protocols"]]
        if not protocols or (g.members and (
                req["protocol_type"] != g.protocol_type
                or not self._common_protocols(g, {name for name, _ in protocols}))):
            return {"error_code": E.INCONSISTENT_GROUP_PROTOCOL, "member_id": req["member_id"]}
        member_id = req["member_id"]
        # JoinGroup v0-4 has no group_instance_id (the decoder fills in ""): dynamic members
        instance = (req.get("group_instance_id") or None) if version >= 5 else None
        if instance is not None and not member_id and instance in g.static:
            rejoined = self._rejoin_static(g, instance, protocols, client_id, client_host, req)
            if rejoined is not None:
                return rejoined
            member_id = g.static[instance]
        if member_id and member_id not in g.members:
            return {"error_code": E.UNKNOWN_MEMBER_ID, "member_id": member_id}
        if not member_id:
            if self._full(group_id):
                return {"error_code": E.GROUP_MAX_SIZE_REACHED, "member_id": ""}
            member_id = new_wire_member_id(client_id)
            g.members[member_id] = Member(member_id, client_id, client_host)
            if g.leader_id is None:
                g.leader_id = member_id
        m = g.members[member_id]
        m.group_instance_id = instance
        if instance is not None:
            g.static[instance] = member_id
        m.session_timeout_ms = timeout
        rt = req.get("rebalance_timeout_ms", -1)
        m.rebalance_timeout_ms = rt if rt and rt > 0 else timeout
        m.protocol_type = req["protocol_type"]
        m.protocols = protocols
        m.last_seen = time.monotonic()
        g.protocol_type = req["protocol_type"]
        self.files.joined(g, m)
        if m.join_future is not None and not m.join_future.done():
            m.join_future.cancel()  # a retried join replaces the old one
        m.join_future = asyncio.get_running_loop().create_future()
        if g.state != PREPARING:
            self._prepare_rebalance(g, f"member {member_id} joined")
        else:
            self._maybe_complete_join(g)
        try:
            return await m.join_future
        except asyncio.CancelledError:
            return {"error_code": E.REBALANCE_IN_PROGRESS, "member_id": member_id}

    def _full(self, group_id: str) -> bool:
        """True when the coordinator already keeps ``max_members`` members (logged every 10 s at most)."""
        if self.max_members is None or sum(len(g.members) for g in self.groups.values()) < self.max_members:
            return False
        now = time.monotonic()
        if now - self._full_logged >= 10.0:
            self._full_logged = now
            log.warning("group %s: refused a new member: the server keeps %d group members already (members "
                        "leave, or expire after their session timeout; BrokerConfig(max_group_members=) "
                        "raises the limit)", group_id, self.max_members)
        return True

    def _rejoin_static(self, g: Group, instance: str, protocols, client_id, client_host, req) -> dict | None:
        """A static member (``group.instance.id``) that comes back with no member id, e.g.
        after a restart: it replaces its old member id and, when the group is Stable and its
        subscription is unchanged, keeps its assignment without a rebalance (KIP-345). None
        when a rebalance is needed after all (the caller then joins it as that member)."""
        old_id = g.static[instance]
        old = g.members.pop(old_id, None)
        if old is None:
            del g.static[instance]
            return None
        new_id = new_wire_member_id(client_id)
        for fut in (old.join_future, old.sync_future):  # the old incarnation is fenced
            if fut is not None and not fut.done():
                fut.set_result({"error_code": E.FENCED_INSTANCE_ID, "member_id": old_id})
        old.member_id, old.client_id, old.client_host = new_id, client_id, client_host
        old.join_future = old.sync_future = None
        old.last_seen = time.monotonic()
        old.session_timeout_ms = req["session_timeout_ms"]
        g.members[new_id] = old
        g.static[instance] = new_id
        if g.leader_id == old_id:
            g.leader_id = new_id
        log.info("group %s: static member %s rejoined as %s", g.group_id, instance, new_id)
        if g.state != STABLE or old.protocols != protocols or req["protocol_type"] != g.protocol_type:
            return None
        # Stable and nothing changed: the same generation; SyncGroup hands back the old assignment.
        return {"error_code": E.NONE, "generation_id": g.generation_id, "protocol_type": g.protocol_type,
                "protocol_name": g.protocol_name, "leader": g.leader_id, "member_id": new_id,
                "members": []}

    def _common_protocols(self, g: Group, extra: set | None = None) -> list[str]:
        members = list(g.members.values())
        if not members:
            return []
        first = [name for name, _ in members[0].protocols] if members[0].protocols else list(extra or [])
        common = []
        for name in first:
            if all(name in {n for n, _ in m.protocols} for m in members if m.protocols) and (
                    extra is None or name in extra):
                common.append(name)
        return common

    def _prepare_rebalance(self, g: Group, reason: str) -> None:
        log.info("group %s: rebalance (%s)", g.group_id, reason)
        was_empty = g.state == EMPTY
        g.state = PREPARING
        # A member waiting in SyncGroup must rejoin.
        for m in g.members.values():
            if m.sync_future is not None and not m.sync_future.done():
                m.sync_future.set_result({"error_code": E.REBALANCE_IN_PROGRESS})
        longest = max((m.rebalance_timeout_ms for m in g.members.values()), default=10000)
        g.rebalance_deadline = time.monotonic() + longest / 1000.0
        if g.rebalance_task:
            g.rebalance_task.cancel()
        # An empty group waits a moment so that members starting together join one generation.
        delay = self.initial_rebalance_delay if was_empty else 0.0
        g.join_not_before = time.monotonic() + delay
        g.rebalance_task = asyncio.get_running_loop().create_task(self._rebalance_timer(g, delay))

    async def _rebalance_timer(self, g: Group, delay: float) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            self._maybe_complete_join(g)
            remaining = g.rebalance_deadline - time.monotonic()
            if g.state == PREPARING and remaining > 0:
                await asyncio.sleep(remaining)
            if g.state == PREPARING:
                for mid in [mid for mid, m in g.members.items() if m.join_future is None
                            or m.join_future.done()]:
                    log.info("group %s: member %s did not rejoin in time", g.group_id, mid)
                    self._remove(g, mid)
                self._maybe_complete_join(g, force=True)
        except asyncio.CancelledError:
            pass

    def _maybe_complete_join(self, g: Group, force: bool = False) -> None:
        if g.state != PREPARING:
            return
        if not force and time.monotonic() < g.join_not_before:
            return  # an empty group waits out the initial delay (the timer calls again)
        pending = [m for m in g.members.values() if m.join_future is not None and not m.join_future.done()]
        if not g.members:
            g.state = EMPTY
            return
        if len(pending) < len(g.members) and not force:
            return
        if not pending:
            return
        g.generation_id += 1
        common = self._common_protocols(g)
        g.protocol_name = common[0] if common else None
        if g.leader_id not in g.members:
            g.leader_id = pending[0].member_id
        g.state = COMPLETING
        self.files.plan(g)
        if g.rebalance_task and g.rebalance_task is not asyncio.current_task():
            g.rebalance_task.cancel()
        members = [{"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                    "metadata": m.metadata_for(g.protocol_name)} for m in g.members.values()]
        for m in g.members.values():
            m.assignment = b""
            resp = {"error_code": E.NONE, "generation_id": g.generation_id,
                    "protocol_type": g.protocol_type, "protocol_name": g.protocol_name,
                    "leader": g.leader_id, "member_id": m.member_id,
                    "members": members if m.member_id == g.leader_id else []}
            if m.join_future is not None and not m.join_future.done():
                m.join_future.set_result(resp)
            m.last_seen = time.monotonic()
        log.info("group %s: generation %d with %d member(s), protocol %s", g.group_id,
                 g.generation_id, len(g.members), g.protocol_name)

    # ------------------------------------------------------------ SyncGroup
    @staticmethod
    def _fenced(g: Group | None, mid: str, instance: str | None) -> bool:
        """Whether a request from member ``mid`` with ``group.instance.id`` ``instance``
        comes from an incarnation another member with that instance id replaced."""
        return g is not None and bool(instance) and instance in g.static and g.static[instance] != mid

    async def sync(self, req: dict) -> dict:
        g = self.groups.get(req["group_id"])
        mid = req["member_id"]
        if self._fenced(g, mid, req.get("group_instance_id")):
            return {"error_code": E.FENCED_INSTANCE_ID}
        if g is None or mid not in g.members:
            return {"error_code": E.UNKNOWN_MEMBER_ID}
        if req["generation_id"] != g.generation_id:
            return {"error_code": E.ILLEGAL_GENERATION}
        if g.state == PREPARING:
            return {"error_code": E.REBALANCE_IN_PROGRESS}
        m = g.members[mid]
        m.last_seen = time.monotonic()
        ok = {"error_code": E.NONE, "protocol_type": g.protocol_type, "protocol_name": g.protocol_name}
        if g.state == STABLE:
            return {**ok, "assignment": m.assignment}
        if mid == g.leader_id:
            assignments = {a["member_id"]: bytes(a["assignment"]) for a in req["assignments"]}
            for other in g.members.values():
                planned = other.planned   # in a group with in-process members: the file-based plan
                other.assignment = planned if planned is not None else assignments.get(other.member_id, b"")
            generation = g.generation_id
            deadline = time.monotonic() + m.session_timeout_ms / 2000.0
            if not await self.files.hold(g, generation, deadline):
                if g.generation_id == generation and g.state == COMPLETING:
                    self._prepare_rebalance(g, "partitions still held by other members")
                return {"error_code": E.REBALANCE_IN_PROGRESS}
            g.state = STABLE
            for other in g.members.values():
                if other.sync_future is not None and not other.sync_future.done():
                    other.sync_future.set_result({**ok, "assignment": other.assignment})
            return {**ok, "assignment": m.assignment}
        m.sync_future = asyncio.get_running_loop().create_future()
        return await m.sync_future

    # ------------------------------------------------------------ Heartbeat / LeaveGroup
    def heartbeat(self, req: dict) -> dict:
        g = self.groups.get(req["group_id"])
        mid = req["member_id"]
        if self._fenced(g, mid, req.get("group_instance_id")):
            return {"error_code": E.FENCED_INSTANCE_ID}
        if g is None or mid not in g.members:
            return {"error_code": E.UNKNOWN_MEMBER_ID}
        g.members[mid].last_seen = time.monotonic()
        if req["generation_id"] != g.generation_id:
            return {"error_code": E.ILLEGAL_GENERATION}
        if g.state == PREPARING:
            return {"error_code": E.REBALANCE_IN_PROGRESS}
        return {"error_code": E.NONE}

    def leave(self, req: dict, version: int) -> dict:
        g = self.groups.get(req["group_id"])
        if version >= 3:
            ids = [m["member_id"] for m in req["members"]]
        else:
            ids = [req["member_id"]]
        results = []
        for mid in ids:
            if g is None or mid not in g.members:
                results.append({"member_id": mid, "error_code": E.UNKNOWN_MEMBER_ID})
                continue
            self._remove(g, mid)
            results.append({"member_id": mid, "error_code": E.NONE})
            log.info("group %s: member %s left", g.group_id, mid)
        if g is not None and any(r["error_code"] == E.NONE for r in results):
            self._after_membership_change(g, "member left")
        top = E.NONE if version >= 3 or (results and results[0]["error_code"] == E.NONE) \
            else E.UNKNOWN_MEMBER_ID
        return {"error_code": top, "members": results}

    def _remove(self, g: Group, mid: str) -> None:
        m = g.members.pop(mid, None)
        if m is None:
            return
        if m.group_instance_id is not None and g.static.get(m.group_instance_id) == mid:
            del g.static[m.group_instance_id]
        self.files.left(m)
        for fut in (m.join_future, m.sync_future):
            if fut is not None and not fut.done():
                fut.set_result({"error_code": E.UNKNOWN_MEMBER_ID, "member_id": mid})
        if g.leader_id == mid:
            g.leader_id = next(iter(g.members), None)

    def _after_membership_change(self, g: Group, reason: str) -> None:
        if not g.members:
            if g.rebalance_task:
                g.rebalance_task.cancel()
            g.state = EMPTY
            g.protocol_name = None
            g.generation_id += 1
        elif g.state == PREPARING:
            self._maybe_complete_join(g)
        else:
            self._prepare_rebalance(g, reason)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            for g in list(self.groups.values()):
                if not self._expire_overdue(g) and g.state in (COMPLETING, STABLE) \
                        and self.files.others_changed(g):
                    self._prepare_rebalance(g, "in-process members changed")

    def _expire_overdue(self, g: Group) -> bool:
        """Remove the members of ``g`` whose session ran out (not those waiting in a
        join or sync); whether any was."""
        now = time.monotonic()
        expired = [mid for mid, m in g.members.items()
                   if (m.join_future is None or m.join_future.done())
                   and (m.sync_future is None or m.sync_future.done())
                   and now - m.last_seen > m.session_timeout_ms / 1000.0]
        for mid in expired:
            log.info("group %s: member %s session expired", g.group_id, mid)
            self._remove(g, mid)
        if expired:
            self._after_membership_change(g, "session timeout")
        return bool(expired)

    # ------------------------------------------------------------ offsets
    def check_commit(self, group_id: str, generation_id: int, member_id: str,
                     instance: str | None = None) -> int:
        """Error code for an OffsetCommit from this member and generation."""
        g = self.groups.get(group_id)
        if self._fenced(g, member_id, instance):
            return E.FENCED_INSTANCE_ID
        if generation_id < 0 and not member_id:
            # A simple (manually assigned) consumer: allowed unless a live group owns the id.
            return E.NONE if g is None or not g.members else E.UNKNOWN_MEMBER_ID
        if g is None or member_id not in g.members:
            return E.UNKNOWN_MEMBER_ID
        g.members[member_id].last_seen = time.monotonic()
        if generation_id != g.generation_id:
            return E.ILLEGAL_GENERATION
        # Kafka accepts commits from current members while a rebalance is being
        # prepared: librdkafka commits exactly then, when it gives partitions up.
        # Between JoinGroup and SyncGroup the member has no assignment yet to commit for.
        if g.state == COMPLETING:
            return E.REBALANCE_IN_PROGRESS
        return E.NONE

    def commit_allowed(self, group_id: str, member_id: str, topic: str, partition: int) -> bool:
        """Commit fencing per partition: a wire member may not commit a partition
        another member (wire or in-process) holds now."""
        g = self.groups.get(group_id)
        m = g.members.get(member_id) if g is not None else None
        return m is None or self.files.commit_allowed(g, m, topic, partition)

    # ------------------------------------------------------------ describe / list
    def describe(self, group_id: str) -> dict:
        g = self.groups.get(group_id)
        if g is None:
            known = group_id in self.store.groups()
            others = self._in_process_members(group_id) if known else []
            state = STABLE if others else EMPTY if known else "Dead"
            return {"error_code": E.NONE, "group_id": group_id, "group_state": state,
                    "protocol_type": "consumer" if others else "", "protocol_data": "", "members": others}
        return {"error_code": E.NONE, "group_id": group_id, "group_state": g.state,
                "protocol_type": g.protocol_type or "",
                "protocol_data": (g.protocol_name or "") if g.state in (COMPLETING, STABLE) else "",
                "members": [{"member_id": m.member_id, "group_instance_id": m.group_instance_id,
                             "client_id": m.client_id or "", "client_host": m.client_host,
                             "member_metadata": m.metadata_for(g.protocol_name or ""),
                             "member_assignment": m.assignment} for m in g.members.values()]
                + self.files.other_members(g)}

    def _in_process_members(self, group_id: str) -> list[dict]:
        """The members of a group the server has no wire members of (DescribeGroups' form)."""
        g = Group(group_id)
        try:
            return self.files.other_members(g)
        finally:
            self.files.close(g)

    def delete(self, group_id: str) -> int:
        """DeleteGroups for one group: its committed offsets are forgotten. Refused
        (NON_EMPTY_GROUP) while it has members."""
        if group_id_problem(group_id):
            return E.INVALID_GROUP_ID
        g = self.groups.get(group_id)
        if g is not None and g.members:
            # Members whose session ran out are gone, as Kafka's exact expiry timer
            # would have removed them, even if the periodic sweep has not run yet.
            self._expire_overdue(g)
        if g is not None and g.members:
            return E.NON_EMPTY_GROUP
        known = g is not None or group_id in self.store.groups()
        if known and (self.files.other_members(g) if g is not None else self._in_process_members(group_id)):
            return E.NON_EMPTY_GROUP   # in-process members are reading
        if not known:
            return E.GROUP_ID_NOT_FOUND
        if g is not None:
            if g.rebalance_task:
                g.rebalance_task.cancel()
            self.files.close(g)
            del self.groups[group_id]
        try:
            self.store.delete(group_id)
        except (OSError, GroupError) as exc:
            if group_id in self.store.groups():
                log.error("cannot delete group %s: %s", group_id, exc)
                return E.COORDINATOR_NOT_AVAILABLE
        log.info("deleted group %s", group_id)
        return E.NONE

    def subscribed_topics(self, group_id: str) -> set[str] | None:
        """The topics the group's members subscribe to (consumer protocol), or None when the
        group has no members (its offsets may then be deleted freely)."""
        g = self.groups.get(group_id)
        if g is None or not g.members:
            return None
        topics: set[str] = set()
        for m in g.members.values():
            for _, meta in m.protocols:
                topics |= consumer_subscription(meta)
        return topics

    def list(self) -> list[dict]:
        names = set(self.store.groups()) | set(self.groups)
        out = []
        for name in sorted(names):
            g = self.groups.get(name)
            out.append({"group_id": name, "protocol_type": (g.protocol_type if g else None) or "consumer",
                        "group_state": g.state if g else EMPTY})
        return out


def new_wire_member_id(client_id: str) -> str:
    """Kafka's member id form (client id, then a UUID), safe as a file name: wire
    members are also member files (group_files.py)."""
    return f"{safe_name(client_id) if client_id else 'member'}-{uuid.uuid4()}"
