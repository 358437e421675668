"""Resident memory of a process from /proc: the current figure, the peak (VmHWM)
and resetting the peak, for tests that bound what one request may take
(tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


def status_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status figure in KiB (VmHWM, VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux 4.0+)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class Growth:
    kib = 0

    @property
    def mib(self) -> float:
        return self.kib / 1024


@contextmanager
def peak_growth():
    """How far this process's peak RSS rose above its RSS at the start of the block."""
    pid = os.getpid()
    growth = Growth()
    reset_peak(pid)
    start = status_kib(pid, "VmRSS")
    try:
        yield growth
    finally:
        growth.kib = status_kib(pid, "VmHWM") - start
