"""A segment: one file of framed Arrow batches and its two sparse indexes.

Files, named by the segment's base offset as 20 digits (Kafka's scheme):

    00000000000000000000.log        segment header, then frames
    00000000000000000000.index      offset index, 8-byte entries
    00000000000000000000.timeindex  time index, 12-byte entries

Segment header, little-endian, then the Arrow IPC schema message:

    offset  size  field
         0     8  magic b"ARWLSEG1"
         8     4  header_size: 40 + schema length, padded to 8
        12     4  crc32c of bytes [16, header_size)
        16     8  base_offset
        24     8  created_ms
        32     4  schema_size (bytes of the IPC schema message)
        36     4  flags (bit 0-1: IPC body compression 0 none, 1 zstd, 2 lz4)
        40     -  Arrow IPC schema message, zero padding to header_size

Frames follow at header_size (see _native/core/frame.pxi for their layout).

Thread-safety: a Segment is used by one PartitionLog, which serialises
writes under the partition's append lock. Reads go through read-only views
and may run concurrently with appends beyond the published position.
Durability: nothing here fsyncs on its own; PartitionLog.sync() does.
"""

from __future__ import annotations

import array
import bisect
import errno
import functools
import itertools
import os
import threading

import pyarrow as pa

from .._fds import Descriptors
from .._native import core
from ..errors import CorruptRecordError
from .files import storage_error
from .helper import helper_thread, in_halves
from .index import Indexer
from .schemas import schema_of
from .segment_files import (
    ALLOCATE_STEP,
    COMPRESSION_FLAGS,
    COMPRESSION_NAMES,
    HEADER,
    INDEX_BYTES,
    INDEX_INITIAL_BYTES,
    LOG_INITIAL_BYTES,
    MAX_RELATIVE_OFFSET,
    MAX_SEGMENT_BYTES,
    SEGMENT_EXTENSIONS,
    SEGMENT_FIXED_HEADER,
    SEGMENT_MAGIC,
    create_files,
    delete_segment_files,
    index_growth,
    log_growth,
    open_rw,
    parse_segment_name,
    segment_name,
    segment_path,
)

__all__ = ["ALLOCATE_STEP", "COMPRESSION_FLAGS", "COMPRESSION_NAMES", "INDEX_BYTES", "INDEX_INITIAL_BYTES",
           "LOG_INITIAL_BYTES", "MAX_RELATIVE_OFFSET", "MAX_SEGMENT_BYTES", "SEGMENT_EXTENSIONS",
           "SEGMENT_FIXED_HEADER", "SEGMENT_MAGIC", "Segment", "delete_segment_files", "forget_verified",
           "parse_segment_name", "remember_verified", "segment_name", "segment_path", "verified_frames"]

# Decoded batches a segment keeps (Segment.frame_batch), so that repeated
# lookups in the same frames (offsets_for_times, re-reads) skip the IPC decode.
FRAME_BATCHES_CACHED = 1024

# -- frames whose CRC-32C passed, remembered for the whole process ----------------
#
# The guarantee is "each frame is checked before its data is first handed out
# in this process" (docs/DURABILITY.md): a second replay() or Consumer of an
# unchanged segment, through any LogDir, does not pay the pass over the bytes
# again. The memory is keyed by the file's identity (device, inode, ctime), the
# segment's creation time from its checksummed header and the partition's
# recovery generation: a segment rewritten under a new inode, written to
# (ctime moves), recreated or recovered is a new key and is checked again. A
# bit that flips in place after the check without touching the file's ctime
# (rot on the medium under a cached page) is not seen again by reads in this
# process; `arrowlog verify` always checks every byte.
# Bounds: at most this many segments and about this many frame positions
# (~50 bytes each) are remembered; the oldest segments are forgotten first.
MAX_REMEMBERED_SEGMENTS = 4096
MAX_REMEMBERED_FRAMES = 1 << 20
_verified: dict[tuple, set[int]] = {}
_verified_frames = 0
_verified_lock = threading.Lock()


# A read view's index attributes, set when first used (Segment.__getattr__)
_LAZY_INDEX_ATTRS = frozenset(a + b for a in ("index", "time_index") for b in ("", "_fd", "_file_size"))
_LAZY_INDEX_LOCK = threading.Lock()


def verified_frames(key: tuple) -> set[int]:
    """The set of frame positions already checked in the segment ``key``
    names (shared by every view of it in this process)."""
    with _verified_lock:
        seen = _verified.get(key)
        if seen is None:
            _make_room(1)
            seen = _verified[key] = set()
        return seen


def remember_verified(key: tuple | None, seen: set[int], positions: list[int]) -> None:
    """Add ``positions`` (frames that just passed) to ``seen``, the set
    verified_frames(key) gave (or a view's own when ``key`` is None)."""
    global _verified_frames
    with _verified_lock:
        before = len(seen)
        seen.update(positions)
        if key is not None and _verified.get(key) is seen:  # still remembered
            _verified_frames += len(seen) - before
            _make_room(0)


def _make_room(segments: int) -> None:
    """Forget the oldest segments until ``segments`` more fit and the frame
    count is within bounds (the caller holds _verified_lock)."""
    global _verified_frames
    while _verified and (len(_verified) + segments > MAX_REMEMBERED_SEGMENTS
                         or _verified_frames > MAX_REMEMBERED_FRAMES):
        _verified_frames -= len(_verified.pop(next(iter(_verified))))
    if not _verified:
        _verified_frames = 0


def forget_verified() -> None:
    """Forget which frames passed their CRC in this process: the next read
    of each frame checks it again, as a new process would."""
    global _verified_frames
    with _verified_lock:
        _verified.clear()
        _verified_frames = 0


# A read with at least this many unchecked bytes checks its second half on a
# helper thread (both halves run with the GIL released).
PARALLEL_CRC_BYTES = 4 << 20


def _reset_after_fork() -> None:
    global _verified_lock
    _verified_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


class Segment:
    """One segment's files, mapped. ``writable`` segments map the log and
    indexes read-write with room for ``capacity`` bytes; read-only segments
    map what exists (and the capacity of the active segment).

    ``log`` is the .log file's mapping while the segment holds it; unmap()
    and close() drop it, and a dropped mapping reads as None (__getattr__),
    which is how readers of a closed segment tell."""

    log: core.MappedFile

    def __init__(self, directory: str, base_offset: int, *, writable: bool, capacity: int | None = None,
                 generation: int | None = None):
        self.directory = directory
        self.base_offset = base_offset
        self.writable = writable
        stem = f"{directory}/{base_offset:020d}"  # segment_name(); os.path.join costs many partitions' opens
        self.log_path = stem + ".log"
        self.index_path = stem + ".index"
        self.time_index_path = stem + ".timeindex"
        self._fds = Descriptors(self)   # dropped without close(): closed, a deleted file's blocks freed (_fds.py)
        try:
            self.log_fd = self._fds.open(self.log_path,
                                         (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise
            raise storage_error(exc, f"cannot open segment {self.log_path}") from exc
        if writable:
            self.index_fd = self.time_index_fd = -1
        else:  # a read view opens its indexes on first use (__getattr__): a read from the start needs none
            self._indexes_open = False
        self.verified: set[int] = set()  # positions of frames whose CRC passed (check_crcs)
        self.verified_key: tuple | None = None  # its key in the process-wide memory
        self._batches: dict[int, tuple[bytes, pa.RecordBatch]] = {}  # frame_batch's decoded frames
        self.time_sorted: dict[int, int] = {}  # core.time_lookup's memory: position -> CRC << 1 | rows sorted
        try:
            st = os.fstat(self.log_fd)
            self.file_size = st.st_size
            self.capacity = max(capacity or 0, self.file_size, 4096)
            self.log = core.MappedFile(self.log_fd, self.capacity, writable, self.log_path)
            self._read_header()
            if generation is not None:  # a read view: share what this process checked
                self.verified_key = (st.st_dev, st.st_ino, st.st_ctime_ns, self.created_ms, generation)
                self.verified = verified_frames(self.verified_key)
            if writable:
                self.index = None
                self.time_index = None
                self._open_indexes()
        except BaseException:
            self.close()
            raise

    # -- creation -----------------------------------------------------------

    @classmethod
    def create(cls, directory: str, base_offset: int, schema: pa.Schema, compression: str | None,
               capacity: int, created_ms: int) -> Segment:
        """Make a new segment's files (segment_files.create_files: a crash
        never leaves one without its header), then open it for writing."""
        create_files(directory, base_offset, schema, compression, capacity, created_ms)
        return cls(directory, base_offset, writable=True, capacity=capacity)

    # -- header -------------------------------------------------------------

    def _read_header(self) -> None:
        if self.file_size < SEGMENT_FIXED_HEADER:
            raise CorruptRecordError(f"segment {self.log_path} is shorter than its header")
        raw = self.log.read(0, SEGMENT_FIXED_HEADER)
        magic, header_size, crc, base, created, schema_size, flags = HEADER.unpack(raw)
        if magic != SEGMENT_MAGIC:
            raise CorruptRecordError(f"{self.log_path} is not an arrowlog segment (bad magic)")
        if header_size > self.file_size or header_size < SEGMENT_FIXED_HEADER + schema_size or header_size % 8:
            raise CorruptRecordError(f"segment {self.log_path} has an impossible header size {header_size}")
        if self.log.crc32c(16, header_size - 16) != crc:
            raise CorruptRecordError(f"segment {self.log_path} header fails its checksum")
        if base != self.base_offset:
            raise CorruptRecordError(f"segment {self.log_path} says base offset {base}, its name says {self.base_offset}")
        self.header_size = header_size
        self.created_ms = created
        self.compression = COMPRESSION_NAMES.get(flags & 3)
        self.schema = schema_of(self.log.read(SEGMENT_FIXED_HEADER, schema_size))

    # -- indexes ------------------------------------------------------------

    def _open_indexes(self) -> None:
        """Map both indexes over INDEX_BYTES of address space (the file grows
        into it as entries are written, see _index_room); a missing index
        file is recreated empty (and the partition rebuilds it). Opening
        never allocates: a closed segment's trimmed index stays as it is."""
        for attr, path in (("index", self.index_path), ("time_index", self.time_index_path)):
            try:
                fd = self._fds.open(path, (os.O_RDWR if self.writable else os.O_RDONLY) | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                if not self.writable:
                    setattr(self, attr, None)
                    continue
                try:
                    fd = self._fds.adopt(open_rw(path, create=True))
                except OSError as exc:
                    raise storage_error(exc, f"cannot create index {path}") from exc
            setattr(self, attr + "_fd", fd)
            setattr(self, attr + "_file_size", os.fstat(fd).st_size)
            setattr(self, attr, core.MappedFile(fd, INDEX_BYTES, self.writable, path))

    def __getattr__(self, name: str):
        # only reached for attributes not set yet: a read view's indexes, or
        # the log's mapping once dropped (_drop_mappings)
        if name == "log":
            return None
        if name in _LAZY_INDEX_ATTRS and not self.__dict__.get("_indexes_open", True):
            with _LAZY_INDEX_LOCK:
                if not self._indexes_open:
                    self.index_fd = self.time_index_fd = -1
                    self.index = self.time_index = None
                    try:
                        if self.__dict__.get("log") is not None:  # not closed
                            self._open_indexes()
                    finally:
                        self._indexes_open = True
            return object.__getattribute__(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _index_room(self, attr: str, slot: int, entry_size: int) -> None:
        """Back index entry ``slot`` with disk blocks before it is written:
        the file doubles from INDEX_INITIAL_BYTES up to INDEX_BYTES."""
        size = getattr(self, attr + "_file_size")
        need = (slot + 1) * entry_size
        if need <= size:
            return
        if need > INDEX_BYTES:
            raise CorruptRecordError(f"index entry {slot} of {self.log_path} lies beyond the {INDEX_BYTES}-byte index")
        target = index_growth(size, need)
        path = self.index_path if attr == "index" else self.time_index_path
        try:
            core.fallocate(getattr(self, attr + "_fd"), 0, target)
        except OSError as exc:
            raise storage_error(exc, f"cannot grow index {path}") from exc
        setattr(self, attr + "_file_size", target)

    def index_entries_on_disk(self) -> tuple[int, int]:
        """Entry counts implied by a closed segment's trimmed index files.
        Sizes are read now, not when this view was opened: the segment may
        have been trimmed at a roll since (by any process), and a lookup
        past the end of the file would be a SIGBUS. Never more entries than
        the mapping holds."""
        counts = []
        for fd, mapping, attr, entry in ((self.index_fd, self.index, "index_file_size", core.OFFSET_ENTRY_SIZE),
                                         (self.time_index_fd, self.time_index, "time_index_file_size",
                                          core.TIME_ENTRY_SIZE)):
            if fd < 0 or mapping is None:
                counts.append(0)
                continue
            size = os.fstat(fd).st_size
            setattr(self, attr, size)
            counts.append(min(size, mapping.capacity) // entry)
        return counts[0], counts[1]

    def index_is_sane(self, offset_entries: int, time_entries: int, end: int) -> bool:
        if offset_entries and self.index is None or time_entries and self.time_index is None:
            return False
        # entries past the file's end would be a SIGBUS to read
        if (offset_entries < 0 or time_entries < 0
                or offset_entries * core.OFFSET_ENTRY_SIZE > os.fstat(self.index_fd).st_size
                or time_entries * core.TIME_ENTRY_SIZE > os.fstat(self.time_index_fd).st_size):
            return False
        if offset_entries:
            if not core.index_is_sane(self.index, offset_entries, core.OFFSET_ENTRY_SIZE, end):
                return False
            # Both indexes start at the segment's first frame (right after the
            # header): garbage that happens to ascend rarely does.
            first = core.offset_index_lookup(self.index, 1, MAX_RELATIVE_OFFSET)
            if first is None or first != (self.first_relative_offset(end), self.header_size):
                return False
        if time_entries:
            if not core.index_is_sane(self.time_index, time_entries, core.TIME_ENTRY_SIZE, end):
                return False
            rel = self.first_relative_offset(end)
            if rel is None or self.time_index.read(8, 4) != rel.to_bytes(4, "little"):
                return False
        return True

    def first_relative_offset(self, end: int) -> int | None:
        """The first frame's offset relative to the segment's base: 0 for
        every segment arrowlog writes; more when a segment begins above its
        base offset (Kafka allows it; tests construct one near 2^31)."""
        try:
            base = core.read_frame_header(self.log, self.header_size, end)[0]
        except core.CorruptFrame:
            return None
        rel = base - self.base_offset
        return rel if 0 <= rel <= MAX_RELATIVE_OFFSET else None

    def first_offset(self, end: int) -> int:
        """Where a scan of this segment's frames starts counting offsets."""
        rel = self.first_relative_offset(end)
        return self.base_offset + (rel or 0)

    def rebuild_indexes(self, frames: list, interval: int, closed: bool = False) -> tuple[int, int, int, int]:
        """Rewrite both indexes from ``frames`` (as scan_frames returns them)
        by the indexing rule (index.py); a ``closed`` segment is sealed as a
        roll leaves it. Returns (offset_entries, time_entries,
        bytes_since_index, max_ts)."""
        indexer = Indexer(self, interval)
        for position, base, _count, frame_max_ts, size in frames:
            indexer.add(position, base, size, frame_max_ts)
        if closed and frames:
            indexer.seal(frames[-1][1])
        return indexer.offset_entries, indexer.time_entries, indexer.since, indexer.max_ts

    # -- writing ------------------------------------------------------------

    def ensure_allocated(self, end: int) -> None:
        """Back [0, end) with disk blocks before anything is stored there."""
        if end > self.capacity:
            raise ValueError("segment capacity exceeded")
        if end <= self.file_size:
            return
        target = log_growth(self.file_size, end, self.capacity)
        try:
            core.fallocate(self.log_fd, 0, target)
        except OSError as exc:
            raise storage_error(exc, f"cannot grow segment {self.log_path}") from exc
        self.file_size = target

    def trim(self, end: int, offset_entries: int, time_entries: int) -> None:
        """Cut the files to what they hold, when the segment stops being the
        active one (readers then take the file size as the end)."""
        try:
            os.ftruncate(self.log_fd, end)
            self.file_size = end
            if self.index_fd >= 0:
                os.ftruncate(self.index_fd, offset_entries * core.OFFSET_ENTRY_SIZE)
                self.index_file_size = offset_entries * core.OFFSET_ENTRY_SIZE
            if self.time_index_fd >= 0:
                os.ftruncate(self.time_index_fd, time_entries * core.TIME_ENTRY_SIZE)
                self.time_index_file_size = time_entries * core.TIME_ENTRY_SIZE
        except OSError as exc:
            raise storage_error(exc, f"cannot trim segment {self.log_path}") from exc

    def sync(self) -> None:
        for fd in (self.log_fd, self.index_fd, self.time_index_fd):
            if fd >= 0:
                os.fdatasync(fd)

    # -- reading ------------------------------------------------------------

    def frame_position(self, offset: int, index_entries: int, end: int) -> int:
        """Position of the frame containing ``offset`` (or the first frame
        after it), starting from the offset index and scanning forward."""
        position = self.header_size
        rel = offset - self.base_offset
        if index_entries and rel > 0 and self.index is not None:
            hit = core.offset_index_lookup(self.index, index_entries, min(rel, MAX_RELATIVE_OFFSET))
            if hit is not None and self.header_size <= hit[1] < end:
                position = hit[1]
        while position < end:
            try:
                base, count, body, _, _ = core.read_frame_header(self.log, position, end)
            except core.CorruptFrame:
                if position != self.header_size:  # a bad index entry: scan from the start
                    position = self.header_size
                    index_entries = 0
                    continue
                raise CorruptRecordError(f"segment {self.log_path}: no valid frame at {position}") from None
            if base + count > offset:
                if base > offset and position != self.header_size and index_entries:
                    position, index_entries = self.header_size, 0  # index overshot: rescan
                    continue
                return position
            position += core.FRAME_HEADER_SIZE + body
        return end

    def check_crcs(self, frames: list[tuple[int, int, int, int]], end: int) -> None:
        """Check the CRC-32C of ``frames`` (position, base, count, size, as
        their headers say) not yet checked in this process, in one native
        pass; a read of PARALLEL_CRC_BYTES or more checks its second half on
        a second core. CorruptRecordError names the first that fails."""
        seen = self.verified
        if len(frames) == 1 and frames[0][0] in seen:  # a lookup's one frame, checked before: the common case
            return
        todo = [f for f in frames if f[0] not in seen]
        if not todo:
            return
        positions = memoryview(array.array("q", [f[0] for f in todo]))  # int64, for the native pass
        total = sum(f[3] for f in todo)
        helper = helper_thread() if total >= PARALLEL_CRC_BYTES and len(todo) > 1 else None
        if helper is None:
            bad = core.check_frame_crcs(self.log, positions, end)
        else:  # split by bytes, not by frames
            mid = min(max(bisect.bisect_left(list(itertools.accumulate(f[3] for f in todo)), total // 2), 1),
                      len(todo) - 1)
            check = functools.partial(core.check_frame_crcs, self.log)
            bad_later, bad = in_halves(helper, functools.partial(check, positions[mid:], end),
                                       functools.partial(check, positions[:mid], end))
            if bad < 0 and bad_later >= 0:
                bad = mid + bad_later
        if bad >= 0:
            position, base, count, _ = todo[bad]
            raise CorruptRecordError(f"segment {self.log_path}: the frame at byte position {position} "
                                     f"(offsets {base}..{base + count - 1} by its header) fails its CRC-32C: "
                                     "the data on disk changed since it was written (bit rot); run "
                                     "`arrowlog verify` (see docs/DURABILITY.md)")
        remember_verified(self.verified_key, seen, [f[0] for f in todo])

    def frame_header(self, position: int, end: int) -> tuple[int, int, int, int, int]:
        """(base_offset, record_count, body_length, min_ts, max_ts) of the
        frame at ``position``, unchecked; CorruptRecordError if no frame
        header fits there."""
        try:
            return core.read_frame_header(self.log, position, end)
        except core.CorruptFrame as exc:
            raise CorruptRecordError(f"segment {self.log_path}: {exc}") from None

    def frame_batch(self, position: int, body: int, count: int) -> pa.RecordBatch:
        """The zero-copy batch in the frame at ``position`` (``body`` bytes
        holding ``count`` records, as its header says).

        The last FRAME_BATCHES_CACHED batches decoded are kept with the frame
        header they came with (its CRC-32C covers the body): a frame asked
        for again whose header bytes are unchanged is not decoded again,
        and one rewritten in place (a truncated tail written anew) is."""
        header = self.log.read(position, core.FRAME_HEADER_SIZE)
        hit = self._batches.get(position)
        if hit is not None and hit[0] == header:
            return hit[1]
        batch = self._decode_batch(position, body, count)
        if len(self._batches) >= FRAME_BATCHES_CACHED:
            # the oldest one goes (dicts keep insertion order): clearing all
            # at once freed 1,024 batches in one call, a 3-4 ms stall every
            # 1,024 frames for a reader following a log record by record
            del self._batches[next(iter(self._batches))]
        self._batches[position] = (header, batch)
        return batch

    def _decode_batch(self, position: int, body: int, count: int) -> pa.RecordBatch:
        view = self.log.view(position + core.FRAME_HEADER_SIZE, body)
        try:
            batch = pa.ipc.read_record_batch(pa.py_buffer(view), self.schema)
        except (pa.ArrowInvalid, OSError) as exc:
            raise CorruptRecordError(f"segment {self.log_path}: frame at {position} is not a valid Arrow batch: {exc}") from None
        if batch.num_rows > count:  # a compacted frame holds fewer rows than the offsets it spans
            raise CorruptRecordError(f"segment {self.log_path}: frame at {position} spans {count} offsets, holds "
                                     f"{batch.num_rows} records")
        return batch

    def release_descriptors(self, keep_log: bool = False) -> None:
        """Close the descriptors but keep the mappings (a parked partition's
        read views stay usable by readers holding them; indexes not opened
        yet stay unopened). ``keep_log``: the .log's stays, so the file's
        size can still be asked (a roll trims it)."""
        if not self.__dict__.get("_indexes_open", True):
            self._indexes_open = True
            self.index_fd = self.time_index_fd = -1
        if not keep_log:
            self.log_fd = self._fds.close(self.log_fd)
        self.index_fd = self.time_index_fd = self._fds.close(self.index_fd, self.time_index_fd)

    def unmap(self) -> None:
        """Drop the mappings but keep the descriptors (a closing partition's
        clean mark fstats them); close() closes those."""
        self._drop_mappings()

    def _drop_mappings(self) -> None:
        # Mappings are released when the last Arrow buffer or Message that
        # points into them is gone.
        self._batches = {}
        self.__dict__.pop("log", None)
        self.index = self.time_index = None

    def close(self) -> None:
        self._batches = {}
        self.release_descriptors()
        self._drop_mappings()

    def delete_files(self) -> None:
        delete_segment_files(self.directory, self.base_offset)

    def __repr__(self) -> str:
        return f"<Segment {self.log_path} size={self.file_size}>"
