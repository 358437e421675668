"""The lifetime of a reader over a data directory's LogDir that it may own.

A reader opened from a path (``arrowlog.dataset("data", ...)``, ``replay``) opened
its LogDir itself and must close it; one given a LogDir only borrows it. ``close()``
closes an owned LogDir once (later calls do nothing); a ``with`` block and garbage
collection close it too.

Thread-safety: close() from one thread at a time, as the readers' other methods.
"""

from __future__ import annotations

from typing import Any, TypeVar

_Reader = TypeVar("_Reader", bound="OwnedLog")


class OwnedLog:
    """Base of a reader holding ``_logdir``, which it closes when ``_owns_log``."""

    _logdir: Any
    _owns_log: bool = False   # (also when the constructor failed before holding one)

    def _hold_log(self, logdir: Any, owns: bool) -> None:
        self._logdir = logdir
        self._owns_log = owns

    def close(self) -> None:
        if self._owns_log:
            self._owns_log = False
            self._logdir.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self: _Reader) -> _Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
