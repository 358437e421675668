"""The group coordinator keeps at most ``max_group_members`` members, all groups together (review8).

A JoinGroup with an empty member id makes a member (a member file and a descriptor) whether or not its
client reads the answer; members stay until they leave or their session (up to 30 minutes) expires. 1,000
such JoinGroups pipelined on 20 connections that then closed left 1,000 members and 1,000 more descriptors
in the server: enough of them exhaust its descriptors. A JoinGroup past the limit gets
GROUP_MAX_SIZE_REACHED, and no empty group is kept for it."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import pytest
from inproc_server import frame, recv_frame
from inproc_server import served as serve_in_thread

from arrowlog.server import errors as E
from arrowlog.server import messages as M
from arrowlog.server.groups import GroupCoordinator
from arrowlog.server.wire import Reader

LIMIT = 6


class Offsets:
    def groups(self):
        return []


def join_body(group: str, member_id: str = "") -> dict:
    sub = struct.pack(">hih", 0, 1, 1) + b"t" + struct.pack(">i", 0)
    return {"group_id": group, "session_timeout_ms": 1_800_000, "rebalance_timeout_ms": 60_000,
            "member_id": member_id, "group_instance_id": None, "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": sub}]}


def join(port: int, group: str, member_id: str = "") -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(frame(M.JOIN_GROUP, 5, join_body(group, member_id), 1))
        r = Reader(recv_frame(s))
        assert r.int32() == 1
        return M.JOIN_GROUP.decode_response(r, 5)


@pytest.fixture
def served(tmp_path):
    with serve_in_thread(tmp_path / "data", max_group_members=LIMIT, group_initial_rebalance_delay_ms=0) as served:
        yield served


def members(server, run) -> dict[str, int]:
    async def count():
        return {name: len(g.members) for name, g in server.broker.groups.groups.items()}
    return run(count())


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def test_joins_from_clients_that_never_read_stop_at_the_member_limit(served):
    server, run = served
    for c in range(3):                              # pipelined, never read, closed
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(b"".join(frame(M.JOIN_GROUP, 5, join_body("flood"), i) for i in range(10)))
    wait_for(lambda: sum(members(server, run).values()) >= LIMIT, "the flood's members")
    refused = join(server.port, "flood")
    assert refused["error_code"] == E.GROUP_MAX_SIZE_REACHED and refused["member_id"] == ""
    assert join(server.port, "another-group")["error_code"] == E.GROUP_MAX_SIZE_REACHED
    assert members(server, run) == {"flood": LIMIT}        # no empty group kept for the refused one


def join_req(group: str, member_id: str = "") -> dict:
    return {**join_body(group, member_id), "session_timeout_ms": 10_000, "rebalance_timeout_ms": 10_000}


def test_a_member_that_leaves_makes_room_and_known_members_rejoin_at_the_limit():
    async def main():
        gc = GroupCoordinator(Offsets(), initial_rebalance_delay_ms=50, max_members=LIMIT)
        gc.start()
        joined = await asyncio.gather(*(gc.join(join_req("g"), f"c{i}", "h", 5) for i in range(LIMIT)))
        assert [j["error_code"] for j in joined] == [E.NONE] * LIMIT
        assert len({j["generation_id"] for j in joined}) == 1
        assert (await gc.join(join_req("g"), "late", "h", 5))["error_code"] == E.GROUP_MAX_SIZE_REACHED
        assert (await gc.join(join_req("other"), "late", "h", 5))["error_code"] == E.GROUP_MAX_SIZE_REACHED
        assert "other" not in gc.groups                       # no empty group kept for it
        gc.leave({"group_id": "g", "member_id": joined[0]["member_id"]}, 1)
        again = await asyncio.gather(gc.join(join_req("g"), "new", "h", 5),
                                     *(gc.join(join_req("g", j["member_id"]), "c", "h", 5) for j in joined[1:]))
        assert [j["error_code"] for j in again] == [E.NONE] * LIMIT   # one new member, the others rejoined
        assert len(gc.groups["g"].members) == LIMIT
        await gc.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_join_still_waiting_at_stop_is_answered():
    async def main():
        gc = GroupCoordinator(Offsets(), initial_rebalance_delay_ms=50)
        gc.start()
        first = await gc.join(join_req("g"), "a", "h", 5)
        waiting = asyncio.ensure_future(gc.join(join_req("g"), "b", "h", 5))   # waits for the first to rejoin
        while len(gc.groups["g"].members) < 2:   # by progress: the second join is in the group, waiting
            await asyncio.sleep(0.005)
        assert not waiting.done()
        await gc.stop()
        assert (await asyncio.wait_for(waiting, 5))["error_code"] == E.COORDINATOR_NOT_AVAILABLE
        assert first["error_code"] == E.NONE

    asyncio.run(asyncio.wait_for(main(), 30))
