"""The interface the ``group`` commands and ``consume -g`` need from consumer groups.

The durable group store belongs to the consumer-groups work; the CLI only
needs the handful of operations below, so it is written against this
protocol and :func:`open_group_store` finds an implementation at run time.

Assumptions (to be confirmed when the consumer-groups module lands):

* committed offsets are kept per (group, topic, partition) and are the
  *next* offset to consume, as in Kafka;
* a group exists once it has committed at least one offset;
* ``members`` names the live owner of each partition currently held by a
  running consumer (empty when nobody is consuming);
* committing while members are alive is allowed for a consumer but the CLI
  refuses ``group reset --execute`` / ``group delete`` then, like Kafka's
  tool does for a non-empty group.

An implementation is found in this order: the ``ARROWLOG_GROUP_STORE``
environment variable (``module:callable``, called with the data directory),
then ``arrowlog.groups.open_group_store(data_dir)`` (the embedded consumer
groups' ``GroupAdmin``) or ``arrowlog.groups.GroupStore(data_dir)``.
"""

from __future__ import annotations

import importlib
import os
from typing import Protocol, runtime_checkable

import click

from .common import Unavailable

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


def _load(spec: str, data_dir: str) -> GroupStore:
    mod_name, _, attr = spec.partition(":")
    mod = importlib.import_module(mod_name)
    return getattr(mod, attr or "open_group_store")(data_dir)


def open_group_store(data_dir: str) -> GroupStore:
    """The group store of a data directory (closed when the command ends), or
    exit 6 when none is installed."""
    store = _find_group_store(data_dir)
    close = getattr(store, "close", None)
    ctx = click.get_current_context(silent=True)
    if callable(close) and ctx is not None:
        ctx.call_on_close(close)
    return store


def _find_group_store(data_dir: str) -> GroupStore:
    spec = os.environ.get("ARROWLOG_GROUP_STORE")
    if spec:
        return _load(spec, data_dir)
    try:
        mod = importlib.import_module("arrowlog.groups")
    except ImportError:
        mod = None
    if mod is not None:
        for name in ("open_group_store", "GroupStore"):
            factory = getattr(mod, name, None)
            if factory is not None:
                store = factory(data_dir)
                if isinstance(store, GroupStore):
                    return store
    raise Unavailable(
        "consumer groups are not available in this build of arrowlog "
        "(no group store found: arrowlog.groups)"
    )
