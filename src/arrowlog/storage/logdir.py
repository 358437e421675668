"""The data directory: topics, their partitions and their configs.

Layout::

    <data>/
      topics/<topic>/topic.json       partitions and config, written atomically
      topics/<topic>/<partition>/     a PartitionLog (see partition.py)
      groups/                         consumer groups' committed offsets

Topic names become path components, so they are checked against Kafka's rule
(``[A-Za-z0-9._-]{1,249}``, not ``.`` or ``..``) before any file is touched,
and files are opened with O_NOFOLLOW.

Thread-safety: a LogDir may be shared by threads; topic creation and
deletion are serialised across processes by ``<data>/topics/.lock``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import threading
from collections.abc import Collection
from typing import Any

import pyarrow as pa

from .. import config as _config
from .._fds import Descriptors
from .._native import core
from ..errors import (
    ConfigError,
    CorruptRecordError,
    InvalidTopicError,
    LogClosedError,
    NotADataDirectoryError,
    StorageError,
    TopicExistsError,
    UnknownPartitionError,
    UnknownTopicError,
)
from .cleaner import clean_topic
from .evolution import evolved, generation, same_columns, widen
from .evolution import schema_id as evolution_schema_id
from .files import ExclusiveFlock, fsync_dir, open_shared_file, storage_error, write_json_atomic
from .partition import PartitionLog, close_many
from .precreate import Staging, create_partitions, remove_abandoned
from .segment import Segment, parse_segment_name
from .topicschema import schema_to_json, topic_envelope, value_schema_from_config

_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
MAX_TOPIC_LENGTH = 249
# files in <data>/topics/ beside the topics' directories
RESERVED_NAMES = (".lock", ".notify")
MAX_PARTITIONS = 100_000
# what arrowlog itself keeps in a data directory, and lost+found of a file
# system mounted there (a directory holding only these may become one; one
# holding anything else belongs to someone else)
OWN_ENTRIES = frozenset({"topics", "groups", "producers", "security", ".arrowlog-demo", "lost+found"})


def refuse_foreign(path: str) -> None:
    """NotADataDirectoryError unless ``path`` is missing, empty, or holds
    only arrowlog's own entries: making a data directory never mixes it
    into someone else's files."""
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path):
        raise NotADataDirectoryError(f"not an arrowlog data directory: {path} is a file: use a new or empty "
                                     "directory")
    try:
        foreign = sorted(set(os.listdir(path)) - OWN_ENTRIES)
    except OSError as exc:
        raise NotADataDirectoryError(f"not an arrowlog data directory: {path} ({exc.strerror})") from None
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise NotADataDirectoryError(f"not an arrowlog data directory: {path} holds other files ({shown}): "
                                     "use a new or empty directory")


def validate_topic_name(name: Any) -> str:
    """Return ``name`` if it is a legal topic name, else raise InvalidTopicError."""
    if not isinstance(name, str):
        raise InvalidTopicError(f"topic name must be a str, not {type(name).__name__}")
    if name in ("", ".", ".."):
        raise InvalidTopicError(f"topic name {name!r} is not allowed")
    if name in RESERVED_NAMES:
        raise InvalidTopicError(f"topic name {name!r} is reserved: the data directory keeps a file of that name "
                                "next to its topics")
    if len(name) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(f"topic name is {len(name)} characters long; the limit is {MAX_TOPIC_LENGTH}")
    if not _TOPIC_RE.fullmatch(name):
        bad = sorted({c for c in name if not _TOPIC_RE.fullmatch(c)})
        raise InvalidTopicError(f"topic name {name!r} contains {''.join(map(repr, bad))}: only letters, digits, "
                                "'.', '_' and '-' are allowed")
    return name


def _stat_key(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def meta_problem(meta: Any) -> str | None:
    """Why a parsed topic.json cannot be used, or None."""
    if not isinstance(meta, dict):
        return f"it holds a JSON {type(meta).__name__}, not an object"
    n = meta.get("partitions")
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_PARTITIONS:
        return f"'partitions' is {n!r}, not a count in 1..{MAX_PARTITIONS}"
    config = meta.get("config")
    if not isinstance(config, dict):
        return f"'config' is {config!r}, not an object"
    try:
        resolved = _config.resolve(_config.TOPIC, {**config, "partitions": n}, what="topic")
        value_schema_from_config(resolved.get("value.schema"))
    except (ConfigError, TypeError, ValueError) as exc:
        return f"its config is not valid ({exc})"
    return None


def _make_partitions(name: str, directory: str, meta: dict, total: int) -> None:
    """The files of topic ``name``'s partitions from its count in ``meta`` to ``total``, in ``directory``."""
    if total <= meta["partitions"]:
        raise ConfigError(f"topic {name!r} already has {meta['partitions']} partitions")
    create_partitions(directory, range(meta["partitions"], total), meta["config"],
                      topic_envelope(value_schema_from_config(meta["config"].get("value.schema"))))


class Topic:
    """A topic's partitions (opened on first use) and config."""

    def __init__(self, logdir: LogDir, name: str, meta: dict):
        self.logdir = logdir
        self.name = name
        self.directory = os.path.join(logdir.topics_dir, name)
        self.num_partitions = int(meta["partitions"])
        self.config = dict(meta["config"])
        self.topic_id = meta.get("topic_id")
        self.value_schema = value_schema_from_config(self.config.get("value.schema"))
        self.schema = topic_envelope(self.value_schema)
        self._partitions: dict[int, PartitionLog] = {}
        self._lock = threading.Lock()
        self._meta_stat = _stat_key(self.logdir._meta_path(name))

    def envelope_for(self, stored: pa.Schema) -> pa.Schema:
        """The schema readers give a frame stored with envelope ``stored``: the topic's
        newest, re-read from topic.json when the frame is of a newer generation than
        this process knew (another process evolved the topic: evolution.py)."""
        if not stored.equals(self.schema, check_metadata=True) and generation(stored) > generation(self.schema):
            self.refresh()
        return self.schema

    def refresh(self) -> None:
        """Take the value schema from topic.json again if the file changed (an evolution
        by another process); cheap when it did not (one stat)."""
        key = _stat_key(self.logdir._meta_path(self.name))
        if key == self._meta_stat or self.value_schema is None:
            return
        meta = self.logdir._read_meta(self.name)
        self._meta_stat = key
        schema = value_schema_from_config(meta["config"].get("value.schema"))
        if schema is not None and generation(schema) > generation(self.value_schema):
            self.use_value_schema(schema, meta["config"])

    def use_value_schema(self, schema: pa.Schema, config: dict) -> None:
        """Read and write with evolved value ``schema`` from now on (open partitions too)."""
        with self._lock:
            self.config = dict(config)
            self.value_schema = schema
            self.schema = topic_envelope(schema)
            for log in self._partitions.values():
                log.use_schema(self.schema)

    def partition(self, partition: int) -> PartitionLog:
        if not isinstance(partition, int) or isinstance(partition, bool):
            raise UnknownPartitionError(f"partition must be an int, not {type(partition).__name__}")
        if not 0 <= partition < self.num_partitions:
            raise UnknownPartitionError(f"topic {self.name!r} has partitions 0..{self.num_partitions - 1}; "
                                        f"there is no partition {partition}")
        log = self._partitions.get(partition)
        if log is None:
            with self._lock:
                log = self._partitions.get(partition)
                if log is None:
                    log = PartitionLog(os.path.join(self.directory, str(partition)), self.name, partition,
                                       self.config, schema=self.schema, notifier=self.logdir.notifier,
                                       check_crcs=self.logdir.check_crcs)
                    self._partitions[partition] = log
        return log

    def partitions(self) -> list[PartitionLog]:
        return [self.partition(i) for i in range(self.num_partitions)]

    def close(self) -> None:
        with self._lock:
            close_many(list(self._partitions.values()))
            self._partitions.clear()

    def __repr__(self) -> str:
        return f"<Topic {self.name!r} partitions={self.num_partitions}>"


class LogDir:
    """A data directory of topics. ``LogDir(path)`` creates it if needed.
    ``check_crcs=False`` turns off the CRC-32C check of each frame before
    its first read (for data already verified; docs/DURABILITY.md)."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True, check_crcs: bool = True):
        self.check_crcs = check_crcs
        path = os.fspath(path)
        if path.startswith("file://"):
            path = path[len("file://"):]
        self.path = os.path.abspath(path)
        self.topics_dir = os.path.join(self.path, "topics")
        self.groups_dir = os.path.join(self.path, "groups")
        self.read_only = False
        self._fds = Descriptors(self)   # closed by close(), or when dropped without it (_fds.py)
        try:
            if create:
                if not os.path.isdir(self.topics_dir):
                    refuse_foreign(self.path)
                try:
                    os.makedirs(self.topics_dir, mode=0o700, exist_ok=True)
                    os.makedirs(self.groups_dir, mode=0o700, exist_ok=True)
                except OSError as exc:
                    if exc.errno != errno.EROFS or not os.path.isdir(self.topics_dir):
                        raise
            elif not os.path.isdir(self.topics_dir):
                raise NotADataDirectoryError(2, f"not an arrowlog data directory: {self.path} (it has no topics/ "
                                                "directory)")
            lock_fd, self.read_only = open_shared_file(os.path.join(self.topics_dir, ".lock"))
            self._lock_fd = self._fds.adopt(lock_fd)
        except PermissionError as exc:
            raise storage_error(exc, f"cannot use data directory {self.path}") from exc
        except OSError as exc:
            if isinstance(exc, StorageError):
                raise
            raise storage_error(exc, f"cannot use data directory {self.path}") from exc
        self._topics: dict[str, Topic] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.notifier = self._open_notifier()
        if not self.read_only:
            remove_abandoned(self.topics_dir, self._lock_fd)

    def _open_notifier(self) -> core.PartitionState:
        """A futex word every append in this directory bumps: a consumer of
        many partitions sleeps on it instead of polling each one."""
        path = os.path.join(self.topics_dir, ".notify")
        try:
            fd, read_only = open_shared_file(path)
            try:
                if not read_only and os.fstat(fd).st_size < core.STATE_FILE_SIZE:
                    core.fallocate(fd, 0, core.STATE_FILE_SIZE)
                return core.PartitionState(core.MappedFile(fd, core.STATE_FILE_SIZE, not read_only, path))
            finally:
                os.close(fd)  # the mapping stays valid
        except OSError as exc:
            raise storage_error(exc, f"cannot create {path}") from exc

    # -- topics ---------------------------------------------------------------

    def _exclusive(self) -> ExclusiveFlock:
        """The directory's exclusive lock, for a change to its topics: a
        closed LogDir no longer holds the lock file, so it changes nothing."""
        if self._closed:
            raise LogClosedError(f"the log {self.path} is closed: open a new LogDir to change its topics")
        return ExclusiveFlock(self._lock_fd)

    def _meta_path(self, name: str) -> str:
        return os.path.join(self.topics_dir, name, "topic.json")

    def list_topics(self) -> list[str]:
        try:
            names = os.listdir(self.topics_dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if _TOPIC_RE.fullmatch(n) and n not in (".", "..")
                      and os.path.exists(self._meta_path(n)))

    def has_topic(self, name: str) -> bool:
        validate_topic_name(name)
        return os.path.exists(self._meta_path(name))

    def create_topic(self, name: str, partitions: int | None = None, config: dict | None = None, *,
                     exist_ok: bool = False) -> Topic:
        """Create a topic; ``config`` takes topic keys (see ``arrowlog.config.TOPIC``)."""
        validate_topic_name(name)
        given = dict(config or {})
        if partitions is not None:
            given["partitions"] = partitions
        resolved = _config.resolve(_config.TOPIC, given, what="topic")
        nparts = resolved.pop("partitions")
        schema = value_schema_from_config(resolved.get("value.schema"))
        resolved["value.schema"] = schema_to_json(schema)
        try:
            with self._lock, self._exclusive():
                staging = None if self._exists(name, exist_ok) else Staging(self.topics_dir)
            if staging is not None:
                with staging:
                    # its partitions' files now, not at their first writes, outside the locks (precreate.py)
                    create_partitions(staging.path, range(nparts), resolved, topic_envelope(schema))
                    with self._lock, self._exclusive():
                        if not self._exists(name, exist_ok):
                            staging.rename_to(os.path.join(self.topics_dir, name))
                            write_json_atomic(self._meta_path(name), {"name": name, "partitions": nparts,
                                              "config": resolved, "topic_id": os.urandom(16).hex()})
                            fsync_dir(self.topics_dir)
        except OSError as exc:
            raise storage_error(exc, f"cannot create topic {name!r}") from exc
        # topic() takes self._lock, which is not reentrant: call it outside
        return self.topic(name)

    def _exists(self, name: str, exist_ok: bool) -> bool:
        """Whether topic ``name`` exists (TopicExistsError unless ``exist_ok``)."""
        if os.path.exists(self._meta_path(name)) and not exist_ok:
            raise TopicExistsError(f"topic {name!r} already exists")
        return os.path.exists(self._meta_path(name))

    def topic(self, name: str) -> Topic:
        t = self._topics.get(name)
        if t is not None:
            return t
        validate_topic_name(name)
        with self._lock:
            t = self._topics.get(name)
            if t is None:
                t = Topic(self, name, self._read_meta(name))
                self._topics[name] = t
        return t

    def _read_meta(self, name: str) -> dict:
        """topic.json, checked: a damaged one is a CorruptRecordError naming
        the file and saying how to rebuild it, never a JSONDecodeError,
        KeyError or ValueError from deep inside."""
        path = self._meta_path(name)
        try:
            with open(path, "rb") as f:
                raw = f.read(1 << 20)
        except FileNotFoundError:
            raise UnknownTopicError(f"topic {name!r} does not exist in {self.path}") from None
        except OSError as exc:
            raise storage_error(exc, f"cannot read {path}") from exc
        try:
            meta = json.loads(raw)
        except ValueError as exc:
            raise self._damaged_meta(path, f"it is not JSON ({exc})") from None
        problem = meta_problem(meta)
        if problem is not None:
            raise self._damaged_meta(path, problem)
        # a topic.json written by an older version lacks newer keys: defaults
        config = _config.resolve(_config.TOPIC, meta["config"], what="topic")
        config.pop("partitions")
        return {**meta, "config": config}

    @staticmethod
    def _damaged_meta(path: str, problem: str) -> CorruptRecordError:
        return CorruptRecordError(f"{path} is damaged: {problem}; run `arrowlog recover` to rebuild it from the "
                                  "partition directories (see docs/DURABILITY.md)")

    def repair_topic(self, name: str) -> dict | None:
        """Rebuild a damaged topic.json from what is on disk: the partition
        directories give the count, the segments' own header gives the value
        schema; config keys that still parse are kept, the rest take their
        defaults. Returns the new metadata, or None if it was fine."""
        validate_topic_name(name)
        with self._lock, self._exclusive():
            try:
                self._read_meta(name)
                return None
            except CorruptRecordError:
                pass
            try:
                with open(self._meta_path(name), "rb") as f:
                    old = json.loads(f.read(1 << 20))
            except (OSError, ValueError):
                old = {}
            if not isinstance(old, dict):
                old = {}
            directory = os.path.join(self.topics_dir, name)
            parts = [int(n) for n in os.listdir(directory) if n.isdigit() and os.path.isdir(os.path.join(directory, n))]
            config: dict = {}
            old_config = old.get("config")
            for key, value in (old_config if isinstance(old_config, dict) else {}).items():
                if key in ("partitions", "value.schema"):
                    continue
                try:
                    _config.resolve(_config.TOPIC, {key: value}, what="topic")
                except (ConfigError, TypeError, ValueError):
                    continue
                config[key] = value
            config["partitions"] = max(parts, default=0) + 1
            resolved = _config.resolve(_config.TOPIC, config, what="topic")
            nparts = resolved.pop("partitions")
            resolved["value.schema"] = schema_to_json(self._stored_value_schema(directory, parts))
            topic_id = old.get("topic_id") if isinstance(old.get("topic_id"), str) else os.urandom(16).hex()
            meta = {"name": name, "partitions": nparts, "config": resolved, "topic_id": topic_id}
            write_json_atomic(self._meta_path(name), meta)
            self._topics.pop(name, None)
            return meta

    @staticmethod
    def _stored_value_schema(directory: str, parts: list[int]) -> pa.Schema | None:
        """The value schema a typed topic's segments were written with (their
        header holds the Arrow schema: the newest generation's), or None for bytes values."""
        best: pa.Schema | None = None
        for p in sorted(parts):
            pdir = os.path.join(directory, str(p))
            for n in sorted(os.listdir(pdir)):
                base = parse_segment_name(n)
                if base is None:
                    continue
                try:
                    seg = Segment(pdir, base, writable=False)
                except (CorruptRecordError, OSError):
                    continue
                try:
                    value = seg.schema.field("value").type
                    found = pa.schema(list(value), metadata=seg.schema.metadata) if pa.types.is_struct(value) \
                        else None
                finally:
                    seg.close()
                if found is None:
                    return None
                if best is None or generation(found) > generation(best):
                    best = found
        return best

    def evolve_topic(self, name: str, value_schema: Any, *, schema_id: int | None = None) -> Topic:
        """Evolve typed topic ``name`` to store ``value_schema``'s records too: its
        columns widen (storage/evolution.py: new fields nullable, wider numbers;
        anything else is a ConfigError) as a new generation, which new frames are
        written with; frames stored before read in it with nulls. ``schema_id`` is
        the schema registry id of ``value_schema`` (arrowlog serve). The same schema
        again changes nothing. Returns the topic."""
        new = value_schema_from_config(value_schema)
        if new is None:
            raise ConfigError("a typed topic's value.schema cannot be removed")
        t = self.topic(name)
        with self._lock, self._exclusive():
            meta = self._read_meta(name)
            current = value_schema_from_config(meta["config"].get("value.schema"))
            if current is None:
                raise ConfigError(f"topic {name!r} stores bytes values (no value.schema): only a typed topic's "
                                  "value schema evolves; create a new topic with value.schema")
            widened = widen(current, new)
            if same_columns(widened, current) and (schema_id is None or schema_id == evolution_schema_id(current)):
                if generation(current) > generation(t.value_schema):
                    t.use_value_schema(current, meta["config"])
                return t
            schema = evolved(current, new, schema_id)
            meta["config"]["value.schema"] = schema_to_json(schema)
            write_json_atomic(self._meta_path(name), meta)
        t.use_value_schema(schema, meta["config"])
        t._meta_stat = _stat_key(self._meta_path(name))
        return t

    def alter_topic(self, name: str, config: dict) -> Topic:
        """Change topic settings (not partitions) for new segments and retention;
        ``value.schema`` evolves the topic (``evolve_topic``)."""
        config = dict(config)
        if "value.schema" in config:
            self.evolve_topic(name, config.pop("value.schema"))
            if not config:
                return self.topic(name)
        t = self.topic(name)
        if "partitions" in config:
            raise ConfigError("partitions cannot be altered: use add_partitions (CreatePartitions)")
        current = dict(t.config)
        current.update(config)
        current["partitions"] = t.num_partitions
        current.pop("value.schema", None)
        resolved = _config.resolve(_config.TOPIC, current, what="topic")
        resolved.pop("partitions")
        with self._lock, self._exclusive():
            # the value schema as on disk now (another process may have evolved it)
            resolved["value.schema"] = self._read_meta(name)["config"].get("value.schema")
            meta = {"name": name, "partitions": t.num_partitions, "config": resolved, "topic_id": t.topic_id}
            write_json_atomic(self._meta_path(name), meta)
            t.close()
            self._topics.pop(name, None)
        return self.topic(name)

    def add_partitions(self, name: str, total: int, staged: Staging | None = None) -> Topic:
        """Grow a topic to ``total`` partitions (Kafka's CreatePartitions).
        Existing partitions keep their records; as with Kafka, keys map to
        different partitions from now on. ``staged``: what stage_partitions
        returned for the same ``total`` (made beforehand, in another thread)."""
        staging = staged if staged is not None else self.stage_partitions(name, total)
        try:
            with staging:
                t = self.topic(name)
                with self._lock, self._exclusive():
                    meta = self._read_meta(name)
                    if meta == staging.made and total == staging.total:
                        staging.move_partitions(t.directory, range(meta["partitions"], total))
                    else:  # grown or altered meanwhile: made here, as they now must be
                        _make_partitions(name, t.directory, meta, total)
                    meta["partitions"] = total
                    write_json_atomic(self._meta_path(name), meta)
                    t.close()
                    self._topics.pop(name, None)
        except OSError as exc:
            raise storage_error(exc, f"cannot add partitions to topic {name!r}") from exc
        return self.topic(name)

    def stage_partitions(self, name: str, total: int) -> Staging:
        """add_partitions' slow half, which takes no lock while it makes the
        new partitions' files (precreate.py): for add_partitions(staged=)."""
        t = self.topic(name)
        if not isinstance(total, int) or isinstance(total, bool) or total <= t.num_partitions:
            raise ConfigError(f"topic {name!r} has {t.num_partitions} partitions; the new count must be larger")
        if total > MAX_PARTITIONS:
            raise ConfigError(f"at most {MAX_PARTITIONS} partitions")
        try:
            with self._lock, self._exclusive():
                meta = self._read_meta(name)
                staging = Staging(self.topics_dir)
            try:
                _make_partitions(name, staging.path, meta, total)
            except BaseException:
                staging.discard()
                raise
        except OSError as exc:
            raise storage_error(exc, f"cannot add partitions to topic {name!r}") from exc
        staging.made, staging.total = meta, total
        return staging

    def delete_topic(self, name: str) -> None:
        validate_topic_name(name)
        with self._lock, self._exclusive():
            if not os.path.exists(self._meta_path(name)):
                raise UnknownTopicError(f"topic {name!r} does not exist in {self.path}")
            t = self._topics.pop(name, None)
            if t is not None:
                t.close()
            directory = os.path.join(self.topics_dir, name)
            # remove the metadata first: a crash mid-delete leaves no half topic
            os.unlink(self._meta_path(name))
            shutil.rmtree(directory, ignore_errors=True)

    def enforce_retention(self) -> int:
        deleted = 0
        for name in self.list_topics():
            try:
                logs = self.topic(name).partitions()
            except CorruptRecordError:
                continue  # a damaged topic.json (verify reports it): retention goes on for the others
            for log in logs:
                deleted += log.enforce_retention()
        return deleted

    def compacted_partitions(self) -> list[PartitionLog]:
        """Every partition of every compacted topic (what a background
        cleaner looks at)."""
        out: list[PartitionLog] = []
        for name in self.list_topics():
            t = self.topic(name)
            if _config.is_compacted(t.config):
                out.extend(t.partitions())
        return out

    def compact(self, name: str, *, now_ms: int | None = None) -> list[dict]:
        """Clean every partition of compacted topic ``name`` now (see
        storage/cleaner.py); one report per partition."""
        t = self.topic(name)
        if not _config.is_compacted(t.config):
            raise ConfigError(f"topic {name!r} has cleanup.policy={t.config.get('cleanup.policy')}: only a compacted "
                              "topic can be compacted (arrowlog topic alter NAME -c cleanup.policy=compact)")
        return clean_topic(t, now_ms=now_ms)

    def close(self, sync: Collection = ()) -> list:
        """Close every open partition, with one file-system sync for all
        (partition.close_many); ``sync``: partitions whose appends must be
        synced even where another process keeps them open (a Producer's).
        Returns the (partition, error) pairs of those that failed."""
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            logs: list[PartitionLog] = []
            for t in self._topics.values():
                with t._lock:
                    logs += t._partitions.values()
                    t._partitions.clear()
            self._topics.clear()
            try:
                return close_many(logs, sync)
            finally:
                self._lock_fd = self._fds.close(self._lock_fd)

    def __enter__(self) -> LogDir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LogDir {self.path}>"


