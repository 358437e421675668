"""Kafka's consumer protocol: the subscription and assignment blobs that
JoinGroup and SyncGroup carry opaquely for ``protocol_type == "consumer"``.

Both are read from clients, so every count and length is checked against the
bytes that are there; a blob that does not parse reads as empty.
"""

from __future__ import annotations

import struct


def _string(meta: bytes, pos: int) -> tuple[str, int]:
    (length,) = struct.unpack_from(">h", meta, pos)
    pos += 2
    if length < 0 or pos + length > len(meta):
        raise ValueError("string length out of range")
    return bytes(meta[pos:pos + length]).decode("utf-8"), pos + length


def _count(meta: bytes, pos: int, item_size: int) -> tuple[int, int]:
    (n,) = struct.unpack_from(">i", meta, pos)
    pos += 4
    if n < 0 or n * item_size > len(meta) - pos:
        raise ValueError("array count out of range")
    return n, pos


def consumer_subscription(meta: bytes) -> set[str]:
    """The topics of a consumer-protocol subscription (version, then an array of
    topic names); an empty set for metadata that is not one (any other protocol)."""
    try:
        n, pos = _count(meta, 2, 2)
        topics = set()
        for _ in range(n):
            topic, pos = _string(meta, pos)
            topics.add(topic)
        return topics
    except (struct.error, ValueError):
        return set()


def _partitions(blob: bytes, pos: int) -> tuple[set[tuple[str, int]], int]:
    """An array of (topic, array of partition) from ``pos``."""
    n, pos = _count(blob, pos, 6)
    out = set()
    for _ in range(n):
        topic, pos = _string(blob, pos)
        count, pos = _count(blob, pos, 4)
        for p in struct.unpack_from(f">{count}i", blob, pos):
            out.add((topic, p))
        pos += 4 * count
    return out, pos


def decode_assignment(blob: bytes) -> set[tuple[str, int]]:
    """The (topic, partition)s of a consumer-protocol assignment (version, then an
    array of topic and partition array; user data after is ignored)."""
    try:
        return _partitions(blob, 2)[0]
    except (struct.error, ValueError):
        return set()


def owned_partitions(meta: bytes) -> set[tuple[str, int]] | None:
    """The partitions a version 1+ subscription says its member still owns (what a
    cooperative member keeps across a rejoin); None when it does not say."""
    try:
        (version,) = struct.unpack_from(">h", meta, 0)
        if version < 1:
            return None
        n, pos = _count(meta, 2, 2)
        for _ in range(n):
            _, pos = _string(meta, pos)
        (length,) = struct.unpack_from(">i", meta, pos)   # user data (-1: null)
        pos += 4
        if length > len(meta) - pos:
            return None
        return _partitions(meta, pos + max(length, 0))[0]
    except (struct.error, ValueError):
        return None


def encode_assignment(parts: list[tuple[str, int]]) -> bytes:
    """A version 0 consumer-protocol assignment of ``parts`` with empty user data."""
    by_topic: dict[str, list[int]] = {}
    for topic, p in parts:
        by_topic.setdefault(topic, []).append(p)
    out = [struct.pack(">hi", 0, len(by_topic))]
    for topic in sorted(by_topic):
        name = topic.encode()
        ps = sorted(by_topic[topic])
        out.append(struct.pack(f">h{len(name)}si{len(ps)}i", len(name), name, len(ps), *ps))
    out.append(struct.pack(">i", 0))
    return b"".join(out)
