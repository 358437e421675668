"""What this process has open, and waiting on descriptors, for tests (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import os
import select


def open_paths() -> list[str]:
    """The targets of this process's open descriptors (one per descriptor)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return out


def readable(*sources, timeout: float) -> list:
    """Those of ``sources`` (descriptors, or objects with ``fileno()``) that have input or reached their end
    within ``timeout`` seconds, in no particular order.

    ``select.poll``, not ``select.select``: select() refuses any descriptor numbered 1,024 or more, which a
    long test session's descriptors can reach."""
    poller = select.poll()
    by_fd = {}
    for source in sources:
        fd = source if isinstance(source, int) else source.fileno()
        by_fd[fd] = source
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(max(0.0, timeout) * 1000)]
