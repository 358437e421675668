"""Logging a failure that clients will ask about again and again.

A Kafka client retries a partition it got an error for every few hundred
milliseconds, for as long as it runs: a partition the storage cannot open
(its directory replaced by a file, a permission denied, an I/O error) or a
damaged frame would log the same ERROR line twice a second per client,
forever. :class:`LogOnce` logs it at ERROR the first time for its key, and
at DEBUG while it repeats; a new message for the key (another failure) is
logged at ERROR again, and so is the same one after :meth:`forget` (the
partition opened in between). The last ``size`` keys are remembered.

Thread-safety: a lock guards the remembered keys (the event loop and the
produce worker thread may both report).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Hashable


class LogOnce:
    def __init__(self, logger: logging.Logger, note: str, size: int = 1024):
        self.logger = logger
        self.note = note   # appended to the ERROR line: what happens to the retries
        self.size = size
        self._seen: collections.OrderedDict[Hashable, str] = collections.OrderedDict()
        self._lock = threading.Lock()

    def error(self, key: Hashable, message: str) -> None:
        """Log ``message`` at ERROR unless it is what ``key`` last logged (then at DEBUG)."""
        with self._lock:
            again = self._seen.get(key) == message
            if not again:
                self._seen[key] = message
                self._seen.move_to_end(key)
                if len(self._seen) > self.size:
                    self._seen.popitem(last=False)
        if again:
            self.logger.debug("%s (again)", message)
        else:
            self.logger.error("%s (%s)", message, self.note)

    def forget(self, key: Hashable) -> None:
        """``key`` works again: its next failure is logged at ERROR."""
        if self._seen:   # the common case, nothing failed: no lock, no hashing
            with self._lock:
                self._seen.pop(key, None)
