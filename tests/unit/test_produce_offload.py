"""Which produce bodies go to the worker thread: any holding a compressed batch."""

import struct

from arrowlog.server.produce import _compressed


def header(codec: int, body: int = 0) -> bytes:
    """A record batch v2 header (61 bytes) followed by ``body`` bytes of records."""
    h = bytearray(61)
    struct.pack_into(">qi", h, 0, 0, 49 + body)   # batchLength counts from partitionLeaderEpoch
    h[16] = 2
    struct.pack_into(">h", h, 21, codec)
    return bytes(h) + b"\0" * body


def test_a_compressed_batch_after_plain_ones_is_found():
    assert not _compressed(header(0, 100) + header(0, 7))
    assert _compressed(header(0, 100) + header(0, 7) + header(4, 30))
    assert _compressed(memoryview(header(1)))


def test_hostile_lengths_end_the_walk():
    assert not _compressed(None) and not _compressed(b"")
    assert not _compressed(header(0)[:60])           # shorter than a header
    bad = bytearray(header(0) + header(2))
    struct.pack_into(">i", bad, 8, -5)                 # a negative length stops the walk
    assert not _compressed(bytes(bad))
    struct.pack_into(">i", bad, 8, 1 << 30)            # a length past the end: nothing more to read
    assert not _compressed(bytes(bad))
