"""What this process has open, and waiting on descriptors, for tests (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import collections
import gc
import os
import select
import time


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


class DescriptorGuard:
    """The descriptors opened since it was made and still open: ``check()`` raises AssertionError when
    there are more than ``allowance`` of them, naming where they point. Counted after a garbage
    collection, and again for up to ``settle_s`` while they are too many (an object a background thread
    held for a moment is closed when it lets go). ``under``: count only those naming a file there."""

    def __init__(self, allowance: int, settle_s: float = 30.0, under: str | None = None):
        self.allowance = allowance
        self.settle_s = settle_s
        self.under = os.path.realpath(under) + os.sep if under else ""
        self.before = collections.Counter(self._held())

    def _held(self) -> list[str]:
        gc.collect()
        return [p for p in open_paths() if p.startswith(self.under)]

    def extra(self) -> list[str]:
        return list((collections.Counter(self._held()) - self.before).elements())

    def check(self, temp_root: str | None = None) -> None:
        """``temp_root``: the run's temporary directory, under which descriptors are counted by the
        directory of the test that made them (pytest names it after the test)."""
        deadline = time.monotonic() + self.settle_s
        while len(extra := self.extra()) > self.allowance and time.monotonic() < deadline:
            time.sleep(0.2)
        if len(extra) > self.allowance:
            raise AssertionError(f"{len(extra)} more file descriptors are open than at the start (allowed: "
                                 f"{self.allowance}); opened and never closed:\n{where(extra, temp_root)}")


def where(paths: list[str], temp_root: str | None = None) -> str:
    """Descriptor targets counted by place: a test's own directory under ``temp_root``, else the parent
    directory, else the kind (socket, pipe, anon_inode); and the deleted files among them."""
    root = os.path.realpath(temp_root) + os.sep if temp_root else None
    places: collections.Counter = collections.Counter()
    for p in paths:
        if root and p.startswith(root):
            places[root + p[len(root):].split(os.sep, 1)[0]] += 1
        elif p.startswith("/"):
            places[os.path.dirname(p)] += 1
        else:
            places[p.split(":", 1)[0]] += 1
    lines = [f"{n:6d}  {place}" for place, n in places.most_common(30)]
    deleted = [p for p in paths if p.endswith(" (deleted)")]
    if deleted:
        lines.append(f"{len(deleted)} of them deleted files (their disk space is not freed), e.g. {deleted[:5]}")
    return "\n".join(lines)
