"""core.write_frame_pieces, the writer of produce_batch's frames: the bytes it
stores are a frame header (CRC-32C over header and body) followed by the
pieces back to back, however the pieces are cut; and the body goes to the
page cache in slices of about 1 MiB, not in one write per piece."""

import os
import struct

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowlog._native import core

MiB = 1 << 20


def reference_frame(base: int, count: int, min_ts: int, max_ts: int, body: bytes) -> bytes:
    """The frame as docs/FORMAT (frame.pxi) defines it, built in Python."""
    tail = struct.pack("<IqIIqq", core.FRAME_MAGIC, base, len(body), count, min_ts, max_ts)
    return struct.pack("<I", core.crc32c(body, core.crc32c(tail))) + tail + body


def write_syscalls() -> int:
    """This thread's write syscalls so far (pwritev counts)."""
    with open("/proc/thread-self/io") as f:
        return int(next(line for line in f if line.startswith("syscw:")).split()[1])


def cut(body: bytes, sizes: list[int]) -> list:
    """``body`` cut into pieces of ``sizes`` (the rest as a last piece), as
    bytes and pyarrow buffers alternately (what pyarrow's IPC writer emits)."""
    pieces, at = [], 0
    for i, size in enumerate(sizes):
        piece = body[at:at + size]
        pieces.append(pa.py_buffer(piece) if i % 2 else piece)
        at += size
    pieces.append(body[at:])
    return pieces


@settings(max_examples=40, deadline=None)
@given(total8=st.integers(1, (3 * MiB) // 8), sizes=st.lists(st.integers(0, 2 * MiB), max_size=30),
       small=st.lists(st.integers(0, 64), max_size=40), position8=st.integers(0, 4096), seed=st.integers(0, 255))
def test_pieces_are_stored_as_the_reference_frame(tmp_path_factory, total8, sizes, small, position8, seed):
    body = bytes((seed + i * 7) & 0xFF for i in range(256)) * (total8 * 8 // 256) + bytes(total8 * 8 % 256)
    pieces = cut(body, [*small, *sizes])
    assert b"".join(bytes(p) for p in pieces) == body
    path = tmp_path_factory.mktemp("pieces") / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        position = position8 * 8
        size = core.write_frame_pieces(fd, position, 7, 3, -5, 9, pieces)
        assert size == core.FRAME_HEADER_SIZE + len(body)
        assert os.pread(fd, size, position) == reference_frame(7, 3, -5, 9, body)
    finally:
        os.close(fd)


def test_many_small_pieces_take_one_write_per_slice(tmp_path):
    # an IPC message is ~20 pieces, most of them a few bytes of metadata or
    # padding: they are gathered into the slice's pwritev
    pieces = [b"m" * 8] * 20 + [pa.py_buffer(b"v" * (6 * MiB))] + [b"p" * 8] * 20
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        before = write_syscalls()
        size = core.write_frame_pieces(fd, 0, 0, 1, 1, 1, pieces)
        writes = write_syscalls() - before
        body = b"".join(bytes(p) for p in pieces)
        assert os.pread(fd, size, 0) == reference_frame(0, 1, 1, 1, body)
    finally:
        os.close(fd)
    # 6 MiB + 320 bytes: a write per slice of the body (1 or 2 MiB), then the
    # header; one write per piece and per MiB of a piece would be 47
    assert writes <= 6 + 1 + 1, writes
