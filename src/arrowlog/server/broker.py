"""Request handlers: what a single-node Kafka broker answers, on arrowlog storage.

One ``Broker`` serves every connection. Handlers take the decoded request
dict and return the response dict (or an awaitable of it, for the handlers
that wait: Fetch long polls, JoinGroup and SyncGroup). The node is both the
leader of every partition and the controller; leader epochs are always 0.

Durability: a produced batch is acknowledged once it is appended and
published (readable by every consumer, surviving a crash of this process);
every ``flush_interval_s`` the partitions appended to since the last flush
are fsynced (their recovery points advance: the batches survive power loss),
and on shutdown every partition written to is. Thread-safety: the event loop thread only.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import ctypes
import ctypes.util
import logging
import re
import threading
import time

import pyarrow as pa

from arrowlog import errors as AE
from arrowlog._native.kafka import RecordBatchError, decode_record_set, encode_batch
from arrowlog.storage.reader import RangeReader, raise_gap, wait_for_data

from . import errors as E
from . import topic_configs as TC
from .groups import GroupCoordinator
from .messages import APIS
from .offsets import GroupOffsetStore, group_id_problem
from .options import MAX_PARTITIONS_PER_REQUEST, MAX_PARTITIONS_PER_TOPIC
from .producers import ProducerRegistry
from .store import Store
from .transactions import PRODUCER_FENCED, TransactionCoordinator, TxnHandlers, control_batch

log = logging.getLogger("arrowlog.server")

_SOFTWARE_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$")

# Authorized operations as Kafka reports them without an authorizer: every operation
# that applies to the resource type (bit n set for AclOperation code n).
TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))   # READ ... ALTER_CONFIGS
GROUP_OPERATIONS = sum(1 << op for op in (3, 6, 8))                    # READ, DELETE, DESCRIBE
CLUSTER_OPERATIONS = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12))   # CREATE ... IDEMPOTENT_WRITE
NO_OPERATIONS = -2147483648   # "not requested"
# DescribeConfigs v3+ config_type: BOOLEAN 1, STRING 2, INT 3, SHORT 4, LONG 5, DOUBLE 6, LIST 7.
_CONFIG_TYPES = {"boolean": 1, "string": 2, "int": 3, "long": 5, "double": 6, "list": 7}
# The thread that turns appends by any process (the data directory's notifier)
# into wake-ups of waiting Fetches re-checks for shutdown this often on a
# read-only directory (elsewhere stop() wakes it at once).
WATCH_TIMEOUT_S = 5.0
# CreateTopics creates this many topics (about 1 ms each: directories, topic.json,
# fsyncs) before it lets the event loop serve other connections.
TOPICS_PER_SLICE = 16
# Encoded record batches kept for repeated fetches of the same data.
ENCODE_CACHE_BYTES = 64 << 20
# Produce bodies at least this large are decoded and appended in a worker thread
# (decode_record_set releases the GIL), so a 60 MiB request does not hold the loop.
OFFLOAD_PRODUCE_BYTES = 1 << 20
# After a produce of at least this many bytes, return Arrow's freed memory to the OS.
RELEASE_MEMORY_BYTES = 8 << 20
# A Fetch response carries at most this much record data (Kafka's fetch.max.bytes: 55 MiB).
FETCH_MAX_BYTES = 55 << 20
# Topics one Metadata request may auto-create; the rest answer LEADER_NOT_AVAILABLE
# (retriable) and are created by the client's next Metadata request.
MAX_AUTO_CREATE_PER_REQUEST = 100
# The size a compressed batch's records may inflate to, at most (a topic's smaller
# max.message.bytes lowers it): a 33 KB zstd bomb must not become 1 GiB of memory.
MAX_UNCOMPRESSED_BYTES = 32 << 20


def _sync_partitions(producers, partitions, metrics=None, txns=None) -> None:
    """fsync the producer-state (and transaction-state) journal, then each partition's appends (advancing its
    recovery point): a batch acknowledged before this started ends up durable with its
    producer state. Failures are logged (a partition whose fsync failed refuses appends
    until reopened; the shutdown flush tries it again)."""
    for state in (producers, txns):
        try:
            if state is not None:
                state.sync()
        except OSError as exc:
            log.error("fsync of the %s journal failed: %s", state._files.what, exc)
    for pl in list(partitions):
        try:
            started = time.perf_counter()
            pl.sync()
            if metrics:
                metrics.fsync_done(time.perf_counter() - started)
        except (AE.ArrowlogError, OSError) as exc:  # e.g. its files deleted with the topic meanwhile
            log.error("fsync of %s-%s failed: %s", pl.topic, pl.partition, exc)


def _libc_malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def _release_memory() -> None:
    """After a large produce, whose request body and decoded Arrow buffers are freed by
    now: hand the freed pages back to the OS (Arrow's pool, then the C heap, where the
    body and the decoder's temporaries lived), so the server's RSS goes back down."""
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _read_checked(pl, offset: int, max_bytes: int) -> list:
    """Whole frames from ``offset`` with their CRCs checked. When a frame is damaged, the
    intact frames before it are returned; CorruptRecordError only if the first is."""
    reader = RangeReader(pl, offset, whole_frames=True, check_crc=True, on_gap=raise_gap)
    try:
        return reader.read(max_bytes)
    except AE.CorruptRecordError:
        pass
    frames, size = [], 0
    while size < max_bytes:
        try:
            got = reader.read(1)   # one frame (KIP-74: the first always)
        except AE.CorruptRecordError:
            if frames:
                return frames
            raise
        if not got:
            break
        frames.append(got[0])
        size += got[0].size
    return frames


def _holds(pl, base: int, batch) -> bool:
    """Whether the stored batch at ``base`` holds exactly ``batch``'s records."""
    try:
        frames = pl.read(base, 1, check_crc=True)
    except (AE.ArrowlogError, OSError):
        return False
    if not frames or frames[0].base_offset != base or frames[0].record_count != batch.record_count:
        return False
    stored, sent = frames[0].batch, batch.records
    try:
        return all(stored.column(c).cast(pa.int64() if c == "timestamp" else stored.column(c).type).to_pylist()
                   == sent.column(c).cast(pa.int64() if c == "timestamp" else stored.column(c).type).to_pylist()
                   for c in ("timestamp", "key", "value"))
    except (KeyError, pa.ArrowException):
        return False


class BrokerConfig:
    def __init__(self, *, node_id=1, host="127.0.0.1", port=9092, advertised_host=None,
                 auto_create_topics=True, default_partitions=1, flush_interval_s=1.0,
                 group_initial_rebalance_delay_ms=100, max_partitions_per_topic=MAX_PARTITIONS_PER_TOPIC,
                 max_partitions_per_request=MAX_PARTITIONS_PER_REQUEST, cleaner_interval_s=15.0,
                 fetch_max_bytes=FETCH_MAX_BYTES, max_auto_create_per_request=MAX_AUTO_CREATE_PER_REQUEST,
                 max_uncompressed_bytes=MAX_UNCOMPRESSED_BYTES):
        if not 1 <= default_partitions <= max_partitions_per_topic:
            raise AE.ConfigError(f"partitions of auto-created topics must be 1..{max_partitions_per_topic} "
                                 f"(the per-topic cap), got {default_partitions}")
        if flush_interval_s <= 0:
            raise AE.ConfigError(f"the flush interval must be positive, got {flush_interval_s}")
        self.node_id = node_id
        self.host = host
        self.port = port
        self.advertised_host = advertised_host
        self.auto_create_topics = auto_create_topics
        self.default_partitions = default_partitions
        self.flush_interval_s = flush_interval_s
        self.group_initial_rebalance_delay_ms = group_initial_rebalance_delay_ms
        self.max_partitions_per_topic = max_partitions_per_topic
        self.max_partitions_per_request = max_partitions_per_request
        self.cleaner_interval_s = cleaner_interval_s  # Kafka's log.cleaner.backoff.ms
        self.fetch_max_bytes = fetch_max_bytes
        self.max_auto_create_per_request = max_auto_create_per_request
        self.max_uncompressed_bytes = max_uncompressed_bytes

    @property
    def advertised(self) -> str:
        if self.advertised_host:
            return self.advertised_host
        return "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host


class RequestContext:
    __slots__ = ("api_key", "version", "correlation_id", "client_id", "client_host")

    def __init__(self, api_key, version, correlation_id, client_id, client_host):
        self.api_key = api_key
        self.version = version
        self.correlation_id = correlation_id
        self.client_id = client_id
        self.client_host = client_host


class Broker:
    def __init__(self, data_dir: str, config: BrokerConfig, cluster_id: str):
        self.config = config
        self.cluster_id = cluster_id
        self.store = Store(data_dir, cluster_id)
        self.typed = None  # arrowlog.registry.typed.TypedTopics when the schema registry runs
        self.offsets = GroupOffsetStore(data_dir)
        self.groups = GroupCoordinator(self.offsets, config.group_initial_rebalance_delay_ms, self.store.log)
        self.producers = ProducerRegistry(data_dir)
        self.txns = TransactionCoordinator(data_dir, self.producers, self.offsets, self._partition,
                                           self._appended)
        self.ignored_configs = TC.IgnoredConfigs(data_dir)
        self.metrics = None          # arrowlog.metrics.ServerMetrics when metrics are served
        self._data_event = asyncio.Event()
        self._watcher: threading.Thread | None = None
        self._stopping = False
        self._dirty: set = set()     # partitions appended to since the last periodic flush
        self._written: set = set()   # every partition appended to (the shutdown flush syncs them all)
        self._corrupt_logged: collections.OrderedDict = collections.OrderedDict()  # (topic, partition, offset)
        self._cache: collections.OrderedDict = collections.OrderedDict()
        self._cache_bytes = 0
        self._flusher: asyncio.Task | None = None
        self._syncing: asyncio.Future | None = None
        self._produce_lock = asyncio.Lock()  # produces run one at a time (some in a thread)
        # Large produces decode and append here: one thread, so Arrow's per-thread heap that
        # holds their buffers is the one _release_memory empties afterwards.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="arrowlog-produce")
        self.handlers = {
            18: self.api_versions, 3: self.metadata, 0: self.produce, 1: self.fetch,
            2: self.list_offsets, 10: self.find_coordinator, 11: self.join_group, 14: self.sync_group,
            12: self.heartbeat, 13: self.leave_group, 8: self.offset_commit, 9: self.offset_fetch,
            22: self.init_producer_id, 19: self.create_topics, 20: self.delete_topics,
            32: self.describe_configs, 15: self.describe_groups, 16: self.list_groups,
            60: self.describe_cluster, 37: self.create_partitions, 33: self.alter_configs,
            44: self.incremental_alter_configs, 21: self.delete_records, 42: self.delete_groups,
            47: self.offset_delete, 61: self.describe_producers, 43: self.elect_leaders,
            45: self.alter_partition_reassignments, 46: self.list_partition_reassignments,
        }
        self.txn_handlers = TxnHandlers(self)
        self.txn_handlers.register(self.handlers)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.groups.start()
        self.txn_handlers.start()
        loop = asyncio.get_running_loop()
        self._flusher = loop.create_task(self._flush_loop())
        self._watcher = threading.Thread(target=self._watch_appends, args=(loop,), name="arrowlog-fetch-wake",
                                         daemon=True)
        self._watcher.start()
        from arrowlog.storage.cleaner import CleanerThread  # compacted topics: cleaned in its own thread
        self._cleaner = CleanerThread(self.store.log.compacted_partitions,
                                      self.config.cleaner_interval_s).start()

    async def stop(self) -> None:
        if getattr(self, "_cleaner", None) is not None:
            await asyncio.to_thread(self._cleaner.stop)  # a round in progress finishes its swap
        if self._flusher:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._syncing is not None:  # a periodic fsync still in its thread
            await asyncio.gather(self._syncing, return_exceptions=True)
        await self.groups.stop()
        await self.txn_handlers.stop()
        if self._watcher is not None:
            self._stopping = True
            self.store.log.notifier.bump()
            await asyncio.to_thread(self._watcher.join)
        self._worker.shutdown(wait=True)
        self._dirty = set()
        _sync_partitions(self.producers, self._written)
        self.producers.close()
        self.store.close()

    async def _flush_loop(self) -> None:
        """Every ``flush_interval_s``, fsync the partitions appended to since the
        last time, in a thread: PartitionLog.sync holds its append lock only to
        snapshot and publish, so appends on the loop go on while it waits for the disk."""
        while True:
            await asyncio.sleep(self.config.flush_interval_s)
            if self._dirty:
                todo, self._dirty = self._dirty, set()
                self._syncing = asyncio.ensure_future(asyncio.to_thread(_sync_partitions, self.producers, todo,
                                                                        self.metrics, self.txns))
                try:
                    await asyncio.shield(self._syncing)
                finally:
                    if self._syncing.done():
                        self._syncing = None

    def _appended(self, pl) -> None:
        self._dirty.add(pl)
        self._written.add(pl)

    def _watch_appends(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake waiting Fetches when any process appends to the data directory."""
        notifier = self.store.log.notifier
        seen = notifier.current_word()
        while not self._stopping:
            if wait_for_data(notifier, (), WATCH_TIMEOUT_S, seen=seen):
                seen = notifier.current_word()
                try:
                    loop.call_soon_threadsafe(self._notify_data)
                except RuntimeError:  # the loop is closed: the server is gone
                    return

    def _notify_data(self) -> None:
        self._data_event.set()
        self._data_event = asyncio.Event()

    def _partition(self, topic: str, index: int):
        """(PartitionLog, NONE), or (None, error code, message) when the partition does
        not exist or the storage cannot open it (e.g. disk full at its first segment)."""
        try:
            t = self.store.topic(topic)
            if t is None or not 0 <= index < t.num_partitions:
                return None, E.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic or partition {topic}-{index}"
            return t.partition(index), E.NONE, None
        except OSError as exc:  # StorageError included
            log.error("cannot open %s-%d: %s", topic, index, exc)
            return None, E.KAFKA_STORAGE_ERROR, str(exc)

    # ------------------------------------------------------------ ApiVersions
    def api_versions(self, ctx: RequestContext, req: dict) -> dict:
        if ctx.version >= 3 and not (_SOFTWARE_RE.match(req["client_software_name"] or "")
                                     and _SOFTWARE_RE.match(req["client_software_version"] or "")):
            return {"error_code": E.INVALID_REQUEST, "api_keys": []}
        return {"error_code": E.NONE, "api_keys": [
            {"api_key": a.key, "min_version": a.min_version, "max_version": a.max_version}
            for a in sorted(APIS.values(), key=lambda a: a.key)]}

    # ------------------------------------------------------------ Metadata
    def _brokers(self):
        return [{"node_id": self.config.node_id, "host": self.config.advertised,
                 "port": self.config.port, "rack": None}]

    def _topic_metadata(self, name: str, t) -> dict:
        if t is None:
            return {"error_code": E.UNKNOWN_TOPIC_OR_PARTITION, "name": name, "partitions": [],
                    "topic_id": bytes(16)}
        node = self.config.node_id
        return {"error_code": E.NONE, "name": name, "topic_id": self.store.topic_id(name),
                "is_internal": False,
                "partitions": [{"error_code": E.NONE, "partition_index": i, "leader_id": node,
                                "leader_epoch": 0, "replica_nodes": [node], "isr_nodes": [node],
                                "offline_replicas": []} for i in range(t.num_partitions)],
                "topic_authorized_operations": TOPIC_OPERATIONS}

    def metadata(self, ctx: RequestContext, req: dict) -> dict:
        requested = req["topics"]
        if requested is None or (ctx.version == 0 and not requested):
            names, auto = self.store.list_topics(), False
        else:
            names = []
            for rt in requested:
                name = rt["name"]
                if name is None and rt.get("topic_id"):
                    name = self.store.topic_by_id(rt["topic_id"])
                names.append(name or "")
            auto = req["allow_auto_topic_creation"] and self.config.auto_create_topics
        topics = []
        created = 0
        for name in names:
            try:
                t = self.store.topic(name)
            except OSError as exc:
                log.error("cannot read topic %s: %s", name, exc)
                topics.append({"error_code": E.KAFKA_STORAGE_ERROR, "name": name, "partitions": []})
                continue
            if t is None and auto and created >= self.config.max_auto_create_per_request:
                topics.append({"error_code": E.LEADER_NOT_AVAILABLE, "name": name, "partitions": []})
                continue
            if t is None and auto:
                created += 1
                code, msg = self.store.create_topic(name, self.config.default_partitions)
                if code in (E.INVALID_TOPIC_EXCEPTION, E.KAFKA_STORAGE_ERROR):
                    if code == E.KAFKA_STORAGE_ERROR:
                        log.error("auto-creating topic %s failed: %s", name, msg)
                    topics.append({"error_code": code, "name": name, "partitions": []})
                    continue
                if code == E.NONE:
                    log.info("auto-created topic %s with %d partition(s)", name,
                             self.config.default_partitions)
                t = self.store.topic(name)
            topics.append(self._topic_metadata(name, t))
        if not req["include_topic_authorized_operations"]:
            for t in topics:
                t["topic_authorized_operations"] = NO_OPERATIONS
        return {"brokers": self._brokers(), "cluster_id": self.cluster_id,
                "controller_id": self.config.node_id, "topics": topics,
                "cluster_authorized_operations": CLUSTER_OPERATIONS
                if req["include_cluster_authorized_operations"] else NO_OPERATIONS}

    # ------------------------------------------------------------ Produce
    async def produce(self, ctx: RequestContext, req: dict):
        acks = req["acks"]
        code, msg = E.NONE, None
        if ctx.version < 3:
            # only record batch v2 (Produce v3+) is accepted
            code, msg = E.UNSUPPORTED_VERSION, "Produce v0-2 (message format v0/v1) is not supported: use v3+"
        elif acks not in (-1, 0, 1):
            code = E.INVALID_REQUIRED_ACKS
        size = sum(len(pd["records"] or b"") for td in req["topic_data"] for pd in td["partition_data"])
        # A large body is decoded and appended in a worker thread; produces are serialised
        # so the producer-state checks and the appends keep their order.
        offload = size >= OFFLOAD_PRODUCE_BYTES
        responses = []
        appended = False
        async with self._produce_lock:
            for td in req["topic_data"]:
                parts = []
                for pd in td["partition_data"]:
                    if code != E.NONE:
                        parts.append({"index": pd["index"], "error_code": code, "base_offset": -1,
                                      "error_message": msg})
                        continue
                    r = await self._produce_partition(td["name"], pd["index"], pd["records"], offload)
                    pd["records"] = None  # the last reference to the request body's bytes
                    appended |= r["error_code"] == E.NONE
                    parts.append(r)
                responses.append({"name": td["name"], "partition_responses": parts})
        if appended:
            self._notify_data()
        if size >= RELEASE_MEMORY_BYTES:
            if offload:
                await asyncio.get_running_loop().run_in_executor(self._worker, _release_memory)
            _release_memory()
        if acks == 0:
            return None  # acks=0 gets no response at all
        return {"responses": responses}

    async def _call(self, offload: bool, fn, *args, **kwargs):
        """``fn(*args, **kwargs)``, in the produce worker thread when ``offload``."""
        if offload:
            return await asyncio.get_running_loop().run_in_executor(self._worker, lambda: fn(*args, **kwargs))
        return fn(*args, **kwargs)

    def _max_uncompressed(self, pl) -> int:
        """The size one compressed batch may inflate to: the topic's max.message.bytes,
        capped by the server's max_uncompressed_bytes."""
        cap = self.config.max_uncompressed_bytes
        try:
            limit = int((getattr(pl, "config", None) or {}).get("max.message.bytes") or cap)
        except (TypeError, ValueError):
            limit = cap
        return max(min(limit, cap), 1)

    async def _produce_partition(self, topic: str, index: int, records, offload: bool = False) -> dict:
        fail = {"index": index, "base_offset": -1}
        pl, code, msg = self._partition(topic, index)
        if pl is None:
            return {**fail, "error_code": code, "error_message": msg}
        if records is None or len(records) == 0:
            return {**fail, "error_code": E.INVALID_RECORD, "error_message": "no record batch"}
        if self.producers.needs_check(topic, index):
            self.producers.check_log(topic, index, pl.high_watermark)
        try:
            batches = await self._call(offload, decode_record_set, records,
                                       max_uncompressed=self._max_uncompressed(pl))
        except RecordBatchError as exc:
            log.warning("refused a batch for %s-%d: %s", topic, index, exc)
            return {**fail, "error_code": exc.error_code, "error_message": str(exc)}
        if any(b.is_control for b in batches):
            return {**fail, "error_code": E.INVALID_RECORD,
                    "error_message": "control batches are written by the transaction coordinator, not produced"}
        if self.typed is not None:  # typed topics: wire-format values become columns (docs/REGISTRY.md)
            try:
                batches = self.typed.on_produce(topic, batches)
            except AE.ArrowlogError as exc:
                return {**fail, "error_code": E.INVALID_RECORD, "error_message": str(exc)}
        first = None
        for b in batches:
            if b.is_transactional:
                code = self.txns.check_batch(topic, index, b.producer_id, b.producer_epoch)
                if code != E.NONE:
                    return {**fail, "error_code": code}
            code, duplicate, confirmed = self.producers.check(topic, index, b.producer_id, b.producer_epoch,
                                                              b.base_sequence, b.record_count)
            if code != E.NONE:
                return {**fail, "error_code": code}
            if duplicate is not None and not confirmed:
                # journaled as about to be appended when the server died: is it in the log?
                if _holds(pl, duplicate, b):
                    self.producers.record(topic, index, b.producer_id, b.producer_epoch, b.base_sequence,
                                          b.record_count, duplicate)
                else:
                    duplicate = None
            if duplicate is not None:
                base = duplicate
            else:
                expected = pl.high_watermark
                self.producers.begin(topic, index, b.producer_id, b.producer_epoch, b.base_sequence,
                                     b.record_count, expected)
                if b.is_transactional:
                    self.txns.begin_batch(topic, index, b.producer_id, expected, b.record_count)
                try:
                    base = await self._call(offload, pl.append, b.records, min_timestamp=b.min_record_timestamp,
                                            max_timestamp=b.max_record_timestamp)
                except (OSError, AE.CorruptRecordError) as exc:  # StorageError, or a damaged partition
                    self.txns.end_batch(topic, index, b.producer_id, expected, None)
                    log.error("append to %s-%d failed: %s", topic, index, exc)
                    return {**fail, "error_code": E.KAFKA_STORAGE_ERROR, "error_message": str(exc)}
                except (AE.ArrowlogError, ValueError, TypeError, pa.ArrowException) as exc:
                    # e.g. a topic that declares a typed value schema: raw bytes do not fit it
                    self.txns.end_batch(topic, index, b.producer_id, expected, None)
                    log.warning("append to %s-%d refused: %s", topic, index, exc)
                    return {**fail, "error_code": E.INVALID_RECORD, "error_message": str(exc)}
                self._appended(pl)
                self.txns.end_batch(topic, index, b.producer_id, expected, base)
                self.producers.record(topic, index, b.producer_id, b.producer_epoch, b.base_sequence,
                                      b.record_count, base, expected)
            if first is None:
                first = base
        if self.metrics:
            self.metrics.produced(topic, len(records), sum(b.record_count for b in batches))
        return {"index": index, "error_code": E.NONE, "base_offset": first,
                "log_start_offset": pl.log_start_offset}

    # ------------------------------------------------------------ Fetch
    async def fetch(self, ctx: RequestContext, req: dict) -> dict:
        deadline = time.monotonic() + max(req["max_wait_ms"], 0) / 1000.0
        min_bytes = req["min_bytes"]
        while True:
            event = self._data_event
            resp, total, stop = self._fetch_once(req)
            remaining = deadline - time.monotonic()
            if total >= min_bytes or total > 0 and min_bytes <= 0 or stop or remaining <= 0:
                if self.metrics and total:
                    self.metrics.fetched_response(resp)
                return resp
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def _fetch_once(self, req: dict):
        budget = min(req["max_bytes"], self.config.fetch_max_bytes)
        total = 0
        stop = False
        responses = []
        for ft in req["topics"]:
            name = ft["topic"]
            parts = []
            for fp in ft["partitions"]:
                idx = fp["partition"]
                out = {"partition_index": idx, "high_watermark": -1, "last_stable_offset": -1,
                       "log_start_offset": -1, "aborted_transactions": None, "records": b""}
                parts.append(out)
                pl, code, _ = self._partition(name, idx)
                if pl is None:
                    out["error_code"] = code
                    stop = True
                    continue
                hwm, start = pl.high_watermark, pl.log_start_offset
                lso = self.txns.last_stable_offset(name, idx, hwm)
                committed_only = req.get("isolation_level", 0) == 1
                end = lso if committed_only else hwm
                out.update(high_watermark=hwm, last_stable_offset=lso, log_start_offset=start)
                if committed_only:
                    out["aborted_transactions"] = []   # aborted batches are left out here, not by the client
                offset = fp["fetch_offset"]
                if offset < start or offset > hwm:
                    out["error_code"] = E.OFFSET_OUT_OF_RANGE
                    stop = True
                    continue
                limit = min(fp["partition_max_bytes"], budget - total)
                if offset >= end or (limit <= 0 and total > 0):
                    continue
                try:
                    frames = _read_checked(pl, offset, max(limit, 1))
                except AE.OffsetOutOfRangeError:
                    out["error_code"] = E.OFFSET_OUT_OF_RANGE
                    stop = True
                    continue
                except AE.CorruptRecordError as exc:
                    # never re-sign damaged data with a fresh Kafka CRC: report it
                    self._log_corrupt(name, idx, offset, exc)
                    out["error_code"] = E.CORRUPT_MESSAGE
                    stop = True
                    continue
                except (AE.StorageError, OSError) as exc:
                    log.error("fetch of %s-%d at %d failed: %s", name, idx, offset, exc)
                    out["error_code"] = E.KAFKA_STORAGE_ERROR
                    stop = True
                    continue
                chunks, size = [], 0
                for fr in frames:
                    if fr.base_offset >= end:
                        break
                    if committed_only and self.txns.is_aborted(name, idx, fr.base_offset):
                        continue
                    try:
                        enc = self._encoded(name, idx, fr)
                    except (TypeError, ValueError, pa.ArrowException) as exc:
                        log.error("cannot serve %s-%d at %d over Kafka: %s", name, idx, fr.base_offset, exc)
                        out["error_code"] = E.UNKNOWN_SERVER_ERROR
                        stop = True
                        break
                    # KIP-74: the first batch of the response goes out whole, even when too big.
                    if size + len(enc) > limit and (chunks or total > 0):
                        break
                    chunks.append(enc)
                    size += len(enc)
                out["records"] = chunks
                total += size
            responses.append({"topic": name, "partitions": parts})
        return {"responses": responses}, total, stop

    def _log_corrupt(self, topic: str, index: int, offset: int, exc: Exception) -> None:
        """A damaged frame is logged at ERROR once, not on every Fetch retry of it
        (clients retry CORRUPT_MESSAGE every few hundred ms); the last 1,024 are remembered."""
        key = (topic, index, offset)
        if key in self._corrupt_logged:
            log.debug("fetch of %s-%d at %d: still corrupt: %s", topic, index, offset, exc)
            return
        self._corrupt_logged[key] = None
        if len(self._corrupt_logged) > 1024:
            self._corrupt_logged.popitem(last=False)
        log.error("fetch of %s-%d at %d: %s (Fetch retries of it are answered CORRUPT_MESSAGE "
                  "without logging again)", topic, index, offset, exc)

    def _encoded(self, topic: str, index: int, frame) -> bytes:
        key = (topic, index, frame.base_offset)
        hit = self._cache.get(key)
        shape = (frame.record_count, frame.batch.num_rows)  # the cleaner may rewrite a frame in place
        if hit is not None and hit[0] == shape:
            self._cache.move_to_end(key)
            return hit[1]
        control = self.txns.control_at(topic, index, frame.base_offset)
        if control is not None:   # a transaction marker: the envelope as stored, flagged as a control batch
            data = control_batch(encode_batch(frame.batch, producer_id=control[0], producer_epoch=control[1]))
        else:
            batch = frame.batch if self.typed is None else self.typed.on_fetch(topic, frame.batch)
            data = encode_batch(batch, first_offset=frame.base_offset, next_offset=frame.next_offset)
        self._cache[key] = (shape, data)
        self._cache_bytes += len(data)
        while self._cache_bytes > ENCODE_CACHE_BYTES and self._cache:
            _, (_, old) = self._cache.popitem(last=False)
            self._cache_bytes -= len(old)
        return data

    def _forget_cached(self, topic: str) -> None:
        for key in [k for k in self._cache if k[0] == topic]:
            self._cache_bytes -= len(self._cache.pop(key)[1])

    # ------------------------------------------------------------ ListOffsets
    def list_offsets(self, ctx: RequestContext, req: dict) -> dict:
        topics = []
        for lt in req["topics"]:
            parts = []
            for lp in lt["partitions"]:
                idx = lp["partition_index"]
                pl, code, _ = self._partition(lt["name"], idx)
                if pl is None:
                    parts.append({"partition_index": idx, "error_code": code})
                    continue
                try:
                    offset, ts = self._lookup_offset(pl, lp["timestamp"])
                    if lp["timestamp"] == -1 and req.get("isolation_level", 0) == 1:
                        offset = self.txns.last_stable_offset(lt["name"], idx, offset)
                except (AE.CorruptRecordError, OSError) as exc:
                    log.error("offset lookup in %s-%d failed: %s", lt["name"], idx, exc)
                    parts.append({"partition_index": idx, "error_code": E.KAFKA_STORAGE_ERROR})
                    continue
                parts.append({"partition_index": idx, "error_code": E.NONE, "timestamp": ts,
                              "offset": offset, "leader_epoch": 0})
            topics.append({"name": lt["name"], "partitions": parts})
        return {"topics": topics}

    @staticmethod
    def _timestamp_at(pl, offset: int) -> int:
        for fr in RangeReader(pl, offset, offset + 1).read(1):
            return fr.batch.column("timestamp")[0].value
        return -1

    def _lookup_offset(self, pl, timestamp: int) -> tuple[int, int]:
        if timestamp == -1:      # LATEST
            return pl.high_watermark, -1
        if timestamp == -2:      # EARLIEST
            return pl.log_start_offset, -1
        if timestamp == -3:      # MAX_TIMESTAMP (v7): the record with the largest timestamp
            best_ts, best_off = -1, -1
            reader = RangeReader(pl, pl.log_start_offset, pl.high_watermark, whole_frames=True)
            while frames := reader.read(1 << 20):
                for fr in frames:
                    if fr.rows and fr.max_timestamp > best_ts:  # a compacted frame may hold no rows
                        col = fr.batch.column("timestamp").cast("int64").to_pylist()
                        i = col.index(fr.max_timestamp) if fr.max_timestamp in col else len(col) - 1
                        best_ts, best_off = fr.max_timestamp, fr.batch.column("offset")[i].as_py()
            return best_off, best_ts
        offset = pl.offset_for_timestamp(timestamp)
        if offset is None or offset >= pl.high_watermark:
            return -1, -1
        return offset, self._timestamp_at(pl, offset)

    # ------------------------------------------------------------ groups
    def find_coordinator(self, ctx: RequestContext, req: dict) -> dict:
        return {"error_code": E.NONE, "error_message": None, "node_id": self.config.node_id,
                "host": self.config.advertised, "port": self.config.port}

    def join_group(self, ctx: RequestContext, req: dict):
        return self.groups.join(req, ctx.client_id, ctx.client_host, ctx.version)

    def sync_group(self, ctx: RequestContext, req: dict):
        return self.groups.sync(req)

    def heartbeat(self, ctx: RequestContext, req: dict) -> dict:
        return self.groups.heartbeat(req)

    def leave_group(self, ctx: RequestContext, req: dict) -> dict:
        return self.groups.leave(req, ctx.version)

    def offset_commit(self, ctx: RequestContext, req: dict) -> dict:
        problem = group_id_problem(req["group_id"])
        if problem:
            log.info("refused OffsetCommit: %s", problem)
            code = E.INVALID_GROUP_ID
        else:
            code = self.groups.check_commit(req["group_id"], req["generation_id"], req["member_id"],
                                            req.get("group_instance_id"))
        topics, updates = [], {}
        for ct in req["topics"]:
            known = self.store.topic(ct["name"])
            parts = []
            for cp in ct["partitions"]:
                idx = cp["partition_index"]
                pcode = code
                if pcode == E.NONE and (known is None or not 0 <= idx < known.num_partitions):
                    pcode = E.UNKNOWN_TOPIC_OR_PARTITION
                if pcode == E.NONE and not self.groups.commit_allowed(req["group_id"], req["member_id"],
                                                                      ct["name"], idx):
                    pcode = E.ILLEGAL_GENERATION   # another member owns it now
                if pcode == E.NONE:
                    updates.setdefault(ct["name"], {})[idx] = {
                        "offset": cp["committed_offset"], "metadata": cp["committed_metadata"],
                        "leader_epoch": cp["committed_leader_epoch"]}
                parts.append({"partition_index": idx, "error_code": pcode})
            topics.append({"name": ct["name"], "partitions": parts})
        if updates:
            try:
                self.offsets.commit(req["group_id"], updates)
            except OSError as exc:
                log.error("commit for group %s failed: %s", req["group_id"], exc)
                for t in topics:
                    for p in t["partitions"]:
                        p["error_code"] = E.COORDINATOR_NOT_AVAILABLE
        return {"topics": topics}

    def offset_fetch(self, ctx: RequestContext, req: dict) -> dict:
        code = E.NONE
        if group_id_problem(req["group_id"]):
            code, committed = E.INVALID_GROUP_ID, {}
        else:
            try:
                committed = self.offsets.load(req["group_id"])
            except OSError as exc:
                log.error("cannot read the offsets of group %s: %s", req["group_id"], exc)
                code, committed = E.COORDINATOR_NOT_AVAILABLE, {}
        wanted = req["topics"]
        if wanted is None:
            wanted = [{"name": t, "partition_indexes": sorted(ps)} for t, ps in committed.items()]
        topics = []
        for wt in wanted:
            have = committed.get(wt["name"], {})
            parts = []
            for idx in wt["partition_indexes"]:
                e = have.get(idx)
                parts.append({"partition_index": idx, "error_code": code,
                              "committed_offset": e["offset"] if e else -1,
                              "committed_leader_epoch": e.get("leader_epoch", -1) if e else -1,
                              "metadata": (e.get("metadata") if e else "") or ""})
            topics.append({"name": wt["name"], "partitions": parts})
        if req.get("require_stable"):
            self.txns.mark_unstable(req["group_id"], topics)
        return {"error_code": code, "topics": topics}

    def describe_groups(self, ctx: RequestContext, req: dict) -> dict:
        ops = GROUP_OPERATIONS if req["include_authorized_operations"] else NO_OPERATIONS
        return {"groups": [{**self.groups.describe(g), "authorized_operations": ops} for g in req["groups"]]}

    def list_groups(self, ctx: RequestContext, req: dict) -> dict:
        states = set(req.get("states_filter") or [])
        # every group here is a classic group (no KIP-848 consumer groups); filters are case-insensitive
        types = {t.lower() for t in req.get("types_filter") or []}
        groups = [{**g, "group_type": "classic"} for g in self.groups.list()
                  if (not states or g["group_state"] in states) and (not types or "classic" in types)]
        return {"error_code": E.NONE, "groups": groups}

    # ------------------------------------------------------------ producers
    def init_producer_id(self, ctx: RequestContext, req: dict) -> dict:
        if req["transactional_id"] is not None:
            code, pid, epoch = self.txns.init_producer_id(req["transactional_id"], req["transaction_timeout_ms"],
                                                          req["producer_id"], req["producer_epoch"])
            if code == PRODUCER_FENCED and ctx.version < 4:
                code = E.INVALID_PRODUCER_EPOCH   # PRODUCER_FENCED is InitProducerId v4+
            if code == E.NONE:
                self._notify_data()
            return {"error_code": code, "producer_id": pid, "producer_epoch": epoch}
        code, pid, epoch = self.producers.init_producer_id(req["producer_id"], req["producer_epoch"])
        return {"error_code": code, "producer_id": pid, "producer_epoch": epoch}

    # ------------------------------------------------------------ admin
    async def create_topics(self, ctx: RequestContext, req: dict) -> dict:
        results = []
        per_topic, per_request = self.config.max_partitions_per_topic, self.config.max_partitions_per_request
        requested = 0
        for i, ct in enumerate(req["topics"]):
            if i and i % TOPICS_PER_SLICE == 0:
                await asyncio.sleep(0)  # thousands of topics: let the other connections in between
            name = ct["name"]
            n = ct["num_partitions"]
            if n == -1:
                n = len(ct["assignments"]) or self.config.default_partitions
            rf = ct["replication_factor"]
            config, ignored, problem = TC.split({c["name"]: c["value"] for c in ct["configs"]
                                                 if c["value"] is not None})
            if problem:
                code, msg = E.INVALID_CONFIG, problem
            elif rf not in (-1, 1) or any(len(a["broker_ids"]) > 1 for a in ct["assignments"]):
                code, msg = E.INVALID_REPLICATION_FACTOR, "this broker has one node: replication factor 1"
            elif n > per_topic:
                code, msg = E.INVALID_PARTITIONS, (
                    f"topic {name!r} asks for {n} partitions; this server allows at most {per_topic} "
                    "per topic (max.partitions.per.topic, arrowlog serve --max-partitions-per-topic)")
            elif requested + max(n, 0) > per_request:
                code, msg = E.POLICY_VIOLATION, (
                    f"this request asks for more than {per_request} partitions in all; create the topics in "
                    "several requests (max.partitions.per.request, --max-partitions-per-request)")
            else:
                code, msg = self.store.create_topic(name, n, config, req["validate_only"])
                if code == E.NONE:
                    requested += n
                    if not req["validate_only"]:
                        self.ignored_configs.set(name, ignored)
            r = {"name": name, "error_code": code, "error_message": msg,
                 "topic_id": self.store.topic_id(name) if code == E.NONE else bytes(16)}
            if code == E.NONE:
                r.update(num_partitions=n, replication_factor=1, configs=self._configs(
                    name, self.store.topic(name), None, with_source=True) if not req["validate_only"] else [])
                log.info("created topic %s with %d partition(s)", name, n)
            results.append(r)
        return {"topics": results}

    def delete_topics(self, ctx: RequestContext, req: dict) -> dict:
        if ctx.version >= 6:
            names = [t["name"] or self.store.topic_by_id(t["topic_id"]) for t in req["topics"]]
        else:
            names = req["topic_names"]
        out = []
        for name in names:
            code, msg = self.store.delete_topic(name) if name else (E.UNKNOWN_TOPIC_OR_PARTITION, None)
            if code == E.NONE:
                self._forget_cached(name)
                self.producers.forget_topic(name)
                self.txns.forget_topic(name)
                self.offsets.delete_topic(name)
                self.ignored_configs.forget(name)
                self._dirty = {pl for pl in self._dirty if pl.topic != name}
                self._written = {pl for pl in self._written if pl.topic != name}
                log.info("deleted topic %s", name)
            out.append({"name": name, "topic_id": self.store.topic_id(name or ""), "error_code": code,
                        "error_message": msg})
        return {"responses": out}

    def _configs(self, name, topic, keys, with_source=False):
        """The topic's configs as DescribeConfigs reports them: what storage applies, what
        was accepted but means nothing on one node, and Kafka's defaults for the rest."""
        values = dict(TC.KAFKA_DEFAULTS)
        stored = {k: str(v).lower() if isinstance(v, bool) else str(v)
                  for k, v in (topic.config or {}).items() if v is not None and k in TC.HONOURED} \
            if topic is not None else {}
        explicit = {**stored, **self.ignored_configs.get(name)}
        values.update(explicit)
        out = []
        for k in sorted(values):
            if keys is not None and k not in keys:
                continue
            # config_source 1 = DYNAMIC_TOPIC_CONFIG, 5 = DEFAULT_CONFIG
            out.append({"name": k, "value": values[k], "read_only": False,
                        "config_source": 1 if k in explicit else 5, "is_sensitive": False,
                        "synonyms": [], "config_type": _CONFIG_TYPES.get(TC.KAFKA_TOPIC_CONFIGS.get(k), 0)})
        return out

    def describe_configs(self, ctx: RequestContext, req: dict) -> dict:
        results = []
        for r in req["resources"]:
            rtype, rname, keys = r["resource_type"], r["resource_name"], r["configuration_keys"]
            keys = set(keys) if keys is not None else None
            res = {"error_code": E.NONE, "error_message": None, "resource_type": rtype,
                   "resource_name": rname, "configs": []}
            if rtype == 2:      # TOPIC
                t = self.store.topic(rname)
                if t is None:
                    res.update(error_code=E.UNKNOWN_TOPIC_OR_PARTITION, error_message=f"unknown topic {rname!r}")
                else:
                    res["configs"] = self._configs(rname, t, keys)
            elif rtype == 4:    # BROKER
                broker = {"broker.id": str(self.config.node_id), "num.partitions": str(self.config.default_partitions),
                          "auto.create.topics.enable": str(self.config.auto_create_topics).lower(),
                          "log.dirs": self.store.data_dir}
                res["configs"] = [{"name": k, "value": v, "read_only": True, "config_source": 4,
                                   "is_sensitive": False, "synonyms": []}
                                  for k, v in sorted(broker.items()) if keys is None or k in keys]
            else:
                res.update(error_code=E.INVALID_REQUEST, error_message=f"resource type {rtype} is not supported")
            results.append(res)
        return {"results": results}

    def describe_cluster(self, ctx: RequestContext, req: dict) -> dict:
        if req["endpoint_type"] != 1:  # 2: controllers; this node's controller has no listener of its own
            return {"error_code": E.UNSUPPORTED_ENDPOINT_TYPE, "error_message":
                    "arrowlog serve has one node and no separate controller listener: ask for brokers (1)",
                    "endpoint_type": req["endpoint_type"], "cluster_id": self.cluster_id}
        return {"error_code": E.NONE, "cluster_id": self.cluster_id, "controller_id": self.config.node_id,
                "brokers": [{"broker_id": self.config.node_id, "host": self.config.advertised,
                             "port": self.config.port, "rack": None}],
                "cluster_authorized_operations": CLUSTER_OPERATIONS
                if req["include_cluster_authorized_operations"] else NO_OPERATIONS}

    # ------------------------------------------------------------ admin: partitions and configs
    def _release_topic(self, name: str) -> None:
        """Before storage reopens a topic (new partitions, new configs): fsync what was
        appended to it and drop the old partition handles from the flush sets."""
        mine = {pl for pl in self._written if getattr(pl, "topic", None) == name}
        _sync_partitions(self.producers, mine & self._dirty)
        self._dirty -= mine
        self._written -= mine

    async def create_partitions(self, ctx: RequestContext, req: dict) -> dict:
        results = []
        per_topic = self.config.max_partitions_per_topic
        async with self._produce_lock:
            for ct in req["topics"]:
                name, count = ct["name"], ct["count"]
                t = self.store.topic(name)
                code, msg = E.NONE, None
                if t is None:
                    code, msg = E.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {name!r}"
                elif count > per_topic:
                    code, msg = E.INVALID_PARTITIONS, (
                        f"topic {name!r} cannot have {count} partitions; this server allows at most {per_topic} "
                        "per topic (arrowlog serve --max-partitions-per-topic)")
                elif count <= t.num_partitions:
                    code, msg = E.INVALID_PARTITIONS, (
                        f"topic {name!r} already has {t.num_partitions} partitions; ask for more (partitions "
                        "cannot be removed)")
                elif ct["assignments"] is not None and (
                        len(ct["assignments"]) != count - t.num_partitions
                        or any(a["broker_ids"] != [self.config.node_id] for a in ct["assignments"])):
                    code, msg = E.INVALID_REPLICA_ASSIGNMENT, (
                        f"this server is one node (id {self.config.node_id}): each new partition's replicas "
                        f"must be [{self.config.node_id}], one assignment per new partition")
                elif not req["validate_only"]:
                    self._release_topic(name)
                    code, msg = self.store.add_partitions(name, count)
                    if code == E.NONE:
                        log.info("topic %s now has %d partitions", name, count)
                results.append({"name": name, "error_code": code, "error_message": msg})
        return {"results": results}

    def _check_resource(self, rtype: int, rname: str) -> tuple[int, str | None]:
        if rtype == 2:
            if self.store.topic(rname) is None:
                return E.UNKNOWN_TOPIC_OR_PARTITION, f"unknown topic {rname!r}"
            return E.NONE, None
        if rtype == 4:
            return E.INVALID_REQUEST, ("the broker configs of arrowlog serve are its command-line options "
                                       "(arrowlog serve --help); they cannot be altered over the wire")
        return E.INVALID_REQUEST, f"resource type {rtype} has no configs on arrowlog serve"

    def _apply_topic_configs(self, name: str, changes: dict, validate_only: bool) -> tuple[int, str | None]:
        """Apply ``changes`` ({name: value or None to reset}) to the topic's configs."""
        honoured, ignoring, problem = TC.split(changes)
        if problem:
            return E.INVALID_CONFIG, problem
        ignored = self.ignored_configs.get(name)
        ignored.update(ignoring)
        if validate_only:
            return E.NONE, None
        if honoured:
            self._release_topic(name)
            code, msg = self.store.alter_topic(name, honoured)
            if code != E.NONE:
                return code, msg
        self.ignored_configs.set(name, ignored)
        log.info("altered configs of topic %s: %s", name, changes)
        return E.NONE, None

    async def alter_configs(self, ctx: RequestContext, req: dict) -> dict:
        """AlterConfigs replaces a resource's whole config: keys not given return to defaults."""
        out = []
        async with self._produce_lock:
            for r in req["resources"]:
                rtype, rname = r["resource_type"], r["resource_name"]
                code, msg = self._check_resource(rtype, rname)
                if code == E.NONE:
                    given = {c["name"]: c["value"] for c in r["configs"]}
                    t = self.store.topic(rname)
                    current = set(self.ignored_configs.get(rname)) | {
                        k for k, v in (t.config or {}).items() if k in TC.HONOURED and v is not None}
                    changes = {k: None for k in current if k not in given}
                    changes.update(given)
                    code, msg = self._apply_topic_configs(rname, changes, req["validate_only"])
                out.append({"error_code": code, "error_message": msg, "resource_type": rtype,
                            "resource_name": rname})
        return {"responses": out}

    async def incremental_alter_configs(self, ctx: RequestContext, req: dict) -> dict:
        """Operations: 0 SET, 1 DELETE (back to the default); APPEND (2) and SUBTRACT (3)
        apply to list configs (cleanup.policy and the throttled-replica lists)."""
        out = []
        async with self._produce_lock:
            for r in req["resources"]:
                rtype, rname = r["resource_type"], r["resource_name"]
                code, msg = self._check_resource(rtype, rname)
                changes: dict = {}
                for c in r["configs"] if code == E.NONE else []:
                    op, k, v = c["config_operation"], c["name"], c["value"]
                    if op == 0:
                        changes[k] = v
                    elif op == 1:
                        changes[k] = None
                    elif op in (2, 3) and TC.KAFKA_TOPIC_CONFIGS.get(k) == "list":
                        have = [x for x in (changes.get(k) or self._current_value(rname, k) or "").split(",") if x]
                        items = [x for x in (v or "").split(",") if x]
                        have = have + [x for x in items if x not in have] if op == 2 else \
                            [x for x in have if x not in items]
                        changes[k] = ",".join(have) or None
                    else:
                        code, msg = E.INVALID_CONFIG, (f"operation {op} on {k!r}: APPEND and SUBTRACT need a "
                                                       "list config; SET is 0, DELETE 1")
                        break
                if code == E.NONE:
                    code, msg = self._apply_topic_configs(rname, changes, req["validate_only"])
                out.append({"error_code": code, "error_message": msg, "resource_type": rtype,
                            "resource_name": rname})
        return {"responses": out}

    def _current_value(self, name: str, key: str) -> str | None:
        for c in self._configs(name, self.store.topic(name), {key}):
            return c["value"]
        return None

    # ------------------------------------------------------------ admin: records, groups, producers
    async def delete_records(self, ctx: RequestContext, req: dict) -> dict:
        topics = []
        async with self._produce_lock:
            for dt in req["topics"]:
                parts = []
                for dp in dt["partitions"]:
                    idx = dp["partition_index"]
                    pl, code, _ = self._partition(dt["name"], idx)
                    low = -1
                    if pl is not None:
                        try:
                            low = await asyncio.to_thread(pl.delete_records, dp["offset"])
                        except AE.OffsetOutOfRangeError as exc:
                            log.info("refused DeleteRecords on %s-%d: %s", dt["name"], idx, exc)
                            code = E.OFFSET_OUT_OF_RANGE
                        except OSError as exc:
                            log.error("DeleteRecords on %s-%d failed: %s", dt["name"], idx, exc)
                            code = E.KAFKA_STORAGE_ERROR
                        else:
                            log.info("records of %s-%d below %d deleted", dt["name"], idx, low)
                    parts.append({"partition_index": idx, "low_watermark": low, "error_code": code})
                topics.append({"name": dt["name"], "partitions": parts})
        return {"topics": topics}

    def delete_groups(self, ctx: RequestContext, req: dict) -> dict:
        return {"results": [{"group_id": g, "error_code": self.groups.delete(g)} for g in req["groups_names"]]}

    def offset_delete(self, ctx: RequestContext, req: dict) -> dict:
        group = req["group_id"]
        if group_id_problem(group):
            return {"error_code": E.INVALID_GROUP_ID, "topics": []}
        try:
            known = group in self.offsets.groups()
            committed = self.offsets.load(group) if known else {}
        except OSError as exc:
            log.error("cannot read the offsets of group %s: %s", group, exc)
            return {"error_code": E.COORDINATOR_NOT_AVAILABLE, "topics": []}
        if not known and self.groups.subscribed_topics(group) is None:
            return {"error_code": E.GROUP_ID_NOT_FOUND, "topics": []}
        subscribed = self.groups.subscribed_topics(group) or set()
        topics, drop = [], []
        for t in req["topics"]:
            exists = self.store.topic(t["name"])
            parts = []
            for p in t["partitions"]:
                idx = p["partition_index"]
                if exists is None or not 0 <= idx < exists.num_partitions:
                    code = E.UNKNOWN_TOPIC_OR_PARTITION
                elif t["name"] in subscribed:
                    code = E.GROUP_SUBSCRIBED_TO_TOPIC
                else:
                    code = E.NONE
                    if idx in committed.get(t["name"], {}):
                        drop.append((t["name"], idx))
                parts.append({"partition_index": idx, "error_code": code})
            topics.append({"name": t["name"], "partitions": parts})
        if drop:
            try:
                self.offsets.drop(group, drop)
            except OSError as exc:
                log.error("cannot delete offsets of group %s: %s", group, exc)
                return {"error_code": E.COORDINATOR_NOT_AVAILABLE, "topics": []}
        return {"error_code": E.NONE, "topics": topics}

    def describe_producers(self, ctx: RequestContext, req: dict) -> dict:
        topics = []
        for t in req["topics"]:
            parts = []
            for idx in t["partition_indexes"]:
                pl, code, msg = self._partition(t["name"], idx)
                active = self.producers.describe(t["name"], idx) if pl is not None else []
                parts.append({"partition_index": idx, "error_code": code, "error_message": msg,
                              "active_producers": active})
            topics.append({"name": t["name"], "partitions": parts})
        return {"topics": topics}

    # ------------------------------------------------------------ what one node cannot do
    def elect_leaders(self, ctx: RequestContext, req: dict) -> dict:
        msg = ("arrowlog serve is one node: it leads every partition, so there is no leader to elect")
        results = [{"topic": tp["topic"], "partition_result": [
            {"partition_id": p, "error_code": E.INVALID_REQUEST, "error_message": msg} for p in tp["partitions"]]}
            for tp in req["topic_partitions"] or []]
        return {"error_code": E.INVALID_REQUEST if req["topic_partitions"] is None else E.NONE,
                "replica_election_results": results}

    def alter_partition_reassignments(self, ctx: RequestContext, req: dict) -> dict:
        return {"error_code": E.INVALID_REQUEST, "responses": [],
                "error_message": "arrowlog serve is one node with one replica of each partition: "
                                 "there is nowhere to reassign a partition to"}

    def list_partition_reassignments(self, ctx: RequestContext, req: dict) -> dict:
        return {"error_code": E.NONE, "topics": []}   # one node: never a reassignment in progress
