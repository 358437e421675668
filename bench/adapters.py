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
"""

from __future__ import annotations

import dataclasses
import inspect

from .harness import Row, attempt

PEERS = {  # wire workload -> rows of the same run to show beside it
    "produce": ("produce.one.redis", "produce.one.nats"),
    "consume": ("consume.all.redis", "consume.all.nats"),
}


def _call(mod, n: int) -> dict:
    params = inspect.signature(mod.run).parameters
    if "n_records" in params:
        return mod.run(n_records=n)
    return mod.run(n)


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


def groups(ctx, mod, earlier: list[Row]) -> list[Row]:
    results: list[dict] = []

    def runs() -> list[dict]:
        if not results:
            for _ in range(ctx.runs):
                results.append(mod.run(quick=ctx.quick))
        return results

    def lat(q: str):
        return lambda: [r["latency"][f"{q.replace('.', '_')}_us"] for r in runs()]

    rows = [attempt(Row(f"groups.latency.{q}.arrowlog", "cross-process latency", "arrowlog, group member",
                        "bench_groups.py: produce()+flush() → a subscribed group member's poll()",
                        kind="latency", unit=f"µs {q}", records=10_000 if not ctx.quick else 1_000), lat(q))
            for q in ("p50", "p99", "p99.9")]
    wl = "consumer group, asynchronous commits (bench_groups.py)"
    for key, system, setting, field in (
        ("groups.three.arrowlog", "arrowlog", "3 member processes, one group, async commit per batch",
         "three_members_s"),
        ("groups.one.arrowlog", "arrowlog, 1 consumer", "one subscribed consumer, async commit per batch",
         "one_consumer_s"),
    ):
        rows.append(attempt(Row(key, wl, system, setting, records=0), lambda f=field: [r["group_throughput"][f] for r in runs()]))
    for r in rows[3:]:
        if r.ok:
            r.records = results[0]["group_throughput"]["records"]
            r.nbytes = r.records * 100
    return rows
