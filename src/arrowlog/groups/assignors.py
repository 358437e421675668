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

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ArrowlogError, UnknownTopicError

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


def existing_topics(logdir: Any, subscriptions: Iterable[Iterable[str]]) -> set[str]:
    """Topics that exist among those subscribed: one stat per named topic;
    the directory is listed only when some member subscribes to a regex."""
    names = {t for sub in subscriptions for t in sub}
    if any(t.startswith("^") for t in names):
        return set(logdir.list_topics())
    out = set()
    for t in names:
        try:
            if logdir.has_topic(t):
                out.add(t)
        except ArrowlogError:
            pass    # not a valid topic name: it never exists
    return out


def resolve_topics(subscription: Iterable[str], existing: set[str]) -> set[str]:
    """A subscription (names and ``^regex`` patterns) as the existing topics it covers."""
    out = set()
    for t in subscription:
        if t.startswith("^"):
            pat = re.compile(t)
            out.update(x for x in existing if pat.match(x))
        elif t in existing:
            out.add(t)
    return out


def group_inputs(logdir: Any, subscriptions: Mapping[str, Iterable[str]]) -> tuple[dict[str, set[str]], dict[str, int]]:
    """The assignor's inputs for a data directory: each member's subscription
    resolved to existing topics, and the partition count of each of them."""
    existing = existing_topics(logdir, subscriptions.values())
    subs = {mid: resolve_topics(sub, existing) for mid, sub in subscriptions.items()}
    counts = {}
    for t in sorted(set().union(*subs.values())) if subs else []:
        try:
            counts[t] = logdir.topic(t).num_partitions
        except UnknownTopicError:
            continue
    return subs, counts


def plan(logdir: Any, members: list) -> Assignment:
    """The one assignment of a group: what every member (in-process or served over
    the wire) computes from the live members (``MemberInfo``s sorted by id), with
    the strategy of the lowest member id."""
    subs, counts = group_inputs(logdir, {m.member_id: m.subscription for m in members})
    strategy = members[0].strategy if members else "range"
    return assign(strategy, subs, counts)
