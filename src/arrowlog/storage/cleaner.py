"""The log cleaner: compaction of topics with cleanup.policy=compact.

A round over one partition:

1. Under ``cleaner.lock`` (one cleaner per partition, across processes),
   the closed segments older than min.compaction.lag.ms are read (mapped,
   no lock: closed segments never change in place).
2. The key -> latest-offset map is one native pass over the key columns of
   all of them (core.latest_rows_of: a hash table of 64-bit key hashes that
   compares the key bytes on every hash match, so colliding keys stay
   apart), never a per-record Python loop. A row survives if it is its key's latest in that range, and
   is not a tombstone (null value) whose timestamp is older than
   delete.retention.ms. Unkeyed rows (written before compaction was turned
   on) are all kept.
3. Each segment that loses rows is rewritten, oldest first, with the same
   base offset and the same offset span: surviving rows keep their offset,
   timestamp, key, value and headers, in order; frames say the offsets they
   span, so a frame may hold fewer rows than it spans (even none).

The swap, for segment B (``P`` the partition directory)::

    write P/cleaning/B.{log,index,timeindex}, fdatasync them, fsync P/cleaning
    rename P/cleaning/B.log -> P/B.log       <- the commit point
    fsync P
    rename P/cleaning/B.index, B.timeindex -> P/, fsync P and P/cleaning

``finish_swaps`` (run by the first opener of a partition and before every
round) completes or discards a half-done swap: ``cleaning/B.log`` still
there means the commit did not happen, so ``cleaning/B.*`` are deleted and
the old segment stays whole; otherwise the new log is in place and its
indexes are moved after it. Since segments are swapped oldest first, a
crash between two swaps leaves older segments cleaned and newer ones not:
each key's latest value (or tombstone) is always in some segment, and no
offset is ever in two places (a segment's files replace its own). When
the round (or finish_swaps) is done, the empty ``cleaning`` directory goes
too: a clean close marks only a partition directory with no subdirectory.

Readers keep the old files they have mapped (an unlinked file stays
readable on Linux); the round bumps the partition's generation, so every
process's readers drop their views and map the new files. Appends only
wait for the swap itself (renames and fsyncs under the append lock).

Health (``cleaner.json`` beside the segments): last clean time and
duration, bytes before and after, bytes reclaimed in total, the last error.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._fds import Descriptors
from .._native import core
from ..config import is_compacted
from ..errors import StorageError
from .files import fsync_dir, storage_error, write_json_atomic
from .index import NO_TIMESTAMP
from .segment import SEGMENT_EXTENSIONS, Segment, segment_name, segment_path

if TYPE_CHECKING:
    from .partition import PartitionLog

log = logging.getLogger("arrowlog.cleaner")

CLEANING_DIR = "cleaning"
HEALTH_FILE = "cleaner.json"
LOCK_FILE = "cleaner.lock"
# Survivors are regrouped into frames of about this many bytes.
FRAME_TARGET_BYTES = 1 << 20


# -- the swap ------------------------------------------------------------------------


def _step(name: str) -> None:
    """A named point of a round; the fault tests replace this to kill the
    process at each one (tests/fault/test_compaction_kill.py)."""


def finish_swaps(directory: str) -> int:
    """Complete or discard every half-done swap in ``directory`` (see the
    module docstring). Caller holds the append lock. Returns how many
    segments were completed."""
    cdir = os.path.join(directory, CLEANING_DIR)
    try:
        names = os.listdir(cdir)
    except FileNotFoundError:
        return 0
    bases = {n.split(".", 1)[0] for n in names}
    completed = 0
    for stem in sorted(bases):
        if not (len(stem) == 20 and stem.isdigit()):
            continue
        if os.path.exists(os.path.join(cdir, stem + ".log")):
            for ext in SEGMENT_EXTENSIONS:
                _unlink(os.path.join(cdir, stem + ext))
        else:
            for ext in SEGMENT_EXTENSIONS[1:]:
                src = os.path.join(cdir, stem + ext)
                if os.path.exists(src):
                    os.rename(src, os.path.join(directory, stem + ext))
            completed += 1
    fsync_dir(directory)
    if not remove_cleaning_dir(directory):
        fsync_dir(cdir)
    return completed


def remove_cleaning_dir(directory: str) -> bool:
    """Remove the partition's ``cleaning`` subdirectory once no swap is in
    it (the end of a round, finish_swaps): a clean close marks only a
    directory with no subdirectory, so one left behind, empty, would cost
    every later open of the partition its layout check. The caller holds
    cleaner.lock or is the first opener (no round runs anywhere). No fsync:
    a power loss that undoes the removal brings back an empty one, which
    holds no swap (a close that finds it leaves no mark; the opener after
    that removes it). True if it is gone (or never was)."""
    try:
        os.rmdir(os.path.join(directory, CLEANING_DIR))
    except FileNotFoundError:
        pass
    except OSError:
        return False  # not empty (a file that is no swap's): kept, as before
    return True


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _commit(directory: str, base: int) -> None:
    """Put the cleaned segment ``base`` in place (caller holds the append lock)."""
    cdir = os.path.join(directory, CLEANING_DIR)
    stem = segment_name(base)
    _step("commit")
    os.rename(os.path.join(cdir, stem + ".log"), segment_path(directory, base))
    _step("log renamed")
    fsync_dir(directory)
    for ext in SEGMENT_EXTENSIONS[1:]:
        _step("before " + ext)
        os.rename(os.path.join(cdir, stem + ext), segment_path(directory, base, ext))
    _step("indexes renamed")
    fsync_dir(directory)
    fsync_dir(cdir)
    _step("swapped")


# -- health ------------------------------------------------------------------------


# cleaner.json's fields and the types they hold; one of another type (a
# damaged or hand-edited file) is dropped, as if never recorded: the next
# round then cleans from the start, and counts from zero
_HEALTH_TYPES = {"clean_offset": (int,), "cleans": (int,), "bytes_reclaimed": (int,), "last_clean_ms": (int,),
                 "last_error_ms": (int,), "last_clean_duration_ms": (int, float), "last_error": (str, type(None))}


def read_health(directory: str) -> dict:
    """The partition's cleaner record ({} if it was never cleaned)."""
    try:
        with open(os.path.join(directory, HEALTH_FILE), encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if type(v) in _HEALTH_TYPES.get(k, (type(v),))}


def dirty_ratio(plog: PartitionLog) -> float:
    """Share of the closed segments' bytes written since the last clean."""
    clean_upto = int(read_health(plog.directory).get("clean_offset", 0))
    st = plog._snapshot()
    total = dirty = 0
    for b in plog._list_bases():
        if b >= st["active_base_offset"]:
            break
        try:
            size = os.stat(segment_path(plog.directory, b)).st_size
        except FileNotFoundError:
            continue
        total += size
        if b >= clean_upto:
            dirty += size
    return dirty / total if total else 0.0


def health(plog: PartitionLog) -> dict:
    """What ``topic describe`` shows for one partition."""
    h = read_health(plog.directory)
    return {"dirty_ratio": round(dirty_ratio(plog), 4), "last_clean_ms": h.get("last_clean_ms"),
            "last_clean_duration_ms": h.get("last_clean_duration_ms"), "bytes_reclaimed": h.get("bytes_reclaimed", 0),
            "cleans": h.get("cleans", 0), "last_error": h.get("last_error")}


# -- a round -------------------------------------------------------------------------


class _Lock:
    """cleaner.lock, flock()ed exclusively (one cleaner per partition)."""

    def __init__(self, directory: str, wait: bool):
        self._fds = Descriptors(self)   # closed by release(), or when dropped without it (_fds.py)
        self.fd = self._fds.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BaseException:
            self.fd = self._fds.close(self.fd)
            raise

    def release(self) -> None:
        """Unlock (once: a second call, or the number reused by another open since, is left alone)."""
        self.fd = self._fds.close(self.fd)


def needs_cleaning(plog: PartitionLog, now_ms: int | None = None) -> bool:
    """The background trigger: dirty ratio at min.cleanable.dirty.ratio, or
    a dirty segment older than max.compaction.lag.ms."""
    if not is_compacted(plog.config):
        return False
    ratio = dirty_ratio(plog)
    if ratio <= 0:
        return False
    if ratio >= float(plog.config.get("min.cleanable.dirty.ratio", 0.5)):
        return True
    now_ms = core.wall_clock_ms() if now_ms is None else now_ms
    max_lag = int(plog.config.get("max.compaction.lag.ms", (1 << 63) - 1))
    clean_upto = int(read_health(plog.directory).get("clean_offset", 0))
    st = plog._snapshot()
    for b in plog._list_bases():
        if clean_upto <= b < st["active_base_offset"]:
            ts = plog._segment_max_timestamp(b)
            return ts is not None and now_ms - ts >= max_lag
    return False


def clean_partition(plog: PartitionLog, *, now_ms: int | None = None, wait: bool = True) -> dict:
    """One cleaning round over ``plog`` (see the module docstring). Returns
    a report; records it (or the error, loudly) in cleaner.json."""
    started = time.monotonic()
    now_ms = core.wall_clock_ms() if now_ms is None else now_ms
    try:
        lock = _Lock(plog.directory, wait)
    except BlockingIOError:
        return {"skipped": "another cleaner is running"}
    try:
        try:
            report = _clean(plog, now_ms)
        except Exception as exc:
            log.error("cleaner of %s-%d failed: %s", plog.topic, plog.partition, exc, exc_info=True)
            h = read_health(plog.directory)
            h["last_error"] = f"{type(exc).__name__}: {exc}"
            h["last_error_ms"] = now_ms
            try:
                write_json_atomic(os.path.join(plog.directory, HEALTH_FILE), h)
            except OSError:
                pass
            raise
        _step("round done")
        h = read_health(plog.directory)
        report["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
        h.update(last_clean_ms=now_ms, last_clean_duration_ms=report["duration_ms"], last_error=None,
                 clean_offset=report["clean_offset"], cleans=int(h.get("cleans", 0)) + 1,
                 bytes_reclaimed=int(h.get("bytes_reclaimed", 0)) + report["bytes_reclaimed"])
        write_json_atomic(os.path.join(plog.directory, HEALTH_FILE), h)
        return report
    finally:
        try:
            # only if empty: a swap an error left half-done stays for finish_swaps
            remove_cleaning_dir(plog.directory)
        finally:
            lock.release()


def _clean(plog: PartitionLog, now_ms: int) -> dict:
    with plog._lock, plog._append_locked():
        finish_swaps(plog.directory)
        st = plog._snapshot()
    min_lag = int(plog.config.get("min.compaction.lag.ms", 0))
    bases = []
    for b in plog._list_bases():
        if b >= st["active_base_offset"]:
            break
        ts = plog._segment_max_timestamp(b)
        if min_lag and (ts is None or ts > now_ms - min_lag):
            break  # too young: this one and everything after waits
        bases.append(b)
    report: dict[str, Any] = {"segments": len(bases), "segments_rewritten": 0, "records_before": 0,
                              "records_after": 0, "bytes_before": 0, "bytes_after": 0, "bytes_reclaimed": 0,
                              "clean_offset": bases[-1] if bases else 0}
    if not bases:
        return report
    views = []
    try:
        segments = []  # (base, next offset, size, [(frame base, span, batch)])
        for b in bases:
            seg = Segment(plog.directory, b, writable=False)
            views.append(seg)
            end, nxt, scanned = core.scan_frames(seg.log, seg.header_size, seg.file_size, seg.first_offset(seg.file_size),
                                                 True)
            if end != seg.file_size:
                raise StorageError(errno.EIO, f"segment {seg.log_path} fails its checks at byte {end}; the cleaner "
                                   "leaves it alone: run `arrowlog verify` (see docs/DURABILITY.md)")
            frames = [(base, count, seg.frame_batch(pos, size - core.FRAME_HEADER_SIZE, count))
                      for pos, base, count, _ts, size in scanned]
            segments.append((b, nxt, seg.file_size, os.fstat(seg.log_fd).st_ino, frames, seg))
        report["clean_offset"] = segments[-1][1]
        batches = [fr[2] for s in segments for fr in s[4]]
        keep = survivors(batches, now_ms - int(plog.config.get("delete.retention.ms", 86_400_000)))
        report["records_before"] = len(keep)
        report["records_after"] = int(keep.sum())
        start = 0
        for b, nxt, size, ino, frames, seg in segments:
            n = sum(fr[2].num_rows for fr in frames)
            mask = keep[start:start + n]
            start += n
            report["bytes_before"] += size
            if mask.all():
                report["bytes_after"] += size
                continue
            new_size = _write_cleaned(plog, seg, frames, mask, nxt)
            with plog._lock, plog._append_locked():
                try:
                    still = os.stat(segment_path(plog.directory, b)).st_ino == ino
                except FileNotFoundError:
                    still = False
                if not still:  # retention (or recovery) got there first
                    for ext in SEGMENT_EXTENSIONS:
                        _unlink(os.path.join(plog.directory, CLEANING_DIR, segment_name(b) + ext))
                    report["bytes_after"] += size
                    continue
                plog._mark_dirty()
                _commit(plog.directory, b)
                replaced = plog._segments.pop(b, None)
                if replaced is not None:  # its files are gone: free their blocks now, not when it is collected
                    replaced.release_descriptors()
                plog._max_ts_cache.pop(b, None)
                plog.state.publish(generation=plog.state.snapshot()["generation"] + 1)
                _step("published")
            report["segments_rewritten"] += 1
            report["bytes_after"] += new_size
        report["bytes_reclaimed"] = report["bytes_before"] - report["bytes_after"]
        return report
    finally:
        for seg in views:
            seg.close()


def survivors(batches: list, horizon_ms: int | None) -> np.ndarray:
    """The keep mask over the rows of ``batches`` (stored batches, in offset
    order): each key's last row, minus tombstones with a timestamp before
    ``horizon_ms`` (None: every tombstone); unkeyed rows are kept."""
    n = sum(b.num_rows for b in batches)
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    keys = pa.chunked_array([b.column(2) for b in batches], type=pa.binary())
    latest = latest_rows(keys)
    keep[latest] = True
    nulls = pa.chunked_array([b.column(2).is_null() for b in batches])
    if pc.any(nulls).as_py():
        keep |= _to_bool(nulls)
    values_null = _to_bool(pa.chunked_array([b.column(3).is_null() for b in batches]))
    if values_null.any():
        expired = values_null & ~_to_bool(nulls)
        if horizon_ms is not None:
            expired &= pa.chunked_array([b.column(1) for b in batches]).cast(pa.int64()).to_numpy() < horizon_ms
        keep &= ~expired
    return keep


def _to_bool(arr: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr, dtype=bool) \
        if len(arr) else np.zeros(0, dtype=bool)


def latest_rows(keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Row numbers of each distinct non-null key's last row, ascending: one
    pass of a native hash table over the key column (core.latest_rows_of:
    64-bit hashes, key bytes compared on a hash match)."""
    chunks = keys.chunks if isinstance(keys, pa.ChunkedArray) else [keys]
    return core.latest_rows_of([c.cast(pa.binary()) if c.type != pa.binary() else c for c in chunks])


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in schema], schema=schema)


def _regroup(frames: list, mask: np.ndarray) -> list:
    """The survivors of ``frames`` ([(base, span, batch)]) as new frames
    [(base, span, [batches])] of about FRAME_TARGET_BYTES, each spanning the
    offsets of the frames it replaces; a group left with no survivors is
    folded into the one before it, so a frame holds no record only when the
    whole segment lost every record."""
    groups: list = []
    cur: list | None = None
    row = 0
    for base, span, batch in frames:
        part = mask[row:row + batch.num_rows]
        row += batch.num_rows
        if cur is None or cur[1] + span > (1 << 31) - 1 or cur[3] >= FRAME_TARGET_BYTES:
            cur = [base, 0, [], 0]
            groups.append(cur)
        kept = batch if part.all() else batch.filter(pa.array(part))
        if kept.num_rows:
            cur[2].append(kept)
            cur[3] += kept.nbytes
        cur[1] += span
    out: list = []
    for base, span, parts, _ in groups:
        if not parts and out and out[-1][1] + span <= (1 << 31) - 1:
            out[-1][1] += span
        else:
            out.append([base, span, parts])
    return out


def _write_cleaned(plog: PartitionLog, old: Segment, frames: list, mask: np.ndarray, next_offset: int) -> int:
    """Write segment ``old`` minus the rows ``mask`` drops to
    cleaning/<base>.*, synced; returns its size. Frames are regrouped
    (about FRAME_TARGET_BYTES of survivors each) and each spans the offsets
    of the frames it replaces, so the segment still spans base..next_offset."""
    cdir = os.path.join(plog.directory, CLEANING_DIR)
    try:
        os.makedirs(cdir, mode=0o700, exist_ok=True)
        for ext in SEGMENT_EXTENSIONS:
            _unlink(os.path.join(cdir, segment_name(old.base_offset) + ext))
        capacity = 2 * old.file_size + (1 << 20)
        seg = Segment.create(cdir, old.base_offset, old.schema, old.compression, capacity, old.created_ms)
    except StorageError:
        raise
    except OSError as exc:
        raise storage_error(exc, f"cannot start cleaning {old.log_path}") from exc
    _step("cleaning started")
    try:
        position = seg.header_size
        for base, span, parts in _regroup(frames, mask):
            batch = pa.concat_batches(parts) if len(parts) > 1 else (parts[0] if parts else _empty_batch(old.schema))
            if batch.num_rows:
                mm = pc.min_max(batch.column(1).cast(pa.int64())).as_py()
                min_ts, max_ts = mm["min"], mm["max"]
            else:
                min_ts = max_ts = NO_TIMESTAMP
            pieces = plog._serialize(batch)
            size = core.FRAME_HEADER_SIZE + sum(p.size if isinstance(p, pa.Buffer) else len(p) for p in pieces)
            seg.ensure_allocated(position + size)
            core.write_frame_pieces(seg.log_fd, position, base, span, min_ts, max_ts, pieces)
            position += size
            _step("frame written")
        end, nxt, scanned = core.scan_frames(seg.log, seg.header_size, position, old.base_offset, True)
        if end != position or nxt != next_offset:
            raise StorageError(errno.EIO, f"cleaned copy of {old.log_path} does not check out (ends at {end} of "
                               f"{position}, next offset {nxt} of {next_offset}); the old segment is kept")
        oe, te, _, _ = seg.rebuild_indexes(scanned, plog.index_interval, closed=True)
        seg.trim(position, oe, te)
        seg.sync()
    except BaseException:
        seg.close()
        for ext in SEGMENT_EXTENSIONS:
            _unlink(os.path.join(cdir, segment_name(old.base_offset) + ext))
        raise
    seg.close()
    _step("cleaned copy synced")
    fsync_dir(cdir)
    return position


class CleanerThread:
    """The background cleaner of a long-lived writer (``arrowlog serve``, a
    Producer): every ``interval_s`` it cleans each compacted partition that
    ``partitions()`` lists and needs_cleaning() picks, one at a time, in its
    own thread, so appends and reads only ever wait for a swap. A failure is
    logged at ERROR and recorded in cleaner.json (``topic describe`` shows
    it); the thread carries on with the other partitions and tries the
    failed one again next time."""

    def __init__(self, partitions, interval_s: float = 15.0, name: str = "arrowlog-cleaner"):
        self._partitions = partitions
        self.interval_s = interval_s
        self._stop = threading.Event()
        self.rounds = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> CleanerThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.run_once()

    def run_once(self) -> int:
        """Clean what needs it now; returns how many partitions were cleaned."""
        cleaned = 0
        try:
            todo = [p for p in self._partitions() if needs_cleaning(p)]
        except Exception as exc:  # a topic deleted meanwhile, a closed log
            log.error("cleaner: cannot list partitions: %s", exc)
            return 0
        for plog in todo:
            if self._stop.is_set():
                break
            try:
                clean_partition(plog, wait=False)
                cleaned += 1
            except Exception:  # logged and recorded by clean_partition
                pass
        self.rounds += 1
        return cleaned

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()


def clean_topic(topic, *, now_ms: int | None = None, wait: bool = True) -> list[dict]:
    """A round over every partition of ``topic`` (a storage Topic)."""
    return [dict(clean_partition(p, now_ms=now_ms, wait=wait), partition=p.partition) for p in topic.partitions()]


__all__ = ["CleanerThread", "survivors", "clean_partition", "clean_topic", "finish_swaps", "remove_cleaning_dir",
           "health", "dirty_ratio", "needs_cleaning", "latest_rows", "read_health"]
