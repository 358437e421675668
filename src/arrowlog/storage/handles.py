"""A process-wide budget of open partitions (file descriptors).

Each open PartitionLog holds a few file descriptors (its lock and state
files, the active segment's three files, read views). A process that
touches thousands of partitions would run into RLIMIT_NOFILE, so open
partitions are counted here and, past the budget, the least recently used
ones are *parked*: their descriptors and mappings are released as a close()
releases them (the last process out syncs and marks the partition clean, so
nothing unflushed is ever marked clean), and the PartitionLog object stays
valid: its next use reopens it transparently, seeing whatever other
processes appended meanwhile, with open.lock's shared lock taken again.

Recency is tracked with the CLOCK approximation of LRU: a use only sets a
flag on the log (no lock, no list move); eviction sweeps from the oldest
opened, giving a used log a second chance. A partition busy in another
thread (its lock is held), one that failed (an fsync error must stay
visible until the application reopens it) or the one being opened is
never parked.

The budget defaults to half the soft RLIMIT_NOFILE divided by
FDS_PER_PARTITION; ``set_budget()`` or the ARROWLOG_MAX_OPEN_PARTITIONS
environment variable overrides it.
"""

from __future__ import annotations

import functools
import os
import resource
import threading
import weakref
from collections import OrderedDict
from typing import Any

# descriptors an open partition typically holds: partition.state,
# append.lock, open.lock, the active segment's .log/.index/.timeindex and
# a read view
FDS_PER_PARTITION = 8
MIN_OPEN_PARTITIONS = 4


def default_budget() -> int:
    env = os.environ.get("ARROWLOG_MAX_OPEN_PARTITIONS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        soft = 1 << 20
    return max(MIN_OPEN_PARTITIONS, soft // 2 // FDS_PER_PARTITION)


class HandleBudget:
    """The open partitions of this process, oldest first. Held by weak
    reference: a partition dropped without close() is still collected (and
    its mappings and descriptors with it), never kept alive by the budget."""

    def __init__(self, limit: int | None = None):
        self.limit = limit if limit is not None else default_budget()
        self._open: OrderedDict[int, weakref.ref] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, log: Any) -> None:
        """``log`` is about to open: make room for it, then count it."""
        with self._lock:
            self._open.pop(id(log), None)
            self._shrink_locked(self.limit - 1, exclude=log)
            key = id(log)
            self._open[key] = weakref.ref(log, functools.partial(self._collected, key))

    def _collected(self, key: int, ref: weakref.ref) -> None:
        # runs from the garbage collector: never wait for the lock
        if self._lock.acquire(blocking=False):
            try:
                if self._open.get(key) is ref:
                    del self._open[key]
            finally:
                self._lock.release()

    def forget(self, log: Any) -> None:
        with self._lock:
            self._open.pop(id(log), None)

    def shrink(self, keep_fraction: float = 0.5, exclude: Any = None) -> int:
        """Park partitions until at most ``keep_fraction`` of those open
        remain (after an EMFILE). Returns how many were parked."""
        with self._lock:
            return self._shrink_locked(int(len(self._open) * keep_fraction), exclude=exclude)

    def _shrink_locked(self, target: int, exclude: Any) -> int:
        parked = 0
        # two sweeps at most: the first may only clear "used" flags
        for _ in range(2 * len(self._open)):
            if len(self._open) <= max(target, 0):
                break
            key, ref = next(iter(self._open.items()))
            log = ref()
            if log is None or log._closed:  # collected or closed: nothing left to park
                del self._open[key]
                continue
            if log is exclude or log._used or not log._try_park():
                log._used = False
                self._open.move_to_end(key)
                continue
            del self._open[key]
            parked += 1
        self.evictions += parked
        return parked


BUDGET = HandleBudget()


def set_budget(limit: int | None) -> None:
    """Set the number of partitions this process keeps open at once (None:
    back to the default from RLIMIT_NOFILE). Takes effect at the next open."""
    BUDGET.limit = max(1, int(limit)) if limit is not None else default_budget()
