"""Retention of a PartitionLog: whole closed segments older than
retention.ms or beyond retention.bytes are deleted, oldest first."""

from __future__ import annotations

import os

from .._native import core
from ..errors import OffsetOutOfRangeError
from .logbase import LogBase
from .segment import segment_path


class RetentionMixin(LogBase):
    """PartitionLog's retention."""

    # -- retention --------------------------------------------------------------------

    def enforce_retention(self, now_ms: int | None = None) -> int:
        """Delete whole segments older than retention.ms or beyond
        retention.bytes (never the active one); returns how many. A
        damaged partition (layout.py) is left alone: its state cannot say
        which segments are old."""
        if self._damage is not None:
            return 0
        with self._lock, self._append_locked():
            return self._enforce_retention_locked(now_ms)

    def _enforce_retention_locked(self, now_ms: int | None = None) -> int:
        retention_ms = int(self.config.get("retention.ms", -1))
        retention_bytes = int(self.config.get("retention.bytes", -1))
        if retention_ms < 0 and retention_bytes < 0:
            return 0
        now_ms = self._now_ms() if now_ms is None else now_ms
        st = self.state.snapshot()
        bases = [b for b in self._list_bases() if b < st["active_base_offset"]]
        sizes = {}
        total = st["active_position"]
        for b in bases:
            try:
                sizes[b] = os.stat(segment_path(self.directory, b)).st_size
            except FileNotFoundError:
                sizes[b] = 0
            total += sizes[b]
        deleted = 0
        for b in bases:
            expired = False
            if retention_ms >= 0:
                max_ts = self._segment_max_timestamp(b)
                expired = max_ts is not None and max_ts < now_ms - retention_ms
            if not expired and retention_bytes >= 0 and total - sizes[b] >= retention_bytes:
                expired = True
            if not expired:
                break
            self._mark_dirty()
            later = [x for x in self._list_bases() if x > b]
            new_start = later[0] if later else st["active_base_offset"]
            self.state.publish(log_start_offset=max(new_start, st["log_start_offset"]))
            self._delete_segment_files(b)
            total -= sizes[b]
            deleted += 1
        if deleted:
            self._hint = None
        return deleted

    def delete_records(self, before: int) -> int:
        """Kafka's DeleteRecords: move the log start offset up to ``before`` (-1: the
        high watermark), so records below it are no longer readable, and delete the
        closed segments that lie wholly below it. A ``before`` at or below the current
        log start changes nothing. Returns the log start offset afterwards."""
        with self._lock, self._append_locked():
            st = self.state.snapshot()
            end = st["next_offset"]
            target = end if before == -1 else before
            if not 0 <= target <= end:
                raise OffsetOutOfRangeError(
                    f"cannot delete records of {self.topic}-{self.partition} below offset {before}: "
                    f"it must be between 0 and the high watermark {end} (or -1 for the high watermark)")
            if target <= st["log_start_offset"]:
                return st["log_start_offset"]
            self._mark_dirty()
            self.state.publish(log_start_offset=target)
            closed = [b for b in self._list_bases() if b < st["active_base_offset"]]
            for i, b in enumerate(closed):
                following = closed[i + 1] if i + 1 < len(closed) else st["active_base_offset"]
                if following > target:
                    break
                self._delete_segment_files(b)
            self._hint = None
            return target

    def _segment_max_timestamp(self, base: int) -> int | None:
        """The largest timestamp of a closed segment (its last time index
        entry); cached, since closed segments never change."""
        cached = self._max_ts_cache.get(base)
        if cached is not None:
            return cached
        found = self._read_segment_max_timestamp(base)
        if found is not None:
            self._max_ts_cache[base] = found
        return found

    def _read_segment_max_timestamp(self, base: int) -> int | None:
        path = segment_path(self.directory, base, ".timeindex")
        try:
            size = os.stat(path).st_size
            if size < core.TIME_ENTRY_SIZE:
                return None
            with open(path, "rb") as f:
                f.seek(size - core.TIME_ENTRY_SIZE - size % core.TIME_ENTRY_SIZE)
                return int.from_bytes(f.read(8), "little", signed=True)
        except FileNotFoundError:
            return None
