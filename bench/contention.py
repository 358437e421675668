"""A bounded background writer on the benchmark's disk, for the contention rows.

Like ``while :; do dd if=/dev/zero of=F bs=1M count=256 conv=fsync; done``:
another process rewrites one file in 1 MiB writes and fsyncs it every
``fsync_every`` MiB (a whole pass by default), over and over. It is bounded
three ways: one file of ``pass_mib`` MiB (disk use never grows), a deadline
(``max_s``) after which it exits by itself, and :meth:`Contention.stop`
(SIGKILL to its process group) when the row is done. It reports each pass on
its stdout, so a row starts only once the load is really on.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

WRITER = r"""
import os, sys, time
path, pass_mib, fsync_every, max_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
block = b"\0" * (1 << 20)
deadline = time.monotonic() + max_s
passes = 0
while time.monotonic() < deadline:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(pass_mib):
            os.write(fd, block)
            if (i + 1) % fsync_every == 0:
                os.fsync(fd)
            if i == 0 and passes == 0:
                print("started", flush=True)
        os.fsync(fd)
    finally:
        os.close(fd)
    passes += 1
    print("pass", passes, flush=True)
"""


class Contention:
    """``with Contention(directory):`` — a dd-like writer with fsync runs inside the block."""

    def __init__(self, directory: str, pass_mib: int = 256, fsync_every: int = 0, max_s: float = 600.0) -> None:
        self.path = os.path.join(directory, "contention.dat")
        self.args = [str(pass_mib), str(fsync_every or pass_mib), str(max_s)]
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []

    def start(self, timeout: float = 60.0) -> Contention:
        self.proc = subprocess.Popen([sys.executable, "-c", WRITER, self.path, *self.args],
                                     stdout=subprocess.PIPE, bufsize=0, start_new_session=True)
        if not self._read_line(timeout).startswith("started"):
            self.stop()
            raise RuntimeError(f"the background writer did not start within {timeout:.0f} s")
        return self

    def _read_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        # unbuffered: readline() takes only this line, so select() sees the next one
        line = self.proc.stdout.readline().decode() if ready else ""
        if line:
            self.lines.append(line.strip())
        return line

    def wait_passes(self, passes: int, timeout: float) -> int:
        """Block until the writer has finished ``passes`` passes (or timeout); the passes seen."""
        deadline = time.monotonic() + timeout
        while self.passes() < passes and time.monotonic() < deadline:
            if not self._read_line(max(0.0, deadline - time.monotonic())):
                break
        return self.passes()

    def passes(self) -> int:
        return sum(1 for ln in self.lines if ln.startswith("pass"))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> Contention:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
