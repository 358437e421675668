"""offsets_for_times on a log without gaps: answered from the stored frame
by the native search, without building the frame's Arrow batch."""

from __future__ import annotations

import numpy as np

from arrowlog import Consumer, Producer, TopicPartition
from arrowlog.storage import LogDir
from arrowlog.storage.segment import Segment


def test_time_lookup_without_gaps_builds_no_arrow_batch(tmp_path, monkeypatch):
    data = str(tmp_path / "data")
    LogDir(data).create_topic("t", partitions=1)
    base = 1_700_000_000_000
    # out-of-order timestamps inside each frame: the first at or after T, by offset
    ts = base + np.array([(i * 7919) % 3000 for i in range(3000)], dtype=np.int64)
    with Producer({"log.dir": data}) as p:
        for start in range(0, 3000, 1000):
            p.produce_batch("t", [b"v"] * 1000, timestamps=ts[start:start + 1000], partition=0)
            p.flush()

    def no_batch(*args, **kwargs):
        raise AssertionError("frame_batch called by a lookup on a log without gaps")

    with Consumer({"log.dir": data}) as c:
        monkeypatch.setattr(Segment, "frame_batch", no_batch)
        for t in (base, base + 1, base + 1500, base + 2999, base + 10_000):
            got = c.offsets_for_times([TopicPartition("t", 0, t)])[0].offset
            hits = np.nonzero(ts >= t)[0]
            assert got == (int(hits[0]) if len(hits) else -1), t
