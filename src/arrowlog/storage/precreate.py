"""A partition's files made with its topic (create_topic, add_partitions),
not by its first write, and the open that finds them untouched.

Starting a partition creates a directory and six files (the state, two
lock files, the first segment under a temporary name, then renamed, and its
two indexes) and allocates four of them: on ext4 each create and allocation
is a journal operation, and on a disk other processes keep committing to,
each can wait for the journal (docs/DURABILITY.md, "Appending while the
disk is busy"). Kafka makes a partition's log when the topic is created;
so does arrowlog: ``create_partition`` lays out the directory as a first
open would leave it, with its state published at generation 0
(PRECREATED_GENERATION, which nothing else publishes: a recovery or a new
value schema makes it 1 or more) and not clean.

A state that is not clean normally makes the first opener recover, which
fsyncs the directory. ``open_precreated`` skips that only when recovery
would find exactly what the state says: generation 0, no record published
(every offset 0, no index entry), segment 0 the only segment, its header
whole (its checksum checked) and ending at the published position, and
every byte after it zero, so no frame was ever written there, whether or
not it reached the disk (a frame that a crash or power loss kept makes it a
normal recovery). Nothing here fsyncs: the topic becomes visible when its
topic.json is written (tmp, fsync, rename, fsync of the topic directory),
and a partition directory a crash left half made is what the open path
handles already (a missing state or segment is created, one without the
other is recovered); the first sync() of a session fsyncs the partition's
directory, as for a partition its first write created.

Making a thousand partitions takes seconds on a busy disk, so it happens
outside the data directory's locks (LogDir._lock, topics/.lock): in a
``Staging`` directory under topics/, named with a ``~`` that no topic name
has (validate_topic_name), so no reader takes it for a topic. Under the
locks it is only renamed into place (a topic) or its partitions are
(add_partitions), then topic.json is written. Its maker holds a flock on
it; one nobody holds was left by a killed process and is removed by the
next open or creation in the directory (``claim_abandoned``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from typing import TYPE_CHECKING

import pyarrow as pa

from .._native import core
from ..errors import CorruptRecordError
from .files import open_shared_file
from .index import NO_TIMESTAMP
from .layout import state_problem
from .segment import LOG_INITIAL_BYTES, MAX_SEGMENT_BYTES, Segment

if TYPE_CHECKING:
    from .logbase import LogBase

# a staging directory's name: '~' is in no topic name
STAGING_PREFIX = "~new."
# the generation of a state create_partition published (every later one is >= 1)
PRECREATED_GENERATION = 0
# files a first open makes beside the segment, besides partition.state
LOCK_FILES = ("open.lock", "append.lock")


def create_partition(directory: str, config: dict, schema: pa.Schema) -> bool:
    """Make partition ``directory`` as a first open would leave it (its
    empty first segment, lock files and published state), for a topic of
    ``config`` (topic keys, resolved) whose envelope is ``schema``. Leaves
    an existing directory as it is (False): the open path deals with
    whatever a crash left there."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        return False
    compression = config.get("compression.type") or None
    capacity = min(int(config["segment.bytes"]), MAX_SEGMENT_BYTES)
    seg = Segment.create(directory, 0, schema, None if compression == "none" else compression, capacity,
                         core.wall_clock_ms())
    header_size, created_ms = seg.header_size, seg.created_ms
    seg.close()
    for name in LOCK_FILES:
        os.close(open_shared_file(f"{directory}/{name}")[0])
    path = f"{directory}/partition.state"
    fd = open_shared_file(path)[0]
    try:
        core.fallocate(fd, 0, core.STATE_FILE_SIZE)
        state = core.PartitionState(core.MappedFile(fd, core.STATE_FILE_SIZE, True, path))
    finally:
        os.close(fd)  # the mapping stays valid
    # last: an initialised state says the files before it were made
    state.initialise(log_start_offset=0, next_offset=0, active_base_offset=0, active_position=header_size,
                     active_max_timestamp=NO_TIMESTAMP, offset_index_entries=0, time_index_entries=0,
                     bytes_since_index=0, recovery_point=0, generation=PRECREATED_GENERATION,
                     segment_created_ms=created_ms)
    return True


def _untouched(st: dict) -> bool:
    """Whether state snapshot ``st`` is one create_partition published, with no record since."""
    return (st["generation"] == PRECREATED_GENERATION and st["next_offset"] == 0 and st["log_start_offset"] == 0
            and st["active_base_offset"] == 0 and st["recovery_point"] == 0 and st["offset_index_entries"] == 0
            and st["time_index_entries"] == 0 and st["bytes_since_index"] == 0 and state_problem(st) is None)


def open_precreated(log: LogBase) -> bool:
    """For the first opener (open.lock held exclusively): whether ``log``
    is a partition create_partition made that nobody wrote into (see the
    module docstring); if so its writable segment is opened, generation 1
    is published and its segment.ms clock starts now: nothing needs
    recovering."""
    state = log.state
    if not state.is_initialised() or state.clean or state.torn or not _untouched(state.snapshot()):
        return False
    with log._append_locked():
        st = state.snapshot()
        if not _untouched(st) or log._list_bases() != [0]:
            return False
        try:
            seg = Segment(log.directory, 0, writable=True, capacity=log._capacity())
        except (CorruptRecordError, OSError):
            return False
        end, position = seg.file_size, st["active_position"]
        # (a created segment holds LOG_INITIAL_BYTES or its header: a larger one grew for a frame)
        if seg.header_size != position or end > max(LOG_INITIAL_BYTES, position) \
                or seg.log.read(position, end - position).count(0) != end - position:
            seg.close()
            return False
        log._writer = seg
        log._dir_dirty = True
        # generation 1, as a partition its first open made (metrics count recoveries from it)
        state.publish(generation=1, segment_created_ms=core.wall_clock_ms())
    return True


def create_partitions(topic_dir: str, partitions: range, config: dict, schema: pa.Schema) -> None:
    """create_partition for each of ``partitions`` of the topic in ``topic_dir``."""
    for p in partitions:
        create_partition(f"{topic_dir}/{p}", config, schema)


def _staging_name(topics_dir: str) -> str:
    return f"{topics_dir}/{STAGING_PREFIX}{os.urandom(8).hex()}"


def claim_abandoned(topics_dir: str) -> list[tuple[str, int]]:
    """The staging directories in ``topics_dir`` nobody holds (their maker
    was killed), each flock'ed now, for ``remove_claimed``. With the data
    directory's creation lock held: a Staging is made and locked under it."""
    claimed = []
    for name in os.listdir(topics_dir):
        if not name.startswith(STAGING_PREFIX):
            continue
        path = f"{topics_dir}/{name}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile, or not a directory of ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # its maker is alive
            continue
        claimed.append((path, fd))
    return claimed


def remove_claimed(claimed: list[tuple[str, int]]) -> None:
    """Remove what claim_abandoned returned (no lock needed: they are held)."""
    for path, fd in claimed:
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def remove_abandoned(topics_dir: str, lock_fd: int) -> None:
    """Remove the staging directories of creations a kill cut short (at a
    LogDir's open); skipped while another process holds the creation lock
    ``lock_fd`` (topics/.lock: its next creation removes them)."""
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return
    try:
        claimed = claim_abandoned(topics_dir)
    except OSError:
        claimed = []  # (topics/ unreadable: the open reports what matters)
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
    remove_claimed(claimed)


class Staging:
    """A private directory under ``topics_dir`` to make partitions in
    outside the locks (module docstring). Make it with the creation lock
    held; it also claims the abandoned ones then. Leaving the with-block
    removes whatever was not moved out of it, and those."""

    def __init__(self, topics_dir: str):
        self._claimed = claim_abandoned(topics_dir)
        self._garbage: list[str] = []
        self.made: dict | None = None  # add_partitions: the topic.json its partitions were made for
        self.total = 0  # and the count they make
        self.path = _staging_name(topics_dir)
        os.mkdir(self.path, 0o700)
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new directory: free, and nobody looked while the lock was held
        self._claimed.append((self.path, fd))

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def discard(self) -> None:
        """Remove it (and what it claimed); once."""
        garbage, claimed, self._garbage, self._claimed = self._garbage, self._claimed, [], []
        for path in garbage:
            shutil.rmtree(path, ignore_errors=True)
        remove_claimed(claimed)

    def rename_to(self, directory: str) -> None:
        """Make the staging directory ``directory`` (locks held). A directory
        already there (no topic.json: what a killed delete_topic or create
        left) is renamed to a staging name first, and removed on exit: a
        deleted topic's records never come back in a new one."""
        if os.path.lexists(directory):
            aside = _staging_name(os.path.dirname(directory))
            os.rename(directory, aside)
            self._garbage.append(aside)
        os.rename(self.path, directory)

    def move_partitions(self, topic_dir: str, partitions: range) -> None:
        """Rename each of ``partitions`` into ``topic_dir`` (locks held). One
        already there (beyond the topic's count: an add_partitions a kill cut
        short made it, and nobody wrote it) is kept, as create_partition keeps it."""
        for p in partitions:
            try:
                os.rename(f"{self.path}/{p}", f"{topic_dir}/{p}")
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
