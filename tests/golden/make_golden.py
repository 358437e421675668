"""Write the golden data directory (tests/golden/v1/) that pins the on-disk
format: test_golden.py reads it back in every later version, so a format
change is a deliberate version bump (a new directory, a new FORMAT.md),
never an accident.

    python tests/golden/make_golden.py [DIR]    # default: tests/golden/v1

Topics (records from ``expected()``, deterministic):

- ``plain``: bytes keys and values, 2 partitions;
- ``typed``: value.schema {id: int64, name: string, score: double};
- ``zstd``: compression.type=zstd;
- ``headers``: records with headers (and some without);
- ``segments``: segment.bytes=4 KiB, so it spans several segments;
- a consumer group ``golden-group`` with committed offsets on ``plain``.
"""

from __future__ import annotations

import os
import shutil
import sys

T0 = 1_700_000_000_000
GROUP = "golden-group"
COMMITTED = {0: 7, 1: 3}  # plain's partition -> committed offset

TOPICS = {
    "plain": (2, {}),
    "typed": (1, {"value.schema": {"fields": [{"name": "id", "type": "int64"}, {"name": "name", "type": "string"},
                                              {"name": "score", "type": "double"}]}}),
    "zstd": (1, {"compression.type": "zstd"}),
    "headers": (1, {}),
    "segments": (1, {"segment.bytes": 4096, "index.interval.bytes": 256}),
}


def expected() -> dict[str, list[dict]]:
    """Per topic, its records in produce order, as produce() takes them."""
    out: dict[str, list[dict]] = {}
    out["plain"] = [{"partition": i % 2, "key": b"k%d" % i, "value": b"plain-%03d" % i, "timestamp": T0 + i}
                    for i in range(20)]
    out["typed"] = [{"partition": 0, "key": None, "value": {"id": i, "name": f"name-{i}", "score": i / 4},
                     "timestamp": T0 + i} for i in range(10)]
    out["zstd"] = [{"partition": 0, "key": None, "value": b"z" * 200 + b"%d" % i, "timestamp": T0 + i}
                   for i in range(30)]
    out["headers"] = [{"partition": 0, "key": b"h", "value": b"with-headers-%d" % i, "timestamp": T0 + i,
                       "headers": [("trace", b"%d" % i), ("kind", b"golden")] if i % 3 else None}
                      for i in range(12)]
    out["segments"] = [{"partition": 0, "key": None, "value": b"s%03d-" % i + b"x" * 150, "timestamp": T0 + i}
                       for i in range(40)]
    return out


def write(path: str) -> None:
    import arrowlog
    from arrowlog import Consumer, TopicPartition
    from arrowlog.storage import LogDir

    if os.path.exists(path):
        shutil.rmtree(path)
    with LogDir(path) as d:
        for name, (partitions, config) in TOPICS.items():
            # the records' timestamps are from 2023: no retention by time
            d.create_topic(name, partitions=partitions, config={"retention.ms": -1, **config})
    p = arrowlog.Producer({"log.dir": path, "linger.ms": 0})
    for name, records in expected().items():
        if name == "typed":  # typed values go in as a batch
            p.produce_batch(name, [r["value"] for r in records], timestamps=[r["timestamp"] for r in records],
                            partition=0)
            p.flush()
            continue
        for r in records:
            p.produce(name, r["value"], r["key"], partition=r["partition"], timestamp=r["timestamp"],
                      headers=r.get("headers"))
            if name == "segments":
                p.flush()  # one frame per record: several segments
        p.flush()
    p.close()
    c = Consumer({"log.dir": path, "group.id": GROUP, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("plain", p, o) for p, o in COMMITTED.items()], asynchronous=False)
    c.close()


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "v1"))
