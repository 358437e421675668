"""Committed consumer-group offsets for the Kafka server.

The server keeps group *membership* in memory (groups.py) but stores
committed offsets in the data directory's own group store
(``arrowlog.groups.store.GroupDir``: ``<data>/groups/<group>/offsets.json``),
so ``arrowlog group`` commands, ``GroupAdmin`` and in-process consumers see
the offsets that wire clients commit, and the other way round.

Durability: ``commit`` (OffsetCommit, and TxnOffsetCommit once its
transaction commits) returns once its offsets are one record in the
group's commit journal, fdatasynced: the same mechanism as in-process
members, sharing their fdatasyncs (groups/journal.py). A commit too large
for a journal record, and OffsetDelete, replace ``offsets.json`` instead
(temp file, fsync, rename, directory fsync; see GroupDir). Kafka's
committed leader epoch is stored with the offset and returned as committed
(-1 when the client gave none).

The journal handles of the groups committed to most recently stay open
(``OPEN_WRITERS``, two descriptors each); older ones are closed and reopened
on their next commit.
Thread-safety: used from the server's event loop and the transaction
coordinator. Commits through this store hold its lock from taking a writer
until the commit returned, so a writer is never closed (evicted, its group
deleted, the server stopping) under a commit still using it; GroupDir
serialises commits across processes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

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


# Kafka's offset.metadata.max.bytes: a committed offset's metadata string is at most this long
# (OFFSET_METADATA_TOO_LARGE otherwise); without it, every commit could store 32 KB per partition.
OFFSET_METADATA_MAX_CHARS = 4096


def metadata_too_large(metadata: str | None) -> bool:
    """True when an OffsetCommit or TxnOffsetCommit partition's metadata is longer than Kafka allows."""
    return metadata is not None and len(metadata) > OFFSET_METADATA_MAX_CHARS


OPEN_WRITERS = 64


class GroupOffsetStore:
    def __init__(self, data_dir: str | os.PathLike):
        self.groups_dir = os.path.join(os.fspath(data_dir), "groups")
        self._writers: OrderedDict[str, GroupDir] = OrderedDict()
        self._writers_lock = threading.Lock()

    def _dir(self, group: str, create: bool) -> GroupDir:
        return GroupDir(self.groups_dir, group, create=create)

    def _writer(self, group: str) -> GroupDir:
        """The group's journal writer, kept open for the next commit (the caller holds the lock)."""
        gdir = self._writers.pop(group, None)
        if gdir is None:
            gdir = GroupDir(self.groups_dir, group, create=True, journal=True)
        self._writers[group] = gdir   # most recently used last
        while len(self._writers) > OPEN_WRITERS:
            _, old = self._writers.popitem(last=False)
            old.close()
        return gdir

    def _forget_writer(self, group: str) -> None:
        with self._writers_lock:
            gdir = self._writers.pop(group, None)
            if gdir is not None:
                gdir.close()

    def close(self) -> None:
        """Close the journal handles (the journals stay: their records are durable)."""
        with self._writers_lock:
            writers, self._writers = list(self._writers.values()), OrderedDict()
            for gdir in writers:
                gdir.close()

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
            with self._writers_lock:
                self._writer(group).write_offsets(flat)
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
        self._forget_writer(group)
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
