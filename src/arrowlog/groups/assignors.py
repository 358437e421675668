"""Partition assignment: which member reads which partition.

Every member runs the same pure function on the same inputs (live members
sorted by id, their subscriptions, partition counts), so all of them agree
without talking to each other. Kafka's two classic strategies:

- ``range`` (Kafka's default): per topic, the members subscribed to it, in
  member id order, each get a contiguous run of partitions; the first
  ``partitions % members`` get one more.
- ``roundrobin``: all partitions of all topics, sorted, dealt one at a time
  to the members subscribed to each partition's topic.

``cooperative-sticky`` and other names are accepted and use ``range``: the
hand-over itself is always incremental here (see member.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Assignment = dict[str, list[tuple[str, int]]]


def range_assign(members: Mapping[str, Iterable[str]], partitions: Mapping[str, int]) -> Assignment:
    out: Assignment = {m: [] for m in members}
    for topic in sorted(partitions):
        subs = sorted(m for m, topics in members.items() if topic in topics)
        if not subs:
            continue
        n = partitions[topic]
        q, r = divmod(n, len(subs))
        start = 0
        for i, m in enumerate(subs):
            count = q + (1 if i < r else 0)
            out[m].extend((topic, p) for p in range(start, start + count))
            start += count
    return out


def roundrobin_assign(members: Mapping[str, Iterable[str]], partitions: Mapping[str, int]) -> Assignment:
    out: Assignment = {m: [] for m in members}
    order = sorted(members)
    subs = {m: set(members[m]) for m in order}
    i = 0
    for topic in sorted(partitions):
        for p in range(partitions[topic]):
            for _ in range(len(order)):
                m = order[i % len(order)]
                i += 1
                if topic in subs[m]:
                    out[m].append((topic, p))
                    break
    return out


STRATEGIES = {"range": range_assign, "roundrobin": roundrobin_assign}


def assign(strategy: str, members: Mapping[str, Iterable[str]], partitions: Mapping[str, int]) -> Assignment:
    """``members``: member id -> topics it subscribes to; ``partitions``:
    topic -> partition count."""
    first = (strategy or "range").split(",")[0].strip().lower()
    return STRATEGIES.get(first, range_assign)(members, partitions)
