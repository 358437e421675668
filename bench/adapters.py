"""Adapters for the benchmarks written alongside other features, whose
``run()`` returns a dict of figures for one standalone run instead of rows.

- ``bench/bench_kafka_wire.py`` (the server's): ``run(n_records)`` starts
  ``arrowlog serve``, produces and consumes once with confluent-kafka. Called
  once as a small warm-up and then once per timed run; its rows sit next to
  the Redis Streams and NATS JetStream rows of the same run (both also cross a
  socket to a server).
- ``bench/bench_groups.py`` (the consumer groups'): ``run(quick)`` measures
  cross-process latency to a group member and a 3-member group against one
  consumer (asynchronous commits), on data it writes itself. Each call is a
  fresh standalone run, so it is simply called once per timed run.

Each call runs in its own process group through the module's command line
(which prints the same dict as JSON), with a time limit: a benchmark that
hangs becomes a missing row, and its processes are killed, instead of
stalling the whole comparison.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys

from .harness import Row, attempt, failure_reason

PEERS = {  # wire workload -> rows of the same run to show beside it
    "produce": ("produce.one.redis", "produce.one.nats"),
    "consume": ("consume.all.redis", "consume.all.nats"),
}


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json(args: list[str], timeout: float) -> dict:
    """Run ``python <args>`` from the repository root; its stdout's JSON object."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"python {' '.join(args)} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"python {' '.join(args)} exited with {proc.returncode}: {last}")
    return json.loads(out[out.index("{"):])


def _call(mod, n: int) -> dict:
    return run_json([mod.__file__, "--records", str(n), "--value-size", "100"], timeout=60 + n / 10_000)


def kafka_wire(ctx, mod, earlier: list[Row]) -> list[Row]:
    n, nb = ctx.n, ctx.records.nbytes
    results: list[dict] = []

    def produce_samples() -> list[float]:
        for _ in range(ctx.warmup):
            _call(mod, min(n, 50_000))
        for _ in range(ctx.runs):
            results.append(_call(mod, n))
        return [r["produce_s"] for r in results]

    produce = attempt(Row("kafka_wire.produce.arrowlog", "Kafka protocol: produce", "arrowlog",
                          "arrowlog serve ← confluent-kafka Producer (acks=1, linger.ms=5), one partition",
                          records=n, nbytes=nb), produce_samples)
    consume = Row("kafka_wire.consume.arrowlog", "Kafka protocol: consume", "arrowlog",
                  "arrowlog serve → confluent-kafka Consumer, assigned partition, consume(10000)",
                  records=n, nbytes=nb, missing=produce.missing,
                  samples=[r["consume_s"] for r in results] if produce.ok else [])
    out = [produce]
    by_key = {r.key: r for r in earlier}
    for direction, row in (("produce", produce), ("consume", consume)):
        if direction == "consume":
            out.append(row)
        for key in PEERS[direction]:
            peer = by_key.get(key)
            if peer is not None:
                out.append(dataclasses.replace(peer, key=f"kafka_wire.{key}", workload=row.workload,
                                               note=f"the same samples as `{key}`"))
    return out


def _group_variants(gt: dict) -> dict[str, dict]:
    """{variant: figures} for every reading workload bench_groups.py reports
    (a dict holding one_consumer_rec_s and three_members_rec_s)."""
    out = {"": gt} if "one_consumer_rec_s" in gt else {}
    out.update({k: v for k, v in gt.items() if isinstance(v, dict) and "one_consumer_rec_s" in v})
    return out


def groups(ctx, mod, earlier: list[Row]) -> list[Row]:
    results: list[dict] = []
    try:
        for _ in range(ctx.runs):
            results.append(run_json(["-m", "bench.bench_groups"] + (["--quick"] if ctx.quick else []), timeout=60))
    except Exception as exc:
        return [Row("groups.error", "consumer group (bench_groups.py)", "arrowlog", missing=failure_reason(exc))]
    sends = results[0]["latency"].get("sends", 0)
    rows = [attempt(Row(f"groups.latency.{q}.arrowlog", "cross-process latency", "arrowlog, group member",
                        "bench_groups.py: produce()+flush() → a subscribed group member's poll()",
                        kind="latency", unit=f"µs {q}", records=sends),
                    lambda q=q: [r["latency"][f"{q.replace('.', '_')}_us"] for r in results])
            for q in ("p50", "p99", "p99.9")]
    records = results[0]["group_throughput"]["records"]
    for variant in _group_variants(results[0]["group_throughput"]):
        wl = f"consumer group (bench_groups.py){': ' + variant if variant else ''}"
        tag = f"{variant}." if variant else ""
        for who, system, setting in (
            ("three_members", "arrowlog", "3 member processes, one group"),
            ("one_consumer", "arrowlog, 1 consumer", "one subscribed consumer"),
        ):
            def samples(who=who, variant=variant):
                # rows hold seconds per run: records / (records per second)
                return [records / _group_variants(r["group_throughput"])[variant][f"{who}_rec_s"] for r in results]

            rows.append(attempt(Row(f"groups.{tag}{who}.arrowlog", wl, system, setting, records=records,
                                    nbytes=records * 100), samples))
    return rows
