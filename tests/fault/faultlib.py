"""Shared pieces of the fault suite: records that know who wrote them, a
whole-log checker, a killable writer process, and root-only file systems.

Every record value written by the fault tests says where it came from::

    b"<cycle>:<batch>:<j>/<n>|" + filler

so a reader can tell, from the log alone, whether a batch is complete
(``j`` runs 0..n-1 inside one frame), whether a record is duplicated (the
prefix is unique) and whether an acknowledged record came back intact (the
acknowledged offset maps to the same bytes).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

# the fault scripts run as programs (sys.path[0] is tests/fault): tests/ holds fds.py
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fds import readable  # noqa: E402

from arrowlog._native import core
from arrowlog.schema import HEADERS_TYPE, PRODUCE_SCHEMA
from arrowlog.storage import LogDir

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(core.__file__))))  # .../src
TOPIC = "t"
# Small segments so that a few hundred batches cross several rolls; no
# retention, so every acknowledged record must still be there.
TOPIC_CONFIG = {"segment.bytes": 64 * 1024, "retention.ms": -1, "index.interval.bytes": 1024}
LONG = os.environ.get("ARROWLOG_FAULT_LONG") == "1"

FS_IOC_SHUTDOWN = 0x8004587D
FS_SHUTDOWN_NOLOGFLUSH = 2


def count(quick: int, long: int) -> int:
    """Iterations: the quick count for `make test`, the long one behind
    ARROWLOG_FAULT_LONG=1."""
    return long if LONG else quick


# -- records --------------------------------------------------------------------


def value_for(cycle: int, batch: int, j: int, n: int, filler: int = 0) -> bytes:
    return b"%d:%d:%d/%d|" % (cycle, batch, j, n) + b"x" * filler


def parse_value(value: bytes) -> tuple[int, int, int, int]:
    head = value.split(b"|", 1)[0]
    cycle, batch, rest = head.split(b":")
    j, n = rest.split(b"/")
    return int(cycle), int(batch), int(j), int(n)


def make_batch(values: list[bytes], timestamp_ms: int | None = None) -> pa.RecordBatch:
    """A batch as PartitionLog.append takes it (PRODUCE_SCHEMA)."""
    n = len(values)
    ts = core.wall_clock_ms() if timestamp_ms is None else timestamp_ms
    return pa.RecordBatch.from_arrays(
        [pa.array(np.full(n, ts, dtype=np.int64)).cast(pa.timestamp("ms", tz="UTC")),
         pa.nulls(n, pa.binary()), pa.array(values, pa.binary()), pa.nulls(n, HEADERS_TYPE)],
        schema=PRODUCE_SCHEMA)


def batch_values(cycle: int, batch: int, n: int, filler: int) -> list[bytes]:
    return [value_for(cycle, batch, j, n, filler) for j in range(n)]


def fast_scratch(prefix: str) -> str:
    """A scratch directory on /dev/shm when there is one: recovery fsyncs
    after every repair, which costs ~30 ms a case on a disk and nothing on a
    tmpfs; the checks are the same on both. The caller removes it."""
    import tempfile

    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return tempfile.mkdtemp(prefix=prefix, dir=where)


@contextlib.contextmanager
def scratch(prefix: str):
    """fast_scratch() for a with-block: removed at its end."""
    base = fast_scratch(prefix)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- reading the whole log --------------------------------------------------------


@dataclass
class LogContents:
    log_start: int
    high_watermark: int
    values: dict[int, bytes] = field(default_factory=dict)  # offset -> value
    frames: list[tuple[int, list[bytes]]] = field(default_factory=list)  # (base, values)


def read_log(pl, check_crc: bool = True) -> LogContents:
    """Every record from the log start to the high watermark, checking the
    structure as it goes: frames contiguous, the offset column equal to
    base..base+n-1, record counts equal to the batch's rows."""
    start, hw = pl.watermarks()
    out = LogContents(start, hw)
    offset = start
    while offset < hw:
        frames = pl.read(offset, 1 << 20, check_crc=check_crc)
        assert frames, f"read({offset}) returned nothing below the high watermark {hw}"
        for fr in frames:
            if fr.base_offset + fr.record_count <= offset:
                continue
            assert fr.base_offset <= offset, f"frame {fr} skips offset {offset}"
            assert fr.record_count == fr.batch.num_rows
            offs = fr.batch.column(0).to_numpy()
            assert (offs == np.arange(fr.base_offset, fr.base_offset + fr.record_count)).all(), \
                f"frame {fr}: offsets {offs[:5]}... are not base..base+n-1"
            vals = fr.batch.column(3).to_pylist()
            if fr.base_offset >= start:
                out.frames.append((fr.base_offset, vals))
            for i, v in enumerate(vals):
                o = fr.base_offset + i
                if o >= start:
                    out.values[o] = v
            offset = fr.base_offset + fr.record_count
    assert offset == hw, f"read past the high watermark: {offset} > {hw}"
    return out


def check_log(contents: LogContents, acked: dict[int, bytes], seen: dict[int, bytes] | None = None,
              whole_batches: bool = True) -> None:
    """The pass criteria of the crash tests."""
    vals = contents.values
    # offsets contiguous from the log start
    assert sorted(vals) == list(range(contents.log_start, contents.high_watermark))
    # every acknowledged record intact
    for off, v in acked.items():
        if off < contents.log_start:
            continue
        assert off in vals, f"acknowledged offset {off} is gone (high watermark {contents.high_watermark})"
        assert vals[off] == v, f"acknowledged offset {off} holds {vals[off][:40]!r}, expected {v[:40]!r}"
    # what a previous reopen showed never changes or disappears
    if seen is not None:
        for off, v in seen.items():
            if off >= contents.log_start:
                assert vals.get(off) == v, f"offset {off} changed since the last reopen"
    # no duplicates
    heads = [v.split(b"|", 1)[0] for v in vals.values()]
    assert len(heads) == len(set(heads)), "a record appears twice"
    if whole_batches:
        for base, fvals in contents.frames:
            parsed = [parse_value(v) for v in fvals]
            cyc, b, _, n = parsed[0]
            assert [p[2] for p in parsed] == list(range(n)) and all(p[:2] == (cyc, b) for p in parsed), \
                f"frame at {base} holds a partial or mixed batch: {[p[:3] for p in parsed][:8]}"


def check_after_power_loss(data: str, acked: dict[int, bytes], what: str, whole_batches: bool = True) -> LogContents:
    """Reopen the partition under ``data`` after a power cut and check it:
    every acknowledged record intact (check_log) and every frame's CRC good;
    a failure names ``what`` (the seed and cycle). The partition is closed
    again before this returns: its mappings would keep the file system busy."""
    d, pl = open_partition(data)
    try:
        contents = read_log(pl)
        check_log(contents, acked, whole_batches=whole_batches)
        assert pl.verify()["errors"] == []
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None
    finally:
        d.close()
        del d, pl
    return contents


def open_partition(path: str, config: dict | None = None):
    d = LogDir(path)
    t = d.create_topic(TOPIC, partitions=1, config=config or TOPIC_CONFIG, exist_ok=True)
    return d, t.partition(0)


def abandon(d, pl) -> None:
    """What process death does to an open LogDir ``d`` and its partition
    ``pl``: fds closed (locks released), mappings dropped; no sync, no clean
    mark."""
    pl._closed = True
    pl._drop_segments()
    pl._close_fds()
    d._lock_fd = d._fds.close(d._lock_fd)
    d._closed = True


def closed_partition(path: str, segments: int, segment_bytes: int, index_interval: int,
                     seed: int = 3) -> dict[int, bytes]:
    """A partition of at least ``segments`` segments, written with batches of
    1-6 records 1 ms apart and closed cleanly; returns its records."""
    import random

    d, pl = open_partition(path, {"segment.bytes": segment_bytes, "retention.ms": -1,
                                  "index.interval.bytes": index_interval})
    rng = random.Random(seed)
    values: dict[int, bytes] = {}
    b = 0
    while len(pl.segment_bases()) < segments:
        vals = batch_values(0, b, rng.randint(1, 6), rng.randint(0, 120))
        first = pl.append(make_batch(vals, 1_700_000_000_000 + b))
        values.update((first + j, v) for j, v in enumerate(vals))
        b += 1
    d.close()
    return values


def frame_layout(log: bytes) -> list[tuple[int, int, int, int]]:
    """(position, size, base_offset, record_count) of each frame in a
    segment's bytes, from its header fields."""
    header_size = struct.unpack_from("<I", log, 8)[0]
    pos, frames = header_size, []
    while pos + core.FRAME_HEADER_SIZE <= len(log):
        magic, base, body, count = struct.unpack_from("<IqII", log, pos + 4)
        if magic != core.FRAME_MAGIC:
            break
        frames.append((pos, core.FRAME_HEADER_SIZE + body, base, count))
        pos += core.FRAME_HEADER_SIZE + body
    return frames


# -- a writer process to kill -------------------------------------------------------


def writer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-X", "faulthandler", os.path.join(HERE, "writer.py"), *args]


def writer_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + HERE + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Writer:
    """``writer.py`` in a subprocess. It prints ``R`` once the log is open,
    then ``A <offset> <value>`` for every acknowledged record (after
    append() or flush() returned), ``E <message>`` when an append fails."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(writer_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=writer_env())
        self.acked: dict[int, bytes] = {}
        self.errors: list[str] = []
        self.log_start = 0  # the last ``S`` line: retention moved the log start, durably
        self.ready = False
        self._pending = b""  # an incomplete last line

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_for(lambda w: w.ready, "became ready", timeout)

    def wait_for(self, predicate, what: str, timeout: float = 120.0) -> None:
        """Read the writer's lines as they come until ``predicate(self)``:
        drive a test by the writer's progress, never by a sleep."""

        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                raise AssertionError(f"the writer never {what} (rc {self.proc.poll()}): {err[-2000:]}")
            r = readable(fd, timeout=0.1)
            if r:
                chunk = os.read(fd, 65536)
                if chunk:
                    *lines, self._pending = (self._pending + chunk).split(b"\n")
                    for line in lines:
                        self._line(line)

    def kill(self) -> tuple[int, str]:
        """SIGKILL, then collect every complete line it wrote."""
        if self.proc.poll() is None:
            self.proc.kill()
        out, err = self.proc.communicate(timeout=60)
        data = self._pending + out
        for line in data.split(b"\n")[:-1]:  # the last piece is incomplete (or empty)
            self._line(line)
        return self.proc.returncode, err.decode(errors="replace")

    def finish(self, timeout: float = 120.0) -> tuple[int, str]:
        out, err = self.proc.communicate(timeout=timeout)
        data = self._pending + out
        for line in data.split(b"\n")[:-1]:
            self._line(line)
        return self.proc.returncode, err.decode(errors="replace")

    def _line(self, line: bytes) -> None:
        kind, _, rest = line.partition(b" ")
        if kind == b"R":
            self.ready = True
        elif kind == b"S":
            self.log_start = int(rest)
        elif kind == b"A":
            off, _, value = rest.partition(b" ")
            self.acked[int(off)] = value
        elif kind == b"E":
            self.errors.append(rest.decode(errors="replace"))


# -- scenarios in a child process --------------------------------------------------------


def scenario_cmd(name: str, **args) -> list[str]:
    import json

    return [sys.executable, "-X", "faulthandler", os.path.join(HERE, "scenarios.py"), name, json.dumps(args)]


def scenario_result(returncode: int, stdout: str, stderr: str, name: str) -> dict:
    import json

    assert returncode == 0, f"scenario {name} died with rc {returncode} (-7 is SIGBUS):\n{stderr[-4000:]}"
    return json.loads(stdout.strip().splitlines()[-1])


def scenario(name: str, **args) -> dict:
    """Run scenarios.<name>(**args) in a fresh process; its JSON result."""
    r = subprocess.run(scenario_cmd(name, **args), capture_output=True, text=True, env=writer_env(), timeout=300)
    return scenario_result(r.returncode, r.stdout, r.stderr, name)


# -- file systems (root only) ----------------------------------------------------------


def root_reason() -> str | None:
    """Why the root-only tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (mount, losetup)"
    if not os.path.exists("/dev/loop-control"):
        return "needs loop devices (/dev/loop-control is absent)"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


def run(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")


class Ext4Image:
    """An ext4 file system in an image file, loop-mounted at ``mnt``."""

    def __init__(self, workdir: str, size_mb: int = 96, options: str = ""):
        self.image = os.path.join(workdir, "fs.img")
        self.mnt = os.path.join(workdir, "mnt")
        self.options = options
        os.makedirs(self.mnt, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(size_mb << 20)
        # no lazy init: background zeroing threads would make timing noisy
        run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", self.image)
        self.mounted = False

    def mount(self, extra: str = "") -> None:
        opts = ",".join(o for o in ("loop", self.options, extra) if o)
        run("mount", "-o", opts, self.image, self.mnt)
        self.mounted = True

    def umount(self) -> None:
        """Unmount; a closed LogDir's mappings (its state files) keep the
        file system busy until they are collected."""
        gc.collect()
        if self.mounted:
            for attempt in range(30):
                r = subprocess.run(["umount", self.mnt], capture_output=True, text=True)
                if r.returncode == 0:
                    break
                time.sleep(0.1)
            else:
                holders = self.holders()
                run("umount", "-l", self.mnt)
                self.mounted = False
                raise AssertionError(f"{self.mnt} stayed busy; this process holds {holders[:10]}")
            self.mounted = False

    def holders(self) -> list[str]:
        """Files under the mount this process still has open or mapped."""
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(self.mnt):
                found.append(f"fd {fd}: {target}")
        with open("/proc/self/maps") as f:
            found += sorted({"mapped: " + line.split(maxsplit=5)[-1].strip() for line in f if self.mnt in line})
        return found

    def remount(self, opts: str) -> None:
        run("mount", "-o", f"remount,{opts}", self.mnt)

    def shutdown(self) -> None:
        """Power loss: the file system stops here, without flushing its
        journal (FS_IOC_SHUTDOWN, NOLOGFLUSH); unsynced data is lost."""
        fd = os.open(self.mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, FS_IOC_SHUTDOWN, struct.pack("I", FS_SHUTDOWN_NOLOGFLUSH))
        finally:
            os.close(fd)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.umount()
        with contextlib.suppress(OSError):
            os.unlink(self.image)


@contextlib.contextmanager
def tmpfs(path: str, size: str):
    os.makedirs(path, exist_ok=True)
    run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)
