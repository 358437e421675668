"""Storage engine: topics, segments, rolls, indexes, retention, recovery."""

import os

import numpy as np
import pyarrow as pa
import pytest

from arrowlog import errors
from arrowlog._native import core
from arrowlog.storage import LogDir, validate_topic_name


def batch(n, start_ts=None, value=b"v" * 100, keys=True):
    now = core.wall_clock_ms() if start_ts is None else start_ts
    acc = core.RecordAccumulator()
    for i in range(n):
        acc.append_record(b"k%d" % i if keys else None, value, now + i)
    return acc.take()


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../x", "a\0b", "x" * 250, "sp ace", "é", "a:b"])
def test_hostile_topic_names_are_rejected(name, data_dir):
    with pytest.raises(errors.InvalidTopicError):
        validate_topic_name(name)
    with LogDir(data_dir) as d:
        with pytest.raises(errors.InvalidTopicError):
            d.create_topic(name)
    assert sorted(os.listdir(os.path.join(data_dir, "topics"))) == [".lock", ".notify"]


def test_legal_names(data_dir):
    with LogDir(data_dir) as d:
        for name in ["a", "A.b_c-9", "x" * 249, "__internal"]:
            d.create_topic(name)
        assert d.list_topics() == sorted(["a", "A.b_c-9", "x" * 249, "__internal"])
        with pytest.raises(errors.TopicExistsError):
            d.create_topic("a")
        assert d.create_topic("a", exist_ok=True).name == "a"


def test_unknown_topic_key_is_named(data_dir):
    with LogDir(data_dir) as d:
        with pytest.raises(errors.ConfigError, match="retention.msec"):
            d.create_topic("t", config={"retention.msec": 5})
        with pytest.raises(errors.ConfigError, match="segment.bytes"):
            d.create_topic("t", config={"segment.bytes": "lots"})
        with pytest.raises(errors.UnknownTopicError):
            d.topic("nope")
        t = d.create_topic("t", 2)
        with pytest.raises(errors.UnknownPartitionError):
            t.partition(2)


def test_append_read_and_segment_roll(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t", config={"segment.bytes": 64 << 10, "index.interval.bytes": 1024}).partition(0)
        for _ in range(40):
            log.append(batch(50))
        assert log.watermarks() == (0, 2000)
        bases = log.segment_bases()
        assert len(bases) >= 5 and bases[0] == 0
        for offset in (0, 1, 49, 50, 777, 1999):
            frames = log.read(offset, 1)
            assert frames[0].base_offset <= offset < frames[0].next_offset
            rows = frames[0].batch.column(0).to_pylist()
            assert rows == list(range(frames[0].base_offset, frames[0].next_offset))
        everything = log.read(0, 1 << 30)
        offsets = np.concatenate([f.batch.column(0).to_numpy() for f in everything])
        assert (offsets == np.arange(2000)).all()
        assert log.read(2000) == []
        with pytest.raises(errors.OffsetOutOfRangeError):
            log.read(2001)
        assert log.verify()["errors"] == []


def test_offset_for_timestamp(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t", config={"segment.bytes": 32 << 10}).partition(0)
        base = core.wall_clock_ms()
        for i in range(20):
            log.append(batch(100, start_ts=base + i * 100))
        assert log.offset_for_timestamp(0) == 0
        assert log.offset_for_timestamp(base + 550) == 550
        assert log.offset_for_timestamp(base + 1999) == 1999
        assert log.offset_for_timestamp(base + 2000) is None


def test_retention_by_size_moves_log_start(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t", config={"segment.bytes": 32 << 10, "retention.bytes": 100 << 10}).partition(0)
        for _ in range(60):
            log.append(batch(50))
        low, high = log.watermarks()
        assert low > 0 and high == 3000
        assert low in log.segment_bases()
        with pytest.raises(errors.OffsetOutOfRangeError, match="log start offset"):
            log.read(0)
        assert log.read(low)[0].base_offset == low


def test_retention_by_time(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t", config={"segment.bytes": 16 << 10, "retention.ms": 60_000}).partition(0)
        old = core.wall_clock_ms() - 3_600_000
        for i in range(10):
            log.append(batch(50, start_ts=old))
        for i in range(10):
            log.append(batch(50))
        log.enforce_retention()
        low, high = log.watermarks()
        assert 0 < low <= 500 and high == 1000
        assert log.read(low)[0].batch.column(1).cast(pa.int64())[0].as_py() > old + 1000


def test_reopen_after_clean_close_and_after_crash(data_dir):
    d = LogDir(data_dir)
    log = d.create_topic("t").partition(0)
    for _ in range(5):
        log.append(batch(10))
    d.close()
    d = LogDir(data_dir)
    log = d.topic("t").partition(0)
    assert log.watermarks() == (0, 50)
    # an unclean session: never closed
    log.append(batch(10))
    state_path = os.path.join(data_dir, "topics", "t", "0", "partition.state")
    log.state.clean = False
    report = log.recover()
    assert report["next_offset"] == 60
    d.close()
    with LogDir(data_dir) as d2:
        assert d2.topic("t").partition(0).watermarks() == (0, 60)
    assert os.path.exists(state_path)


def test_torn_tail_is_truncated_on_recovery(data_dir):
    d = LogDir(data_dir)
    log = d.create_topic("t").partition(0)
    for _ in range(3):
        log.append(batch(10))
    st = log.state.snapshot()
    seg_path = os.path.join(data_dir, "topics", "t", "0", f"{0:020d}.log")
    # a half-written frame after the published end, as a killed writer leaves it
    fd = os.open(seg_path, os.O_RDWR)
    os.pwrite(fd, b"\x55" * 300, st["active_position"])
    os.close(fd)
    report = log.recover()
    assert report["next_offset"] == 30
    log.append(batch(10))
    assert log.watermarks() == (0, 40)
    assert log.verify()["errors"] == []
    d.close()


def test_compressed_topic_round_trip(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("z", config={"compression.type": "zstd"}).partition(0)
        b = batch(1000, value=b"abc" * 50)
        log.append(b)
        frame = log.read(0)[0]
        assert frame.size < b.nbytes / 3
        assert frame.batch.column(3).to_pylist() == b.column(2).to_pylist()


def test_alter_and_delete_topic(data_dir):
    with LogDir(data_dir) as d:
        d.create_topic("t", 3)
        t = d.alter_topic("t", {"retention.ms": 1000})
        assert t.config["retention.ms"] == 1000 and t.num_partitions == 3
        with pytest.raises(errors.ConfigError):
            d.alter_topic("t", {"partitions": 5})
        d.delete_topic("t")
        assert d.list_topics() == []
        with pytest.raises(errors.UnknownTopicError):
            d.delete_topic("t")


@pytest.mark.parametrize("ordered", [False, True])
def test_offset_for_timestamp_matches_brute_force(data_dir, ordered):
    # repeated lookups in the same frames: the second and later bisect frames found to be ordered
    import random

    rng = random.Random(11)
    now = core.wall_clock_ms()
    with LogDir(data_dir) as d:
        log = d.create_topic("t", config={"segment.bytes": 64 << 10, "index.interval.bytes": 2048}).partition(0)
        stamps = []
        for _ in range(30):
            acc = core.RecordAccumulator()
            batch_ts = [now + rng.randrange(0, 100_000) for _ in range(rng.randrange(1, 200))]
            if ordered:
                batch_ts.sort()
            for ts in batch_ts:
                stamps.append(ts)
                acc.append_record(None, b"v", ts)
            log.append(acc.take())
        for target in [now - 1, now + 100_001] + [now + rng.randrange(0, 100_000) for _ in range(200)]:
            # Kafka's rule: the first batch whose max timestamp reaches the target, then the
            # first record in it at or after the target
            expected = None
            frames = log.read(0, 1 << 30)
            for fr in frames:
                if fr.max_timestamp >= target:
                    ts = fr.batch.column(1).cast(pa.int64()).to_pylist()
                    expected = fr.base_offset + next(i for i, t in enumerate(ts) if t >= target)
                    break
            assert log.offset_for_timestamp(target) == expected, target


def test_add_partitions_keeps_records(data_dir):
    with LogDir(data_dir) as d:
        d.create_topic("t", 2).partition(1).append(batch(5))
        t = d.add_partitions("t", 4)
        assert t.num_partitions == 4
        assert t.partition(1).watermarks() == (0, 5)
        assert t.partition(3).watermarks() == (0, 0)
        with pytest.raises(errors.ConfigError):
            d.add_partitions("t", 3)
    with LogDir(data_dir) as d:
        assert d.topic("t").num_partitions == 4


def test_batch_larger_than_a_segment_gets_a_segment_of_its_own(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t", config={"segment.bytes": 16 << 10}).partition(0)
        log.append(batch(1000))            # ~130 KB into an empty 16 KiB segment
        log.append(batch(10))              # rolls
        log.append(batch(1000))            # again larger than a segment, after a roll
        assert log.watermarks() == (0, 2010)
        assert log.segment_bases() == [0, 1000, 1010]
        assert [f.record_count for f in log.read(0, 1 << 30)] == [1000, 10, 1000]
        assert log.verify()["errors"] == []
