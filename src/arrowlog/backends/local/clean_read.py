"""A replay's short way through many small, cleanly closed partitions.

Opening a partition the general way (a PartitionLog: its files, a lock, a
mapping of its state, the layout mark's check, a segment view, an IPC
decode per frame, the unmapping afterwards) costs ~100 µs of Python: over
1,024 small partitions, 25 times the reading itself. A partition whose
last clean close left it as it is needs none of that to be read:

- when the Replay is made, one native pass (``core.clean_states``) reads
  each partition's ``partition.state`` (one pread: no lock, no mapping, no
  descriptor kept) and checks its clean word, its seqlock and its segment
  mark (storage/layout_mark.py: left with this very state): the published
  watermarks, from which the range is resolved as usual;
- ``to_arrow()`` then reads the active segments of many such partitions in
  one native pass (``core.SmallReader``): each opened, its fstat matched
  against the five facts the segment mark recorded at the clean close
  (device, inode, size, mtime, ctime: else the general way), one pread, the
  segment header and every frame's CRC-32C checked, each frame's IPC message parsed
  with every length checked, and the rows of the range appended to one set
  of column buffers: one RecordBatch for many partitions, partition column
  included. The large buffers come from an arena (core/arena.pxi) that
  keeps what an earlier table of the process left: a later replay writes
  into pages already there instead of faulting fresh, zeroed ones in.

Both passes run without the GIL: with enough work (PARALLEL_STATES,
PARALLEL_BYTES) each runs in two halves, one on a helper thread, and the
partitions that go the general way are read afterwards on the calling
thread, in order.

A partition that is not clean (a writer has it open, or crashed), has no
segment mark or one its .log no longer matches, holds a transaction marker's shape (one record with
the control header), a null header entry or key, compressed frames or a
schema other than the envelope, fails a CRC, or whose active segment is
larger than SMALL_PARTITION_BYTES (its batches stay zero-copy views of the
mapped segment) goes the general way: the same rows, or the same error.
"""

from __future__ import annotations

import functools
import itertools
import os
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from ..._native import core
from ...schema import HEADERS_TYPE
from ...storage.helper import helper_thread, in_halves

# A partition's active segment up to this many bytes is read by copy; a
# larger one is mapped (zero-copy). Copying 1 MiB costs about what opening
# a partition the general way does.
SMALL_PARTITION_BYTES = 1 << 20
# Keys and values gathered into one batch at most (binary offsets are int32).
BATCH_BYTES = 256 << 20
# A replay reads the states of at least this many partitions, and then at
# least this many bytes of their segments, in two halves on two threads
# (both passes run without the GIL), when the process may run on two cores
# or more: about a millisecond of work each, beside the ~0.1 ms of handing
# half of it over.
PARALLEL_STATES = 256
PARALLEL_BYTES = 4 << 20

_SCHEMA_MESSAGES: dict[pa.Schema, bytes] = {}


def _schema_message(schema: pa.Schema) -> bytes:
    """The IPC schema message a segment of ``schema`` has in its header."""
    msg = _SCHEMA_MESSAGES.get(schema)
    if msg is None:
        msg = _SCHEMA_MESSAGES[schema] = schema.serialize().to_pybytes()
    return msg


class CleanPartition:
    """What resolve_position needs of a partition, from its clean state;
    a time is looked up in the partition opened the general way."""

    __slots__ = ("low", "high", "_open")

    def __init__(self, low: int, high: int, open_log: Callable[[], Any]):
        self.low = low
        self.high = high
        self._open = open_log

    def watermarks(self, *, check: bool = False) -> tuple[int, int]:
        return self.low, self.high

    def offset_for_timestamp(self, ts: int) -> int | None:
        return self._open().offset_for_timestamp(ts)


class CleanStates:
    """The clean states of a topic's ``partitions``, read in one native pass."""

    def __init__(self, topic: Any, partitions: list[int]):
        self.topic_dir = os.fsencode(topic.directory)
        self.schema_message = _schema_message(topic.schema)
        self.partitions = np.array(partitions, dtype=np.int64)
        self.states = np.zeros((len(partitions), len(core.CLEAN_FIELDS)), dtype=np.int64)
        half = _halves(np.ones(len(partitions)), PARALLEL_STATES)
        if half is None:
            core.clean_states(self.topic_dir, self.partitions, self.states)
        else:
            _both(functools.partial(core.clean_states, self.topic_dir, self.partitions[:half], self.states[:half]),
                  functools.partial(core.clean_states, self.topic_dir, self.partitions[half:], self.states[half:]))
        ok = self.states[:, 0] == 1
        self.index = dict(zip(self.partitions[ok].tolist(), np.flatnonzero(ok).tolist()))
        # partitions read_small() would send the general way without reading them
        self.general = ~ok | (self.states[:, 4] > SMALL_PARTITION_BYTES)

    def partition(self, p: int, open_log: Callable[[], Any]) -> CleanPartition | None:
        i = self.index.get(p)
        if i is None:
            return None
        row = self.states[i]
        return CleanPartition(int(row[1]), int(row[2]), open_log)

    def plain_ranges(self, start: Any, end: Any, position: Callable[..., Any]) -> dict[int, tuple[int, int]]:
        """The ranges of the clean partitions for ``start`` and ``end``, all
        at once, when ``position`` (replay._plain_position) resolves both
        without a time lookup; else none."""
        ok = self.states[:, 0] == 1
        low, high = self.states[ok, 1], self.states[ok, 2]
        lo = position(start, low, high, is_end=False)
        hi = None if lo is None else position(end, low, high, is_end=True)
        if hi is None:
            return {}
        lo = np.broadcast_to(lo, low.shape)
        hi = np.maximum(lo, hi)
        return dict(zip(self.partitions[ok].tolist(), zip(lo.tolist(), hi.tolist())))

    def table(self, ranges: dict[int, tuple[int, int]], schema: pa.Schema, check_crc: bool,
              general: Callable[[list[int]], pa.Table]) -> pa.Table:
        """The rows of ``ranges`` (every partition's, in order) as a table of
        ``schema``: the small clean partitions' read natively, many to a
        batch; ``general(partitions)`` makes the others' table (on the
        calling thread, after the native reads)."""
        parts = self.partitions.tolist()
        # (np.array over a list of 1,024 pairs takes 190 µs, fromiter over them flattened 90)
        bounds = np.fromiter(itertools.chain.from_iterable(map(ranges.__getitem__, parts)), dtype=np.int64,
                             count=2 * len(parts)).reshape(-1, 2)
        lo, hi = np.ascontiguousarray(bounds[:, 0]), np.ascontiguousarray(bounds[:, 1])
        read = functools.partial(self._pieces, lo, hi, schema, check_crc)
        n = len(parts)
        # (the halves hold about as many bytes to read natively each)
        half = _halves(np.where((lo < hi) & ~self.general, self.states[:, 4], 0), PARALLEL_BYTES)
        pieces = read(0, n) if half is None else _both(functools.partial(read, 0, half),
                                                        functools.partial(read, half, n))
        tables = [general(parts[i:j]) if isinstance(i, int) else i for i, j in pieces]
        if not tables:
            return general([])
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    def _pieces(self, lo: np.ndarray, hi: np.ndarray, schema: pa.Schema, check_crc: bool, i: int,
                n: int) -> list[tuple[Any, int]]:
        """Partitions [i, n) in order as pieces: (a table of rows read
        natively, 0), or (start, stop) of a run of partitions that go the
        general way."""
        reader = core.SmallReader()
        pieces: list[tuple[Any, int]] = []
        # (read() goes on to the end of the arrays it is given)
        partitions, states, lo, hi = self.partitions[:n], self.states[:n], lo[:n], hi[:n]
        while i < n:
            stop, go_general = reader.read(self.topic_dir, partitions, states, lo, hi, i,
                                           self.schema_message, check_crc, SMALL_PARTITION_BYTES, BATCH_BYTES)
            if reader.rows:
                pieces.append((pa.Table.from_batches([reader.take(schema, HEADERS_TYPE)]), 0))
            i = stop
            if go_general:
                j = i + 1  # with the partitions after it that go the general way too
                while j < n and (self.general[j] or lo[j] >= hi[j]):
                    j += 1
                pieces.append((i, j))
                i = j
        return pieces


def _halves(work: np.ndarray, least: int) -> int | None:
    """Where a pass over partitions, each ``work`` to do, is cut into two
    halves of about the same work, or None: one thread does it (less than
    ``least`` work in all, or a single partition's)."""
    done = np.cumsum(work)
    if not len(done) or done[-1] < least or np.count_nonzero(work) < 2 or helper_thread() is None:
        return None
    return int(np.searchsorted(done, done[-1] / 2)) + 1  # (the partition that reaches half goes first)


def _both(first: Callable[[], Any], second: Callable[[], Any]) -> Any:
    """The two halves of a pass (storage/helper.py in_halves): the first's
    result followed by the second's (both lists, or None)."""
    a, b = in_halves(helper_thread(), first, second)
    return a + b if isinstance(a, list) else None
