"""The interface the ``group`` commands and ``consume -g`` need from consumer groups.

The CLI needs only the handful of operations below from the consumer
groups (arrowlog.groups.GroupAdmin implements them; docs/GROUPS.md):

* committed offsets are kept per (group, topic, partition) and are the
  *next* offset to consume, as in Kafka;
* a group exists once it has committed at least one offset;
* ``members`` names the live owner of each partition currently held by a
  running consumer (empty when nobody is consuming);
* committing while members are alive is allowed for a consumer but the CLI
  refuses ``group reset --execute`` / ``group delete`` then, like Kafka's
  tool does for a non-empty group.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import click

TopicPartitionKey = tuple[str, int]


@runtime_checkable
class GroupStore(Protocol):
    def list_groups(self) -> list[str]:
        """Names of the groups with committed offsets."""

    def committed(self, group: str) -> dict[TopicPartitionKey, int]:
        """Committed offsets of a group ({} for an unknown group)."""

    def commit(self, group: str, offsets: dict[TopicPartitionKey, int]) -> None:
        """Durably store these offsets for the group (others are kept)."""

    def members(self, group: str) -> dict[TopicPartitionKey, str]:
        """The live owner (member id) of each partition held right now."""

    def delete(self, group: str) -> None:
        """Forget the group and all its committed offsets."""


def open_group_store(data_dir: str) -> GroupStore:
    """The data directory's consumer groups (arrowlog.groups.GroupAdmin),
    closed when the command ends."""
    from arrowlog.groups import open_group_store as open_store

    store = open_store(data_dir)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(store.close)
    return store
