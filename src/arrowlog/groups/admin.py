"""GroupAdmin: list, describe, reset and delete consumer groups.

What ``kafka-consumer-groups`` does, over a data directory:

>>> admin = GroupAdmin("data")
>>> admin.list_groups()
['billing']
>>> for row in admin.describe("billing").partitions:
...     print(row.topic, row.partition, row.committed, row.log_end_offset, row.lag, row.owner)
>>> admin.reset_offsets("billing", ["orders"], to="timestamp", value=1714557600000)   # a dry run: the plan
>>> admin.reset_offsets("billing", ["orders"], to="earliest", execute=True)           # refused while members live

It also implements the small store interface the CLI's ``arrowlog group``
commands use (``list_groups``, ``committed``, ``commit``, ``members``,
``delete``), see ``arrowlog/cli/groups.py``.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import GroupError, UnknownTopicError
from .membership import MemberInfo, MemberRegistry, current_owners
from .store import GroupDir, UnknownGroupError, list_group_dirs

RESET_MODES = ("earliest", "latest", "offset", "timestamp", "shift")


@dataclass
class MemberDescription:
    member_id: str
    client_id: str
    pid: int
    host: str
    subscription: list[str]
    assignment: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class PartitionLag:
    topic: str
    partition: int
    committed: int | None          # next offset the group will read; None: nothing committed
    log_start_offset: int | None
    log_end_offset: int | None     # the high watermark
    lag: int | None
    owner: str | None              # member id reading it now
    client_id: str | None = None
    pid: int | None = None
    metadata: str | None = None


@dataclass
class GroupDescription:
    group: str
    state: str                     # "Stable" (members) or "Empty"
    generation: int
    members: list[MemberDescription]
    partitions: list[PartitionLag]

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_lag"] = self.total_lag
        return d


@dataclass
class ResetPlan:
    topic: str
    partition: int
    current: int | None
    new: int


def to_epoch_ms(value: Any) -> int:
    """Epoch milliseconds from an int, a float (seconds are not guessed: it is
    taken as ms) or a datetime (naive means UTC)."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    raise GroupError(f"a timestamp must be epoch milliseconds or a datetime, not {value!r}")


class GroupAdmin:
    """Administration of a data directory's consumer groups."""

    def __init__(self, logdir: Any):
        if isinstance(logdir, (str, os.PathLike)):
            from ..storage import LogDir
            logdir = LogDir(logdir)
            self._owns_logdir = True
        else:
            self._owns_logdir = False
        self.logdir = logdir

    def _gdir(self, group: str) -> GroupDir:
        return GroupDir(self.logdir.groups_dir, group, create=False)

    def _write(self, group: str, updates: dict[tuple[str, int], tuple]) -> None:
        """Commit ``updates`` as one record of the group's commit journal (durable on return)."""
        gdir = GroupDir(self.logdir.groups_dir, group, journal=True)
        try:
            gdir.write_offsets(updates)
        finally:
            gdir.close()

    def _live(self, gdir: GroupDir) -> list[MemberInfo]:
        return MemberRegistry(gdir).live(reap=False) if gdir.exists() else []

    def _exists(self, gdir: GroupDir) -> bool:
        return gdir.has_offsets() or bool(self._live(gdir))

    # -- listing --------------------------------------------------------------------

    def list_groups(self) -> list[str]:
        """Groups with committed offsets or live members."""
        return [g for g in list_group_dirs(self.logdir.groups_dir) if self._exists(self._gdir(g))]

    def describe(self, group: str) -> GroupDescription:
        """Members, and per partition of every topic the group subscribes to
        or has offsets for: committed offset, log end offset, lag, owner."""
        gdir = self._gdir(group)
        members = self._live(gdir)
        offsets = gdir.read_offsets() if gdir.exists() else {}
        if not members and not offsets:
            raise UnknownGroupError(f"unknown group {group!r} (groups: {', '.join(self.list_groups()) or 'none'})")
        owners = current_owners(gdir) if members else {}
        by_id = {m.member_id: m for m in members}
        existing = self.logdir.list_topics()
        topics = {t for t, _ in offsets} | {t for t, _ in owners}
        for m in members:
            for s in m.subscription:
                if s.startswith("^"):
                    topics.update(t for t in existing if re.match(s, t))
                else:
                    topics.add(s)
        rows = []
        for topic in sorted(topics):
            try:
                t = self.logdir.topic(topic)
                nparts = t.num_partitions
            except UnknownTopicError:
                t, nparts = None, 0
            parts = sorted({p for tt, p in offsets if tt == topic} | set(range(nparts)))
            for p in parts:
                low = high = None
                if t is not None and p < nparts:
                    low, high = t.partition(p).watermarks()
                e = offsets.get((topic, p))
                committed = None if e is None else e.offset
                lag = None if high is None or committed is None else max(0, high - committed)
                owner = owners.get((topic, p))
                info = by_id.get(owner) if owner else None
                rows.append(PartitionLag(topic, p, committed, low, high, lag, owner,
                                         info.client_id if info else None, info.pid if info else None,
                                         (e.metadata or None) if e else None))
        descs = [MemberDescription(m.member_id, m.client_id, m.pid, m.host, list(m.subscription),
                                   sorted(tp for tp, o in owners.items() if o == m.member_id)) for m in members]
        generation = gdir.generation() if gdir.exists() else 0
        return GroupDescription(group, "Stable" if members else "Empty", generation, descs, rows)

    # -- changing offsets -------------------------------------------------------------

    def reset_offsets(self, group: str, topics: list[str] | None = None, *, to: str, value: Any = None,
                      partitions: list[int] | None = None, execute: bool = False) -> list[ResetPlan]:
        """Plan new committed offsets, like ``kafka-consumer-groups
        --reset-offsets``; apply them only with ``execute=True`` (refused
        while the group has live members).

        ``to``: "earliest", "latest", "offset" (``value`` = N), "timestamp"
        (``value`` = epoch ms or datetime: the first record at or after it),
        "shift" (``value`` = N, negative moves back). New offsets are kept
        within [log start offset, high watermark]. ``topics`` None: every
        topic the group has offsets for."""
        if to not in RESET_MODES:
            raise GroupError(f"reset to {to!r}? use one of {', '.join(RESET_MODES)}")
        if to in ("offset", "shift") and (not isinstance(value, int) or isinstance(value, bool)):
            raise GroupError(f"reset to {to!r} needs an integer value, not {value!r}")
        ts = to_epoch_ms(value) if to == "timestamp" else None
        gdir = self._gdir(group)
        offsets = gdir.read_offsets() if gdir.exists() else {}
        if topics is None:
            topics = sorted({t for t, _ in offsets})
            if not topics:
                raise UnknownGroupError(f"group {group!r} has no committed offsets; name the topics to reset")
        plan = []
        for topic in topics:
            t = self.logdir.topic(topic)
            for p in (range(t.num_partitions) if partitions is None else partitions):
                pl = t.partition(p)
                low, high = pl.watermarks()
                e = offsets.get((topic, p))
                current = None if e is None else e.offset
                if to == "earliest":
                    new = low
                elif to == "latest":
                    new = high
                elif to == "offset":
                    new = value
                elif to == "timestamp":
                    found = pl.offset_for_timestamp(ts)
                    new = high if found is None else found
                else:
                    new = (low if current is None else current) + value
                plan.append(ResetPlan(topic, p, current, min(max(new, low), high)))
        if execute:
            self._refuse_if_live(gdir, "reset its offsets")
            self._write(gdir.group, {(r.topic, r.partition): (r.new, None) for r in plan})
        return plan

    def _refuse_if_live(self, gdir: GroupDir, what: str) -> None:
        live = self._live(gdir)
        if live:
            names = ", ".join(f"{m.member_id} (pid {m.pid})" for m in live)
            raise GroupError(f"group {gdir.group!r} has live members: {names}; stop them before you {what}")

    def delete_group(self, group: str) -> None:
        """Forget a group and its committed offsets (refused while it has
        live members)."""
        gdir = self._gdir(group)
        if not gdir.exists():
            raise UnknownGroupError(f"unknown group {group!r}")
        self._refuse_if_live(gdir, "delete it")
        gdir.remove()

    # -- the CLI's GroupStore interface (arrowlog/cli/groups.py) -------------------------

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        gdir = self._gdir(group)
        return {k: e.offset for k, e in gdir.read_offsets().items()} if gdir.exists() else {}

    def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        self._write(group, {k: (int(v), None) for k, v in offsets.items()})

    def members(self, group: str) -> dict[tuple[str, int], str]:
        """The live owner (member id) of each partition held right now."""
        gdir = self._gdir(group)
        return current_owners(gdir) if self._live(gdir) else {}

    def live_members(self, group: str) -> list[MemberInfo]:
        return self._live(self._gdir(group))

    def delete(self, group: str) -> None:
        self.delete_group(group)

    def close(self) -> None:
        if self._owns_logdir:
            self.logdir.close()

    def __enter__(self) -> GroupAdmin:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_group_store(data_dir: str) -> GroupAdmin:
    """The CLI's entry point (see arrowlog/cli/groups.py)."""
    return GroupAdmin(data_dir)
