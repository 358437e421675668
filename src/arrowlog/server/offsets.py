"""Committed consumer-group offsets, durable in the data directory.

One JSON file per group, ``<data>/__groups/<group>.json``::

    {"version": 1, "group": "g",
     "offsets": {"topic": {"0": {"offset": 42, "metadata": "", "leader_epoch": -1}}}}

Durability: ``commit`` returns after the new file is written to a temporary
name, fsynced, renamed over the old one and the directory fsynced, so a
committed offset survives a crash or power loss and a torn write leaves the
previous file intact. Thread-safety: one instance is used from the server's
event loop only.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path

GROUPS_DIR = "__groups"


class GroupOffsetStore:
    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(data_dir) / GROUPS_DIR
        self._cache: dict[str, dict] = {}

    def _path(self, group: str) -> Path:
        # Group ids are arbitrary strings: quote everything but safe characters.
        return self.root / (urllib.parse.quote(group, safe="") + ".json")

    def load(self, group: str) -> dict:
        """{topic: {partition: {"offset", "metadata", "leader_epoch"}}} for ``group``."""
        if group in self._cache:
            return self._cache[group]
        offsets: dict = {}
        try:
            doc = json.loads(self._path(group).read_text())
            for topic, parts in doc.get("offsets", {}).items():
                offsets[topic] = {int(p): v for p, v in parts.items()}
        except FileNotFoundError:
            pass
        except (ValueError, OSError) as exc:
            raise OSError(f"cannot read committed offsets of group {group!r}: {exc}") from exc
        self._cache[group] = offsets
        return offsets

    def commit(self, group: str, updates: dict) -> None:
        """Merge ``{topic: {partition: entry}}`` into the group's offsets, durably."""
        offsets = self.load(group)
        for topic, parts in updates.items():
            offsets.setdefault(topic, {}).update(parts)
        doc = {"version": 1, "group": group,
               "offsets": {t: {str(p): e for p, e in ps.items()} for t, ps in offsets.items()}}
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(group)
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w") as fh:
            json.dump(doc, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dfd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def delete_topic(self, topic: str) -> None:
        """Forget offsets of a deleted topic in every group that has any."""
        if not self.root.is_dir():
            return
        for path in self.root.glob("*.json"):
            group = urllib.parse.unquote(path.stem)
            offsets = self.load(group)
            if topic in offsets:
                del offsets[topic]
                self.commit(group, {})

    def groups(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(urllib.parse.unquote(p.stem) for p in self.root.glob("*.json"))
