"""The layout mark: what lets a clean open skip the layout check.

Opening a clean partition checks that the published state and the segment
files agree (recovery.py, ``_check_layout``; docs/DURABILITY.md, "A damaged
layout"): a few opens, mappings and reads per segment, the larger part of
what a replay of many small partitions costs. The last process out of a
partition knows the layout is right (its session opened it checked,
recovered or new, and only changed it through its own appends), so its
clean close leaves a mark in ``partition.state``, after the published
state:

    offset  size  field
       256     8  magic b"ARWLMARK"
       264     8  digest (core.mark_digest, a 64-bit hash) of the state's
                  bytes [16, 120): the seqlock counter and every published
                  field; and of the (device, inode, size, mtime, ctime) of
                  the partition directory and of the active segment's three
                  files

       272     8  magic b"ARWLSEGM": the segment mark, for replay (below)
       280    40  the active segment's .log: dev, inode, size, mtime and
                  ctime (ns), as the close found them
       320     8  their digest with the state's bytes [16, 120)
                  (core.segment_mark)

The next first opener trusts the mark only when the state is clean and the
digest of what it finds now is the same (it then skips the layout check
and the look for a compaction swap left half-done: none is marked);
anything that touched the directory's entries (a segment deleted or added, a file replaced), a
segment file's size or contents, or the published state since then makes
it stale, and the full check runs (and, when it passes, leaves a fresh
mark). A session's first change clears it (sessions.py, ``_mark_dirty``,
with the "clean" word, in the same fsync).

A replay reads only the active segment's .log of a partition its short
way (backends/local/clean_read.py), so it needs only the segment mark: it
reads the states of many partitions in one native pass without opening
them (core.clean_states, _native/core/replayview.pxi), takes the
watermarks of a clean state whose segment mark was left with that very
state (its digest covers the state's bytes), and serves the segment only
if the fstat of the descriptor it reads it through finds the five facts
the mark recorded (one stat fewer than the layout mark's four files, and
none by path: about four system calls a partition in all). Both digests
are native for that reason (a mark left by an older arrowlog, with
another digest or no segment mark, is stale once: the full check then
leaves new ones; an older arrowlog's session clears only the layout mark,
and the segment mark it leaves behind no longer matches the state it
publishes).

Only a partition whose log starts in its active segment is marked (its
layout check looks at that one segment alone); older segments' files
would each need their own stat. File times: Linux 6.13 and later give a
file that was stat()ed since its last change a fresh fine-grained time at
the next change (multigrain timestamps), so a change right after the mark
was taken never keeps the marked time; on older kernels a change within
the same clock tick (1-4 ms) as the clean close and of the same size would
go unseen by the mark (reads still check every frame's CRC).
"""

from __future__ import annotations

import os
import struct
from typing import Any

from .._native import core
from .cleaner import CLEANING_DIR
from .segment import segment_name

MARK_OFFSET = 256
MARK_MAGIC = b"ARWLMARK"
MARK_SIZE = 16
SEGMENT_MARK_OFFSET = MARK_OFFSET + MARK_SIZE
SEGMENT_MARK_SIZE = 56
# the state's seqlock counter and payload (state.pxi): [16, 120)
_STATE_BYTES = slice(16, 120)
_ACTIVE_BASE = struct.Struct("<q")
_ACTIVE_BASE_AT = 24 + 2 * 8      # payload field 2
_NO_MARK = b"\0" * (MARK_SIZE + SEGMENT_MARK_SIZE)
_CLEAN_HEADER = b"ARWLSTAT" + struct.pack("<II", 1, 1)  # magic, version 1, clean
_SEQ = struct.Struct("<Q")


def _digest(head: bytes, directory: str, segment: Any = None, *, closing: bool = False) -> bytes | None:
    """The layout mark's digest of the state bytes in ``head`` and the files
    they name followed by the segment mark, or None when a file is missing.
    ``segment``: the active segment open for writing, whose files are asked
    through their descriptors (an fstat costs half a stat). ``closing``:
    also None when a swap a dead cleaner left half-done may be there
    (cleaner.py): it waits for the next opener's finish_swaps, which a
    marked open skips. (A state whose log starts below its active segment
    is never marked: write_mark; a mark left on another state than ``head``'s
    never matches the digest, which covers the state's bytes.)"""
    active = _ACTIVE_BASE.unpack_from(head, _ACTIVE_BASE_AT)[0]
    try:
        if segment is not None and segment.base_offset == active and \
                min(segment.log_fd, segment.index_fd, segment.time_index_fd) >= 0:
            stats = [os.stat(directory), os.fstat(segment.log_fd), os.fstat(segment.index_fd),
                     os.fstat(segment.time_index_fd)]
        else:
            stem = f"{directory}/{segment_name(active)}"
            stats = [os.stat(path) for path in (directory, stem + ".log", stem + ".index", stem + ".timeindex")]
    except OSError:
        return None
    # the swap is a subdirectory: a directory with no subdirectory has two
    # links on the usual file systems (one stat fewer per partition closed)
    if closing and stats[0].st_nlink != 2 and os.path.lexists(f"{directory}/{CLEANING_DIR}"):
        return None
    state = head[_STATE_BYTES]
    return core.mark_digest(state, stats) + core.segment_mark(state, stats[1])


def write_mark(fd: int, directory: str, st: dict, writer: Any = None) -> None:
    """Leave the mark on a clean close (caller holds the append lock; ``st``
    is the state just published; ``writer`` the segment open for writing,
    if any). A partition it does not apply to (an impossible state, a log
    that starts below its active segment: core.state_fault, the check the
    native close makes too) gets none. Never fails the close: a mark not
    written only costs the next opener the full check."""
    try:
        mark = _NO_MARK
        if core.state_fault(st, True) is None:
            digest = _digest(os.pread(fd, MARK_OFFSET, 0), directory, writer, closing=True)
            if digest is not None:
                mark = MARK_MAGIC + digest
        os.pwrite(fd, mark, MARK_OFFSET)
    except OSError:
        pass


def clear_mark(fd: int) -> None:
    """A session's first change: the marks no longer vouch for anything."""
    os.pwrite(fd, _NO_MARK, MARK_OFFSET)


def mark_holds(fd: int, directory: str) -> bool:
    """Whether the partition is clean (a whole state of format version 1,
    the clean word 1, no publish left half-done) and its layout as its last
    clean close left it (caller is the first opener: nobody changes it
    meanwhile)."""
    try:
        head = os.pread(fd, MARK_OFFSET + MARK_SIZE, 0)
    except OSError:
        return False
    if len(head) < MARK_OFFSET + MARK_SIZE or head[MARK_OFFSET:MARK_OFFSET + 8] != MARK_MAGIC:
        return False
    if head[:16] != _CLEAN_HEADER or _SEQ.unpack_from(head, 16)[0] & 1:
        return False
    digest = _digest(head, directory)
    return digest is not None and digest[:8] == head[MARK_OFFSET + 8:]
