"""Messages from consume(): cheap to create, and valid for as long as they live."""

from __future__ import annotations

import gc

from arrowlog import Consumer, Producer, TopicPartition
from arrowlog.storage import LogDir


def test_consumed_messages_are_not_tracked_by_the_cycle_collector(tmp_path):
    data = str(tmp_path / "data")
    LogDir(data).create_topic("t", partitions=1)
    with Producer({"log.dir": data}) as p:
        p.produce_batch("t", [b"v%d" % i for i in range(2000)], partition=0)
        p.flush()
    with Consumer({"log.dir": data}) as c:
        c.assign([TopicPartition("t", 0, 0)])
        msgs = c.consume(2000, 10.0)
        assert len(msgs) == 2000
        # a million a second would otherwise run the collector every 700 messages
        assert not any(gc.is_tracked(m) for m in msgs)
        gc.collect()
        assert [m.value() for m in msgs[::500]] == [b"v0", b"v500", b"v1000", b"v1500"]
        assert msgs[-1].offset() == 1999 and msgs[-1].topic() == "t"
