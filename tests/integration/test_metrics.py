"""Prometheus metrics: kafka_exporter's names, labels and values, and arrowlog's own.

The server runs in this process (its event loop on a thread), so the test
knows the bound /metrics port; a confluent-kafka producer writes while a
confluent-kafka group member that stopped reading lags behind. Every
scrape is parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

pytest.importorskip("prometheus_client")
ck = pytest.importorskip("confluent_kafka")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from arrowlog import LogDir, Producer  # noqa: E402
from arrowlog.groups.admin import GroupAdmin  # noqa: E402
from arrowlog.metrics import LogDirCollector  # noqa: E402
from arrowlog.server import KafkaServer, Limits  # noqa: E402

DEADLINE_S = 60.0


def wait_for(predicate, what: str, timeout: float = DEADLINE_S):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def read_records(consumer, n: int) -> list:
    """Poll a confluent-kafka consumer until it has returned ``n`` records."""
    got: list = []

    def read_some():
        m = consumer.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m)
        return len(got) >= n

    wait_for(read_some, f"the group member to read {n} records")
    return got


def parse(text: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} of a scrape."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return parse(r.read().decode())


def lbl(**labels) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in labels.items()))


class ServerThread:
    """A KafkaServer with /metrics, on its own event loop thread."""

    def __init__(self, data_dir: str, **options):
        self.loop = asyncio.new_event_loop()
        self.server = KafkaServer(data_dir, "127.0.0.1", 0, metrics_listen="127.0.0.1:0", **options)
        started = threading.Event()
        self.error: BaseException | None = None

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self.server.start())
            except BaseException as exc:  # reported by the constructor
                self.error = exc
                started.set()
                return
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(DEADLINE_S), "server did not start"
        if self.error:
            raise self.error
        self.bootstrap = f"127.0.0.1:{self.server.port}"
        self.metrics_url = self.server._observers[0].url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)
        self.loop.close()


@pytest.fixture
def server(data_dir):
    srv = ServerThread(data_dir, default_partitions=3)
    yield srv
    srv.stop()


def test_scrape_while_producing_and_a_group_lags(server):
    topic, group = "orders", "billing"
    # the topic is auto-created with the server's default of 3 partitions
    p = ck.Producer({"bootstrap.servers": server.bootstrap, "linger.ms": 5})
    for i in range(300):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert p.flush(30) == 0

    # A member reads a little, commits, then stops reading (it stays in the group).
    c = ck.Consumer({"bootstrap.servers": server.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False})
    c.subscribe([topic])
    read_records(c, 40)
    c.commit(asynchronous=False)
    # librdkafka says -1001 for "nothing committed"; kafka_exporter says -1
    committed = {tp.partition: max(tp.offset, -1) for tp in c.committed(
        [ck.TopicPartition(topic, i) for i in range(3)], timeout=30)}
    assert sum(o for o in committed.values() if o >= 0) == 40

    # The producer goes on while we scrape.
    stop = threading.Event()
    delivered = [300]

    def on_delivery(err, msg):
        if err is None:
            delivered[0] += 1

    def produce():
        i = 300
        while not stop.is_set():
            p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), on_delivery=on_delivery)
            p.poll(0.005)
            i += 1

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        first = scrape(server.metrics_url)
        wait_for(lambda: scrape(server.metrics_url)["kafka_topic_partition_current_offset"] != \
                 first["kafka_topic_partition_current_offset"], "the offsets to move between scrapes")
        for _ in range(3):
            m = scrape(server.metrics_url)
            assert m["kafka_brokers"][()] == 1
            assert m["kafka_topic_partitions"][lbl(topic=topic)] == 3
            assert m["kafka_consumergroup_members"][lbl(consumergroup=group)] == 1
            lag_total = 0
            for part in range(3):
                tp = lbl(topic=topic, partition=part)
                gtp = lbl(consumergroup=group, topic=topic, partition=part)
                hwm = m["kafka_topic_partition_current_offset"][tp]
                assert m["kafka_topic_partition_oldest_offset"][tp] == 0
                current = m["kafka_consumergroup_current_offset"][gtp]
                assert current == committed[part]
                if current < 0:
                    assert gtp not in m.get("kafka_consumergroup_lag", {})
                    continue
                # lag is high watermark minus committed offset, per partition, within one scrape
                assert m["kafka_consumergroup_lag"][gtp] == hwm - current
                assert m["arrowlog_consumergroup_lag_seconds"][gtp] >= 0
                lag_total += hwm - current
            gt = lbl(consumergroup=group, topic=topic)
            assert m["kafka_consumergroup_lag_sum"][gt] == lag_total
            assert m["kafka_consumergroup_current_offset_sum"][gt] == 40
            assert lag_total > 0
    finally:
        stop.set()
        producer.join(30)
    assert p.flush(30) == 0

    m = scrape(server.metrics_url)
    hwms = [m["kafka_topic_partition_current_offset"][lbl(topic=topic, partition=i)] for i in range(3)]
    assert sum(hwms) == delivered[0]
    # arrowlog's own: what the server counted as it ran
    assert m["arrowlog_topic_records_in_total"][lbl(topic=topic)] == delivered[0]
    assert m["arrowlog_topic_bytes_in_total"][lbl(topic=topic)] > 0
    assert m["arrowlog_topic_records_out_total"][lbl(topic=topic)] >= 40
    assert m["arrowlog_request_latency_seconds_count"][lbl(api="Produce")] > 0
    assert m["arrowlog_request_latency_seconds_count"][lbl(api="Fetch")] > 0
    assert m["arrowlog_connections"][()] >= 2
    assert m["arrowlog_connections_accepted_total"][()] >= 2
    assert all(m["arrowlog_topic_partition_segments"][lbl(topic=topic, partition=i)] >= 1 for i in range(3))
    assert all(m["arrowlog_topic_partition_log_bytes"][lbl(topic=topic, partition=i)] > 0 for i in range(3))
    wait_for(lambda: scrape(server.metrics_url).get("arrowlog_fsync_latency_seconds_count", {}).get((), 0) > 0,
             "the periodic flush to fsync a partition")
    c.close()


def long_poll_fetch(topic: str) -> bytes:
    """A Fetch v12 request frame that waits 60 s for a record that never comes."""
    from arrowlog.server import messages as M
    from arrowlog.server.wire import Writer

    w = Writer()
    M.FETCH.encode_request({"max_wait_ms": 60_000, "min_bytes": 1, "max_bytes": 1 << 20, "topics": [
        {"topic": topic, "partitions": [{"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}]}]},
        w, 12)
    payload = struct.pack(">hhih", M.FETCH.key, 12, 1, 4) + b"test" + b"\x00" + bytes(w.buf)
    return struct.pack(">i", len(payload)) + payload


def test_refused_connection_is_counted(data_dir):
    with LogDir(data_dir) as d:
        d.create_topic("empty", 1)
    srv = ServerThread(data_dir, limits=Limits(max_connections=1))
    try:
        busy = socket.create_connection(("127.0.0.1", srv.server.port))
        busy.sendall(long_poll_fetch("empty"))   # a request to answer: not idle, so not closed for room
        wait_for(lambda: scrape(srv.metrics_url).get("arrowlog_connections", {}).get(()) == 1,
                 "the first connection to be admitted")
        wait_for(lambda: srv.server.broker is not None and not all(c.idle for c in srv.server._connections),
                 "the Fetch to be waiting")
        extra = socket.create_connection(("127.0.0.1", srv.server.port))
        extra.settimeout(30)
        assert extra.recv(1) == b""  # closed by the server
        m = scrape(srv.metrics_url)
        assert m["arrowlog_connections_refused_total"][()] == 1
        assert m["arrowlog_connections"][()] == 1
        busy.close()
        extra.close()
    finally:
        srv.stop()


def test_lag_seconds_from_the_committed_records_timestamp(data_dir):
    base = 1_700_000_000_000
    with Producer({"log.dir": data_dir, "num.partitions": 1}) as p:
        for i in range(10):
            p.produce("events", value=b"x", timestamp=base + i * 1000)
        p.flush()
    with GroupAdmin(data_dir) as admin:
        admin.commit("slow", {("events", 0): 4})   # next to read: the record stamped base + 4 s
        admin.commit("done", {("events", 0): 10})  # caught up
    with LogDir(data_dir) as logdir:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LogDirCollector(logdir, clock=lambda: (base + 60_000) / 1000))
        text = generate_latest(registry).decode()
        m = parse(text)
    # kafka_exporter's families are all gauges, and all of them are here
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert {n: t for n, t in types.items() if n.startswith("kafka_")} == {n: "gauge" for n in (
        "kafka_brokers", "kafka_broker_info", "kafka_topic_partitions", "kafka_topic_partition_current_offset",
        "kafka_topic_partition_oldest_offset", "kafka_consumergroup_current_offset",
        "kafka_consumergroup_current_offset_sum", "kafka_consumergroup_lag", "kafka_consumergroup_lag_sum",
        "kafka_consumergroup_members")}
    slow = lbl(consumergroup="slow", topic="events", partition=0)
    done = lbl(consumergroup="done", topic="events", partition=0)
    assert m["kafka_consumergroup_lag"][slow] == 6
    assert m["arrowlog_consumergroup_lag_seconds"][slow] == 56.0   # now - (base + 4 s)
    assert m["kafka_consumergroup_lag"][done] == 0
    assert m["arrowlog_consumergroup_lag_seconds"][done] == 0.0
    assert m["kafka_consumergroup_members"][lbl(consumergroup="slow")] == 0


def test_a_negative_committed_offset_has_no_lag(data_dir):
    """Kafka's OffsetCommit stores any offset; a consumer treats a negative one
    as nothing committed. Its lag was high watermark minus it (8 for -5 on a
    3-record partition)."""
    with Producer({"log.dir": data_dir, "num.partitions": 1}) as p:
        for i in range(3):
            p.produce("t", value=b"v")
        p.flush()
    with GroupAdmin(data_dir) as admin:
        admin.commit("odd", {("t", 0): -5})
        admin.commit("fine", {("t", 0): 1})
    with LogDir(data_dir) as logdir:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LogDirCollector(logdir))
        m = parse(generate_latest(registry).decode())
    assert m["kafka_consumergroup_current_offset"][lbl(consumergroup="odd", topic="t", partition=0)] == -5
    assert m["kafka_consumergroup_lag"] == {lbl(consumergroup="fine", topic="t", partition=0): 2}
    # (the sums count it as nothing committed, as for a partition with no commit)
    assert m["kafka_consumergroup_lag_sum"] == {lbl(consumergroup="fine", topic="t"): 2,
                                                lbl(consumergroup="odd", topic="t"): 0}


def test_arrowlog_metrics_command_serves_a_directory(data_dir):
    with Producer({"log.dir": data_dir, "num.partitions": 2}) as p:
        for i in range(20):
            p.produce("t", key=str(i).encode(), value=b"v")
        p.flush()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "arrowlog", "--data", data_dir, "metrics",
                             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), proc.stderr.read()
        m = scrape(f"http://{address}/metrics")
        parts = [m["kafka_topic_partition_current_offset"][lbl(topic="t", partition=i)] for i in range(2)]
        assert sum(parts) == 20
        assert m["kafka_topic_partitions"][lbl(topic="t")] == 2
    finally:
        proc.terminate()
        proc.wait(30)


def test_serve_options_start_metrics_and_console(tmp_path, data_dir):
    """``python -m arrowlog.server --metrics-listen ... --console-listen ...`` (the
    options table) serves both on the ports it logs."""
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "arrowlog.server", "--data", data_dir,
                                 "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                                 "--console-listen", "127.0.0.1:0"],
                                stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert proc.stdout.readline().strip().startswith("127.0.0.1:"), log_path.read_text()

        def logged(what: str) -> str | None:
            for line in log_path.read_text().splitlines():
                if f"{what} on http://" in line:
                    return line.split(f"{what} on ", 1)[1].strip()
            return None

        metrics_url = wait_for(lambda: logged("metrics"), "the metrics address in the log")
        console_url = wait_for(lambda: logged("console"), "the console address in the log")
        assert scrape(metrics_url)["kafka_brokers"][()] == 1
        with urllib.request.urlopen(console_url, timeout=30) as r:
            assert b"<h1>Topics</h1>" in r.read()
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def test_a_damaged_offsets_file_does_not_break_the_scrape(data_dir):
    with Producer({"log.dir": data_dir, "num.partitions": 1}) as p:
        for i in range(5):
            p.produce("t", value=b"v")
        p.flush()
    with GroupAdmin(data_dir) as admin:
        admin.commit("good", {("t", 0): 2})
        admin.commit("bad", {("t", 0): 1})
    with LogDir(data_dir) as logdir:
        with open(os.path.join(logdir.groups_dir, "bad", "offsets.json"), "w") as f:
            f.write("{not json")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LogDirCollector(logdir))
        m = parse(generate_latest(registry).decode())
    assert m["kafka_consumergroup_lag"] == {lbl(consumergroup="good", topic="t", partition=0): 3}
    assert m["kafka_consumergroup_members"][lbl(consumergroup="bad")] == 0
    assert m["kafka_topic_partition_current_offset"][lbl(topic="t", partition=0)] == 5


def test_recovery_scans_are_counted_per_partition(data_dir):
    with Producer({"log.dir": data_dir, "num.partitions": 2}) as p:
        for i in range(10):
            p.produce("t", value=b"v", partition=i % 2)
        p.flush()
    with LogDir(data_dir) as logdir:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LogDirCollector(logdir))
        before = parse(generate_latest(registry).decode())["arrowlog_topic_partition_recovery_scans_total"]
        logdir.topic("t").partition(1).recover()   # what a reopen after a crash runs
        after = parse(generate_latest(registry).decode())["arrowlog_topic_partition_recovery_scans_total"]
    assert before == {lbl(topic="t", partition=0): 0, lbl(topic="t", partition=1): 0}
    assert after == {lbl(topic="t", partition=0): 0, lbl(topic="t", partition=1): 1}


@pytest.mark.parametrize("command, module, extra", [
    (["metrics", "--once"], "prometheus_client", "metrics"),
    (["console", "--listen", "127.0.0.1:0"], "flask", "console"),
])
def test_a_missing_extra_is_named(monkeypatch, data_dir, command, module, extra):
    from click.testing import CliRunner

    from arrowlog.cli import main
    from arrowlog.cli.common import EXIT_UNAVAILABLE

    LogDir(data_dir).close()
    monkeypatch.setitem(sys.modules, module, None)   # as if it were not installed
    with CliRunner().isolation() as (_, err, _):
        rc = main(["--data", data_dir, *command])
    text = err.getvalue().decode()
    assert rc == EXIT_UNAVAILABLE and f"pip install 'arrowlog[{extra}]'" in text, text


def test_console_under_serve_shows_kafka_group_members(data_dir):
    """The console that ``serve --console-listen`` starts shows the members of the
    server's in-memory groups: client id, host, subscription and assignment
    (decoded from the consumer protocol), and the partitions they own."""
    srv = ServerThread(data_dir, console_listen="127.0.0.1:0", default_partitions=2)
    c = None
    try:
        p = ck.Producer({"bootstrap.servers": srv.bootstrap})
        for i in range(20):
            p.produce("clicks", value=b"v", partition=i % 2)
        assert p.flush(30) == 0
        c = ck.Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "web", "client.id": "web-reader",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe(["clicks"])
        read_records(c, 5)
        console = srv.server._observers[1].url

        def page(path: str) -> str:
            with urllib.request.urlopen(console + path, timeout=30) as r:
                return r.read().decode()

        groups = page("groups")
        assert 'data-group="web"' in groups and "Stable" in groups
        # the wire member is also a member file (groups/wire.py): one member, listed once
        row = groups.split('data-group="web"', 1)[1].split("</tr>", 1)[0]
        assert '<td class="num">1</td>' in row
        group = page("groups/web")
        members = group.split('id="members"', 1)[1].split("</table>", 1)[0]
        assert "web-reader" in members and "clicks-0, clicks-1" in members
        assert members.count("<tr><td>") == 1
        owner = group.split('data-tp="clicks-0"', 1)[1].split("</tr>", 1)[0]
        assert "web-reader" in owner   # librdkafka member ids start with the client id
        m = scrape(srv.metrics_url)
        assert m["kafka_consumergroup_members"][lbl(consumergroup="web")] == 1
    finally:
        if c is not None:
            c.close()
        srv.stop()


def test_a_taken_metrics_port_stops_the_server_cleanly(data_dir):
    from arrowlog.errors import ConfigError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        loop = asyncio.new_event_loop()
        server = KafkaServer(data_dir, "127.0.0.1", 0, metrics_listen=f"127.0.0.1:{port}")
        try:
            with pytest.raises(ConfigError, match=f"cannot listen for metrics on 127.0.0.1:{port}"):
                loop.run_until_complete(server.start())
            kafka_port = server.port
            with pytest.raises(OSError):   # the Kafka listener was closed again
                socket.create_connection(("127.0.0.1", kafka_port), timeout=5).close()
        finally:
            loop.close()


def _compacted_topic(data_dir: str, n: int = 600) -> None:
    """A compacted topic "c" (two partitions, small segments, many updates per
    key, so compaction reclaims bytes) beside a plain topic "plain"."""
    with LogDir(data_dir) as logdir:
        logdir.create_topic("c", partitions=2, config={"cleanup.policy": "compact", "segment.bytes": 16384})
        logdir.create_topic("plain", partitions=1)
    with Producer({"log.dir": data_dir}) as p:
        for i in range(n):
            if i % 50 == 0:
                p.flush()
            p.produce("c", value=b"v%d" % i, key=b"k%d" % (i % 10), partition=i % 2)
            p.produce("plain", value=b"v")
        p.flush()


def _cleaner_samples(m: dict, topic: str) -> dict:
    """{cleaner sample name: {labels: value}} of ``topic`` (names without any left out)."""
    out = {name: {k: v for k, v in samples.items() if ("topic", topic) in k}
           for name, samples in m.items() if name.startswith("arrowlog_cleaner_")}
    return {name: samples for name, samples in out.items() if samples}


def test_cleaner_health_matches_topic_describe(data_dir):
    from arrowlog.cli.topic import describe_topic

    _compacted_topic(data_dir)
    with LogDir(data_dir) as logdir:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LogDirCollector(logdir))
        before = parse(generate_latest(registry).decode())
        now_ms = int(time.time() * 1000)
        reports = logdir.compact("c", now_ms=now_ms)
        after = parse(generate_latest(registry).decode())
        described = describe_topic(logdir, "c")["partitions"]
    assert _cleaner_samples(before, "plain") == {} and _cleaner_samples(after, "plain") == {}
    assert len(_cleaner_samples(after, "c")) == 6
    for p in (0, 1):
        key = lbl(topic="c", partition=p)
        # never cleaned: every closed segment is dirty, no clean time yet
        assert before["arrowlog_cleaner_dirty_ratio"][key] == 1.0
        assert key not in before.get("arrowlog_cleaner_last_clean_timestamp_seconds", {})
        assert before["arrowlog_cleaner_cleans_total"][key] == 0
        assert before["arrowlog_cleaner_bytes_reclaimed_total"][key] == 0
        h = described[p]["cleaner"]
        assert reports[p]["bytes_reclaimed"] > 0
        assert after["arrowlog_cleaner_bytes_reclaimed_total"][key] == h["bytes_reclaimed"] == \
            reports[p]["bytes_reclaimed"]
        assert after["arrowlog_cleaner_dirty_ratio"][key] == h["dirty_ratio"] == 0.0
        assert after["arrowlog_cleaner_last_clean_timestamp_seconds"][key] == h["last_clean_ms"] / 1000 == \
            now_ms / 1000
        assert after["arrowlog_cleaner_last_clean_duration_seconds"][key] == \
            pytest.approx(h["last_clean_duration_ms"] / 1000)
        assert h["last_clean_duration_ms"] > 0
        assert after["arrowlog_cleaner_cleans_total"][key] == h["cleans"] == 1
        assert after["arrowlog_cleaner_last_error"][key] == 0 and h["last_error"] is None


def test_cleaner_dirty_ratio_follows_new_writes_between_scrapes(data_dir):
    from arrowlog.cli.topic import describe_topic

    _compacted_topic(data_dir)
    with LogDir(data_dir) as logdir:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LogDirCollector(logdir))
        logdir.compact("c")
        clean = parse(generate_latest(registry).decode())["arrowlog_cleaner_dirty_ratio"]
        with Producer({"log.dir": data_dir}) as p:  # enough to roll new (dirty) segments
            for i in range(600):
                if i % 50 == 0:
                    p.flush()
                p.produce("c", value=b"w%d" % i, key=b"k%d" % (i % 10), partition=0)
            p.flush()
        dirty = parse(generate_latest(registry).decode())["arrowlog_cleaner_dirty_ratio"]
        described = describe_topic(logdir, "c")["partitions"]
    assert clean == {lbl(topic="c", partition=0): 0.0, lbl(topic="c", partition=1): 0.0}
    assert dirty[lbl(topic="c", partition=0)] == described[0]["cleaner"]["dirty_ratio"] > 0
    assert dirty[lbl(topic="c", partition=1)] == 0.0


def test_a_failing_clean_shows_in_the_metrics_without_its_message(monkeypatch, data_dir):
    from arrowlog.cli.topic import describe_topic
    from arrowlog.storage import cleaner

    _compacted_topic(data_dir)
    with LogDir(data_dir) as logdir:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LogDirCollector(logdir))
        logdir.compact("c")
        good = parse(generate_latest(registry).decode())

        def fail(plog, now_ms):
            raise OSError(28, "No space left on device (cleaning/)")

        monkeypatch.setattr(cleaner, "_clean", fail)
        with pytest.raises(OSError):
            logdir.compact("c")
        text = generate_latest(registry).decode()
        bad = parse(text)
        described = describe_topic(logdir, "c")["partitions"]
    key = lbl(topic="c", partition=0)
    assert "No space left" in described[0]["cleaner"]["last_error"]
    assert bad["arrowlog_cleaner_last_error"][key] == 1
    assert "No space left" not in text  # the message stays out of the labels: bounded cardinality
    # the last finished round is still what the other gauges report
    for name in ("arrowlog_cleaner_last_clean_timestamp_seconds", "arrowlog_cleaner_bytes_reclaimed_total",
                 "arrowlog_cleaner_cleans_total"):
        assert bad[name][key] == good[name][key]
