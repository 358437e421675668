"""Damage to a stored frame, for the tests of reads with check.crcs off."""

from __future__ import annotations

import os


def flip_body(path: str, start: int, end: int, flips: list[tuple[float, int]]) -> None:
    """XOR bytes of the body of the frame at [start, end) of the segment file
    ``path``: ``flips`` are (where in the body, as a fraction; mask)."""
    fd = os.open(path, os.O_RDWR)
    try:
        body = start + 40  # past the frame header
        for where, mask in flips:
            at = body + int(where * (end - body))
            os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ mask]), at)
    finally:
        os.close(fd)
