"""A group leader's SyncGroup assignment is a client's bytes: the server locks only the partitions of it that
exist. Its topic names became owner-lock file names: ``../../../escaped`` created a file outside the group's
directory (anywhere the server may write, with enough ``../``), and any partition number a lock file (review8)."""

from __future__ import annotations

import os
import struct

from arrowlog.groups.store import group_dirname
from arrowlog.server import messages as M
from arrowlog.server.consumer_protocol import encode_assignment

from .wireclient import call


def subscription(topic: str) -> bytes:
    name = topic.encode()
    return struct.pack(">hih", 0, 1, len(name)) + name + struct.pack(">i", 0)


def files_under(path) -> set[str]:
    return {os.path.join(d, f) for d, _, names in os.walk(path) for f in names}


def test_a_leader_assignment_naming_other_paths_or_partitions_locks_only_what_exists(server, created, group):
    before = files_under(server.data_dir.parent)
    join = call(server, M.JOIN_GROUP, 5, {
        "group_id": group, "session_timeout_ms": 10000, "rebalance_timeout_ms": 10000, "member_id": "",
        "group_instance_id": None, "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": subscription(created)}]})
    assert join["error_code"] == 0 and join["leader"] == join["member_id"]
    member = join["member_id"]
    hostile = encode_assignment([("../../../escaped", 0), ("../" + created, 0), (created, 0), (created, 1),
                                 (created, -1), (created, 2_000_000), ("no-such-topic", 0)])
    sync = call(server, M.SYNC_GROUP, 3, {"group_id": group, "generation_id": join["generation_id"],
                                          "member_id": member, "group_instance_id": None,
                                          "assignments": [{"member_id": member, "assignment": hostile}]})
    assert sync["error_code"] == 0
    assert bytes(sync["assignment"]) == hostile               # handed on as given, as Kafka does
    owners = server.data_dir / "groups" / group_dirname(group) / "owners"
    assert os.listdir(owners) == [f"{created}-0.lock"]      # the one partition that exists
    new = files_under(server.data_dir.parent) - before
    assert [f for f in new if f.endswith(".lock")] == [str(owners / f"{created}-0.lock")]
    assert call(server, M.LEAVE_GROUP, 4, {"group_id": group, "members": [
        {"member_id": member, "group_instance_id": None}]})["error_code"] == 0
