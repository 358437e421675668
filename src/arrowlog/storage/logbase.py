"""What every part of a PartitionLog shares: its attributes, the published
state, and the helpers the parts (sessions.py, appending.py, recovery.py,
sync.py, retention.py, reading.py) use. Each part is a class over LogBase,
so each type-checks on its own; partition.py puts them together.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import TYPE_CHECKING

import pyarrow as pa

from .._fds import Descriptors
from .._native import core
from ..config import is_compacted
from ..errors import StorageError
from ..schema import ENVELOPE_SCHEMA
from .files import ExclusiveFlock
from .layout import damaged, reads_problem
from .segment import MAX_SEGMENT_BYTES, Segment, delete_segment_files, parse_segment_name

_IPC_OPTIONS: dict[str | None, pa.ipc.IpcWriteOptions] = {}


def _ipc_options(compression: str | None) -> pa.ipc.IpcWriteOptions:
    """The IPC write options of a compression, made once per process (a
    replay opening 1,024 partitions made 1,024 of them)."""
    options = _IPC_OPTIONS.get(compression)
    if options is None:
        options = _IPC_OPTIONS[compression] = pa.ipc.IpcWriteOptions(compression=compression, use_threads=False)
    return options


class LogBase:
    """The state of one open partition (see partition.py for the contract)."""

    def __init__(self, directory: str, topic: str, partition: int, config: dict, *, schema: pa.Schema = ENVELOPE_SCHEMA,
                 notifier: core.PartitionState | None = None, check_crcs: bool = True):
        self.directory = directory
        # read() checks each frame's CRC-32C before first handing it out
        # unless told otherwise (Kafka's check.crcs; docs/DURABILITY.md)
        self.check_crcs = check_crcs
        self._read_generation = -1
        self.notifier = notifier
        self.topic = topic
        self.partition = partition
        self.config = config
        self.schema = schema  # the envelope new frames are written with (use_schema changes it)
        self.segment_bytes = min(int(config["segment.bytes"]), MAX_SEGMENT_BYTES)
        self.segment_ms = int(config["segment.ms"])
        self.index_interval = int(config["index.interval.bytes"])
        self.compacted = is_compacted(config)
        self._gaps_key: int | None = None  # generation at which _gaps_possible was looked up (reading.py)
        self._gaps_possible = self.compacted
        self.compression = config.get("compression.type") or None
        if self.compression == "none":
            self.compression = None
        self._ipc_options = _ipc_options(self.compression)
        self._schema_size: int | None = None  # _schema_message_size, once an append asks
        self._lock = threading.RLock()
        self._segments: dict[int, Segment] = {}   # read views, by base offset
        self._bases: list[int] = []
        self._bases_key: tuple | None = None
        self._max_ts_cache: dict[int, int] = {}
        self._null_columns: dict = {}
        self._writer: Segment | None = None       # writable view of the active segment
        self._writer_generation: int | None = None  # the published generation _writer was last checked at
        self._failed: BaseException | None = None
        self._damage: str | None = None  # why the layout cannot be right (see layout.py)
        self._closed = False
        self._hint: tuple[int, int, int] | None = None  # (offset, segment base, position)
        self._synced_bases: set[int] = set()
        self._dir_dirty = False
        self._state_fd = self._append_fd = self._open_fd = -1
        self._fds = Descriptors(self)   # those three; dropped without close(): closed, nothing else (_fds.py)
        self._state: core.PartitionState | None = None
        # parked: descriptors released by the handle budget (handles.py);
        # the next use reopens. _used: touched since the budget last looked.
        self._parked = False
        self._parked_generation: int | None = None  # the generation it was parked at
        self._used = True
        self.read_only = False  # the file system's, found when the files open (sessions.py)

    @property
    def _schema_message_size(self) -> int:
        """Bytes of the envelope schema's IPC message (an append's frame leaves it out)."""
        if self._schema_size is None:
            self._schema_size = self.schema.serialize().size
        return self._schema_size

    @_schema_message_size.setter
    def _schema_message_size(self, size: int) -> None:
        self._schema_size = size

    @property
    def state(self) -> core.PartitionState:
        """The published state's mapping; reopens a parked partition."""
        self._used = True
        st = self._state
        if st is None:
            self._wake()
            st = self._state
            if st is None:
                raise StorageError(errno.EBADF, f"partition log {self.topic}-{self.partition} is closed")
        return st

    # -- helpers --------------------------------------------------------------

    def _capacity(self, at_least: int = 0) -> int:
        return max(self.segment_bytes, at_least)

    @staticmethod
    def _now_ms() -> int:
        return core.wall_clock_ms()

    def _append_locked(self):
        if self._state is None:
            self._wake()
        if self._append_fd < 0:
            self._open_append_lock()
        return ExclusiveFlock(self._append_fd)

    def _list_bases(self) -> list[int]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(b for b in (parse_segment_name(n) for n in names) if b is not None)

    def _open_writer_segment(self, base: int) -> Segment:
        return Segment(self.directory, base, writable=True, capacity=self._capacity())

    def _check_view(self, base: int, st: dict) -> Segment:
        """The read view of segment ``base`` a clean open checks the active
        segment through: kept for the reads of the same generation, so a
        replay opens each partition's active segment once, not twice."""
        self._read_generation = st["generation"]
        return self._segment(base, st)

    def _release_view(self, base: int) -> None:
        """Close a read view's index descriptors, keeping its mappings (its
        .log's stays: once the segment is rolled, reads ask its size)."""
        seg = self._segments.get(base)
        if seg is not None:
            seg.release_descriptors(keep_log=True)

    def _delete_segment_files(self, base: int) -> None:
        seg = self._segments.pop(base, None)
        if seg is not None:
            seg.close()
        delete_segment_files(self.directory, base)

    def _forget_read_views(self) -> None:
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()
        self._bases, self._bases_key = [], None

    def _drop_segments(self) -> None:
        self._forget_read_views()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- published state -------------------------------------------------------

    @property
    def high_watermark(self) -> int:
        """The next offset to be written; records below it are readable."""
        return self._published(self.state.next_offset, "next_offset")

    @property
    def log_start_offset(self) -> int:
        return self._published(self.state.log_start_offset, "log_start_offset")

    def _published(self, read, field: str) -> int:
        """One published field, read cheaply; through _snapshot (which
        repairs a half-published state) only when that fails."""
        try:
            return read()
        except BlockingIOError:
            return self._snapshot()[field]

    def _snapshot(self) -> dict:
        """The published state; if a writer died between the two halves of a
        publish (the seqlock stays odd), repair it first."""
        try:
            return self.state.snapshot()
        except BlockingIOError:
            self._repair_torn()
            return self.state.snapshot()

    def _repair_torn(self) -> None:
        """The dead writer's append lock is free again: recover under it, so
        readers in every process see a consistent state again."""
        if self.read_only:
            raise StorageError(errno.EROFS, f"the state of {self.topic}-{self.partition} was left half-published "
                               "and the file system is read-only: mount it read-write to recover it")
        with self._lock, self._append_locked():
            if self.state.torn:
                self._recover_locked()

    def watermarks(self, *, check: bool = False) -> tuple[int, int]:
        """(log start offset, high watermark). ``check``: a damaged
        partition raises CorruptRecordError, as read() does (a reader that
        trusts an impossible log start would read nothing and say nothing)."""
        if check:
            self._raise_if_damaged()
        st = self._snapshot()
        problem = reads_problem(st) if check else None
        if problem is not None:
            raise damaged(f"partition {self.topic}-{self.partition} ({self.directory})", problem)
        return st["log_start_offset"], st["next_offset"]

    def wait(self, offset: int, timeout: float) -> bool:
        """Block until the high watermark passes ``offset`` (the record at
        ``offset`` is readable), at most ``timeout`` seconds (negative: no
        limit). Returns whether it did. Costs no CPU while idle (futex)."""
        return self.state.wait_beyond(offset, timeout)

    if TYPE_CHECKING:
        # What the parts provide each other (partition.py combines them):
        # declared here so that each part type-checks against the others.
        def _wake(self) -> None: ...
        def _close_fds(self) -> None: ...
        def _open_append_lock(self) -> None: ...
        def _mark_dirty(self) -> None: ...
        def recover(self, *, check_all: bool = False) -> dict: ...
        def _recover_locked(self, *, check_all: bool = False) -> dict: ...
        def _check_layout(self) -> None: ...
        def _raise_if_damaged(self) -> None: ...
        def _sync_locked(self, active: Segment, st: dict | None = None) -> None: ...
        def _writer_for(self, st: dict, at_least: int = 0) -> Segment: ...
        def _enforce_retention_locked(self, now_ms: int | None = None) -> int: ...
        def _segment(self, base: int, st: dict) -> Segment: ...
        def _segment_max_timestamp(self, base: int) -> int | None: ...
