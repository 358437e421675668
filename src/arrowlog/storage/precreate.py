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
"""

from __future__ import annotations

import os
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
