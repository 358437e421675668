"""The benchmark harness's pure pieces: statistics, ratios, targets, RESULTS.md, missing peers.

No peer server is started and nothing is timed here; the real comparison is
``make bench``.
"""

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bench.harness import (  # noqa: E402
    PeerUnavailable,
    Row,
    Target,
    attempt,
    measure,
    median,
    percentile,
    ratio,
    render_markdown,
    spread_pct,
)
from bench.peers import RedisServer, which  # noqa: E402


def test_median_and_spread():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 10.0]) == 2.5
    # half the min-max range as a percentage of the median
    assert spread_pct([90.0, 100.0, 110.0]) == pytest.approx(10.0)
    assert spread_pct([5.0]) == 0.0
    with pytest.raises(ValueError):
        median([])


def test_percentile_nearest_rank():
    xs = sorted(float(i) for i in range(1, 1001))
    assert percentile(xs, 50) == 500.0
    assert percentile(xs, 99) == 990.0
    assert percentile(xs, 99.9) == 999.0
    assert percentile(xs, 100) == 1000.0
    assert percentile([7.0], 99.9) == 7.0


def test_measure_skips_warmup_and_uses_fresh_state():
    made, torn = [], []
    seen = []

    def setup():
        made.append(len(made))
        return made[-1]

    samples = measure(lambda s: seen.append(s) or 0.5, runs=3, warmup=2, setup=setup, teardown=torn.append)
    assert samples == [0.5, 0.5, 0.5]  # a float returned by the body is its own elapsed time
    assert seen == [0, 1, 2, 3, 4] and torn == [0, 1, 2, 3, 4]


def test_rates_and_ratio():
    a = Row("x.arrowlog", "w", "arrowlog", records=1000, nbytes=100_000, samples=[0.001, 0.002, 0.001])
    b = Row("x.peer", "w", "peer", records=1000, nbytes=100_000, samples=[0.004, 0.004, 0.005])
    assert median(a.rates()) == 1_000_000
    assert ratio(a, b) == pytest.approx(4.0)
    limit = Row("x.limit", "w", "machine limit", nbytes=100_000, samples=[0.0005])
    # no record count on the limit row: compared in bytes per second
    assert ratio(a, limit) == pytest.approx(0.5)
    lat_a = Row("l.a", "lat", "arrowlog", kind="latency", unit="µs", samples=[50.0, 60.0, 55.0])
    lat_b = Row("l.b", "lat", "peer", kind="latency", unit="µs", samples=[110.0])
    assert ratio(lat_a, lat_b) == pytest.approx(0.5)


def test_attempt_reports_a_failing_peer_as_missing():
    def broken():
        raise PeerUnavailable("redis-server is not installed (apt-get install redis-server)")

    row = attempt(Row("p.redis", "w", "Redis Streams", records=10), broken)
    assert not row.ok
    assert row.missing == "PeerUnavailable: redis-server is not installed (apt-get install redis-server)"
    good = attempt(Row("p.sqlite", "w", "SQLite", records=10), lambda: [0.1, 0.2])
    assert good.ok and good.samples == [0.1, 0.2]


def test_absent_server_binary_is_peer_unavailable(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("bench.peers.SBIN_DIRS", ())
    with pytest.raises(PeerUnavailable, match="redis-server is not installed"):
        which("redis-server")
    row = attempt(Row("p.redis", "w", "Redis Streams", records=10), lambda: RedisServer("always").start())
    assert row.missing.startswith("PeerUnavailable: redis-server is not installed")


def fake_results():
    rows = [
        Row("produce.one.arrowlog", "produce one by one", "arrowlog", "produce per record",
            records=1_000_000, nbytes=100_000_000, samples=[0.25, 0.26, 0.24]),
        Row("produce.one.confluent", "produce one by one", "confluent-kafka", "queue only",
            records=1_000_000, nbytes=100_000_000, samples=[0.5, 0.5, 0.55], note="no broker"),
        Row("produce.one.nats", "produce one by one", "NATS JetStream", records=200_000,
            missing="PeerUnavailable: nats-server is not installed"),
        Row("latency.p99.arrowlog", "cross-process latency", "arrowlog", "p99", kind="latency", unit="µs",
            samples=[800.0, 900.0, 1200.0]),
    ]
    return {
        "meta": {"command": "python -m bench --quick", "started": "2026-01-01T00:00:00+00:00", "duration_s": 12.0,
                 "runs": 3, "warmup": 1, "machine": {"CPU": "test CPU, 2 logical cores"},
                 "versions": {"pyarrow": "99"}, "durability": {"arrowlog": "page cache"}},
        "rows": [r.to_dict() for r in rows],
    }


def test_render_results_markdown():
    targets = [
        Target("per-call produce ≥ 2× confluent", "produce.one.arrowlog", versus="produce.one.confluent", min_ratio=2.0),
        Target("latency p99 < 1 ms", "latency.p99.arrowlog", max_value=1000.0, issue=3),
        Target("nats present", "produce.one.nats", min_value=1.0),
        Target("wire produce", "kafka_wire.produce.arrowlog", min_value=300_000, issue=4),
    ]
    md = render_markdown(fake_results(), targets, charts=["charts/throughput.png"])
    assert md.startswith("# arrowlog benchmark results")
    assert "`python -m bench --quick`" in md
    assert "**CPU**: test CPU, 2 logical cores" in md
    assert "### produce one by one" in md
    # absolute figure with its spread, and the arrowlog/peer ratio on the peer's row
    assert "| arrowlog | produce per record | 1,000,000 | 4.00 M rec/s | 4% | 400 MB/s | — |" in md
    assert "| confluent-kafka | queue only | 1,000,000 | 2.00 M rec/s | 5% | 200 MB/s | 2.00× |" in md
    assert "missing: PeerUnavailable: nats-server is not installed" in md
    assert "`produce.one.confluent`: no broker" in md
    # targets: a pass, a failure, and two rows that are missing
    assert "| #2 | per-call produce ≥ 2× confluent | `produce.one.arrowlog` | 2.00× | ≥ 2× `produce.one.confluent` | **pass** |" in md
    assert "| #3 | latency p99 < 1 ms | `latency.p99.arrowlog` | 900 µs | ≤ 1000 µs | **pass** |" in md
    assert "missing (PeerUnavailable: nats-server is not installed)" in md
    assert "| #4 | wire produce | `kafka_wire.produce.arrowlog` | missing (not measured in this run) |" in md
    assert "![charts/throughput.png](charts/throughput.png)" in md


def test_target_failure_is_shown():
    res = fake_results()
    t = Target("consume ≥ 10 M/s", "produce.one.arrowlog", min_value=10e6)
    assert "**FAIL**" in render_markdown(res, [t])
    third = Target("within 3×", "produce.one.arrowlog", versus="produce.one.confluent", min_ratio=1 / 3)
    assert "| ≥ 0.333× `produce.one.confluent` | **pass** |" in render_markdown(res, [third])


def test_a_target_the_issue_allows_in_another_mode_checks_that_row_second():
    res = fake_results()
    spin = Row("latency.p99.arrowlog-spin", "cross-process latency", "arrowlog (spin)", "p99", kind="latency",
               unit="µs", samples=[30.0, 40.0, 45.0])
    res["rows"].append(spin.to_dict())
    either = Target("p99 ≤ 50 µs", "latency.p99.arrowlog", max_value=50.0, issue=19,
                    allowed="latency.p99.arrowlog-spin", allowed_label="low-latency mode")
    md = render_markdown(res, [either])
    assert "| 900 µs; low-latency mode: 40 µs | ≤ 50.00 µs | **pass** |" in md
    # neither mode meets it: a failure that shows both figures
    strict = Target("p99 ≤ 20 µs", "latency.p99.arrowlog", max_value=20.0, issue=19,
                    allowed="latency.p99.arrowlog-spin", allowed_label="low-latency mode")
    assert "| 900 µs; low-latency mode: 40 µs | ≤ 20.00 µs | **FAIL** |" in render_markdown(res, [strict])
    # the default mode meeting it is enough; the other row is not consulted
    loose = Target("p99 ≤ 1 ms", "latency.p99.arrowlog", max_value=1000.0, allowed="latency.p99.nowhere")
    assert "| 900 µs | ≤ 1000 µs | **pass** |" in render_markdown(fake_results(), [loose])


def test_row_round_trips_through_json_dict():
    r = Row("k", "w", "arrowlog", records=10, samples=[1.0, 2.0])
    d = r.to_dict()
    assert d["median"] == 7.5  # median of the per-run rates 10/s and 5/s
    assert Row.from_dict(d) == r


def test_every_benchmark_names_its_question_and_is_listed():
    import ast
    import glob

    from bench.__main__ import BENCHMARKS

    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    files = sorted(glob.glob(os.path.join(here, "bench", "bench_*.py")))
    assert files
    for path in files:
        with open(path) as f:
            doc = ast.get_docstring(ast.parse(f.read()))
        name = os.path.basename(path)[len("bench_"):-len(".py")]
        opening = doc.split("\n\n")[0] if doc else ""
        assert opening.rstrip().endswith("?"), f"{path}: the docstring must open with its question"
        assert name in BENCHMARKS, f"{name} is not run by python -m bench"


def test_background_writer_loads_the_disk_and_is_bounded(tmp_path):
    from bench.contention import Contention

    load = Contention(str(tmp_path), pass_mib=2, max_s=120).start()
    try:
        assert load.wait_passes(2, timeout=120) >= 2  # rewrites its file, fsync per pass
        assert load.running and os.path.getsize(load.path) <= 2 << 20  # one file, never growing
    finally:
        load.stop()
    assert not load.running and not os.path.exists(load.path)
    # bounded by its own deadline too: it exits even if nobody stops it
    short = Contention(str(tmp_path), pass_mib=1, max_s=0.2).start()
    try:
        deadline = time.monotonic() + 120
        while short.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not short.running
    finally:
        short.stop()


def test_cold_cache_rows_say_why_they_cannot_run(monkeypatch, tmp_path):
    from bench.context import ColdCacheUnavailable, drop_page_cache

    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(ColdCacheUnavailable, match="needs root"):
        drop_page_cache()
    monkeypatch.setattr("os.geteuid", lambda: 0)
    with pytest.raises(ColdCacheUnavailable, match="cannot write .*drop_caches"):
        drop_page_cache(str(tmp_path / "absent" / "drop_caches"))
    row = attempt(Row("recovery.clean.arrowlog-cold", "w", "arrowlog", kind="latency", unit="s"),
                  lambda: drop_page_cache(str(tmp_path / "absent" / "drop_caches")))
    assert row.missing.startswith("ColdCacheUnavailable: cannot write")


# One run's figures as bench_kafka_wire.run() reports them (the confluent-kafka side).
WIRE_RUN = {"produce_s": 2.0, "consume_s": 0.5, "queue_s": 1.0, "acceptor_s": 1.6,
            "produce_acceptor_server_cpu_s": 0.05, "produce_acceptor_client_cpu_s": 1.1,
            "produce_server_cpu_s": 0.25, "produce_client_cpu_s": 1.0,
            "consume_server_cpu_s": 0.1, "consume_client_cpu_s": 0.5, "consume_thread_cpu_s": 0.4,
            "responder_consume_s": 0.45, "consume_nogc_s": 0.4, "fetch_wake_us": sorted(float(i) for i in range(1, 101))}


def kafka_wire_rows(monkeypatch, figures: dict, runs: int, warmup: int, calls: list | None = None) -> dict:
    """The kafka_wire adapter's rows, each call of the benchmark answered with ``figures``."""
    from bench import adapters
    from bench.context import Context

    def fake_call(mod, n, wake_sends, acceptor_last=False):
        if calls is not None:
            calls.append((n, wake_sends, acceptor_last))
        return figures

    monkeypatch.setattr(adapters, "_call", fake_call)
    ctx = Context(n=1000, runs=runs, warmup=warmup, quick=True)
    try:
        return {r.key: r for r in adapters.kafka_wire(ctx, None, [])}
    finally:
        ctx.close()


def test_kafka_wire_rows_carry_the_queueing_ceiling_and_the_wake_up(monkeypatch):
    calls: list = []
    rows = kafka_wire_rows(monkeypatch, {
        **WIRE_RUN, "c_client": "gcc", "c_client_missing": None, "c_librdkafka": "2.x",
        "c_produce_s": 1.0, "c_acceptor_s": 0.9, "c_queue_s": 0.5, "c_produce_thread_cpu_s": 0.6,
        "c_queue_thread_cpu_s": 0.4, "c_produce_client_cpu_s": 0.8, "c_produce_server_cpu_s": 0.2,
        "c_consume_s": 0.25, "c_responder_consume_s": 0.2, "c_consume_client_cpu_s": 0.3,
        "c_consume_server_cpu_s": 0.1}, runs=2, warmup=1, calls=calls)
    # the warm-up skips the wake-up; the acceptor goes first, then last
    assert calls == [(1000, 0, False), (1000, 100, False), (1000, 100, True)]
    assert ratio(rows["kafka_wire.produce.arrowlog"], rows["kafka_wire.produce.queue"]) == pytest.approx(0.5)
    # the do-nothing acceptor with the same client, same runs: the server's share
    assert ratio(rows["kafka_wire.produce.arrowlog"], rows["kafka_wire.produce.acceptor"]) == pytest.approx(0.8)
    assert rows["kafka_wire.produce.acceptor_server_cpu"].samples == [0.05, 0.05]
    assert rows["kafka_wire.produce.acceptor_client_cpu"].samples == [1.1, 1.1]
    assert rows["kafka_wire.fetch_wake.p50.arrowlog"].samples == [50.0, 50.0]
    assert rows["kafka_wire.fetch_wake.p99.arrowlog"].samples == [99.0, 99.0]
    # each side's CPU seconds in the same window, per run
    assert rows["kafka_wire.produce.server_cpu"].samples == [0.25, 0.25]
    assert rows["kafka_wire.consume.client_cpu"].samples == [0.5, 0.5]
    # the consumer against the do-nothing fetch responder, and its own thread's CPU
    assert ratio(rows["kafka_wire.consume.arrowlog"], rows["kafka_wire.consume.responder"]) == pytest.approx(0.9)
    assert rows["kafka_wire.consume.client_thread_cpu"].samples == [0.4, 0.4]
    assert rows["kafka_wire.consume.arrowlog-nogc"].samples == [0.4, 0.4]
    # the C client's rows: each in its own table, compared with its own arrowlog row
    c_produce, c_queue = rows["kafka_wire.produce.c_arrowlog"], rows["kafka_wire.produce.c_queue"]
    assert c_produce.workload == c_queue.workload != rows["kafka_wire.produce.arrowlog"].workload
    assert ratio(c_produce, c_queue) == pytest.approx(0.5)
    assert ratio(c_produce, rows["kafka_wire.produce.c_acceptor"]) == pytest.approx(0.9)
    assert ratio(rows["kafka_wire.consume.c_arrowlog"], rows["kafka_wire.consume.c_responder"]) == pytest.approx(0.8)
    assert rows["kafka_wire.consume.c_arrowlog"].rates() == [4000.0, 4000.0]
    assert "librdkafka 2.x" in c_produce.setting


def test_kafka_wire_c_client_rows_are_missing_with_the_reason_when_the_probe_cannot_build(monkeypatch):
    rows = kafka_wire_rows(monkeypatch, {**WIRE_RUN, "c_client": None,
                                         "c_client_missing": "librdkafka-dev is not installed"}, runs=1, warmup=0)
    assert rows["kafka_wire.produce.arrowlog"].ok
    assert rows["kafka_wire.consume.c_arrowlog"].missing == "librdkafka-dev is not installed"
    assert not rows["kafka_wire.produce.c_queue"].ok


def test_quantile_rows_are_filled_by_their_unit_or_all_missing_with_the_reason():
    from bench.bench_latency import fill_quantiles

    def templates():
        return [Row(f"l.{q}", "w", "arrowlog", kind="latency", unit=f"µs {q}") for q in ("p50", "p99.9")]

    rows = fill_quantiles(templates(), lambda: {"p50": [10.0, 12.0], "p99.9": [90.0, 80.0]})
    assert [r.samples for r in rows] == [[10.0, 12.0], [90.0, 80.0]]

    def broken():
        raise RuntimeError("latency reader did not start (exit code 1)")

    rows = fill_quantiles(templates(), broken)
    assert all(r.missing == "RuntimeError: latency reader did not start (exit code 1)" for r in rows)


def test_a_failing_c_client_run_is_kept_as_the_reason_and_skips_the_later_runs(monkeypatch, tmp_path):
    from bench import bench_kafka_wire as wire

    calls = tmp_path / "calls"
    probe = tmp_path / "probe"
    probe.write_text(f"#!/bin/sh\necho \"$1\" >> {calls}\n"
                     "[ \"$1\" = queue ] && echo '{\"seconds\": 0.5, \"librdkafka\": \"2.x\"}' && exit 0\n"
                     "echo 'rdkafka_probe: 10 of 20 records delivered' >&2; exit 1\n")
    probe.chmod(0o755)
    monkeypatch.setattr(wire, "build_probe", lambda: (probe, "built"))
    c = wire.CClient(20, 100)
    c.run("queue", "t", 0, {}, seconds="c_queue_s")
    c.run("produce", "t", 0, {}, seconds="c_produce_s")
    c.run("consume", "t", 0, {}, seconds="c_consume_s")
    assert c.figures["c_queue_s"] == 0.5 and c.figures["c_librdkafka"] == "2.x"
    assert c.figures["c_client_missing"] == "RuntimeError: rdkafka_probe produce: rdkafka_probe: 10 of 20 records delivered"
    assert "c_consume_s" not in c.figures
    assert calls.read_text().split() == ["queue", "produce"]   # nothing run after the failure


def test_a_c_client_that_cannot_be_built_runs_nothing_and_says_why(monkeypatch):
    from bench import bench_kafka_wire as wire

    monkeypatch.setattr(wire, "build_probe", lambda: (None, "librdkafka-dev is not installed"))
    c = wire.CClient(20, 100)
    c.run("queue", "t", 0, {}, seconds="c_queue_s")
    assert c.figures == {"c_client": None, "c_client_missing": "librdkafka-dev is not installed"}
