"""Request handlers: what a single-node Kafka broker answers, on arrowlog storage.

One ``Broker`` serves every connection. Handlers take the decoded request
dict and return the response dict (or an awaitable of it, for the handlers
that wait: Fetch long polls, JoinGroup and SyncGroup). The Broker holds the
shared state (storage, groups, producer and transaction state, the flush sets)
and answers ApiVersions and Metadata; the other handlers live by family:
produce.py, fetch.py, group_apis.py, admin.py, transactions.py. The node is both the
leader of every partition and the controller; leader epochs are always 0.

Durability: a produced batch is acknowledged once it is appended and
published (readable by every consumer, surviving a crash of this process);
every ``flush_interval_s`` the partitions appended to since the last flush
are fsynced (their recovery points advance: the batches survive power loss),
and on shutdown every partition written to is. Thread-safety: the event loop thread only.
"""


from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import re
import threading
import time
from typing import Callable

from arrowlog import errors as AE
from arrowlog.storage.reader import wait_for_data

from . import errors as E
from . import topic_configs as TC
from .admin import CLUSTER_OPERATIONS, NO_OPERATIONS, TOPIC_OPERATIONS, AdminHandlers
from .fetch import FETCH_MAX_BYTES, FetchHandlers
from .group_apis import GroupHandlers
from .groups import GroupCoordinator
from .log_once import LogOnce
from .messages import API_VERSIONS, APIS
from .offsets import GroupOffsetStore
from .options import MAX_PARTITIONS_PER_REQUEST, MAX_PARTITIONS_PER_TOPIC
from .produce import MAX_UNCOMPRESSED_BYTES, ProduceHandlers
from .producers import ProducerRegistry
from .store import Store
from .transactions import TransactionCoordinator, TxnHandlers
from .wire import Encoded, Writer

log = logging.getLogger("arrowlog.server")

_SOFTWARE_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$")
# The thread that turns appends by any process (the data directory's notifier)
# into wake-ups of waiting Fetches re-checks for shutdown this often on a
# read-only directory (elsewhere stop() wakes it at once).
WATCH_TIMEOUT_S = 5.0
# Topics one Metadata request may auto-create; the rest answer LEADER_NOT_AVAILABLE
# (retriable) and are created by the client's next Metadata request.
MAX_AUTO_CREATE_PER_REQUEST = 100
# Group members the coordinator keeps, all groups together: each is a member file and
# a descriptor until it leaves or its session (up to 30 minutes) expires, and a JoinGroup
# with an empty member id makes one whether or not its client ever reads the answer.
MAX_GROUP_MEMBERS = 2000


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


class BrokerConfig:
    def __init__(self, *, node_id=1, host="127.0.0.1", port=9092, advertised_host=None,
                 auto_create_topics=True, default_partitions=1, flush_interval_s=1.0,
                 group_initial_rebalance_delay_ms=100, max_partitions_per_topic=MAX_PARTITIONS_PER_TOPIC,
                 max_partitions_per_request=MAX_PARTITIONS_PER_REQUEST, cleaner_interval_s=15.0,
                 fetch_max_bytes=FETCH_MAX_BYTES, max_auto_create_per_request=MAX_AUTO_CREATE_PER_REQUEST,
                 max_uncompressed_bytes=MAX_UNCOMPRESSED_BYTES, max_group_members=MAX_GROUP_MEMBERS):
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
        self.max_group_members = max_group_members

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


@functools.cache
def _api_versions_body(version: int) -> Encoded:
    """The ApiVersions response body of ``version``, encoded once: every client asks
    on every connection, and building and encoding the list of APIs took ~29 µs of CPU."""
    w = Writer()
    API_VERSIONS.encode_response({"error_code": E.NONE, "api_keys": [
        {"api_key": a.key, "min_version": a.min_version, "max_version": a.max_version}
        for a in sorted(APIS.values(), key=lambda a: a.key)]}, w, version)
    return Encoded(w.buf)


class Broker:
    def __init__(self, data_dir: str, config: BrokerConfig, cluster_id: str):
        self.config = config
        self.cluster_id = cluster_id
        self.store = Store(data_dir, cluster_id)
        self.typed = None  # arrowlog.registry.typed.TypedTopics when the schema registry runs
        # a partition the storage cannot open: logged at ERROR once, not on every client's retry
        self._unopenable = LogOnce(log, "retries are answered KAFKA_STORAGE_ERROR without logging again")
        self.offsets = GroupOffsetStore(data_dir)
        self.groups = GroupCoordinator(self.offsets, config.group_initial_rebalance_delay_ms, self.store.log,
                                       max_members=config.max_group_members)
        self.producers = ProducerRegistry(data_dir)
        self.txns = TransactionCoordinator(data_dir, self.producers, self.offsets, self._partition,
                                           self._appended)
        self.ignored_configs = TC.IgnoredConfigs(data_dir)
        self.metrics = None          # arrowlog.metrics.ServerMetrics when metrics are served
        self._data_event = asyncio.Event()
        self.stopping = False        # answer_waiting() was called: long polls answer at once
        self.long_polls = 0          # Fetches running now, which may wait for data (fetch.py)
        # Bytes a Fetch response may take now, given what clients have not read yet
        # (KafkaServer sets it: its connections' unsent bytes); None: no limit.
        self.response_room: Callable[[], int] | None = None
        self.appends_seen = 0        # wake-ups of the watcher thread by any process's append
        self.loop_wakes = 0          # of those, the ones that woke the event loop (a Fetch was waiting)
        self.watched_word: int | None = None  # the notifier's change counter as the watcher last handled it
        self._watcher: threading.Thread | None = None
        self._stopping = False
        self._dirty: set = set()     # partitions appended to since the last periodic flush
        self._written: set = set()   # every partition appended to (the shutdown flush syncs them all)
        self._flusher: asyncio.Task | None = None
        self._syncing: asyncio.Future | None = None
        self._produce_lock = asyncio.Lock()  # produces run one at a time (some in a thread)
        # Large produces decode and append here: one thread, so Arrow's per-thread heap that
        # holds their buffers is the one _release_memory empties afterwards.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="arrowlog-produce")
        self.handlers = {18: self.api_versions, 3: self.metadata}
        self.producing = ProduceHandlers(self)
        self.fetching = FetchHandlers(self)
        self.group_apis = GroupHandlers(self)
        self.admin = AdminHandlers(self)
        for family in (self.producing, self.fetching, self.group_apis, self.admin):
            family.register(self.handlers)
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

    def answer_waiting(self) -> None:
        """At stop, before the connections close: Fetches waiting for data, and JoinGroups and
        SyncGroups waiting for a rebalance, are answered now (a connection gives its handlers
        5 s to answer, and a long poll or a join waited them out: every stop took 5 s more)."""
        self.stopping = True
        self._notify_data()
        self.groups.answer_waiting()

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
        """Wake waiting Fetches when any process appends to the data directory. With no
        Fetch running, the event loop is left alone: the server's own Produce requests
        bump the notifier too, and a loop wake-up (and the GIL hand-off) per append was
        work for nobody. A Fetch counts itself in ``long_polls`` before it reads the log,
        so an append it does not see is one this thread sees it waiting for."""
        notifier = self.store.log.notifier
        seen = self.watched_word = notifier.current_word()
        while not self._stopping:
            if wait_for_data(notifier, (), WATCH_TIMEOUT_S, seen=seen):
                seen = notifier.current_word()
                if self.long_polls:
                    try:
                        loop.call_soon_threadsafe(self._notify_data)
                    except RuntimeError:  # the loop is closed: the server is gone
                        return
                    self.loop_wakes += 1
                self.appends_seen += 1
                # last: once it equals the notifier's word, every append so far is counted above
                self.watched_word = seen

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
            pl = t.partition(index)
        except OSError as exc:  # StorageError included
            self._unopenable.error((topic, index), f"cannot open {topic}-{index}: {exc}")
            return None, E.KAFKA_STORAGE_ERROR, str(exc)
        self._unopenable.forget((topic, index))   # opens again: its next failure is news
        return pl, E.NONE, None

    # ------------------------------------------------------------ ApiVersions
    def api_versions(self, ctx: RequestContext, req: dict) -> dict | Encoded:
        if ctx.version >= 3 and not (_SOFTWARE_RE.match(req["client_software_name"] or "")
                                     and _SOFTWARE_RE.match(req["client_software_version"] or "")):
            return {"error_code": E.INVALID_REQUEST, "api_keys": []}
        return _api_versions_body(ctx.version)

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

    # ------------------------------------------------------------ flush sets
    def _release_topic(self, name: str) -> None:
        """Before storage reopens a topic (new partitions, new configs): fsync what was
        appended to it and drop the old partition handles from the flush sets."""
        mine = {pl for pl in self._written if getattr(pl, "topic", None) == name}
        _sync_partitions(self.producers, mine & self._dirty)
        self._dirty -= mine
        self._written -= mine
