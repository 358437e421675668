"""The layout mark (storage/layout_mark.py): a clean close leaves it, the
next opener trusts it instead of re-checking the layout, and anything done
to the files or the state since makes it stale."""

import os
import struct

import pyarrow as pa
import pytest

from arrowlog import errors
from arrowlog._native import core
from arrowlog.schema import PRODUCE_SCHEMA
from arrowlog.storage import LogDir, layout_mark
from arrowlog.storage.recovery import RecoveryMixin


def batch(n):
    now = core.wall_clock_ms()
    return pa.RecordBatch.from_pydict({"timestamp": [now] * n, "key": [b"k%d" % i for i in range(n)],
                                       "value": [b"v" * 10] * n, "headers": [None] * n}, schema=PRODUCE_SCHEMA)


@pytest.fixture
def checks(monkeypatch):
    """The layout checks that run (partition directories)."""
    seen = []
    real = RecoveryMixin._check_layout

    def counted(self):
        seen.append(self.directory)
        return real(self)

    monkeypatch.setattr(RecoveryMixin, "_check_layout", counted)
    return seen


def written(data_dir, partitions=3, *, many=False):
    """A topic whose partitions were written and closed (together, as a
    Producer or LogDir closes them, or each on its own)."""
    with LogDir(data_dir) as d:
        t = d.create_topic("t", partitions)
        for p in range(partitions):
            t.partition(p).append(batch(5 + p))
            t.partition(p).append(batch(3))
        if not many:
            for p in range(partitions):
                t.partition(p).close()
    return os.path.join(data_dir, "topics", "t")


def read_all(data_dir, p):
    with LogDir(data_dir) as d:
        log = d.topic("t").partition(p)
        rows, pos = 0, log.log_start_offset
        while pos < log.high_watermark:
            frames = log.read(pos)
            rows += sum(f.rows for f in frames)
            pos = frames[-1].next_offset
        return rows


@pytest.mark.parametrize("many", [False, True], ids=["close", "close_many"])
def test_a_clean_close_spares_the_next_open_its_layout_check(data_dir, checks, many):
    written(data_dir, many=many)
    assert [read_all(data_dir, p) for p in range(3)] == [8, 9, 10]
    assert checks == []


def test_a_session_that_changes_the_log_clears_the_mark(data_dir, checks):
    topic = written(data_dir, 1)
    state = os.path.join(topic, "0", "partition.state")
    with LogDir(data_dir) as d:
        log = d.topic("t").partition(0)
        log.append(batch(2))
        with open(state, "rb") as f:
            assert f.read(272)[256:] == b"\0" * 16
    # closed cleanly again: a fresh mark for the new layout
    assert read_all(data_dir, 0) == 10 and checks == []


def damage_missing_index(part):
    os.unlink(os.path.join(part, "00000000000000000000.index"))


def damage_index_in_place(part):
    path = os.path.join(part, "00000000000000000000.index")
    with open(path, "r+b") as f:  # same size, entries that cannot be right
        f.write(b"\xff" * 16)


def damage_truncated_log(part):
    with open(os.path.join(part, "partition.state"), "rb") as f:
        active_position = struct.unpack_from("<q", f.read(64), 48)[0]  # payload field 3
    os.truncate(os.path.join(part, "00000000000000000000.log"), active_position - 10)


def damage_extra_segment(part):
    with open(os.path.join(part, "00000000000000000003.log"), "wb") as f:
        f.write(b"junk")


def damage_state(part):
    with LogDir(os.path.dirname(os.path.dirname(os.path.dirname(part)))) as d:
        log = d.topic("t").partition(0)
        log.state.publish(next_offset=log.high_watermark + 5)  # published, not written


@pytest.mark.parametrize("damage", [damage_missing_index, damage_index_in_place, damage_truncated_log,
                                    damage_extra_segment])
def test_a_file_changed_after_the_clean_close_makes_the_mark_stale(data_dir, checks, damage):
    part = os.path.join(written(data_dir, 1), "0")
    damage(part)
    with LogDir(data_dir) as d:
        log = d.topic("t").partition(0)
        assert checks == [part]
        if damage is damage_truncated_log:
            with pytest.raises(errors.CorruptRecordError):
                log.read(0)
        else:
            assert sum(f.rows for f in log.read(0)) == 8


def test_a_state_changed_after_the_clean_close_makes_the_mark_stale(data_dir, checks):
    part = os.path.join(written(data_dir, 1), "0")
    damage_state(part)
    assert checks == []  # the damaging session's own open was a marked one
    with LogDir(data_dir) as d:
        log = d.topic("t").partition(0)
        assert checks == [part]
        with pytest.raises(errors.CorruptRecordError):
            log.read(0)


def test_a_partition_whose_log_starts_before_its_active_segment_gets_no_mark(data_dir, checks):
    with LogDir(data_dir) as d:
        t = d.create_topic("t", 1, config={"segment.bytes": 4096})
        for _ in range(40):
            t.partition(0).append(batch(5))
        assert len(t.partition(0).segment_bases()) > 1
    state = os.path.join(data_dir, "topics", "t", "0", "partition.state")
    with open(state, "rb") as f:
        assert f.read(272)[256:] == b"\0" * 16
    assert read_all(data_dir, 0) == 200
    assert len(checks) == 1


def test_no_mark_is_a_full_check_that_leaves_one(data_dir, checks):
    part = os.path.join(written(data_dir, 1), "0")
    with open(os.path.join(part, "partition.state"), "r+b") as f:
        f.seek(layout_mark.MARK_OFFSET)
        f.write(b"\0" * layout_mark.MARK_SIZE)  # as a log closed before marks existed
    assert read_all(data_dir, 0) == 8
    assert checks == [part]
    # the check passed: it left a mark, so the next open trusts it
    assert read_all(data_dir, 0) == 8
    assert checks == [part]


def test_a_check_that_finds_damage_leaves_no_mark(data_dir, checks):
    part = os.path.join(written(data_dir, 1), "0")
    damage_truncated_log(part)
    for _ in range(2):
        with LogDir(data_dir) as d, pytest.raises(errors.CorruptRecordError):
            d.topic("t").partition(0).read(0)
    assert checks == [part, part]


def test_a_partition_with_a_compaction_swap_in_its_directory_gets_no_mark(data_dir, checks):
    with LogDir(data_dir) as d:
        t = d.create_topic("t", 1)
        t.partition(0).append(batch(4))
        # what a cleaner that died mid-swap leaves (cleaner.py): the next
        # opener must look at it, so the clean close marks nothing
        os.mkdir(os.path.join(t.partition(0).directory, "cleaning"))
    with open(os.path.join(data_dir, "topics", "t", "0", "partition.state"), "rb") as f:
        assert f.read(272)[256:] == b"\0" * 16
    assert read_all(data_dir, 0) == 4
    assert len(checks) == 1
