"""Zombie fencing of the offsets a transaction commits (Kafka's KIP-447): a
consumer's group metadata (group, generation, member id, group.instance.id) is
checked against the group as it is now, so a member that a rebalance left behind
cannot commit offsets for partitions another member reads by now.

Two views of a group's current generation, one per side that holds it:

- ``wire_member_problem``: the server's coordinator, for TxnOffsetCommit v3+
  (its generation_id / member_id / group_instance_id, from a wire consumer);
- ``local_member_problem``: the group's files (``<data>/groups/<group>/``), for
  an in-process Consumer's ``consumer_group_metadata()`` given to the
  in-process Producer's ``send_offsets_to_transaction``: the member must still
  hold its member file and the group's generation word must be the one it saw.

Both follow Kafka's rule for transactional commits: metadata with no member id
and no generation (a consumer with manually assigned partitions, an old client)
is not checked; otherwise FENCED_INSTANCE_ID, UNKNOWN_MEMBER_ID or
ILLEGAL_GENERATION, which the producer turns into an abortable error.
"""

from __future__ import annotations

from typing import Any

from . import errors as E


def _unchecked(generation_id: int, member_id: str | None, instance: str | None = None) -> bool:
    return generation_id < 0 and not member_id and not instance


def wire_member_problem(coordinator: Any, group_id: str, generation_id: int, member_id: str,
                        instance: str | None) -> int:
    """Error code for a TxnOffsetCommit of ``group_id`` from this member and generation
    (``coordinator``: the server's GroupCoordinator)."""
    if _unchecked(generation_id, member_id, instance):
        return E.NONE
    g = coordinator.groups.get(group_id)
    if g is not None and instance and instance in g.static and g.static[instance] != member_id:
        return E.FENCED_INSTANCE_ID
    if g is None or member_id not in g.members:
        return E.UNKNOWN_MEMBER_ID
    if generation_id != g.generation_id:
        return E.ILLEGAL_GENERATION
    return E.NONE


def local_member_problem(groups_dir: str, group_id: str, generation_id: int, member_id: str | None) -> int:
    """Error code for offsets of ``group_id`` staged with an in-process member's metadata."""
    if _unchecked(generation_id, member_id):
        return E.NONE
    from ..groups.membership import MemberRegistry
    from ..groups.store import GroupDir

    gdir = GroupDir(groups_dir, group_id, create=False)
    try:
        if not gdir.exists():
            return E.UNKNOWN_MEMBER_ID
        live = {m.member_id for m in MemberRegistry(gdir).live(reap=False)}
        if member_id not in live:
            return E.UNKNOWN_MEMBER_ID
        if generation_id != gdir.generation():
            return E.ILLEGAL_GENERATION
        return E.NONE
    finally:
        gdir.close()
