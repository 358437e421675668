"""arrowlog._fds.Descriptors: an owner's raw descriptors, each closed exactly once, by close() or by the
finalizer when the owner is collected; a number closed (or handed over) once is never closed again through
it, even after the kernel gave it to another open. Checked on real descriptors with os.fstat and dup2."""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import threading

import pytest
from fds import open_paths

import arrowlog
from arrowlog._fds import Descriptors
from arrowlog._native import core
from arrowlog.groups.membership import OwnerLocks
from arrowlog.groups.store import GroupDir
from arrowlog.server.journal import StateFiles
from arrowlog.server.producers import ProducerRegistry
from arrowlog.storage import LogDir, cleaner

FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC


class Owner:
    def __init__(self):
        self.fds = Descriptors(self)


def inode(fd: int) -> int:
    return os.fstat(fd).st_ino


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def files(tmp_path):
    """Two files."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    return str(a), str(b)


@contextlib.contextmanager
def reused(numbers: list[int], path: str):
    """Make each of ``numbers`` (closed) name ``path``, as the kernel does when the next opens get them;
    on leaving, each must still name it (nobody closed it behind its new holder's back), then is closed."""
    for number in numbers:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if fd != number:
            os.dup2(fd, number)
            os.close(fd)
    try:
        yield
        assert [inode(n) for n in numbers] == [os.stat(path).st_ino] * len(numbers)
    finally:
        for number in numbers:
            os.close(number)


def test_a_descriptor_closed_twice_is_closed_once_and_a_reused_number_is_left_alone(files):
    a, b = files
    owner = Owner()
    fd = owner.fds.open(a, FLAGS)
    assert fd in owner.fds
    assert owner.fds.close(fd) == -1
    assert not is_open(fd) and fd not in owner.fds
    with reused([fd], b):                         # another file under the same number now
        owner.fds.close(fd)                       # the stale number: not this owner's any more
        owner.fds.close_all()


def test_the_finalizer_closes_what_is_held_when_the_owner_is_collected(files):
    a, b = files
    ino_a, ino_b = os.stat(a).st_ino, os.stat(b).st_ino
    owner = Owner()
    kept = owner.fds.open(a, FLAGS)
    adopted = owner.fds.adopt(os.open(b, FLAGS))
    assert inode(kept) == ino_a and inode(adopted) == ino_b
    del owner                                     # (no cycle: at once)
    assert not is_open(kept) and not is_open(adopted)


def test_the_finalizer_runs_for_an_owner_in_a_reference_cycle(files):
    a, _b = files
    owner = Owner()
    owner.me = owner
    fd = owner.fds.open(a, FLAGS)
    del owner
    gc.collect()
    assert not is_open(fd)


def test_a_finalizer_of_the_same_cycle_still_finds_the_descriptors_open(files):
    """A Producer closed by a ``__del__`` of an object in the same garbage
    cycle (at interpreter exit, say) must still find its partitions'
    descriptors open to mark them clean: the set closes them as one of the
    cycle's finalizers, not from a weak-reference callback, which the
    collector runs before every finalizer of the cycle."""
    a, _b = files
    seen = []

    class Closer:
        def __del__(self):
            seen.append(is_open(self.fd))

    closer = Closer()                             # first: its finalizer is the cycle's first
    owner = Owner()
    closer.fd = fd = owner.fds.open(a, FLAGS)
    closer.owner, owner.closer = owner, closer
    del closer, owner
    gc.collect()
    assert seen == [True]
    assert not is_open(fd)


def test_a_number_reused_after_close_is_never_closed_by_the_old_owners_finalizer(files):
    a, b = files
    owner = Owner()
    fd = owner.fds.open(a, FLAGS)
    owner.fds.close(fd)
    with reused([fd], b):
        del owner
        gc.collect()


def test_a_detached_descriptor_is_the_callers_to_close_and_never_the_owners(files):
    a, _b = files
    ino_a = os.stat(a).st_ino
    owner = Owner()
    fd = owner.fds.open(a, FLAGS)
    assert owner.fds.detach(fd) == fd
    assert owner.fds.detach(fd) == -1             # handed over once
    assert len(owner.fds) == 0
    owner.fds.close(fd)
    del owner
    gc.collect()
    try:
        assert inode(fd) == ino_a                 # the caller's now, still open
    finally:
        os.close(fd)


def test_close_ignores_numbers_it_never_held(files):
    a, _b = files
    ino_a = os.stat(a).st_ino
    other = os.open(a, FLAGS)
    try:
        owner = Owner()
        assert owner.fds.close(-1, other) == -1
        assert inode(other) == ino_a
    finally:
        os.close(other)


def test_threads_closing_the_same_descriptors_close_each_once(files, monkeypatch):
    a, _b = files
    owner = Owner()
    fds = [owner.fds.open(a, FLAGS) for _ in range(50)]
    closed: list[int] = []
    real_close = os.close

    def counting_close(fd):
        closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(os, "close", counting_close)
    start = threading.Barrier(4)

    def closer():
        start.wait()
        for fd in fds:
            owner.fds.close(fd)
        owner.fds.close_all()

    threads = [threading.Thread(target=closer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(closed) == sorted(fds)


def test_the_finalizer_leaves_a_live_owners_descriptors_to_the_kernel_at_exit(tmp_path):
    """An atexit handler registered before any owner still uses the owner's descriptors at exit (the
    finalizers' exit hook runs before it): they are still open when it runs."""
    path = tmp_path / "f"
    path.write_bytes(b"x")
    script = f"""
import atexit, os
def late():
    os.write(1, os.pread(owner_fd, 1, 0))
atexit.register(late)
import arrowlog
from arrowlog._fds import Descriptors
from arrowlog._native import core
class Owner:
    pass
owner = Owner()
owner.fds = Descriptors(owner)
owner_fd = owner.fds.open({str(path)!r}, os.O_RDONLY)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout == b"x"


# -- owners ---------------------------------------------------------------------------------------------


def test_a_closed_logdir_leaves_its_reused_lock_number_open_when_collected(tmp_path, files):
    _a, b = files
    ld = LogDir(str(tmp_path / "data"))
    number = ld._lock_fd
    ld.close()
    with reused([number], b):
        del ld
        gc.collect()


def test_descriptors_a_partition_hands_to_the_batch_close_are_never_closed_again(tmp_path, files):
    """close() passes a partition's and its writer's descriptors to one native close of all (take_fds):
    detached from their owners' sets, so the owners' finalizers leave the numbers alone once reused."""
    _a, b = files
    ld = LogDir(str(tmp_path / "data"))
    ld.create_topic("t", 1)
    log = ld.topic("t").partition(0)
    acc = core.RecordAccumulator()
    acc.append_record(b"k", b"v", core.wall_clock_ms())
    log.append(acc.take())
    seg = log._writer
    numbers = [log._state_fd, log._open_fd, log._append_fd, seg.log_fd, seg.index_fd, seg.time_index_fd]
    assert min(numbers) >= 0 and len(log._fds) == len(seg._fds) == 3
    ld.close()
    assert len(log._fds) == len(seg._fds) == 0
    assert log._state_fd == log._open_fd == log._append_fd == seg.log_fd == -1
    with reused(numbers, b):
        del ld, log, seg
        gc.collect()


def test_a_state_files_journal_dropped_without_close_is_closed(tmp_path):
    files = StateFiles(str(tmp_path), "test state", compact_bytes=1 << 20)
    files.compact({})
    fd = files._fd
    assert is_open(fd)
    del files
    assert not is_open(fd)


def test_an_owner_lock_whose_record_cannot_be_written_is_not_kept(tmp_path, monkeypatch):
    """A failed write of the member id into a partition's lock file (a full disk) used to leave the
    descriptor, and with it the partition's lock, held by nobody's bookkeeping."""
    gdir = GroupDir(str(tmp_path), "g")
    gdir.ensure()
    locks = OwnerLocks(gdir, "m1")

    def full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError):
        locks.try_acquire(("t", 0))
    monkeypatch.undo()
    assert [p for p in open_paths() if p.startswith(os.path.realpath(gdir.owners_dir))] == []
    other = OwnerLocks(gdir, "m2")
    assert other.try_acquire(("t", 0))            # the lock is free for another member
    other.release_all()


def test_a_reader_closes_the_log_it_opened_once_when_closed_or_dropped_and_never_a_borrowed_one(tmp_path):
    path = str(tmp_path / "data")
    with LogDir(path) as ld:
        ld.create_topic("t", 1)
    r = arrowlog.replay(path, "t")
    owned = r._logdir
    del r                                         # dropped without close()
    assert owned._closed
    r = arrowlog.replay(path, "t")
    owned = r._logdir
    r.close()
    assert owned._closed
    r.close()                                     # once: later calls do nothing
    with LogDir(path) as mine:
        r = arrowlog.replay(mine, "t")
        r.close()
        del r
        gc.collect()
        assert not mine._closed
        assert mine.topic("t").partition(0).high_watermark == 0


def test_a_closed_producer_registry_leaves_its_reused_lock_number_open_when_closed_again_or_collected(
        tmp_path, files):
    """The producer-state lock was a raw os.open/os.close: a second close() closed whatever file had the
    number since, and a registry dropped without close() kept the flock until the process ended."""
    _a, b = files
    registry = ProducerRegistry(str(tmp_path / "data"))
    number = registry._lock_fd
    assert is_open(number)
    registry.close()
    assert not is_open(number)
    with reused([number], b):
        registry.close()
        del registry
        gc.collect()
    dropped = ProducerRegistry(str(tmp_path / "data"))
    number = dropped._lock_fd
    del dropped                                   # dropped without close(): the flock goes with it
    assert not is_open(number)
    again = ProducerRegistry(str(tmp_path / "data"))
    assert again._lock_fd >= 0                    # the lock was free: this one owns the files
    again.close()


def test_a_cleaner_lock_released_twice_or_collected_leaves_a_reused_number_open(tmp_path, files):
    _a, b = files
    lock = cleaner._Lock(str(tmp_path), wait=False)
    number = lock.fd
    with pytest.raises(BlockingIOError):
        cleaner._Lock(str(tmp_path), wait=False)  # held: a second cleaner is turned away
    lock.release()
    assert not is_open(number)
    with reused([number], b):
        lock.release()
        del lock
        gc.collect()
    dropped = cleaner._Lock(str(tmp_path), wait=False)
    number = dropped.fd
    del dropped
    assert not is_open(number)
    cleaner._Lock(str(tmp_path), wait=False).release()   # free again
