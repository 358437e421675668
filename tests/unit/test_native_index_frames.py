"""Frames, the sparse index search and the published state."""

import os

import pyarrow as pa
import pytest

from arrowlog._native import core


def mapped(tmp_path, name, size):
    fd = os.open(tmp_path / name, os.O_RDWR | os.O_CREAT)
    core.fallocate(fd, 0, size)
    m = core.MappedFile(fd, size, True)
    os.close(fd)
    return m


def test_offset_index_lookup_is_floor_search(tmp_path):
    m = mapped(tmp_path, "i", 8 * 1000)
    entries = [(i * 10, 100 + i * 4096) for i in range(1000)]
    for slot, (rel, pos) in enumerate(entries):
        core.write_offset_entry(m, slot, rel, pos)
    assert core.offset_index_lookup(m, 1000, 0) == (0, 100)
    assert core.offset_index_lookup(m, 1000, 15) == (10, 100 + 4096)
    assert core.offset_index_lookup(m, 1000, 99999) == entries[-1]
    assert core.offset_index_lookup(m, 0, 5) is None
    assert core.index_is_sane(m, 1000, 8, 10**9)
    core.write_offset_entry(m, 500, 0, 0)  # a zeroed entry in the middle
    assert not core.index_is_sane(m, 1000, 8, 10**9)


def test_time_index_lookup(tmp_path):
    m = mapped(tmp_path, "t", 12 * 10)
    for slot in range(10):
        core.write_time_entry(m, slot, 1000 + slot * 100, slot * 7)
    assert core.time_index_lookup(m, 10, 1000) is None
    assert core.time_index_lookup(m, 10, 1001) == 0
    assert core.time_index_lookup(m, 10, 1250) == 14
    assert core.time_index_lookup(m, 10, 10**12) == 63


def test_frame_round_trip_and_scan(tmp_path):
    m = mapped(tmp_path, "s", 1 << 20)
    body = pa.py_buffer(b"x" * 64)
    pos = 0
    for i in range(5):
        pos += core.write_frame(m, pos, i * 3, 3, 10, 20, body)
    end, nxt, frames = core.scan_frames(m, 0, 1 << 20, 0)
    assert (end, nxt, len(frames)) == (pos, 15, 5)
    assert core.read_frame_header(m, 0, pos) == (0, 3, 64, 10, 20)
    # the pwritev path (body in pieces) writes byte-identical frames, also past a slice boundary
    fd = os.open(tmp_path / "s2", os.O_RDWR | os.O_CREAT)
    core.fallocate(fd, 0, 4096)
    core.write_frame_pieces(fd, 0, 0, 3, 10, 20, [b"x" * 24, pa.py_buffer(b"x" * 40)])
    with open(tmp_path / "s2", "rb") as f:
        assert f.read(104) == m.read(0, 104)
    big = os.urandom(2_600_000)  # 1 MiB slices: past two boundaries, one inside a piece
    core.write_frame_pieces(fd, 0, 0, 1, 1, 1, [big[:100_000], pa.py_buffer(big[100_000:])])
    m2 = core.MappedFile(fd, len(big) + 40, False)
    assert core.scan_frames(m2, 0, len(big) + 40, 0)[0] == len(big) + 40  # CRC checks out
    assert m2.read(40, len(big)) == big
    os.close(fd)
    # a flipped bit in the third frame's body stops the scan there
    m.write(frames[2][0] + core.FRAME_HEADER_SIZE + 5, b"y")
    end2, nxt2, frames2 = core.scan_frames(m, 0, 1 << 20, 0)
    assert (end2, nxt2, len(frames2)) == (frames[2][0], 6, 2)
    assert not core.check_frame_crc(m, frames[2][0], pos)
    # a non-contiguous offset also stops it
    end3, _, _ = core.scan_frames(m, 0, 1 << 20, 1)
    assert end3 == 0


def test_scan_never_trusts_a_huge_length(tmp_path):
    m = mapped(tmp_path, "h", 4096)
    m.write(0, (0).to_bytes(4, "little") + core.FRAME_MAGIC.to_bytes(4, "little") + bytes(8)
            + (0x7FFFFFF8).to_bytes(4, "little") + (1).to_bytes(4, "little") + bytes(16))
    assert core.scan_frames(m, 0, 4096, 0) == (0, 0, [])
    with pytest.raises(core.CorruptFrame):
        core.read_frame_header(m, 0, 4096)


def test_state_publish_snapshot_and_wait(tmp_path):
    st = core.PartitionState(mapped(tmp_path, "state", core.STATE_FILE_SIZE))
    assert not st.is_initialised()
    st.initialise(next_offset=5, log_start_offset=2)
    snap = st.snapshot()
    assert snap["next_offset"] == 5 and snap["log_start_offset"] == 2 and st.next_offset() == 5
    assert st.wait_beyond(4, 0.0) is True
    assert st.wait_beyond(5, 0.01) is False
    w = st.current_word()
    st.bump()
    assert st.wait_word(w, 0.0) is True
    assert st.wait_word(st.current_word(), 0.01) is False


def test_mapping_bounds_are_checked(tmp_path):
    m = mapped(tmp_path, "b", 4096)
    with pytest.raises(IndexError):
        m.view(4000, 200)
    with pytest.raises(IndexError):
        m.write(4095, b"ab")
