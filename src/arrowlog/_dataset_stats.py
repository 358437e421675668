"""Per-dataset frame statistics: what :mod:`arrowlog.dataset` scans learned
about each frame (offset span, size, time range, per-field min/max), so later
scans skip frames without reading them.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class FrameStat:
    __slots__ = ("base", "next", "size", "min_ts", "max_ts", "fields", "ordered")

    def __init__(self, base: int, next_offset: int, size: int, min_ts: int, max_ts: int):
        self.base = base
        self.next = next_offset
        self.size = size
        self.min_ts = min_ts
        self.max_ts = max_ts
        self.fields: dict[str, tuple[Any, Any]] = {}
        self.ordered: bool | None = None  # whether its timestamps never go back (None: not looked at yet)


class PartitionStats:
    """The frames of one partition seen so far, by base offset."""

    def __init__(self) -> None:
        self.bases: list[int] = []
        self.frames: dict[int, FrameStat] = {}
        self.lock = threading.Lock()  # engines may run two scans of one dataset at once
        self.version = 0
        self._arrays: tuple | None = None  # time_skipper's arrays (_skip_arrays), for self.version

    def find(self, offset: int) -> FrameStat | None:
        with self.lock:
            i = bisect.bisect_right(self.bases, offset) - 1
            st = self.frames[self.bases[i]] if i >= 0 else None
        return st if st is not None and st.base <= offset < st.next else None

    def following(self, st: FrameStat) -> FrameStat | None:
        with self.lock:
            i = bisect.bisect_right(self.bases, st.base)
            return self.frames[self.bases[i]] if i < len(self.bases) else None

    def add(self, st: FrameStat) -> FrameStat:
        with self.lock:
            known = self.frames.get(st.base)
            if known is not None and known.next == st.next:
                return known
            if known is None:
                bisect.insort(self.bases, st.base)
            self.frames[st.base] = st
            self.version += 1
            return st

    def forget_from(self, offset: int) -> None:
        """The log was cut back (recovery after a crash): drop what lay beyond."""
        with self.lock:
            keep = bisect.bisect_left(self.bases, offset)
            for base in self.bases[keep:]:
                del self.frames[base]
            del self.bases[keep:]
            if self.bases and self.frames[self.bases[-1]].next > offset:
                del self.frames[self.bases.pop()]
            self.version += 1

    def time_skipper(self, tlo: int | None, thi: int | None):
        """A function from a known frame that the time range excludes to the
        next offset worth looking at: the next known frame whose time range
        meets [tlo, thi], or the end of the run of known frames (where the
        unknown begins). Vectorised, so a narrow window over many known
        frames costs a binary search, not a walk; past the window's end (no
        frame later in the run starts by ``thi``, known from the run's
        suffix minimum) it costs one lookup."""
        with self.lock:
            if self._arrays is None or self._arrays[0] != self.version:
                self._arrays = self._skip_arrays()
            _, bases, nexts, min_ts, max_ts, run_last, later_min = self._arrays
        admitted = None

        def skip(st: FrameStat) -> int:
            nonlocal admitted
            i = int(np.searchsorted(bases, st.base))
            if i >= len(bases) or bases[i] != st.base:
                return st.next
            last = int(run_last[i])
            if thi is not None and later_min[i] > thi:
                return int(nexts[last])  # nothing in the rest of the run starts by thi
            if admitted is None:
                admitted = np.flatnonzero(meets(min_ts, max_ts, tlo, thi))
            j = int(np.searchsorted(admitted, i, side="right"))
            if j < len(admitted) and admitted[j] <= last:
                return int(bases[admitted[j]])
            return int(nexts[last])

        return skip

    def _skip_arrays(self) -> tuple:
        """time_skipper's arrays of the known frames (the caller holds the lock)."""
        bases = np.fromiter(self.bases, np.int64, len(self.bases))
        frames = [self.frames[b] for b in self.bases]
        nexts = np.fromiter((f.next for f in frames), np.int64, len(frames))
        min_ts = np.fromiter((f.min_ts for f in frames), np.int64, len(frames))
        max_ts = np.fromiter((f.max_ts for f in frames), np.int64, len(frames))
        # frames i..j form a run when each starts where the one before ends
        breaks = np.flatnonzero(bases[1:] != nexts[:-1])
        run_last = np.full(len(bases), len(bases) - 1, np.int64)
        later_min = np.empty(len(bases), np.int64)  # the least min_ts of frames i+1.. of i's run
        starts = np.concatenate(([0], breaks + 1))
        ends = np.concatenate((breaks, [len(bases) - 1]))
        for a, b in zip(starts, ends):
            run_last[a:b + 1] = b
            later_min[b] = np.iinfo(np.int64).max
            if b > a:
                later_min[a:b] = np.minimum.accumulate(min_ts[a + 1:b + 1][::-1])[::-1]
        return self.version, bases, nexts, min_ts, max_ts, run_last, later_min


def meets(lows: np.ndarray, highs: np.ndarray, tlo: Any, thi: Any) -> np.ndarray:
    """Which ranges [lows[i], highs[i]] meet [tlo, thi] (None: unbounded)."""
    keep = np.ones(len(lows), bool)
    if tlo is not None:
        keep &= highs >= tlo
    if thi is not None:
        keep &= lows <= thi
    return keep


def byte_widths(schema: pa.Schema) -> list[int]:
    """The bytes per value of each of ``schema``'s fixed-width columns
    (numbers, times), 0 for the others."""
    out = []
    for t in schema.types:
        fixed = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_temporal(t) \
            and not pa.types.is_interval(t)
        out.append(t.bit_width // 8 if fixed else 0)
    return out


def handed_bytes(batch: pa.RecordBatch, widths: list[int]) -> int:
    """``batch.nbytes`` (the bytes of buffer its rows use; ``widths`` from
    :func:`byte_widths` of its schema), counted without pyarrow's ~8 µs per
    column where a column is fixed-width and has no validity bitmap."""
    total = 0
    for i, width in enumerate(widths):
        column = batch.column(i)
        if width and column.buffers()[0] is None:
            total += len(column) * width
        else:
            total += column.nbytes
    return total


class _OnlyNulls(tuple):
    """The range of a frame's field that holds no value (a column added by a later
    generation of the value schema reads as nulls in older frames): no condition
    a filter's bounds come from (comparisons, IN) is true of a null."""


ONLY_NULLS = _OnlyNulls((None, None))


def field_range(array: pa.Array) -> tuple[Any, Any]:
    if array.null_count == len(array):
        return ONLY_NULLS
    try:
        mm = pc.min_max(array)
        return mm["min"].as_py(), mm["max"].as_py()
    except (pa.ArrowException, TypeError):
        return None, None


def time_rows(st: FrameStat, column: pa.Array, first: int, last: int, tlo: Any,
              thi: Any) -> tuple[int, int, pa.Array | None]:
    """Rows ``first``..``last`` of a frame cut to timestamps in [tlo, thi]:
    (first, last, None) when its timestamps are in order (known per frame once
    looked at), else (first, last, a mask over those rows)."""
    stamps = np.frombuffer(column.buffers()[1], np.int64, len(column), column.offset * 8)
    if st.ordered is None:
        st.ordered = bool(np.all(stamps[1:] >= stamps[:-1]))
    part = stamps[first:last]
    if st.ordered:
        lo = 0 if tlo is None else int(np.searchsorted(part, tlo, "left"))
        hi = len(part) if thi is None else int(np.searchsorted(part, thi, "right"))
        return first + lo, first + hi, None
    keep = meets(part, part, tlo, thi)
    hits = np.flatnonzero(keep)
    if len(hits) == 0:
        return first, first, None
    a, b = int(hits[0]), int(hits[-1]) + 1
    return first + a, first + b, None if b - a == len(hits) else pa.array(keep[a:b])
