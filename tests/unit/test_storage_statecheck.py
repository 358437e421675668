"""The one bounds check of a published partition state
(_native/core/statecheck.pxi): layout.state_problem (the open of a clean
partition), the native close that leaves the layout mark (closing.pxi,
close_marks) and replay's native read of clean states (replayview.pxi,
clean_states) refuse the same states, hostile ones included, and the error
names the field that is wrong."""

from __future__ import annotations

import os
import struct
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from arrowlog._native import core
from arrowlog.backends.local import clean_read
from arrowlog.schema import PRODUCE_SCHEMA
from arrowlog.storage import LogDir, layout, layout_mark, segment

INT64 = (-(1 << 63), (1 << 63) - 1)
MAX_OFFSET = 1 << 62
MAX_POSITION = (1 << 31) - 1 + (1 << 31)
PAYLOAD = struct.Struct("<12q")


def oracle(s: dict, markable: bool = False) -> str | None:
    """The bounds as docs/FORMAT.md states them, written out once more in
    plain Python: the first field that breaks one, or None."""
    nxt = s["next_offset"]
    rules = (
        ("next_offset", 0 <= nxt < MAX_OFFSET),
        ("log_start_offset", 0 <= s["log_start_offset"] <= nxt),
        ("active_base_offset", 0 <= s["active_base_offset"] <= nxt),
        ("active_position", 40 <= s["active_position"] <= MAX_POSITION and s["active_position"] % 8 == 0),
        ("offset_index_entries", 0 <= s["offset_index_entries"] <= (10 << 20) // 8),
        ("time_index_entries", 0 <= s["time_index_entries"] <= (10 << 20) // 12),
        ("bytes_since_index", 0 <= s["bytes_since_index"] <= MAX_POSITION),
        ("recovery_point", 0 <= s["recovery_point"] <= nxt),
        ("log_start_offset", not markable or s["log_start_offset"] >= s["active_base_offset"]),
    )
    return next((name for name, ok in rules if not ok), None)


def sane(next_offset: int = 100) -> dict:
    return dict(log_start_offset=10, next_offset=next_offset, active_base_offset=10, active_position=4096,
                active_max_timestamp=5, offset_index_entries=3, time_index_entries=3, bytes_since_index=100,
                recovery_point=next_offset, generation=1, segment_created_ms=7)


def hostile(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Values that break bounds: negative, huge, wrapped (an unsigned
    value read back as int64), misaligned, one past each bound."""
    edges = [-1, -8, 0, 1, 39, 40, 41, 44, 48, MAX_OFFSET - 1, MAX_OFFSET, MAX_POSITION, MAX_POSITION + 1,
             MAX_POSITION - 4, (10 << 20) // 8, (10 << 20) // 8 + 1, (10 << 20) // 12, (10 << 20) // 12 + 1,
             (1 << 32) - 1, 1 << 32, INT64[0], INT64[1], (1 << 64) - 5 - (1 << 64)]
    return st.one_of(st.sampled_from([e for e in edges if lo <= e <= hi]), st.integers(lo, hi),
                     st.integers(0, 200).map(lambda v: v * 8 + 4))


@st.composite
def states(draw, lo: int = INT64[0], hi: int = INT64[1]) -> dict:
    """A sane state with some of its checked fields replaced by hostile values."""
    nxt = draw(st.integers(0, MAX_OFFSET - 1) | st.integers(0, 1000))
    s = sane(nxt)
    s["log_start_offset"] = s["active_base_offset"] = min(10, nxt)
    for name in draw(st.sets(st.sampled_from(core.STATE_CHECKS), max_size=3)):
        s[name] = draw(hostile(lo, hi))
    return s


def test_the_bounds_are_segment_pys_numbers():
    assert core.SEGMENT_FIXED_HEADER == segment.SEGMENT_FIXED_HEADER
    assert core.INDEX_BYTES == segment.INDEX_BYTES
    assert core.MAX_ACTIVE_POSITION == segment.MAX_SEGMENT_BYTES + (1 << 31)
    assert (layout.MAX_OFFSET, layout.MAX_ACTIVE_POSITION) == (core.MAX_OFFSET, core.MAX_ACTIVE_POSITION)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(states(lo=-(1 << 70), hi=1 << 70))
@example({**sane(), "active_position": 2**64 + 48})   # wrapped: int64 of it would be 48
@example({**sane(), "next_offset": -(2**64) + 100})
def test_state_problem_names_the_field_the_check_finds(s):
    want = oracle(s)
    assert core.state_fault(s) == want
    problem = layout.state_problem(s)
    if want is None:
        assert problem is None
    else:
        assert problem.startswith(f"partition.state says {want}={s[want]}, which is impossible (it must be ")


@pytest.fixture(scope="module")
def state_file(tmp_path_factory):
    """A writable PartitionState over a scratch file, and its descriptor."""
    path = tmp_path_factory.mktemp("statecheck") / "partition.state"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, core.STATE_FILE_SIZE)
    yield core.PartitionState(core.MappedFile(fd, core.STATE_FILE_SIZE, True, str(path))), fd
    os.close(fd)


def close_marked(state_file, s: dict) -> bool:
    """Whether the native clean close leaves its marks on state ``s``."""
    state, fd = state_file
    os.pwrite(fd, b"\0" * 128, layout_mark.MARK_OFFSET)
    state.initialise(**s)
    stats = struct.pack("<21q", 1, *range(1, 21))   # close_stats' row: the stats taken
    left = core.close_marks([(state, INT64[0])], stats)
    marked = os.pread(fd, 8, layout_mark.MARK_OFFSET) == layout_mark.MARK_MAGIC
    assert marked == (left == []) and state.clean
    return marked


def replay_takes(topic: str, s: dict) -> bool:
    """Whether replay's native read takes partition 0's state ``s`` (clean,
    with a segment mark left with that very state)."""
    head = bytearray(layout_mark.SEGMENT_MARK_OFFSET + layout_mark.SEGMENT_MARK_SIZE)
    head[:24] = b"ARWLSTAT" + struct.pack("<IIQ", 1, 1, 2)
    head[24:120] = PAYLOAD.pack(*(s[name] for name in core.STATE_FIELDS), 0)
    log_stat = SimpleNamespace(st_dev=1, st_ino=2, st_size=1 << 40, st_mtime_ns=3, st_ctime_ns=4)
    head[layout_mark.SEGMENT_MARK_OFFSET:] = core.segment_mark(bytes(head[16:120]), log_stat)
    with open(os.path.join(topic, "0", "partition.state"), "wb") as f:
        f.write(head + b"\0" * (core.STATE_FILE_SIZE - len(head)))
    out = np.zeros((1, len(core.CLEAN_FIELDS)), dtype=np.int64)
    core.clean_states(os.fsencode(topic), np.zeros(1, dtype=np.int64), out)
    return bool(out[0, 0])


@pytest.fixture(scope="module")
def topic_dir(tmp_path_factory):
    topic = tmp_path_factory.mktemp("statecheck-topic")
    os.mkdir(topic / "0")
    return str(topic)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(states())
def test_the_close_mark_and_the_replay_refuse_what_state_problem_refuses(state_file, topic_dir, s):
    markable = oracle(s, markable=True) is None
    assert (core.state_fault(s, True) is None) == markable
    assert (layout.state_problem(s) is None) == (oracle(s) is None)
    assert close_marked(state_file, s) == markable
    assert replay_takes(topic_dir, s) == markable


BREAKS = {
    "next_offset": MAX_OFFSET, "log_start_offset": -5, "active_base_offset": 101, "active_position": 4100,
    "offset_index_entries": (10 << 20) // 8 + 1, "time_index_entries": -1, "bytes_since_index": MAX_POSITION + 1,
    "recovery_point": 101,
}


@pytest.mark.parametrize("field", core.STATE_CHECKS)
def test_each_bound_is_refused_by_every_path(state_file, topic_dir, field):
    s = {**sane(), field: BREAKS[field]}
    assert layout.state_problem(s).startswith(f"partition.state says {field}={BREAKS[field]}, which is impossible")
    assert not close_marked(state_file, s)
    assert not replay_takes(topic_dir, s)
    assert close_marked(state_file, sane()) and replay_takes(topic_dir, sane())


def test_a_log_that_starts_below_its_active_segment_is_sane_but_never_marked(state_file, topic_dir):
    s = {**sane(), "log_start_offset": 5}
    assert layout.state_problem(s) is None and core.state_fault(s, True) == "log_start_offset"
    assert not close_marked(state_file, s)
    assert not replay_takes(topic_dir, s)


@pytest.mark.parametrize("field", core.STATE_CHECKS)
def test_a_real_clean_partition_with_an_impossible_field_is_not_replayed_its_short_way(tmp_path, field):
    """The state of a partition a clean close marked, one field made
    impossible and its segment mark made again for the new bytes: only the
    bounds can refuse it."""
    path = str(tmp_path / "d")
    with LogDir(path) as d:
        d.create_topic("t", 1)
        d.topic("t").partition(0).append(pa.RecordBatch.from_pydict(
            {"timestamp": [1, 2, 3], "key": [b"k"] * 3, "value": [b"v"] * 3, "headers": [None] * 3},
            schema=PRODUCE_SCHEMA))
    topic = os.path.join(path, "topics", "t")
    states = clean_read.CleanStates(LogDir(path).topic("t"), [0])
    assert states.states[0, 0] == 1
    state_path = os.path.join(topic, "0", "partition.state")
    with open(state_path, "r+b") as f:
        head = bytearray(f.read(layout_mark.SEGMENT_MARK_OFFSET + layout_mark.SEGMENT_MARK_SIZE))
        struct.pack_into("<q", head, 24 + 8 * core.STATE_SLOT[field], BREAKS[field])
        mark = head[layout_mark.SEGMENT_MARK_OFFSET + 8:layout_mark.SEGMENT_MARK_OFFSET + 48]
        dev, ino, size, mtime, ctime = struct.unpack("<5q", mark)
        facts = SimpleNamespace(st_dev=dev, st_ino=ino, st_size=size, st_mtime_ns=mtime, st_ctime_ns=ctime)
        head[layout_mark.SEGMENT_MARK_OFFSET:] = core.segment_mark(bytes(head[16:120]), facts)
        f.seek(0)
        f.write(head)
    states = clean_read.CleanStates(LogDir(path).topic("t"), [0])
    assert states.states[0, 0] == 0
