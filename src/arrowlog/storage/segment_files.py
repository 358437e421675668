"""A segment's files: their names, the fixed part of the log's header, how
a new segment's files are made, and how far the log and its indexes grow.

Segment (segment.py) maps and reads the files; this module says what is on
disk before anything is mapped and how much disk is asked for ahead of the
data. The header's layout is in segment.py's docstring.
"""

from __future__ import annotations

import os
import struct

import pyarrow as pa

from .._native import core
from .files import storage_error

SEGMENT_MAGIC = b"ARWLSEG1"
SEGMENT_FIXED_HEADER = 40
HEADER = struct.Struct("<8sIIqqII")

# Segment files grow by posix_fallocate before anything is stored in the new
# space, which turns a full disk into a clean ENOSPC instead of a SIGBUS from
# a store into an unbacked page. A new segment starts with LOG_INITIAL_BYTES
# and each step doubles the file, up to ALLOCATE_STEP per step; an append
# that jumps past the end (a multi-megabyte frame) gets as much again as the
# jump beyond it. A partition that receives one small batch costs 64 KiB of
# disk, not 16 MiB (64 new partitions used 1 GiB before), a small one keeps
# the tail that close() does not bother trimming, and a bulk append of large
# frames grows the file every few frames, not on each. Each fallocate is a
# journal transaction, and on a disk another process keeps fsyncing one can
# wait for the journal's commit (docs/DURABILITY.md, "Appending while the
# disk is busy"): fewer, larger steps wait less often. The tail is given
# back when the segment rolls or closes.
LOG_INITIAL_BYTES = 64 << 10
ALLOCATE_STEP = 64 << 20
# Indexes grow the same way (from one page, doubling) up to this many bytes
# (Kafka's segment.index.bytes), are mapped over all of it, and are trimmed
# when the segment rolls; a full index forces a roll.
INDEX_INITIAL_BYTES = 4096
INDEX_BYTES = 10 << 20
# Relative offsets and positions are u32 in the indexes: roll before either
# could overflow (Kafka's KAFKA-4451 / KAFKA-6264 lesson).
MAX_RELATIVE_OFFSET = (1 << 31) - 1
MAX_SEGMENT_BYTES = (1 << 31) - 1

COMPRESSION_FLAGS = {None: 0, "none": 0, "zstd": 1, "lz4": 2}
COMPRESSION_NAMES = {0: None, 1: "zstd", 2: "lz4"}

SEGMENT_EXTENSIONS = (".log", ".index", ".timeindex")


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


def segment_path(directory: str, base_offset: int, ext: str = ".log") -> str:
    return os.path.join(directory, segment_name(base_offset) + ext)


def delete_segment_files(directory: str, base_offset: int) -> None:
    """Unlink a segment's three files (those still there)."""
    for ext in SEGMENT_EXTENSIONS:
        try:
            os.unlink(segment_path(directory, base_offset, ext))
        except FileNotFoundError:
            pass


def parse_segment_name(filename: str) -> int | None:
    stem, dot, ext = filename.partition(".")
    if ext != "log" or len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem)


def open_rw(path: str, create: bool) -> int:
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
    if create:
        flags |= os.O_CREAT
    return os.open(path, flags, 0o600)


def create_files(directory: str, base_offset: int, schema: pa.Schema, compression: str | None,
                 capacity: int, created_ms: int) -> None:
    """Write a new segment's header and empty indexes (Segment.create opens
    them). The files appear under temporary names and are renamed in place,
    so a crash never leaves a segment without its header."""
    schema_msg = schema.serialize().to_pybytes()
    header_size = (SEGMENT_FIXED_HEADER + len(schema_msg) + 7) & ~7
    body = struct.pack("<qqII", base_offset, created_ms, len(schema_msg),
                       COMPRESSION_FLAGS[compression]) + schema_msg
    body += b"\0" * (header_size - 16 - len(body))
    crc = core.crc32c(body)
    header = struct.pack("<8sII", SEGMENT_MAGIC, header_size, crc) + body
    stem = os.path.join(directory, segment_name(base_offset))
    tmp = stem + ".log.tmp"
    try:
        fd = open_rw(tmp, create=True)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, header)
            core.fallocate(fd, 0, max(header_size, min(LOG_INITIAL_BYTES, capacity)))
        finally:
            os.close(fd)
        for path in (stem + ".index", stem + ".timeindex"):
            fd = open_rw(path, create=True)
            try:
                os.ftruncate(fd, 0)
                core.fallocate(fd, 0, INDEX_INITIAL_BYTES)
            finally:
                os.close(fd)
        os.rename(tmp, stem + ".log")
    except OSError as exc:
        for path in (tmp, stem + ".index", stem + ".timeindex"):
            try:
                os.unlink(path)
            except OSError:
                pass
        raise storage_error(exc, f"cannot create segment {stem}.log") from exc


def log_growth(file_size: int, end: int, capacity: int) -> int:
    """The log's next allocated size when [0, end) must be backed and
    ``file_size`` bytes are (``end`` beyond it): a step doubling the file
    up to ALLOCATE_STEP, or as much again as a jump past the end, never
    beyond ``capacity``."""
    step = min(max(file_size, LOG_INITIAL_BYTES), ALLOCATE_STEP)
    return min(max(file_size + step, end + min(end - file_size, ALLOCATE_STEP)), capacity)


def index_growth(size: int, need: int) -> int:
    """An index file's next size when ``need`` bytes must be backed and
    ``size`` are: doubling from INDEX_INITIAL_BYTES up to INDEX_BYTES."""
    return min(INDEX_BYTES, max(need, 2 * size, INDEX_INITIAL_BYTES))

