"""Committed consumer-group offsets for the Kafka server.

The server keeps group *membership* in memory (groups.py) but stores
committed offsets in the data directory's own group store
(``arrowlog.groups.store.GroupDir``: ``<data>/groups/<group>/offsets.json``),
so ``arrowlog group`` commands, ``GroupAdmin`` and in-process consumers see
the offsets that wire clients commit, and the other way round.

Durability: ``commit`` returns after the group's offsets file has been
replaced atomically and durably (temp file, fsync, rename, directory fsync;
see GroupDir). Kafka's committed leader epoch is stored with the offset and
returned as committed (-1 when the client gave none).
Thread-safety: used from the server's event loop; GroupDir also serialises
commits across processes.
"""

from __future__ import annotations

import os

from arrowlog.errors import GroupError
from arrowlog.groups.store import GroupDir, group_dirname, list_group_dirs


def group_id_problem(group: str | None) -> str | None:
    """Why ``group`` cannot be a group id here (empty, too long to store), or None."""
    if group is None:
        return "a group id must be a non-empty str, not None"
    try:
        group_dirname(group)
    except GroupError as exc:
        return str(exc)
    return None


class GroupOffsetStore:
    def __init__(self, data_dir: str | os.PathLike):
        self.groups_dir = os.path.join(os.fspath(data_dir), "groups")

    def _dir(self, group: str, create: bool) -> GroupDir:
        return GroupDir(self.groups_dir, group, create=create)

    def load(self, group: str) -> dict:
        """{topic: {partition: {"offset", "metadata", "leader_epoch"}}} for ``group``."""
        try:
            committed = self._dir(group, create=False).read_offsets()
        except GroupError as exc:
            raise OSError(str(exc)) from exc
        out: dict = {}
        for (topic, partition), c in committed.items():
            out.setdefault(topic, {})[partition] = {"offset": c.offset, "metadata": c.metadata,
                                                    "leader_epoch": c.leader_epoch}
        return out

    def commit(self, group: str, updates: dict) -> None:
        """Merge ``{topic: {partition: {"offset", "metadata", "leader_epoch"}}}`` into the
        group's offsets, durably."""
        flat = {(topic, int(p)): (e["offset"], e.get("metadata"), e.get("leader_epoch", -1))
                for topic, parts in updates.items() for p, e in parts.items()}
        try:
            self._dir(group, create=True).write_offsets(flat)
        except GroupError as exc:
            raise OSError(str(exc)) from exc

    def drop(self, group: str, keys: list[tuple[str, int]]) -> None:
        """Forget these (topic, partition) offsets of ``group`` (OffsetDelete), durably."""
        try:
            self._dir(group, create=False).drop_offsets(keys)
        except GroupError as exc:
            raise OSError(str(exc)) from exc

    def delete(self, group: str) -> None:
        """Forget the group and its committed offsets."""
        self._dir(group, create=False).remove()

    def delete_topic(self, topic: str) -> None:
        """Forget a deleted topic's offsets in every group."""
        for group in self.groups():
            gdir = self._dir(group, create=False)
            keys = [k for k in gdir.read_offsets() if k[0] == topic]
            if keys:
                gdir.drop_offsets(keys)

    def groups(self) -> list[str]:
        return list_group_dirs(self.groups_dir)
