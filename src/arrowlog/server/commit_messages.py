"""The offsets a commit carries and what it answers per partition: the same tables in
OffsetCommit (messages.py) and TxnOffsetCommit (txn_messages.py)."""

from __future__ import annotations

from .schema import F as f
from .schema import Field


def committed_topics(leader_epoch: str) -> Field:
    """The request's ``topics``; ``leader_epoch``: the versions with ``committed_leader_epoch``."""
    return f("topics", (
        f("name", "string"),
        f("partitions", (
            f("partition_index", "int32"),
            f("committed_offset", "int64"),
            f("committed_leader_epoch", "int32", leader_epoch, default=-1),
            f("committed_metadata", "string", nullable="0+"),
        )),
    ))


COMMIT_RESULTS = f("topics", (
    f("name", "string"),
    f("partitions", (f("partition_index", "int32"), f("error_code", "int16"))),
))
