"""The lifetime of a reader over a data directory's LogDir that it may own.

A reader opened from a path (``arrowlog.dataset("data", ...)``, ``replay``) opened
its LogDir itself and must close it; one given a LogDir only borrows it. ``close()``
closes an owned LogDir once (later calls do nothing); a ``with`` block closes it
too, and so does the reader's collection (a ``weakref.finalize``, which holds the
LogDir, never the reader: a dropped scan_polars LazyFrame leaves nothing open).
At interpreter exit nothing is closed behind a reader still in use (the kernel
releases its descriptors, and a reader leaves nothing to sync).

Thread-safety: close() from any thread; the LogDir is closed exactly once.
"""

from __future__ import annotations

import weakref
from typing import Any, TypeVar

_Reader = TypeVar("_Reader", bound="OwnedLog")


class OwnedLog:
    """Base of a reader holding ``_logdir``, which it closes when it owns it."""

    _logdir: Any
    _closer: weakref.finalize | None = None   # (also when the constructor failed before holding one)

    def _hold_log(self, logdir: Any, owns: bool) -> None:
        self._logdir = logdir
        if owns:
            self._closer = weakref.finalize(self, logdir.close)
            self._closer.atexit = False

    def close(self) -> None:
        if self._closer is not None:
            self._closer()   # (a finalizer runs once: later calls, and the collection, do nothing)

    def __enter__(self: _Reader) -> _Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
