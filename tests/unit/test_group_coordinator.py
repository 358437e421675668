"""The Kafka server's group coordinator, driven directly (no sockets)."""

from __future__ import annotations

import asyncio

from arrowlog.server import errors as E
from arrowlog.server.groups import GroupCoordinator


class MemoryOffsets:
    def groups(self):
        return []


def join_req(group, member_id="", protocols=("range",), session_ms=10_000):
    return {"group_id": group, "session_timeout_ms": session_ms, "rebalance_timeout_ms": 2000,
            "member_id": member_id, "group_instance_id": None, "protocol_type": "consumer",
            "protocols": [{"name": p, "metadata": p.encode()} for p in protocols]}


def sync_req(group, join, assignments=()):
    return {"group_id": group, "generation_id": join["generation_id"], "member_id": join["member_id"],
            "assignments": [{"member_id": m, "assignment": a} for m, a in assignments]}


def beat(gc, group, join):
    return gc.heartbeat({"group_id": group, "generation_id": join["generation_id"],
                         "member_id": join["member_id"]})["error_code"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_two_members_one_generation_leader_assigns():
    async def main():
        gc = GroupCoordinator(MemoryOffsets(), initial_rebalance_delay_ms=50)
        gc.start()
        a, b = await asyncio.gather(gc.join(join_req("g", protocols=("roundrobin", "range")), "ca", "h", 5),
                                    gc.join(join_req("g"), "cb", "h", 5))
        assert a["generation_id"] == b["generation_id"] == 1
        assert a["protocol_name"] == b["protocol_name"] == "range"  # the one both support
        leader, follower = (a, b) if a["members"] else (b, a)
        assert len(leader["members"]) == 2 and follower["members"] == []
        waiting = asyncio.ensure_future(gc.sync(sync_req("g", follower)))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # followers wait for the leader's assignments
        mine = await gc.sync(sync_req("g", leader, [(leader["member_id"], b"L"), (follower["member_id"], b"F")]))
        assert mine["assignment"] == b"L" and (await waiting)["assignment"] == b"F"
        assert beat(gc, "g", leader) == beat(gc, "g", follower) == E.NONE
        assert gc.describe("g")["group_state"] == "Stable"

        # The follower leaves: the leader is told to rejoin and gets generation 2 alone.
        gc.leave({"group_id": "g", "member_id": follower["member_id"]}, 1)
        assert beat(gc, "g", leader) == E.REBALANCE_IN_PROGRESS
        again = await gc.join(join_req("g", leader["member_id"]), "ca", "h", 5)
        assert again["generation_id"] == 2 and len(again["members"]) == 1
        assert beat(gc, "g", leader) == E.ILLEGAL_GENERATION  # the old generation
        await gc.stop()

    run(main())


def test_errors_and_session_expiry():
    async def main():
        gc = GroupCoordinator(MemoryOffsets(), initial_rebalance_delay_ms=0)
        gc.start()
        assert (await gc.join(join_req("g", member_id="nobody"), "c", "h", 5))["error_code"] == E.UNKNOWN_MEMBER_ID
        assert (await gc.join(join_req("g", session_ms=10), "c", "h", 5))["error_code"] == E.INVALID_SESSION_TIMEOUT
        j = await gc.join(join_req("g", session_ms=1000), "c", "h", 5)
        assert j["error_code"] == E.NONE
        other = await gc.join(join_req("g", protocols=("custom",)), "d", "h", 5)
        assert other["error_code"] == E.INCONSISTENT_GROUP_PROTOCOL
        await gc.sync(sync_req("g", j, [(j["member_id"], b"x")]))
        assert gc.check_commit("g", j["generation_id"], j["member_id"]) == E.NONE
        assert gc.check_commit("g", -1, "") == E.UNKNOWN_MEMBER_ID  # a live group owns the id
        # No heartbeat for longer than the 1 s session: the member is expelled.
        for _ in range(50):
            await asyncio.sleep(0.1)
            if gc.describe("g")["members"] == []:
                break
        assert beat(gc, "g", j) == E.UNKNOWN_MEMBER_ID
        assert gc.describe("g")["group_state"] == "Empty"
        assert gc.check_commit("g", -1, "") == E.NONE
        await gc.stop()

    run(main())


def test_current_members_may_commit_while_a_rebalance_is_prepared():
    """Kafka (and librdkafka, which commits as it gives partitions up) lets a member
    of the current generation commit during PreparingRebalance."""
    async def main():
        gc = GroupCoordinator(MemoryOffsets(), initial_rebalance_delay_ms=0)
        gc.start()
        a, b = await asyncio.gather(gc.join(join_req("g"), "ca", "h", 5), gc.join(join_req("g"), "cb", "h", 5))
        leader, follower = (a, b) if a["members"] else (b, a)
        waiting = asyncio.ensure_future(gc.sync(sync_req("g", follower)))
        await gc.sync(sync_req("g", leader, [(leader["member_id"], b"L"), (follower["member_id"], b"F")]))
        await waiting
        # a third member joins: the group prepares a rebalance and waits for a and b to rejoin
        third = asyncio.ensure_future(gc.join(join_req("g"), "cc", "h", 5))
        while gc.describe("g")["group_state"] != "PreparingRebalance":
            await asyncio.sleep(0.01)
        assert beat(gc, "g", follower) == E.REBALANCE_IN_PROGRESS
        for m in (leader, follower):
            assert gc.check_commit("g", m["generation_id"], m["member_id"]) == E.NONE
        assert gc.check_commit("g", m["generation_id"] - 1, m["member_id"]) == E.ILLEGAL_GENERATION
        assert gc.check_commit("g", m["generation_id"], "stranger") == E.UNKNOWN_MEMBER_ID
        # between JoinGroup and SyncGroup (CompletingRebalance) there is nothing to commit for
        rejoined = await asyncio.gather(gc.join(join_req("g", leader["member_id"]), "ca", "h", 5),
                                        gc.join(join_req("g", follower["member_id"]), "cb", "h", 5), third)
        assert gc.describe("g")["group_state"] == "CompletingRebalance"
        new = rejoined[0]
        assert gc.check_commit("g", new["generation_id"], new["member_id"]) == E.REBALANCE_IN_PROGRESS
        await gc.stop()

    run(main())


class DeletableOffsets(MemoryOffsets):
    def __init__(self):
        self.deleted: list[str] = []

    def groups(self):
        return ["g"]

    def delete(self, group_id):
        self.deleted.append(group_id)


def test_delete_right_after_the_session_ran_out_is_not_refused():
    """librdkafka's 0081 deletes a group exactly when its members' sessions run out:
    Kafka's expiry timer has removed them by then, so the delete must not wait for the
    coordinator's periodic sweep (NON_EMPTY_GROUP would be a race the client loses)."""
    async def main():
        offsets = DeletableOffsets()
        gc = GroupCoordinator(offsets, initial_rebalance_delay_ms=0)
        gc.start()
        j = await gc.join(join_req("g", session_ms=6000), "c", "h", 5)
        await gc.sync(sync_req("g", j, [(j["member_id"], b"x")]))
        assert gc.delete("g") == E.NON_EMPTY_GROUP            # a live member
        # Its session ran out; no await in between, so the sweep has not run.
        gc.groups["g"].members[j["member_id"]].last_seen -= 7.0
        assert gc.delete("g") == E.NONE and offsets.deleted == ["g"]
        await gc.stop()

    run(main())
