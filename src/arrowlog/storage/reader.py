"""The one way to read a partition and the one way to wait for its data.

:class:`RangeReader` is a cursor over the offsets ``[position, end)`` of one
:class:`~arrowlog.storage.PartitionLog`. Each :meth:`RangeReader.read`
returns the next frames, at most about ``max_bytes`` of them (the first one
always: Kafka's KIP-74 rule). By default the edge frames are sliced so that
every returned batch holds only offsets inside the range; with
``whole_frames=True`` (the server's Fetch, which re-encodes stored frames)
they come back as stored. When retention deletes the segment under the
cursor, the cursor asks its ``on_gap`` callback where to go on (default: the
new log start, or the end of the range when that is past it). Every read is
bounded by the published high watermark, so a cursor never spins on a log
that has nothing more for it.

:func:`wait_for_data` is the one "wait for data" primitive: it sleeps on the
published state of one partition, or on the data directory's notifier (a
futex word every append in any process bumps) for several, and costs no CPU
while idle. Callers check for data, then wait, then check again: the word is
sampled before the check, so an append between the check and the wait ends
the wait at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from .._native import core
from ..errors import OffsetOutOfRangeError
from .partition import Frame, PartitionLog

READ_BYTES = 1 << 20

# on_gap(position, log_start) -> the offset to go on from (or raise)
GapHandler = Callable[[int, int], int]


def skip_gap(position: int, log_start: int) -> int:
    """The default gap policy: go on at the new log start."""
    return log_start


def raise_gap(position: int, log_start: int) -> int:
    """A gap policy for callers that report the gap themselves."""
    raise OffsetOutOfRangeError(f"offset {position} was deleted by retention (the log now starts at {log_start})")


class RangeReader:
    """A cursor over offsets ``[position, end)`` of one partition (``end``
    None: up to the high watermark, which may grow while reading)."""

    __slots__ = ("log", "position", "end", "whole_frames", "check_crc", "on_gap")

    def __init__(self, log: PartitionLog, position: int, end: int | None = None, *, whole_frames: bool = False,
                 check_crc: bool | None = None, on_gap: GapHandler = skip_gap):
        self.log = log
        self.position = position  # the next offset to return
        self.end = end
        self.whole_frames = whole_frames
        self.check_crc = check_crc  # None: the log's own setting (CRCs checked by default)
        self.on_gap = on_gap

    @property
    def done(self) -> bool:
        """True when the cursor reached the end of a bounded range."""
        return self.end is not None and self.position >= self.end

    def read(self, max_bytes: int = READ_BYTES) -> list[Frame]:
        """The next frames of the range; [] when there is nothing (yet).

        A sliced frame keeps the stored frame's ``size`` and timestamp
        bounds; ``base_offset``, ``record_count`` and ``batch`` describe the
        slice. The cursor moves past what is returned, and past offsets the
        cleaner removed: ``[]`` means there is nothing more (yet)."""
        log = self.log
        while not self.done:
            try:
                frames = log.read(self.position, max_bytes, check_crc=self.check_crc)
            except OffsetOutOfRangeError:
                low, high = log.watermarks()
                if self.position >= low:
                    raise  # beyond the high watermark: not a gap
                nxt = self.on_gap(self.position, low)
                if nxt < low or nxt > high:
                    raise OffsetOutOfRangeError(
                        f"offset {nxt} is outside {low}..{high} of {log.topic}-{log.partition}") from None
                self.position = nxt if self.end is None else min(nxt, self.end)
                continue
            before = self.position
            out = self._take(frames)
            if out or self.position == before:
                return out
            # only offsets the cleaner removed (compaction): read on past them
        return []

    def _take(self, frames: list[Frame]) -> list[Frame]:
        # Offsets, not rows: a compacted frame spans more offsets than it
        # holds rows (docs/FORMAT.md, gaps), and may hold none.
        out: list[Frame] = []
        position, end = self.position, self.end
        for fr in frames:
            lo = max(position, fr.base_offset)
            hi = fr.next_offset if end is None else min(end, fr.next_offset)
            if lo >= hi:
                if end is not None and fr.base_offset >= end:
                    break
                continue
            position = hi
            if self.whole_frames:
                out.append(fr)
                continue
            first, last = fr.row_at(lo), fr.row_at(hi)
            if first >= last:
                continue  # only offsets the cleaner removed: the cursor steps past them
            if lo > fr.base_offset or hi < fr.next_offset:
                fr = Frame(lo, hi - lo, fr.min_timestamp, fr.max_timestamp, fr.size,
                           fr.batch.slice(first, last - first))
            out.append(fr)
        self.position = position
        return out


def wait_for_data(notifier: Any, pending: Iterable[tuple[PartitionLog, int]], timeout: float, *,
                  seen: int | None = None, spin_us: int = 0) -> bool:
    """Block until one of the ``pending`` (log, offset) pairs has the record
    at ``offset`` readable, at most ``timeout`` seconds. Returns whether data
    may be there (for several partitions, a wake-up can be an append to
    another partition of the directory: check again). With no pairs it waits
    for any append in the data directory after ``seen`` (a
    ``notifier.current_word()`` taken before the caller last looked). No CPU
    while idle.

    ``spin_us`` (the consumer's ``poll.spin.us``, docs/CLIENTS.md): first
    look for the data for up to this many microseconds, then sleep on the
    futex. A record appended during the spin is seen without the futex
    wake-up and the scheduler's latency to run the sleeping thread again
    (tens of microseconds to milliseconds on a busy machine), at the price
    of a core kept busy for the spin."""
    pending = list(pending)
    if spin_us > 0 and timeout > 0:
        if len(pending) == 1 and seen is None:  # one partition: a native spin on its mapped high watermark
            log, offset = pending[0]
            spun = core.follow_spin(log.state, offset, min(spin_us / 1e6, timeout))
        else:
            spun = _spin(notifier, pending, min(spin_us / 1e6, timeout), seen)
        if spun:
            return True
        timeout -= min(spin_us / 1e6, timeout)
        if timeout <= 0:
            return False
    if len(pending) == 1 and seen is None:
        log, offset = pending[0]
        return log.wait(offset, timeout)
    if seen is None:
        seen = notifier.current_word()  # before checking: an append after it ends the wait
    for log, offset in pending:
        if log.high_watermark > offset:
            return True
    return notifier.wait_word(seen, timeout)


def _spin(notifier: Any, pending: list[tuple[PartitionLog, int]], seconds: float, seen: int | None) -> bool:
    """wait_for_data's busy look: True as soon as a pending offset is
    readable (or, with no pairs, the notifier's word moved past ``seen``),
    False after ``seconds``. The GIL is released between looks so the
    caller's other threads keep running."""
    deadline = time.perf_counter() + seconds
    while True:
        if pending:
            for log, offset in pending:
                if log.high_watermark > offset:
                    return True
        elif seen is not None and notifier.current_word() != seen:
            return True
        if time.perf_counter() >= deadline:
            return False
        time.sleep(0)  # lets another thread have the GIL; no sleep in the kernel
