"""Committed offsets outside [log start, high watermark] are out of range: the
in-process member's start is decided by auto.offset.reset, and Consumer.commit()
refuses explicit offsets beyond the high watermark."""

from __future__ import annotations

import pytest

import arrowlog
from arrowlog import Consumer, Producer, TopicPartition
from arrowlog.errors import KafkaError, KafkaException, OffsetOutOfRangeError
from arrowlog.groups.admin import GroupAdmin


@pytest.fixture
def data(tmp_path):
    d = str(tmp_path / "data")
    with arrowlog.LogDir(d) as log:
        log.create_topic("t", partitions=1)
    with Producer({"log.dir": d}) as p:
        for i in range(10):
            p.produce("t", b"%d" % i, partition=0)
    return d


def member(data, reset):
    return Consumer({"log.dir": data, "group.id": "g", "auto.offset.reset": reset, "enable.auto.commit": False})


@pytest.mark.parametrize("committed", [10**12, 11])
def test_a_commit_beyond_the_end_is_out_of_range_and_reset_decides(data, committed):
    with GroupAdmin(data) as admin:  # as a wire client's OffsetCommit would
        admin.commit("g", {("t", 0): committed})
    c = member(data, "earliest")
    c.assign([TopicPartition("t", 0)])
    assert c.position([TopicPartition("t", 0)])[0].offset == 0  # not silently the end
    assert [m.value() for m in c.consume(100, 1.0) if m.error() is None][:2] == [b"0", b"1"]
    c.close()
    c = member(data, "latest")
    c.assign([TopicPartition("t", 0)])
    assert c.position([TopicPartition("t", 0)])[0].offset == 10
    c.close()
    c = member(data, "error")
    with pytest.raises(OffsetOutOfRangeError, match=f"offset {committed} is outside 0..10"):
        c.assign([TopicPartition("t", 0)])
    c.close()


def test_a_commit_at_the_end_is_in_range(data):
    with GroupAdmin(data) as admin:
        admin.commit("g", {("t", 0): 10})
    c = member(data, "earliest")
    c.assign([TopicPartition("t", 0)])
    assert c.position([TopicPartition("t", 0)])[0].offset == 10
    c.close()


def test_commit_refuses_offsets_beyond_the_high_watermark(data):
    c = member(data, "earliest")
    c.assign([TopicPartition("t", 0)])
    with pytest.raises(KafkaException) as e:
        c.commit(offsets=[TopicPartition("t", 0, 11)], asynchronous=False)
    err = e.value.args[0]
    assert err.code() == KafkaError.OFFSET_OUT_OF_RANGE
    assert "beyond the high watermark 10" in err.str()
    with pytest.raises(KafkaException):
        c.commit(offsets=[TopicPartition("t", 0, 10**12)], asynchronous=True)
    assert c.committed([TopicPartition("t", 0)])[0].offset < 0  # nothing was committed
    c.commit(offsets=[TopicPartition("t", 0, 10)], asynchronous=False)  # the end itself is fine
    assert c.committed([TopicPartition("t", 0)])[0].offset == 10
    c.close()
