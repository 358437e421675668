"""Prometheus metrics of a data directory and of ``arrowlog serve``.

Two sources feed one ``prometheus_client`` registry:

- :class:`LogDirCollector` reads the directory's *published* state at scrape
  time (no writer needed, nothing sampled in between): watermarks from each
  partition's mapped state, segment files from its directory, committed
  offsets from ``groups/<group>/offsets.json`` and live members from the
  group registry (plus the Kafka server's in-memory groups when it runs in
  the same process). Its names and labels are kafka_exporter's exactly
  (``kafka_topic_partition_current_offset{topic,partition}``, ...), so
  Grafana dashboard 7589 works unchanged; what kafka_exporter lacks is
  under ``arrowlog_``.
- :class:`ServerMetrics` is what the Kafka server counts as it runs:
  request latency per API, connections, refused connections, bytes and
  records in and out per topic, fsync latency. The server calls into it
  (``request_done``, ``produced``, ...); nothing else touches the metrics.

Lag in seconds (``arrowlog_consumergroup_lag_seconds``) is the age of the
first record the group has not read: now minus the timestamp of the record
at the committed offset (0 when the group is caught up), klag-exporter's
definition. Reading that one timestamp costs one frame read per lagging
partition, found through the offset index.

Serving: :func:`start_metrics_http` serves prometheus_client's WSGI app on a
thread per connection (``GET /metrics``), with an idle timeout and a limit on
open connections (_http_limits.py). Thread-safety: collect() runs on those
threads; it only reads published state and copies the server's group table.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ._http_limits import IDLE_TIMEOUT_S, MAX_CONNECTIONS, address_family, limited
from .config import is_compacted
from .errors import ArrowlogError, ConfigError
from .groups.admin import GroupAdmin
from .groups.store import GroupDir
from .storage.cleaner import HEALTH_FILE
from .storage.cleaner import health as cleaner_health

log = logging.getLogger("arrowlog.metrics")

# Request latency buckets (seconds): 0.1 ms .. 10 s, from a Produce answered
# from memory to a Fetch that long-polls for its max_wait_ms or a JoinGroup
# that waits out a rebalance.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)
# fsync latency buckets: 50 us .. 5 s, from fast flash to a disk that stalls.
FSYNC_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0, 5.0)

# A Kafka v2 record batch header is 61 bytes; its record count is the last 4 (offset 57).
_BATCH_HEADER_BYTES = 61


class ServerMetrics:
    """What the Kafka server counts while it runs, in ``registry``.

    Every method is a few microseconds (a dict lookup and a locked add), cheap
    enough for the event loop on every request."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.request_latency = Histogram(
            "arrowlog_request_latency_seconds", "Time from a request read to its response ready, per Kafka API",
            ["api"], registry=registry, buckets=LATENCY_BUCKETS)
        self.connections_accepted = Counter(
            "arrowlog_connections_accepted", "Connections admitted", registry=registry)
        self.connections_refused = Counter(
            "arrowlog_connections_refused", "Connections refused: max connections open, none idle",
            registry=registry)
        self.bytes_in = Counter("arrowlog_topic_bytes_in", "Record batch bytes produced over the Kafka protocol",
                                ["topic"], registry=registry)
        self.records_in = Counter("arrowlog_topic_records_in", "Records produced over the Kafka protocol",
                                  ["topic"], registry=registry)
        self.bytes_out = Counter("arrowlog_topic_bytes_out", "Record batch bytes fetched over the Kafka protocol",
                                 ["topic"], registry=registry)
        self.records_out = Counter("arrowlog_topic_records_out", "Records fetched over the Kafka protocol",
                                   ["topic"], registry=registry)
        self.fsync_latency = Histogram("arrowlog_fsync_latency_seconds", "Time of one partition fsync",
                                       registry=registry, buckets=FSYNC_BUCKETS)

    def request_done(self, api: str, seconds: float) -> None:
        self.request_latency.labels(api).observe(seconds)

    def connection_accepted(self) -> None:
        self.connections_accepted.inc()

    def connection_refused(self) -> None:
        self.connections_refused.inc()

    def produced(self, topic: str, nbytes: int, nrecords: int) -> None:
        self.bytes_in.labels(topic).inc(nbytes)
        self.records_in.labels(topic).inc(nrecords)

    def fetched_response(self, resp: dict) -> None:
        """Count the record batches of a Fetch response about to be sent: their bytes,
        and their records from each v2 batch header's recordsCount (bytes 57..60)."""
        for t in resp["responses"]:
            nbytes = nrecords = 0
            for p in t["partitions"]:
                for batch in p["records"] or ():
                    nbytes += len(batch)
                    if len(batch) >= _BATCH_HEADER_BYTES:
                        nrecords += int.from_bytes(batch[57:61], "big")
            if nbytes:
                self.bytes_out.labels(t["topic"]).inc(nbytes)
                self.records_out.labels(t["topic"]).inc(nrecords)

    def fsync_done(self, seconds: float) -> None:
        self.fsync_latency.observe(seconds)


def record_timestamp(pl: Any, offset: int) -> int | None:
    """The timestamp (epoch ms) of the record at ``offset``, found through the
    offset index (one frame read); None when it is not readable (deleted by
    retention, or at the high watermark)."""
    try:
        frames = pl.read(offset, 1)
    except (ArrowlogError, OSError):
        return None
    for fr in frames[:1]:
        i = fr.row_at(offset)  # the first record at or after it: compacted frames have gaps
        if 0 <= i < fr.batch.num_rows:
            return fr.batch.column("timestamp")[i].value
    return None


def lag_seconds(logdir: Any, topic: str, partition: int, committed: int | None, lag: int, now_ms: int) -> float:
    """The age in seconds of the first record a group has not read: now minus the
    timestamp of the record at its committed offset; 0 when it is caught up (or
    that record is gone, deleted by retention: the age is then unknown)."""
    if lag <= 0 or committed is None:
        return 0.0
    return age_seconds(now_ms, record_timestamp(logdir.topic(topic).partition(partition), committed))


def age_seconds(now_ms: int, stamp_ms: int | None) -> float:
    """Seconds from ``stamp_ms`` to ``now_ms`` (0 for an unknown stamp or one in the future)."""
    return 0.0 if stamp_ms is None else max(0.0, (now_ms - stamp_ms) / 1000.0)


class LogDirCollector(Collector):
    """kafka_exporter's metrics (and arrowlog's additions) read from a data
    directory at scrape time.

    ``logdir``: an open :class:`arrowlog.LogDir`. ``coordinator``: the Kafka
    server's GroupCoordinator, whose members live only in memory. ``clock``
    returns epoch seconds (tests pass a fake one for the time lag)."""

    def __init__(self, logdir: Any, *, coordinator: Any = None, broker_address: str = "",
                 node_id: int = 1, server: Any = None, clock: Callable[[], float] = time.time):
        self.logdir = logdir
        self.admin = GroupAdmin(logdir)
        self.coordinator = coordinator
        self.server = server
        self.broker_address = broker_address
        self.node_id = node_id
        self.clock = clock
        # Scraping every second must cost the server under 1 % of a core (bench_metrics:
        # 100 partitions, 5 groups), and prometheus_client's exposition of ~2,000 samples
        # already takes ~7 ms. So what only changes when the log does is cached:
        # (low, high) -> (segments, log bytes) per partition; a group's
        # committed offsets per offsets-file version and member set; the timestamp of
        # the record at a committed offset.
        self._disk: dict[tuple[str, int], tuple[tuple[int, int], tuple[int, int]]] = {}
        self._groups: dict[str, tuple[tuple, list[tuple[str, int, int | None]]]] = {}
        self._stamps: dict[tuple[str, int, int], int | None] = {}
        # cleaner.health per compacted partition, per (cleaner.json version, (low, high)):
        # its dirty ratio stats every closed segment, and those change only when the log
        # rolls or retention deletes (a watermark moved) or a cleaner rewrites them
        # (cleaner.json replaced).
        self._cleaner: dict[tuple[str, int], tuple[tuple, dict]] = {}

    def describe(self) -> list:
        return []  # collect() reads the disk: never at registration time

    def collect(self) -> Iterator[Any]:
        now_ms = int(self.clock() * 1000)
        brokers = GaugeMetricFamily("kafka_brokers", "Number of Brokers in the Kafka Cluster.")
        brokers.add_metric([], 1)
        yield brokers
        info = GaugeMetricFamily("kafka_broker_info", "Information about the Kafka Broker.",
                                 labels=["address", "id"])
        info.add_metric([self.broker_address, str(self.node_id)], 1)
        yield info

        partitions = GaugeMetricFamily("kafka_topic_partitions", "Number of partitions for this Topic",
                                       labels=["topic"])
        current = GaugeMetricFamily("kafka_topic_partition_current_offset",
                                    "Current Offset of a Broker at Topic/Partition", labels=["topic", "partition"])
        oldest = GaugeMetricFamily("kafka_topic_partition_oldest_offset",
                                   "Oldest Offset of a Broker at Topic/Partition", labels=["topic", "partition"])
        segments = GaugeMetricFamily("arrowlog_topic_partition_segments", "Segment files of a partition",
                                     labels=["topic", "partition"])
        size = GaugeMetricFamily("arrowlog_topic_partition_log_bytes", "Bytes of record batches in a partition's "
                                 "segments (Kafka's Log Size; the files are preallocated beyond it)",
                                 labels=["topic", "partition"])
        recoveries = CounterMetricFamily("arrowlog_topic_partition_recovery_scans", "Recovery scans of a "
                                         "partition since it was created (crash, unclean close, arrowlog recover)",
                                         labels=["topic", "partition"])
        watermarks: dict[tuple[str, int], int] = {}
        for name in self.logdir.list_topics():
            try:
                rows = self._topic_rows(name)
            except (ArrowlogError, OSError) as exc:  # deleted or damaged meanwhile: skip it this time
                log.debug("metrics: skipping topic %s: %s", name, exc)
                continue
            partitions.add_metric([name], len(rows))
            for partition, low, high, nseg, nbytes, scans in rows:
                p = str(partition)
                watermarks[(name, partition)] = high
                current.add_metric([name, p], high)
                oldest.add_metric([name, p], low)
                segments.add_metric([name, p], nseg)
                size.add_metric([name, p], nbytes)
                if scans is not None:
                    recoveries.add_metric([name, p], scans)
        for gone in self._disk.keys() - watermarks.keys():
            del self._disk[gone]
        yield from (partitions, current, oldest, segments, size, recoveries)
        yield from self._cleaner_metrics(watermarks)
        yield from self._group_metrics(now_ms, watermarks)
        if self.server is not None:
            conns = GaugeMetricFamily("arrowlog_connections", "Kafka protocol connections open")
            conns.add_metric([], self.server.connection_count)
            yield conns

    def _topic_rows(self, name: str) -> list[tuple[int, int, int, int, int, int | None]]:
        """[(partition, log start, high watermark, segments, log bytes, recovery scans)] of a
        topic, all read before any is reported (a topic deleted halfway is skipped whole).

        Recovery scans come from the published state's ``generation``: 1 when the
        partition was created (its first recovery initialises it), +1 for every
        recovery since (after a crash, an unclean close or ``arrowlog recover``)."""
        rows = []
        for pl in self.logdir.topic(name).partitions():
            try:
                st = pl.state.snapshot()
                low, high, scans = st["log_start_offset"], st["next_offset"], st["generation"] - 1
            except BlockingIOError:  # a writer is publishing, or died doing so: the repairing path
                (low, high), scans = pl.watermarks(), None
            key = (name, pl.partition)
            cached = self._disk.get(key)
            if cached is None or cached[0] != (low, high):
                cached = ((low, high), (len(pl.segment_bases()), pl.size_bytes()))
                self._disk[key] = cached
            rows.append((pl.partition, low, high, *cached[1], scans))
        return rows

    def _cleaner_metrics(self, watermarks: dict[tuple[str, int], int]) -> Iterator[Any]:
        """The log cleaner's health per partition of each compacted topic this scrape
        reported (``watermarks``), from the reader ``topic describe`` uses
        (cleaner.health: cleaner.json and the segment sizes). The last error's text
        stays out of the labels: a gauge of 1 says the last round failed, ``topic
        describe`` says why."""
        lbl = ["topic", "partition"]
        ratio = GaugeMetricFamily("arrowlog_cleaner_dirty_ratio", "Share of a compacted partition's closed "
                                  "segment bytes written since its last clean", labels=lbl)
        last = GaugeMetricFamily("arrowlog_cleaner_last_clean_timestamp_seconds", "When the cleaner last "
                                 "finished a round on the partition (absent: never)", labels=lbl)
        took = GaugeMetricFamily("arrowlog_cleaner_last_clean_duration_seconds", "How long the cleaner's last "
                                 "finished round on the partition took", labels=lbl)
        reclaimed = CounterMetricFamily("arrowlog_cleaner_bytes_reclaimed", "Bytes the cleaner removed from "
                                        "the partition over all its rounds", labels=lbl)
        cleans = CounterMetricFamily("arrowlog_cleaner_cleans", "Rounds the cleaner finished on the partition",
                                     labels=lbl)
        failed = GaugeMetricFamily("arrowlog_cleaner_last_error", "1 when the cleaner's last round on the "
                                   "partition failed (arrowlog topic describe shows the error), else 0", labels=lbl)
        seen: set[tuple[str, int]] = set()
        for name in self.logdir.list_topics():
            try:
                topic = self.logdir.topic(name)
                if not is_compacted(topic.config):
                    continue
                rows = [(pl.partition, self._cleaner_health(pl, watermarks)) for pl in topic.partitions()
                        if (name, pl.partition) in watermarks]
            except (ArrowlogError, OSError) as exc:  # deleted or damaged meanwhile: skip it this time
                log.debug("metrics: no cleaner health for topic %s: %s", name, exc)
                continue
            for partition, h in rows:
                seen.add((name, partition))
                labels = [name, str(partition)]
                ratio.add_metric(labels, h["dirty_ratio"])
                if h["last_clean_ms"] is not None:
                    last.add_metric(labels, h["last_clean_ms"] / 1000.0)
                if h["last_clean_duration_ms"] is not None:
                    took.add_metric(labels, h["last_clean_duration_ms"] / 1000.0)
                reclaimed.add_metric(labels, h["bytes_reclaimed"])
                cleans.add_metric(labels, h["cleans"])
                failed.add_metric(labels, 1 if h["last_error"] else 0)
        for gone in self._cleaner.keys() - seen:
            del self._cleaner[gone]
        yield from (ratio, last, took, reclaimed, cleans, failed)

    def _cleaner_health(self, pl: Any, watermarks: dict[tuple[str, int], int]) -> dict:
        """cleaner.health(pl), read again only when cleaner.json was replaced or the
        partition's log start or high watermark (as this scrape read them) moved."""
        key = (pl.topic, pl.partition)
        bounds = self._disk[key][0] if key in self._disk else (None, watermarks[key])
        try:
            st = os.stat(os.path.join(pl.directory, HEALTH_FILE))
            version: tuple = (st.st_ino, st.st_mtime_ns, st.st_size, bounds)
        except FileNotFoundError:
            version = (bounds,)
        cached = self._cleaner.get(key)
        if cached is None or cached[0] != version:
            cached = (version, cleaner_health(pl))
            self._cleaner[key] = cached
        return cached[1]

    def _group_rows(self, group: str) -> tuple[set[str], list[tuple[str, int, int | None]]]:
        """(live member ids, [(topic, partition, committed or None)]) of a group, as
        GroupAdmin.describe lists them; described again only when its offsets file
        was replaced or its members changed."""
        live = self.admin.live_members(group)
        gdir = GroupDir(self.logdir.groups_dir, group, create=False)
        version = gdir.offsets_version()   # offsets.json and the commit journals
        key = (version, tuple((m.member_id, tuple(m.subscription)) for m in live),
               tuple(self.logdir.list_topics()) if live else ())
        cached = self._groups.get(group)
        if cached is None or cached[0] != key:
            desc = self.admin.describe(group)
            cached = (key, [(r.topic, r.partition, r.committed) for r in desc.partitions])
            self._groups[group] = cached
        return {m.member_id for m in live}, cached[1]

    def _lag_seconds(self, topic: str, partition: int, committed: int, behind: int, now_ms: int) -> float:
        """lag_seconds with the committed record's timestamp remembered per partition."""
        if behind <= 0:
            return 0.0
        key = (topic, partition, committed)
        if key in self._stamps:
            stamp = self._stamps[key]
        else:
            stamp = record_timestamp(self.logdir.topic(topic).partition(partition), committed)
        self._stamps_used[key] = stamp
        return age_seconds(now_ms, stamp)

    def _server_members(self) -> dict[str, set[str]]:
        return {gid: {m.member_id for m in members} for gid, (_, members) in server_groups(self.coordinator).items()}

    def _group_metrics(self, now_ms: int, watermarks: dict[tuple[str, int], int]) -> Iterator[Any]:
        """Per group; lag is computed from the high watermarks this scrape reported
        (``watermarks``), so lag == current_offset - consumergroup_current_offset holds
        within one scrape even while producers append."""
        lbl = ["consumergroup", "topic", "partition"]
        offset = GaugeMetricFamily("kafka_consumergroup_current_offset",
                                   "Current Offset of a ConsumerGroup at Topic/Partition", labels=lbl)
        offset_sum = GaugeMetricFamily("kafka_consumergroup_current_offset_sum",
                                       "Current Offset of a ConsumerGroup at Topic for all partitions",
                                       labels=["consumergroup", "topic"])
        lag = GaugeMetricFamily("kafka_consumergroup_lag", "Current Approximate Lag of a ConsumerGroup at "
                                "Topic/Partition", labels=lbl)
        lag_sum = GaugeMetricFamily("kafka_consumergroup_lag_sum", "Current Approximate Lag of a ConsumerGroup "
                                    "at Topic for all partitions", labels=["consumergroup", "topic"])
        members = GaugeMetricFamily("kafka_consumergroup_members", "Amount of members in a consumer group",
                                    labels=["consumergroup"])
        lag_s = GaugeMetricFamily("arrowlog_consumergroup_lag_seconds", "Age of the oldest record a "
                                  "ConsumerGroup has not read at Topic/Partition (0 when caught up)", labels=lbl)
        server_members = self._server_members()
        self._stamps_used: dict[tuple[str, int, int], int | None] = {}
        names = sorted(set(self.admin.list_groups()) | set(server_members))
        for gone in self._groups.keys() - set(names):
            del self._groups[gone]
        for group in names:
            try:
                live, rows = self._group_rows(group)
            except (ArrowlogError, OSError) as exc:  # only in-memory members, or a damaged offsets file
                log.debug("metrics: no offsets for group %s: %s", group, exc)
                live, rows = set(), []
            # a wire member is both one of the server's and a member file (groups/wire.py): count it once
            members.add_metric([group], len(live | server_members.get(group, set())))
            sums: dict[str, list[int]] = {}
            for topic, partition, committed in rows:
                high = watermarks.get((topic, partition))
                if high is None:
                    continue  # offsets for a deleted topic, or one created since the topics were read
                labels = [group, topic, str(partition)]
                offset.add_metric(labels, -1 if committed is None else committed)
                s = sums.setdefault(topic, [0, 0])
                if committed is None or committed < 0:
                    # nothing committed (kafka_exporter reports the offset as -1), or an offset
                    # no consumer resumes from (a client reads a negative one as none): no lag
                    continue
                s[0] += committed
                behind = max(0, high - committed)
                lag.add_metric(labels, behind)
                s[1] += behind
                lag_s.add_metric(labels, self._lag_seconds(topic, partition, committed, behind, now_ms))
            for topic, (off, lg) in sums.items():
                offset_sum.add_metric([group, topic], off)
                lag_sum.add_metric([group, topic], lg)
        self._stamps = self._stamps_used  # only the stamps this scrape used are kept
        yield from (offset, offset_sum, lag, lag_sum, members, lag_s)


class ServerMember(NamedTuple):
    """A member of one of the Kafka server's groups, as copied by server_groups."""
    member_id: str
    client_id: str
    client_host: str
    subscription: bytes   # its consumer-protocol metadata for the group's protocol
    assignment: bytes     # the consumer-protocol assignment the leader gave it


def server_groups(coordinator: Any) -> dict[str, tuple[str, list[ServerMember]]]:
    """{group: (state, members)} of the Kafka server's in-memory groups (None: {}).
    Copied from another thread than the event loop that changes them; a copy
    that meets a change in progress is tried again."""
    if coordinator is None:
        return {}
    for _ in range(3):
        try:
            return {gid: (g.state, [ServerMember(m.member_id, m.client_id or "", m.client_host,
                                                 bytes(m.metadata_for(g.protocol_name or "")), bytes(m.assignment))
                                    for m in list(g.members.values())])
                    for gid, g in list(coordinator.groups.items())}
        except RuntimeError:  # a dict changed size during the copy
            continue
    return {}


def parse_listen(value: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, or ``PORT``) as (host, port); the host is loopback when left out."""
    host, sep, port = str(value).rpartition(":")
    if not sep:
        host, port = "", value
    if not str(port).isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen address {value!r}: want HOST:PORT, e.g. 127.0.0.1:{default_port}")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsHTTP:
    """prometheus_client's WSGI app for one registry, served from a daemon thread
    with an idle timeout and a connection limit (_http_limits.py)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int, *,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS):
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        from prometheus_client import make_wsgi_app
        from prometheus_client.exposition import ThreadingWSGIServer

        class Quiet(WSGIRequestHandler):
            def log_message(self, format, *args):  # a scrape is not news
                pass

        Server, Handler = limited(ThreadingWSGIServer, Quiet, idle_timeout_s, max_connections)
        Server.address_family = address_family(host, port)
        try:
            self.httpd: WSGIServer = make_server(host, port, make_wsgi_app(registry), Server, handler_class=Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen for metrics on {host}:{port}: {exc}") from exc
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="arrowlog-metrics", daemon=True)
        self.thread.start()
        self.host = host
        self.port = int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_metrics_http(collector: LogDirCollector, listen: str,
                       registry: CollectorRegistry | None = None, **limits: Any) -> MetricsHTTP:
    """Register ``collector`` (in a new registry unless given) and serve it on ``listen``."""
    registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
    registry.register(collector)
    host, port = parse_listen(listen, 9308)
    return MetricsHTTP(registry, host, port, **limits)

