"""Kafka transactions as the library's readers see them.

``arrowlog serve`` and transactional in-process producers keep one transaction
state in ``<data>/transactions/`` (server/txn_coordinator.py,
docs/PROTOCOL.md#transactions, server/txn_state.py); in-process readers of the same directory use it
through :class:`TransactionView`:

- control records (a transaction's COMMIT/ABORT markers, docs/FORMAT.md) are
  never returned, whatever the isolation level; they are recognised by their
  ``arrowlog.control`` header, so a marker is skipped even before the state says so;
- ``read_committed`` (the Consumer's default, as in Kafka) also leaves out the
  batches of aborted transactions and stops at the last stable offset (the
  first offset of the oldest open transaction).

Ordering: a reader reads the high watermark *before* loading the state. The
server journals a transactional batch (at the offset it expects, never beyond
where it lands) before appending it, so every transactional batch below that
high watermark is in the state it loads next: the last stable offset it computes
is never beyond an open transaction's first batch.

The state is read again when its files change (what other processes appended
to the journal, or everything after a compaction), checked (two stats) only when the
partition's high watermark moved since the last check or a transaction was
open there: every change that matters to a partition's readers (a
transactional batch, a COMMIT/ABORT marker) appends to it. Reading a log that
does not grow costs nothing more.
"""

from __future__ import annotations

import os
from typing import Any

CONTROL_HEADER = "arrowlog.control"


def is_control_frame(frame: Any) -> bool:
    """Whether a stored frame is a transaction marker (one record with the control header)."""
    if frame.record_count != 1:
        return False
    try:
        headers = frame.batch.column("headers")[0].as_py()
    except KeyError:
        return False
    return bool(headers) and any(h.get("key") == CONTROL_HEADER for h in headers)


class ConsumerGroupMetadata:
    """What ``Consumer.consumer_group_metadata()`` returns and
    ``Producer.send_offsets_to_transaction`` takes (confluent-kafka's opaque object):
    the group whose offsets the transaction commits."""

    __slots__ = ("group_id", "generation_id", "member_id")

    def __init__(self, group_id: str, generation_id: int = -1, member_id: str | None = None):
        self.group_id = group_id
        self.generation_id = generation_id
        self.member_id = member_id

    def __repr__(self) -> str:
        return f"ConsumerGroupMetadata(group_id={self.group_id!r}, generation_id={self.generation_id})"


class TransactionView:
    """The transaction state of one data directory, read again when it changes."""

    def __init__(self, data_dir: str):
        self._data_dir = os.fspath(data_dir)
        self._dir = os.path.join(self._data_dir, "transactions")
        self._state: Any = None
        self._ends: dict[tuple[str, int], int] = {}   # high watermark at the last check, when nothing was open

    def _refresh(self) -> Any:
        """The coordinator state (read-only), None while no transaction was ever begun here."""
        if self._state is None and os.path.isdir(self._dir):
            from .server.txn_state import TxnState

            self._state = TxnState(self._data_dir, read_only=True)
        return self._state

    def begun(self) -> bool:
        """Whether a transaction was ever begun in this directory: when not,
        no record below a high watermark read before this call belongs to one."""
        return self._refresh() is not None

    def readable_end(self, topic: str, partition: int, high_watermark: int, committed_only: bool) -> int:
        """Where a reader stops: the last stable offset for ``committed_only``, else the
        high watermark (which must have been read before the frames it bounds)."""
        if not committed_only or self._ends.get((topic, partition)) == high_watermark:
            return high_watermark
        state = self._refresh()
        end = state.last_stable_offset(topic, partition, high_watermark) if state else high_watermark
        if end == high_watermark:
            self._ends[(topic, partition)] = high_watermark
        else:
            self._ends.pop((topic, partition), None)
        return end

    def skipped(self, topic: str, partition: int, frame: Any, committed_only: bool) -> bool:
        """Whether a reader leaves ``frame`` out: a marker, or (``committed_only``) a batch
        of an aborted transaction. Call after ``readable_end`` (it reads the state)."""
        if is_control_frame(frame):
            return True
        state = self._refresh() if committed_only else None
        return state is not None and state.is_aborted(topic, partition, frame.base_offset)

    def visible(self, topic: str, partition: int, frames: list, high_watermark: int,
                committed_only: bool) -> tuple[list, int | None]:
        """(the frames a reader may return, the offset to move to when the leading frames
        were all skipped, else None). ``high_watermark`` must have been read before ``frames``."""
        if not frames:
            return frames, None
        end = self.readable_end(topic, partition, high_watermark, committed_only)
        out: list = []
        skip_to = None
        for fr in frames:
            if fr.base_offset >= end:
                break
            if self.skipped(topic, partition, fr, committed_only):
                if not out:
                    skip_to = fr.base_offset + fr.record_count
                continue
            out.append(fr)
        return out, skip_to

    def last_stable_offset(self, topic: str, partition: int, high_watermark: int) -> int:
        state = self._refresh()
        return state.last_stable_offset(topic, partition, high_watermark) if state else high_watermark
