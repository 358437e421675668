"""How a segment file grows ahead of its appends: a small partition costs
LOG_INITIAL_BYTES of disk, and a bulk append of large frames grows the file
every few frames instead of on each one (each growth is a journal
transaction that can wait behind another process's fsync)."""

from __future__ import annotations

import os

from arrowlog.schema import ENVELOPE_SCHEMA
from arrowlog.storage import segment as segment_mod
from arrowlog.storage.segment import LOG_INITIAL_BYTES, Segment


def growths(seg: Segment, ends: list[int]) -> int:
    grew = 0
    for end in ends:
        before = seg.file_size
        seg.ensure_allocated(end)
        assert seg.file_size >= end and os.fstat(seg.log_fd).st_size == seg.file_size  # backed before use
        grew += seg.file_size != before
    return grew


def test_a_small_partition_costs_the_initial_allocation(tmp_path):
    seg = Segment.create(str(tmp_path), 0, ENVELOPE_SCHEMA, None, 1 << 30, 0)
    try:
        assert seg.file_size == LOG_INITIAL_BYTES
        assert growths(seg, [seg.header_size + 1000, seg.header_size + 5000]) == 0
        growths(seg, [LOG_INITIAL_BYTES + 100])
        assert seg.file_size == 2 * LOG_INITIAL_BYTES  # doubles, so the tail stays under what close() trims
    finally:
        seg.close()


def test_a_bulk_append_of_large_frames_grows_the_file_every_few_frames(tmp_path):
    seg = Segment.create(str(tmp_path), 0, ENVELOPE_SCHEMA, None, 1 << 30, 0)
    frame = 12 << 20  # produce_batch writes frames this large
    try:
        grew = growths(seg, [seg.header_size + frame * i for i in range(1, 13)])
        assert grew <= 4, f"the file grew {grew} times for 12 frames"
        # never more than ALLOCATE_STEP ahead of what was asked for
        assert seg.file_size - (seg.header_size + 12 * frame) <= segment_mod.ALLOCATE_STEP
    finally:
        seg.close()


def test_growth_stops_at_the_capacity(tmp_path):
    seg = Segment.create(str(tmp_path), 0, ENVELOPE_SCHEMA, None, 3 << 20, 0)
    try:
        growths(seg, [2 << 20])
        assert seg.file_size == 3 << 20
    finally:
        seg.close()


def test_a_dropped_mapping_reads_as_none(tmp_path):
    # readers tell a closed segment by its log being None (reading.py, partition.py)
    seg = Segment.create(str(tmp_path), 0, ENVELOPE_SCHEMA, None, 1 << 30, 0)
    assert seg.log is not None and seg.log.read(0, 8) == b"ARWLSEG1"
    seg.unmap()
    assert seg.log is None and seg.index is None and seg.log_fd >= 0  # the descriptors stay
    seg.close()
    assert seg.log is None and seg.log_fd < 0
    view = Segment(str(tmp_path), 0, writable=False)
    view.close()
    assert view.log is None and view.index is None  # a read view's unopened indexes stay unopened
