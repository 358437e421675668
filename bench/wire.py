"""Adapter for ``bench/bench_kafka_wire.py`` (written with the server).

That module's ``run(n_records, value_size)`` starts ``arrowlog serve``,
produces and consumes once with confluent-kafka and returns a dict of
seconds and rates. Here it is called once as a small warm-up and then once per
timed run, and its figures become rows next to the Redis Streams and NATS
JetStream rows measured earlier in the same run (both also cross a socket to a
server).
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


def run(ctx, mod, earlier: list[Row]) -> list[Row]:
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
