"""The server's coordinator and the file-based group as one group, driven
directly: wire members become member files, hold owner locks for their
partitions, and share one assignment with in-process members."""

from __future__ import annotations

import asyncio
import os
import struct
import time

import pytest

from arrowlog.groups import GroupAdmin
from arrowlog.groups.membership import MemberInfo, Membership, OwnerLocks, current_owners
from arrowlog.groups.store import GroupDir
from arrowlog.server import errors as E
from arrowlog.server.consumer_protocol import (
    consumer_subscription,
    decode_assignment,
    encode_assignment,
    owned_partitions,
)
from arrowlog.server.groups import GroupCoordinator
from arrowlog.server.offsets import GroupOffsetStore
from arrowlog.storage import LogDir

DEADLINE_S = 30.0   # a bound for waits that take milliseconds: generous on a loaded CI machine


def subscription(*topics: str, owned=None) -> bytes:
    body = b"".join(struct.pack(">h", len(t)) + t.encode() for t in topics)
    if owned is None:
        return struct.pack(">hi", 0, len(topics)) + body + struct.pack(">i", -1)
    # version 1: user data, then the partitions the member still owns (an assignment's layout)
    return struct.pack(">hi", 1, len(topics)) + body + struct.pack(">i", 2) + b"ud" + encode_assignment(owned)[2:-4]


def join_req(group, member_id="", topics=("t",), protocol="range", owned=None, instance=None, session_ms=10_000):
    return {"group_id": group, "session_timeout_ms": session_ms, "rebalance_timeout_ms": 2000,
            "member_id": member_id, "group_instance_id": instance, "protocol_type": "consumer",
            "protocols": [{"name": protocol, "metadata": subscription(*topics, owned=owned)}]}


def sync_req(group, join, assignments=()):
    return {"group_id": group, "generation_id": join["generation_id"], "member_id": join["member_id"],
            "assignments": [{"member_id": m, "assignment": a} for m, a in assignments]}


@pytest.fixture
def data(tmp_path):
    with LogDir(str(tmp_path)) as log:
        log.create_topic("t", partitions=6)
        yield tmp_path, log


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


SIX = [("t", p) for p in range(6)]


def in_process_member(gdir: GroupDir, member_id: str) -> tuple[Membership, OwnerLocks]:
    """An in-process member of ``gdir`` (in this process: flock locks are per open file)."""
    membership = Membership(gdir, MemberInfo(member_id, "local", os.getpid(), "h", ["t"]))
    membership.join()
    return membership, OwnerLocks(gdir, member_id)


async def sole_member(path, log, client="wire", **join_kw):
    """A started coordinator and the JoinGroup answer of one member that was given all six."""
    gc = GroupCoordinator(GroupOffsetStore(path), 10, log)
    gc.start()
    j = await gc.join(join_req("g", **join_kw), client, "h", 5)
    s = await gc.sync(sync_req("g", j, [(j["member_id"], encode_assignment(SIX))]))
    assert decode_assignment(s["assignment"]) == set(SIX)
    return gc, j


def test_consumer_protocol_blobs_round_trip_and_hostile_ones_read_empty():
    parts = [("t", 2), ("t", 0), ("u", 5)]
    assert decode_assignment(encode_assignment(parts)) == set(parts)
    assert consumer_subscription(subscription("a", "b")) == {"a", "b"}
    assert decode_assignment(struct.pack(">hi", 0, 1 << 30)) == set()           # count beyond the bytes
    assert decode_assignment(struct.pack(">hih", 0, 1, 50) + b"t") == set()     # name beyond the bytes
    assert decode_assignment(struct.pack(">hih1si", 0, 1, 1, b"t", 1 << 29)) == set()
    assert consumer_subscription(b"\x00") == set()
    assert owned_partitions(subscription("t", owned=[("t", 1), ("t", 4)])) == {("t", 1), ("t", 4)}
    assert owned_partitions(subscription("t")) is None                          # version 0 says nothing
    assert owned_partitions(subscription("t", owned=[("t", 1)])[:-3]) is None   # cut short


def test_wire_member_is_a_member_file_holding_its_partitions(data):
    path, log = data

    async def main():
        gc, j = await sole_member(path, log, "rdkafka/../x")
        assert "/" not in j["member_id"]                   # the member id is also a file name
        admin = GroupAdmin(str(path))
        assert [m.member_id for m in admin.live_members("g")] == [j["member_id"]]
        assert current_owners(GroupDir(str(path / "groups"), "g")) == {("t", p): j["member_id"] for p in range(6)}
        gc.leave({"group_id": "g", "member_id": j["member_id"]}, 1)
        assert admin.live_members("g") == [] and current_owners(GroupDir(str(path / "groups"), "g")) == {}
        await gc.stop()
    run(main())


def test_with_an_in_process_member_the_server_hands_out_the_shared_plan(data):
    path, log = data
    gdir = GroupDir(str(path / "groups"), "g")
    # an in-process member holding partitions 0-3 (3 it has yet to let go of),
    # with the lowest member id, so range gives it 0-2 and the wire member 3-5
    local, locks = in_process_member(gdir, "a-local")
    for p in range(4):
        assert locks.try_acquire(("t", p))

    async def main():
        gc = GroupCoordinator(GroupOffsetStore(path), 10, log)
        gc.start()
        j = await gc.join(join_req("g"), "wire", "h", 5)
        everything = encode_assignment([("t", p) for p in range(6)])   # the leader's own idea: ignored
        syncing = asyncio.ensure_future(gc.sync(sync_req("g", j, [(j["member_id"], everything)])))
        await asyncio.sleep(0.1)
        assert not syncing.done()          # partition 3 is still held by the in-process member
        locks.release(("t", 3))            # it lets go at its next poll
        s = await syncing
        assert decode_assignment(s["assignment"]) == {("t", 3), ("t", 4), ("t", 5)}
        owners = current_owners(gdir)
        assert {p for (_, p), m in owners.items() if m == j["member_id"]} == {3, 4, 5}
        # a wire member may not commit a partition the in-process member holds
        assert not gc.commit_allowed("g", j["member_id"], "t", 0)
        assert gc.commit_allowed("g", j["member_id"], "t", 4)
        described = gc.describe("g")["members"]
        assert sorted(m["member_id"] for m in described) == ["a-local", j["member_id"]]

        # the in-process member leaves: the wire member is told to rejoin, and then gets all six
        locks.release_all()
        local.leave()
        beat = {"group_id": "g", "generation_id": j["generation_id"], "member_id": j["member_id"]}
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if gc.heartbeat(beat)["error_code"] == E.REBALANCE_IN_PROGRESS:
                break
            await asyncio.sleep(0.02)
        assert gc.heartbeat(beat)["error_code"] == E.REBALANCE_IN_PROGRESS
        j2 = await gc.join(join_req("g", j["member_id"]), "wire", "h", 5)
        s2 = await gc.sync(sync_req("g", j2, [(j["member_id"], everything)]))
        assert decode_assignment(s2["assignment"]) == {("t", p) for p in range(6)}
        await gc.stop()
        assert current_owners(gdir) == {}            # a stopped server lets every partition go
    run(main())


def test_cooperative_member_keeps_what_it_still_owns_across_a_rejoin(data):
    path, log = data
    gdir = GroupDir(str(path / "groups"), "g")

    async def main():
        gc, j = await sole_member(path, log, protocol="cooperative-sticky")
        # it rejoins still owning 0-2 (it revoked 3-5): only 3-5 are let go at once
        rejoin = asyncio.ensure_future(gc.join(join_req("g", j["member_id"], protocol="cooperative-sticky",
                                                        owned=SIX[:3]), "wire", "h", 5))
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if {p for _, p in current_owners(gdir)} == {0, 1, 2}:
                break
            await asyncio.sleep(0.01)
        assert {p for _, p in current_owners(gdir)} == {0, 1, 2}
        await rejoin
        await gc.stop()
    run(main())


def test_delete_is_refused_while_in_process_members_read(data):
    path, log = data
    gdir = GroupDir(str(path / "groups"), "g")
    GroupOffsetStore(path).commit("g", {"t": {0: {"offset": 1, "metadata": ""}}})
    local, _ = in_process_member(gdir, "a-local")
    gc = GroupCoordinator(GroupOffsetStore(path), 10, log)
    assert gc.delete("g") == E.NON_EMPTY_GROUP
    assert gc.describe("g")["group_state"] == "Stable"
    local.leave()
    assert gc.delete("g") == E.NONE


def test_static_member_restart_keeps_its_member_file(data):
    path, log = data
    gdir = GroupDir(str(path / "groups"), "g")

    async def main():
        gc, j = await sole_member(path, log, instance="i-1")
        files = [m.member_id for m in GroupAdmin(str(path)).live_members("g")]
        generation = gdir.generation()
        # the static member comes back (a restarted process): same assignment, no rebalance,
        # and in-process members see no membership change
        again = await gc.join(join_req("g", instance="i-1"), "wire", "h", 5)
        assert again["member_id"] != j["member_id"] and again["generation_id"] == j["generation_id"]
        s = await gc.sync(sync_req("g", again))
        assert decode_assignment(s["assignment"]) == set(SIX)
        assert [m.member_id for m in GroupAdmin(str(path)).live_members("g")] == files
        assert gdir.generation() == generation
        assert len(current_owners(gdir)) == 6
        await gc.stop()
    run(main())


def test_a_wire_subscription_is_recorded_with_valid_topic_names_only(data):
    path, log = data

    async def main():
        gc = GroupCoordinator(GroupOffsetStore(path), 10, log)
        gc.start()
        await gc.join(join_req("g", topics=("t", "^(a+)+$", "../x")), "wire", "h", 5)
        assert [m.subscription for m in GroupAdmin(str(path)).live_members("g")] == [["t"]]
        await gc.stop()
    run(main())


def test_a_partition_never_let_go_makes_the_wire_members_rebalance_again(data):
    path, log = data
    gdir = GroupDir(str(path / "groups"), "g")
    _, locks = in_process_member(gdir, "a-stuck")
    assert locks.try_acquire(("t", 5))      # not its share, and it never polls to give it up

    async def main():
        gc = GroupCoordinator(GroupOffsetStore(path), 10, log)
        gc.start()
        j = await gc.join(join_req("g", session_ms=2000), "wire", "h", 5)
        s = await gc.sync(sync_req("g", j))
        assert s["error_code"] == E.REBALANCE_IN_PROGRESS      # after half its session, not forever
        assert ("t", 5) not in {tp for tp, m in current_owners(gdir).items() if m == j["member_id"]}
        await gc.stop()
    run(main())
