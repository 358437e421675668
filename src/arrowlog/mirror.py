"""Mirror topics between arrowlog data directories and Kafka clusters.

``mirror(src, dst, topics)`` copies every topic of ``src`` whose name
matches the regular expression ``topics`` (whole name) to ``dst``, either
side a data directory or a ``kafka://host:port`` cluster. Each record keeps
its key, value, headers, timestamp and partition number; a destination
topic is created with the source's partition count (and retention).

Progress and resumption
-----------------------
A checkpoint (JSON, replaced atomically) records per partition the next
source offset to copy and how many records the destination partition held
once everything before it was copied::

    {"version": 1, "source": "...", "destination": "...",
     "partitions": {"orders/0": {"source": 1200, "destination": 1200}}}

Order of work, per round: append a batch to the destination, and every
``checkpoint_interval`` seconds make the destination durable (fsync for a
directory, acknowledged with acks=all and idempotence for Kafka) and only
then replace the checkpoint. A crash (even kill -9) can therefore leave
records in the destination that the checkpoint does not count yet. On
restart the mirror compares the destination's high watermark H with the
checkpoint's count D: the first H - D records from the checkpointed source
offset are already there and are skipped. So a restart continues with no
duplicate and no gap, provided nothing else writes to the destination
partitions (the mirror must be their only producer).

The checkpoint lives in the destination data directory
(``DST/mirror/<source id>.json``), else in the source data directory
(``SRC/mirror/to-<destination id>.json``); between two clusters pass
``state=`` a file path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from ._location import is_kafka, local_path
from .convert import kafka_batch
from .errors import ArrowlogError, ConfigError, KafkaError, KafkaException, UnknownTopicError
from .storage import LogDir
from .storage.files import write_json_atomic
from .storage.reader import RangeReader, wait_for_data

CHECKPOINT_VERSION = 1
# How often progress is made durable and recorded: a crash re-reads at most
# this much of the source (and copies none of it twice).
CHECKPOINT_INTERVAL_S = 1.0
# How often a --follow mirror looks for new topics matching the pattern.
DISCOVER_INTERVAL_S = 5.0
# Bytes read from a source partition per call, and records per Kafka fetch:
# a few MB amortises the per-call cost without holding much in memory.
READ_BYTES = 8 << 20
FETCH_RECORDS = 10_000
# A source error librdkafka retries is reported once, then at most this often.
RETRY_REPORT_S = 10.0
# Topic settings carried over to a destination topic when the source has them.
CARRIED_CONFIG = ("retention.ms", "retention.bytes")

Key = tuple[str, int]


class MirrorError(ArrowlogError):
    """The mirror cannot continue safely (and says why)."""


# -- the checkpoint -----------------------------------------------------------------------


def _ident(where: str) -> str:
    """A stable name for one side: an absolute path or a kafka:// list."""
    if is_kafka(where):
        from .backends.kafka.client import bootstrap_servers
        return "kafka://" + bootstrap_servers(where)
    return os.path.abspath(local_path(where))


def default_state_path(src: str, dst: str) -> str:
    def digest(s: str) -> str:
        return hashlib.sha1(s.encode()).hexdigest()[:16]
    if not is_kafka(dst):
        return os.path.join(_ident(dst), "mirror", f"{digest(_ident(src))}.json")
    if not is_kafka(src):
        return os.path.join(_ident(src), "mirror", f"to-{digest(_ident(dst))}.json")
    raise ConfigError("mirroring between two Kafka clusters needs a state file: pass state= (--state FILE)")


class Checkpoint:
    """Per-partition progress, in a JSON file replaced atomically."""

    def __init__(self, path: str, src: str, dst: str):
        self.path, self.src, self.dst = path, src, dst
        self.partitions: dict[Key, dict[str, int]] = {}
        try:
            with open(path) as f:
                doc = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise MirrorError(f"cannot read mirror checkpoint {path}: {exc}") from None
        if doc.get("version") != CHECKPOINT_VERSION:
            raise MirrorError(f"{path} is not a version-{CHECKPOINT_VERSION} mirror checkpoint")
        if (doc.get("source"), doc.get("destination")) != (src, dst):
            raise MirrorError(f"{path} records a mirror of {doc.get('source')} to {doc.get('destination')}, "
                              f"not of {src} to {dst}: pass another --state file")
        for name, entry in doc.get("partitions", {}).items():
            topic, _, p = name.rpartition("/")
            self.partitions[(topic, int(p))] = {"source": int(entry["source"]),
                                                "destination": int(entry["destination"])}

    def save(self) -> None:
        doc = {"version": CHECKPOINT_VERSION, "source": self.src, "destination": self.dst,
               "partitions": {f"{t}/{p}": e for (t, p), e in sorted(self.partitions.items())}}
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        write_json_atomic(os.path.abspath(self.path), doc)


# -- sources: batches of (timestamp, key, value, headers) with their offsets -----------------


@dataclass
class Chunk:
    """Records read from one source partition: ``batch`` holds them in
    PRODUCE_SCHEMA order; ``next_offset`` follows the last one."""

    topic: str
    partition: int
    batch: pa.RecordBatch
    next_offset: int
    offsets: np.ndarray | None = None   # each record's offset, when they may have gaps (Kafka compaction)

    def rows_before(self, offset: int) -> int:
        """How many records of the chunk lie below ``offset``."""
        if self.offsets is not None:
            return int(np.searchsorted(self.offsets, offset))
        return max(self.batch.num_rows - (self.next_offset - offset), 0)


class LogSource:
    """An arrowlog data directory as a mirror source."""

    def __init__(self, where: str):
        path = local_path(where)
        if not os.path.isdir(os.path.join(path, "topics")):
            raise ConfigError(f"{path} is not an arrowlog data directory")
        self.log = LogDir(path, create=False)
        self.positions: dict[Key, int] = {}
        self.readers: dict[Key, RangeReader] = {}
        self.typed = False

    def topics(self, match: Callable[[str], bool]) -> dict[str, tuple[int, dict]]:
        out = {}
        for name in self.log.list_topics():
            if not match(name):
                continue
            t = self.log.topic(name)
            if t.value_schema is not None and not self.typed:   # typed: with schema.registry.url
                raise MirrorError(f"topic {name!r} stores typed values (value.schema); mirroring typed topics "
                                  "is not supported: leave it out of --topics")
            out[name] = (t.num_partitions, {k: t.config[k] for k in CARRIED_CONFIG if k in t.config})
        return out

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        return self.log.topic(topic).partition(partition).watermarks()

    def seek(self, key: Key, offset: int) -> None:
        self.positions[key] = offset

    def _reader(self, key: Key, position: int) -> RangeReader:
        reader = self.readers.get(key)
        if reader is None:
            topic, p = key

            def on_gap(position: int, low: int) -> int:
                print(f"mirror: {topic}-{p}: offsets {position}..{low - 1} were deleted by retention before "
                      f"they were copied; continuing at {low}", file=sys.stderr)
                return low

            reader = self.readers[key] = RangeReader(self.log.topic(topic).partition(p), position, on_gap=on_gap)
        reader.position = position
        return reader

    def read(self, timeout: float) -> list[Chunk]:
        out: list[Chunk] = []
        seen = self.log.notifier.current_word()  # before reading: an append after it ends the wait
        for key, position in self.positions.items():
            reader = self._reader(key, position)
            for fr in reader.read(READ_BYTES):
                batch = fr.batch
                out.append(Chunk(key[0], key[1], pa.RecordBatch.from_arrays(batch.columns[1:],
                                                                            names=batch.schema.names[1:]),
                                 fr.next_offset,
                                 batch.column(0).to_numpy() if fr.rows != fr.record_count else None))
            self.positions[key] = reader.position
        if not out and timeout > 0 and self.positions:
            wait_for_data(self.log.notifier, [], timeout, seen=seen)
        return out

    def close(self) -> None:
        self.log.close()


class KafkaSource:
    """A Kafka cluster as a mirror source (one consumer, no group)."""

    def __init__(self, where: str, config: dict):
        from .backends.kafka.client import kafka_config
        from .backends.kafka.consumer import KafkaConsumer
        self.conf = kafka_config({"log.dir": where, **config}, what="mirror source")
        self.consumer = KafkaConsumer({**self.conf, "auto.offset.reset": "earliest", "enable.partition.eof": True})
        self.positions: dict[Key, int] = {}
        self._last_retry: tuple[str, float] = ("", 0.0)

    def topics(self, match: Callable[[str], bool]) -> dict[str, tuple[int, dict]]:
        from .backends.kafka.client import topic_config, topic_partitions
        return {name: (n, topic_config(self.conf, name, CARRIED_CONFIG))
                for name, n in topic_partitions(self.conf, match).items()}

    def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        from ._types import TopicPartition
        return self.consumer.get_watermark_offsets(TopicPartition(topic, partition))

    def seek(self, key: Key, offset: int) -> None:
        from ._types import TopicPartition
        fresh = key not in self.positions
        self.positions[key] = offset
        if fresh:
            self.consumer.incremental_assign([TopicPartition(key[0], key[1], offset)])

    def _retrying(self, line: str) -> None:
        """Say a retried error once, and again only every RETRY_REPORT_S while it lasts."""
        now = time.monotonic()
        if line != self._last_retry[0] or now - self._last_retry[1] >= RETRY_REPORT_S:
            print(line, file=sys.stderr)
            self._last_retry = (line, now)

    def read(self, timeout: float) -> list[Chunk]:
        from .backends.kafka.client import ck
        msgs = self.consumer.consume(FETCH_RECORDS, timeout) if self.positions else []
        groups: dict[Key, list] = {}
        for m in msgs:
            err = m.error()
            if err is None:
                groups.setdefault((m.topic(), m.partition()), []).append(m)
            elif err.code() == ck.KafkaError._PARTITION_EOF:
                # the end, even when the last offsets hold no record (compaction, transaction markers)
                key = (m.topic(), m.partition())
                self.positions[key] = max(self.positions.get(key, 0), m.offset())
            elif err.fatal():
                raise MirrorError(f"reading {m.topic()}-{m.partition()} from the source: {err.str()}")
            else:  # librdkafka retries by itself (a broker restarting, metadata not yet propagated)
                self._retrying(f"mirror: source {m.topic()}-{m.partition()}: {err.str()} (retrying)")
        out = []
        for (topic, p), ms in groups.items():
            batch = kafka_batch(ms)
            offsets = np.fromiter((m.offset() for m in ms), dtype=np.int64, count=len(ms))
            nxt = int(offsets[-1]) + 1
            self.positions[(topic, p)] = nxt
            out.append(Chunk(topic, p, batch, nxt, offsets))
        return out

    def close(self) -> None:
        self.consumer.close()


# -- sinks -------------------------------------------------------------------------------------


class LogSink:
    """An arrowlog data directory as a mirror destination: frames are
    appended to the same partition numbers, fsynced before a checkpoint."""

    def __init__(self, where: str):
        self.log = LogDir(local_path(where))
        self.dirty: set = set()

    def ensure_topic(self, topic: str, partitions: int, config: dict) -> None:
        try:
            have = self.log.topic(topic).num_partitions
        except UnknownTopicError:
            self.log.create_topic(topic, partitions, config, exist_ok=True)
            have = self.log.topic(topic).num_partitions
        _check_partitions(topic, have, partitions)

    def high_watermark(self, topic: str, partition: int) -> int:
        return self.log.topic(topic).partition(partition).high_watermark

    def write(self, topic: str, partition: int, batch: pa.RecordBatch) -> None:
        log = self.log.topic(topic).partition(partition)
        log.append(batch)
        self.dirty.add(log)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, set()
        for log in dirty:
            log.sync()

    def close(self) -> None:
        self.log.close()


class KafkaSink:
    """A Kafka cluster as a mirror destination: an idempotent producer
    (acks=all, no duplicates from retries, order kept) to explicit
    partitions; flush() waits for every acknowledgement."""

    def __init__(self, where: str, config: dict):
        from .backends.kafka.client import ck, kafka_config, new_client
        from .backends.kafka.consumer import KafkaConsumer
        self.conf = kafka_config({"log.dir": where, **config}, what="mirror destination")
        self.consumer = KafkaConsumer(dict(self.conf))  # first: fails fast when the cluster is unreachable
        self.producer = new_client(ck.Producer, {**self.conf, "enable.idempotence": True, "acks": "all",
                                                 "linger.ms": 20}, "mirror destination", probe=False)
        self.errors: list[str] = []

    def ensure_topic(self, topic: str, partitions: int, config: dict) -> None:
        from .backends.kafka.client import create_topic, topic_partitions
        have = topic_partitions(self.conf, lambda name: name == topic).get(topic)
        if have is None:
            create_topic(self.conf, topic, partitions, config, exist_ok=True)
            have = partitions
        _check_partitions(topic, have, partitions)

    def high_watermark(self, topic: str, partition: int) -> int:
        from ._types import TopicPartition
        return self.consumer.get_watermark_offsets(TopicPartition(topic, partition))[1]

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(f"{msg.topic()}-{msg.partition()}: {err.str()}")

    def write(self, topic: str, partition: int, batch: pa.RecordBatch) -> None:
        ts = batch.column(0).cast(pa.int64()).to_pylist()
        keys = batch.column(1).to_pylist()
        values = batch.column(2).to_pylist()
        headers = batch.column(3)
        hdrs = headers.to_pylist() if headers.null_count < len(headers) else None
        produce = self.producer.produce
        for i in range(batch.num_rows):
            h = hdrs[i] if hdrs is not None else None
            kw = {"headers": [(e["key"], e["value"]) for e in h]} if h else {}
            while True:
                try:
                    produce(topic, values[i], keys[i], partition=partition, timestamp=ts[i],
                            on_delivery=self._delivered, **kw)
                    break
                except BufferError:
                    self.producer.poll(0.05)
        self.producer.poll(0)

    def flush(self) -> None:
        left = self.producer.flush(60)
        if left or self.errors:
            why = "; ".join(self.errors[:3]) or f"{left} records unacknowledged after 60 s"
            raise MirrorError(f"the destination cluster did not take every record: {why}")

    def close(self) -> None:
        self.consumer.close()


def _check_partitions(topic: str, have: int, want: int) -> None:
    if have < want:
        raise MirrorError(f"destination topic {topic!r} has {have} partition(s) and the source {want}: partition "
                          "numbers cannot be kept; add partitions to the destination or mirror to a new topic")


def open_source(where: str, config: dict) -> Any:
    return KafkaSource(where, config) if is_kafka(where) else LogSource(where)


def open_sink(where: str, config: dict) -> Any:
    return KafkaSink(where, config) if is_kafka(where) else LogSink(where)


# -- the copy loop --------------------------------------------------------------------------------


@dataclass
class MirrorStats:
    copied: int = 0
    skipped: int = 0               # already in the destination after a crash
    topics: list = field(default_factory=list)
    seconds: float = 0.0


class Mirror:
    """One mirroring run; see the module docstring."""

    def __init__(self, src: str, dst: str, topics: str, *, follow: bool = False, state: str | None = None,
                 kafka_config: dict | None = None, checkpoint_interval: float = CHECKPOINT_INTERVAL_S,
                 progress: Callable[[str], None] | None = None, stop: threading.Event | None = None):
        src, dst = os.fspath(src), os.fspath(dst)
        if _ident(src) == _ident(dst):
            raise ConfigError("source and destination are the same log")
        try:
            self.pattern = re.compile(topics)
        except re.error as exc:
            raise ConfigError(f"--topics {topics!r} is not a regular expression: {exc}") from None
        self.follow = follow
        self.interval = checkpoint_interval
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self.stop = stop or threading.Event()
        self.checkpoint = Checkpoint(state or default_state_path(src, dst), _ident(src), _ident(dst))
        kafka_config = dict(kafka_config or {})
        registry_url = kafka_config.pop("schema.registry.url", None)   # typed topics: docs/REGISTRY.md
        self.source = open_source(src, kafka_config)
        try:
            self.sink = open_sink(dst, kafka_config)
        except BaseException:
            self.source.close()
            raise
        self.types = None
        if registry_url:
            from .registry.mirror import MirrorTypes
            self.types = MirrorTypes(registry_url, MirrorError)
            self.source.typed = True
        self.counted: dict[Key, int] = {}   # destination records, as the checkpoint will say
        self.skip: dict[Key, int] = {}      # records to drop: copied before a crash, not checkpointed
        self.ends: dict[Key, int] = {}      # without --follow: stop at these source offsets
        self._pending: dict[Key, int] = {}  # source offsets copied since the last checkpoint
        self.stats = MirrorStats()

    def _match(self, name: str) -> bool:
        return not name.startswith("__") and self.pattern.fullmatch(name) is not None

    def discover(self) -> None:
        """Start copying every matching topic not copied yet."""
        for topic, (partitions, config) in sorted(self.source.topics(self._match).items()):
            if any(k[0] == topic for k in self.counted):
                continue
            if self.types is not None:
                config = self.types.on_topic(self.source, isinstance(self.sink, KafkaSink), topic, config)
            self.sink.ensure_topic(topic, partitions, config)
            for p in range(partitions):
                self._start_partition((topic, p))
            self.stats.topics.append(topic)
        self.checkpoint.save()

    def _start_partition(self, key: Key) -> None:
        low, high = self.source.watermarks(*key)
        have = self.sink.high_watermark(*key)
        entry = self.checkpoint.partitions.get(key)
        if entry is None:   # first time: everything from the source's start, after what is there
            entry = {"source": low, "destination": have}
            self.checkpoint.partitions[key] = entry
        elif have < entry["destination"]:
            raise MirrorError(f"destination {key[0]}-{key[1]} holds {have} records but the checkpoint "
                              f"{self.checkpoint.path} counts {entry['destination']}: it was truncated or "
                              "recreated; delete the checkpoint to copy again from the start")
        self.skip[key] = have - entry["destination"]
        self.counted[key] = entry["destination"]
        self.stats.skipped += self.skip[key]
        self.source.seek(key, max(entry["source"], low))
        if not self.follow:
            self.ends[key] = high

    def _copy(self, chunk: Chunk) -> None:
        key = (chunk.topic, chunk.partition)
        batch = chunk.batch
        end = self.ends.get(key)
        if end is not None and chunk.next_offset > end:   # only what was there when we started
            batch = batch.slice(0, chunk.rows_before(end))
            chunk.next_offset = end
        skip = self.skip.get(key, 0)
        if skip:
            drop = min(skip, batch.num_rows)
            self.skip[key] = skip - drop
            batch = batch.slice(drop)
        if batch.num_rows:
            if self.types is not None:
                batch = self.types.convert(chunk.topic, batch)
            self.sink.write(chunk.topic, chunk.partition, batch)
            self.counted[key] += batch.num_rows
            self.stats.copied += batch.num_rows
        self._pending[key] = chunk.next_offset

    def _save(self) -> None:
        """Make what was copied durable in the destination, then record it."""
        self.sink.flush()
        for key, offset in self._pending.items():
            self.checkpoint.partitions[key] = {"source": offset, "destination": self.counted[key]}
        self._pending = {}
        self.checkpoint.save()

    def _done(self) -> bool:
        return not self.follow and all(self.source.positions.get(k, 0) >= end for k, end in self.ends.items())

    def _discover_following(self) -> None:
        """discover() for a following mirror, which is long-lived: a cluster
        that does not answer in time (a retriable Kafka error) is said and
        asked again at the next round instead of ending the mirror."""
        try:
            self.discover()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.retriable()):
                raise
            print(f"mirror: looking for topics to copy: {err.str()} (retrying in {DISCOVER_INTERVAL_S:g} s)",
                  file=sys.stderr)

    def run(self) -> MirrorStats:
        started = time.monotonic()
        self._pending = {}
        last_save = last_report = last_discover = started
        reported = -1
        try:
            self._discover_following() if self.follow else self.discover()
            if not self.counted:
                self.progress(f"mirror: no topic matches {self.pattern.pattern!r}"
                              + (" yet; waiting for one" if self.follow else ""))
            while not self.stop.is_set() and not self._done():
                # following, wait for records; else only for what is in flight
                for chunk in self.source.read(0.5 if self.follow else 0.05):
                    self._copy(chunk)
                now = time.monotonic()
                if now - last_save >= self.interval:
                    self._save()
                    last_save = now
                if now - last_report >= 2.0 and self.stats.copied != reported:
                    self._report(now - started)
                    reported, last_report = self.stats.copied, now
                if self.follow and now - last_discover >= DISCOVER_INTERVAL_S:
                    self._discover_following()
                    last_discover = now
        except BaseException:
            # Ctrl-C, SIGTERM or an error: record what was copied whole (a
            # batch cut short is skipped on restart, by the watermark check)
            try:
                self._save()
            except Exception:
                pass
            raise
        else:
            self._save()
        finally:
            self.stats.seconds = time.monotonic() - started
            self.source.close()
            self.sink.close()
        self._report(self.stats.seconds, final=True)
        return self.stats

    def _report(self, elapsed: float, final: bool = False) -> None:
        rate = self.stats.copied / elapsed if elapsed > 0 else 0.0
        lag = ""
        if self.ends:
            left = sum(max(end - self.source.positions.get(k, 0), 0) for k, end in self.ends.items())
            lag = f", {left:,} to go"
        head = "mirror: done," if final else "mirror:"
        skipped = f" ({self.stats.skipped:,} already there)" if self.stats.skipped else ""
        self.progress(f"{head} {self.stats.copied:,} records copied{skipped} in {elapsed:.1f} s "
                      f"({rate:,.0f}/s), {len(self.stats.topics)} topic(s){lag}")


def mirror(src: Any, dst: Any, topics: str, *, follow: bool = False, state: str | None = None,
           kafka_config: dict | None = None, checkpoint_interval: float = CHECKPOINT_INTERVAL_S,
           progress: Callable[[str], None] | None = None, stop: threading.Event | None = None) -> MirrorStats:
    """Copy the topics of ``src`` matching ``topics`` (a regular expression
    for the whole name) to ``dst``; each is a data directory or a
    ``kafka://host:port`` URL. Without ``follow`` it stops once everything
    present at the start is copied; with it, it copies new records (and new
    matching topics) until ``stop`` is set. Resumable: see the module doc."""
    return Mirror(src, dst, topics, follow=follow, state=state, kafka_config=kafka_config,
                  checkpoint_interval=checkpoint_interval, progress=progress, stop=stop).run()


__all__ = ["mirror", "Mirror", "MirrorStats", "MirrorError", "Checkpoint", "default_state_path"]
