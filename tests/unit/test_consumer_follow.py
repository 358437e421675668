"""The consumer's native read of the frames at the end of a partition
(core.FrameFollower, _native/core/follow.pxi): what it returns is what the
general read returns, and everything it does not handle goes through the
general read, which keeps its errors."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mangle import flip_body

from arrowlog import Consumer, Producer, TopicPartition, errors
from arrowlog.storage import LogDir

TOPIC = "t"


def follower_consumer(data: str, **conf) -> Consumer:
    c = Consumer({"log.dir": data, "auto.offset.reset": "earliest", **conf})
    c.assign([TopicPartition(TOPIC, 0, 0)])
    return c


def fetch_of(c: Consumer):
    return c._assigned[(TOPIC, 0)]


def record(m) -> tuple:
    return m.offset(), m.timestamp(), m.key(), m.value(), m.headers()


def read_all(data: str, **conf) -> list[tuple]:
    """Every record, from a new consumer (its first read takes them all through the general path)."""
    with follower_consumer(data, **conf) as c:
        out = []
        while True:
            got = c.consume(1000, 0)
            if not got:
                return out
            out += [record(m) for m in got if m.error() is None]


def poll_one(c: Consumer):
    m = c.poll(10)
    assert m is not None and m.error() is None, m
    return m


@contextlib.contextmanager
def following(data: str, **conf):
    """(producer, consumer) of a new topic whose first record the consumer read, so it follows the partition."""
    LogDir(data).create_topic(TOPIC)
    with Producer({"log.dir": data, "linger.ms": 0}) as p, follower_consumer(data, **conf) as c:
        p.produce(TOPIC, b"first", key=b"k", partition=0)
        p.flush()
        assert poll_one(c).value() == b"first"  # the general read, which sets the follower up
        assert fetch_of(c).follower is not None
        yield p, c


def test_a_followed_partition_is_read_without_the_general_read(data_dir, monkeypatch):
    with following(data_dir) as (p, c):
        f = fetch_of(c)

        def no_general_read(*args, **kwargs):
            raise AssertionError("the record after the last read came through the general read")

        monkeypatch.setattr(f.log, "read", no_general_read)
        for i in range(4):
            headers = [("h", b"%d" % i), ("n", None), ("é", b"")] if i >= 2 else None
            p.produce(TOPIC, b"v%d" % i, key=None if i == 1 else b"k%d" % i, partition=0, headers=headers)
            if i == 3:
                p.produce(TOPIC, b"w", partition=0)  # two records in one frame, one with headers
            p.flush()
            m = poll_one(c)
            assert (m.offset(), m.key(), m.value(), m.headers()) == (
                i + 1, None if i == 1 else b"k%d" % i, b"v%d" % i, headers)
        m = poll_one(c)
        assert (m.offset(), m.value(), m.headers()) == (5, b"w", None)
        assert c.poll(0) is None


def test_a_one_record_frame_with_the_control_header_stays_hidden(data_dir):
    # arrowlog.txn.is_control_frame: what the general read hides, the follower hides too
    with following(data_dir) as (p, c):
        p.produce(TOPIC, b"marker-like", partition=0, headers=[("x", b""), ("arrowlog.control", b"")])
        p.flush()
        p.produce(TOPIC, b"after", partition=0)
        p.flush()
        m = poll_one(c)
        assert (m.offset(), m.value()) == (2, b"after")


RECORDS = st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=12)),   # key
                             st.one_of(st.none(), st.binary(max_size=300)),  # value
                             st.one_of(st.none(), st.lists(st.tuples(        # headers
                                 st.text(max_size=6), st.one_of(st.none(), st.binary(max_size=8))), max_size=3)),
                             st.booleans()),                                 # poll after it
                   min_size=1, max_size=40)


@pytest.mark.parametrize("config", [{}, {"compression.type": "zstd"}, {"segment.bytes": 4096},
                                    {"cleanup.policy": "compact", "segment.bytes": 4096}],
                         ids=["plain", "zstd", "rolling", "compacted"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=RECORDS)
def test_following_returns_what_the_general_read_returns(tmp_path_factory, config, records):
    data = str(tmp_path_factory.mktemp("data"))
    LogDir(data).create_topic(TOPIC, config=config)
    followed = []
    with Producer({"log.dir": data, "linger.ms": 0}) as p, follower_consumer(data) as c:
        for key, value, headers, poll_now in records:
            if key is None and config.get("cleanup.policy") == "compact":
                key = b"k"  # a compacted topic takes keyed records only
            p.produce(TOPIC, value, key=key, partition=0, headers=headers)
            p.flush()
            if poll_now:
                followed += [record(m) for m in c.consume(1000, 0)]
        while (got := c.consume(1000, 0)):
            followed += [record(m) for m in got]
    assert followed == read_all(data)
    assert len(followed) == len(records)


def test_an_aborted_transaction_after_following_is_skipped(data_dir):
    LogDir(data_dir).create_topic(TOPIC)
    with Producer({"log.dir": data_dir, "linger.ms": 0}) as p, \
            follower_consumer(data_dir) as committed, follower_consumer(data_dir, **{
                "isolation.level": "read_uncommitted"}) as uncommitted:
        p.produce(TOPIC, b"plain", partition=0)
        p.flush()
        for c in (committed, uncommitted):
            assert poll_one(c).value() == b"plain"
            assert fetch_of(c).follower is not None
        t = Producer({"log.dir": data_dir, "transactional.id": "tx", "linger.ms": 0})
        t.init_transactions(10)
        t.begin_transaction()
        t.produce(TOPIC, b"aborted", partition=0)
        t.flush()
        t.abort_transaction(10)
        t.close()
        p.produce(TOPIC, b"after", partition=0)
        p.flush()
        assert poll_one(committed).value() == b"after"
        assert [poll_one(uncommitted).value() for _ in range(2)] == [b"aborted", b"after"]
        for c in (committed, uncommitted):
            assert c.poll(0) is None  # the markers stay hidden


def appended_frame(p: Producer, log, value: bytes, headers=None) -> tuple[str, int, int]:
    """Produce one record; (segment file, frame position, frame end) of its frame."""
    before = log.state.snapshot()["active_position"]
    p.produce(TOPIC, value, partition=0, headers=headers)
    p.flush()
    st = log.state.snapshot()
    return os.path.join(log.directory, f"{st['active_base_offset']:020d}.log"), before, st["active_position"]


def flip_value_byte(path: str, start: int, end: int, value: bytes) -> None:
    """Flip a bit in the middle of ``value``'s bytes in the frame at [start, end) of ``path``."""
    fd = os.open(path, os.O_RDWR)
    try:
        at = start + os.pread(fd, end - start, start).index(value) + len(value) // 2
        os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ 0x10]), at)
    finally:
        os.close(fd)


def test_bit_rot_in_a_followed_frame_is_an_error_not_data(data_dir):
    with following(data_dir) as (p, c):
        path, start, end = appended_frame(p, fetch_of(c).log, b"x" * 64)
        flip_value_byte(path, start, end, b"x" * 64)
        with pytest.raises(errors.CorruptRecordError, match=f"byte position {start}"):
            c.poll(1)


def test_followed_frames_are_served_unchecked_with_check_crcs_off(data_dir):
    with following(data_dir, **{"check.crcs": False}) as (p, c):
        path, start, end = appended_frame(p, fetch_of(c).log, b"x" * 64)
        flip_value_byte(path, start, end, b"x" * 64)
        assert poll_one(c).value() == b"x" * 32 + b"h" + b"x" * 31


def mangle(p, c, flips, headers=None) -> None:
    """Append a frame the follower ``c`` reads next and flip bytes of its
    body (``flips``: (where in the body, xor mask))."""
    flip_body(*appended_frame(p, fetch_of(c).log, b"x" * 64, headers), flips)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4))
@pytest.mark.parametrize("headers", [None, [("h", b"one"), ("i", None), ("j", b"three")]])
def test_a_mangled_unchecked_frame_is_an_error_or_data_never_a_crash(tmp_path_factory, flips, headers):
    # with check.crcs off nothing vouches for the frame: every length in its
    # Arrow message is checked before the follower (or, when it declines the
    # frame, BatchView over pyarrow's decode) trusts it
    with following(str(tmp_path_factory.mktemp("data")), **{"check.crcs": False}) as (p, c):
        mangle(p, c, flips, headers)
        try:
            m = c.poll(0.5)
        except errors.ArrowlogError:
            return
        if m is not None and m.error() is None:
            m.key(), m.value()
            with contextlib.suppress(errors.CorruptRecordError):  # a header key that is not UTF-8: named
                m.headers()


def test_an_unchecked_frame_with_a_bad_value_offset_is_a_corrupt_record(data_dir):
    # the follower declines this frame (a value offset went wrong); the
    # general read decodes it through pyarrow, which does not check offsets:
    # BatchView does, when it binds the batch (it was a SystemError from value())
    with following(data_dir, **{"check.crcs": False}) as (p, c):
        mangle(p, c, [(0.8515625, 1)])
        with pytest.raises(errors.CorruptRecordError, match="frame at offset 1 is damaged: its value column"):
            c.poll(1)


def test_an_unchecked_frame_with_bad_header_lengths_is_a_corrupt_record(data_dir):
    # pyarrow decodes this frame; its header entries do not fit their
    # buffers, and reading them (the transaction-marker check does, before
    # any BatchView) aborted the process: the read checks first
    with following(data_dir, **{"check.crcs": False}) as (p, c):
        mangle(p, c, [(0.25, 1)], [("h", b"one"), ("i", None), ("j", b"three")])
        with pytest.raises(errors.CorruptRecordError, match="frame at offset 1 is damaged: its headers column"):
            c.poll(1)


def test_seek_back_and_delete_records_under_a_follower(data_dir):
    LogDir(data_dir).create_topic(TOPIC)
    with Producer({"log.dir": data_dir, "linger.ms": 0}) as p, follower_consumer(data_dir) as c:
        for i in range(3):
            p.produce(TOPIC, b"v%d" % i, partition=0)
            p.flush()
            assert poll_one(c).offset() == i
        c.seek(TopicPartition(TOPIC, 0, 1))
        assert [poll_one(c).offset() for _ in range(2)] == [1, 2]
        fetch_of(c).log.delete_records(3)
        for i in range(3, 5):
            p.produce(TOPIC, b"v%d" % i, partition=0)
            p.flush()
        fetch_of(c).log.delete_records(4)  # past the cursor at 3: auto.offset.reset (earliest) goes on at 4
        assert poll_one(c).offset() == 4
