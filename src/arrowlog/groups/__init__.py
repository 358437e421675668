"""Consumer groups: committed offsets and membership across processes.

- :class:`GroupMember` is a Consumer's part in a group (created by the
  Consumer when ``group.id`` is set): subscribe, rebalance, commit.
- :class:`GroupAdmin` lists, describes, resets and deletes groups.

Files: store.py (the group directory and its atomic offsets file),
membership.py (member and partition locks), assignors.py (range and
round-robin), member.py (the consumer side), admin.py. docs/GROUPS.md
describes the protocol and its guarantees.
"""

from .admin import GroupAdmin, GroupDescription, MemberDescription, PartitionLag, ResetPlan, open_group_store
from .assignors import assign, range_assign, roundrobin_assign
from .member import GroupMember
from .store import CommittedOffset, GroupDir, UnknownGroupError

__all__ = [
    "GroupAdmin", "GroupDescription", "MemberDescription", "PartitionLag", "ResetPlan", "open_group_store",
    "GroupMember", "GroupDir", "CommittedOffset", "UnknownGroupError", "assign", "range_assign", "roundrobin_assign",
]
