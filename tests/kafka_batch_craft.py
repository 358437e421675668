"""Hand-made Kafka record batches v2 that lie, for the decoder and server tests
(tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import struct

from arrowlog._native import kafka as K

HEADER = 61


def resign(data) -> bytes:
    """Fix the CRC-32C of a (single) batch after its bytes were changed."""
    data = bytearray(data)
    data[17:21] = K.crc32c(bytes(data[21:])).to_bytes(4, "big")
    return bytes(data)


def claiming(data, count: int) -> bytes:
    """``data`` (one batch) with its header claiming ``count`` records (last_offset_delta
    agreeing), its length fitted to its bytes, re-signed."""
    data = bytearray(data)
    data[8:12] = struct.pack(">i", len(data) - 12)
    data[23:27] = struct.pack(">I", (count - 1) & 0xFFFFFFFF)
    data[57:61] = struct.pack(">I", count & 0xFFFFFFFF)
    return resign(data)


def with_block(codec: int, block: bytes, count: int = 1) -> bytes:
    """A batch whose records block is ``block`` (already compressed with ``codec``)."""
    header = bytearray(HEADER)
    header[16] = 2
    header[21:23] = struct.pack(">h", codec)
    header[43:51] = struct.pack(">q", -1)
    header[51:53] = struct.pack(">h", -1)
    header[53:57] = struct.pack(">i", -1)
    return claiming(bytes(header) + block, count)
