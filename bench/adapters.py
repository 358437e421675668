"""The adapter for the benchmark written alongside the server, whose
``run()`` returns a dict of figures for one standalone run instead of rows.

- ``bench/bench_kafka_wire.py`` (the server's): ``run(n_records)`` starts
  ``arrowlog serve``, produces and consumes once with confluent-kafka. Called
  once as a small warm-up and then once per timed run; its rows sit next to
  the Redis Streams and NATS JetStream rows of the same run (both also cross a
  socket to a server).

The call runs in its own process group through the module's command line
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

from .harness import Row, attempt, percentile

PEERS = {  # wire workload -> rows of the same run to show beside it
    "produce": ("produce.one.redis", "produce.one.nats"),
    "consume": ("consume.all.redis", "consume.all.nats"),
}


CLIENT = "librdkafka's defaults: acks=all, linger.ms=5, batch.size=1000000, no compression"
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


def _call(mod, n: int, wake_sends: int, acceptor_last: bool = False) -> dict:
    return run_json(["-m", mod.__name__, "--records", str(n), "--value-size", "100", "--wake-sends", str(wake_sends),
                     *(["--acceptor-last"] if acceptor_last else [])], timeout=120 + n / 5_000)


def kafka_wire(ctx, mod, earlier: list[Row]) -> list[Row]:
    n, nb = ctx.n, ctx.records.nbytes
    results: list[dict] = []

    wake_sends = 100 if ctx.quick else 500

    def produce_samples() -> list[float]:
        for _ in range(ctx.warmup):
            _call(mod, min(n, 50_000), 0)
        for i in range(ctx.runs):  # the acceptor before the server, then after it, and so on
            results.append(_call(mod, n, wake_sends, acceptor_last=i % 2 == 1))
        return [r["produce_s"] for r in results]

    produce = attempt(Row("kafka_wire.produce.arrowlog", "Kafka protocol: produce", "arrowlog",
                          f"arrowlog serve ← confluent-kafka Producer ({CLIENT}), one partition",
                          records=n, nbytes=nb), produce_samples)
    acceptor = Row("kafka_wire.produce.acceptor", "Kafka protocol: produce", "do-nothing acceptor",
                   f"the same client ({CLIENT}) against bench/null_broker.py: acks every Produce at once, "
                   "stores nothing", records=n, nbytes=nb, missing=produce.missing,
                   samples=[r["acceptor_s"] for r in results] if produce.ok else [],
                   note="measured in the same process as each produce run, before it in odd runs and after it in even "
                        "ones: the best any server can do "
                        "with this client on this machine; the produce row's ratio to it is the server's share")
    queue = Row("kafka_wire.produce.queue", "Kafka protocol: produce", "confluent-kafka, no broker",
                "the same client's produce() of the same values, queueing only (no broker reachable, the same producer configuration)",
                records=n, nbytes=nb, missing=produce.missing,
                samples=[r["queue_s"] for r in results] if produce.ok else [],
                note="measured in the same process before the produce row: issue 19's ceiling, which counts only "
                     "the produce() loop; with a broker reachable librdkafka's broker thread frames and sends the "
                     "batches on the same two cores (`kafka_wire.produce.client_cpu`), so even the do-nothing "
                     "acceptor stays well below it (`kafka_wire.produce.acceptor`; docs/PROTOCOL.md, Tests and speed)")
    consume = Row("kafka_wire.consume.arrowlog", "Kafka protocol: consume", "arrowlog",
                  ("arrowlog serve → confluent-kafka Consumer (max.partition.fetch.bytes=8 MiB, fetch.queue.backoff.ms=10), "
                  "assigned partition, consume(10000), len(value) of each"),
                  records=n, nbytes=nb, missing=produce.missing,
                  samples=[r["consume_s"] for r in results] if produce.ok else [],
                  note="bounded by the client: its own CPU rate (`kafka_wire.consume.client_cpu`, same run) is below "
                       "3 M/s and the server's CPU rate is several times it (`kafka_wire.consume.server_cpu`)")

    def cpu_row(direction: str, side: str, who: str, window: str = "arrowlog") -> Row:
        return Row(f"kafka_wire.{direction}.{side}_cpu", f"Kafka protocol: {direction}", who,
                   f"records per CPU second of the {side.split('_')[-1]} process (all threads, its CPU clock) in "
                   f"the same window as `kafka_wire.{direction}.{window}`: its rate if it never waited for the "
                   "other side",
                   records=n, missing=produce.missing,
                   samples=[r[f"{direction}_{side}_cpu_s"] for r in results] if produce.ok else [])

    cpu_rows = [cpu_row(d, side, who) for d in ("produce", "consume")
                for side, who in (("server", "arrowlog serve, CPU"), ("client", "confluent-kafka, CPU"))]
    wake = [Row(f"kafka_wire.fetch_wake.{q}.arrowlog", "Kafka protocol: Fetch long-poll wake-up", "arrowlog",
                "another process appends one record (library Producer, paced 5 ms) → the confluent-kafka Consumer "
                "long-polling at the end (fetch.wait.max.ms=500) has it", kind="latency", unit=f"µs {q}",
                records=wake_sends, missing=produce.missing,
                samples=[percentile(r["fetch_wake_us"], pct) for r in results] if produce.ok else [])
            for q, pct in (("p50", 50), ("p99", 99))]
    acceptor_cpu = [cpu_row("produce", "acceptor_server", "do-nothing acceptor, CPU", "acceptor"),
                    cpu_row("produce", "acceptor_client", "confluent-kafka → acceptor, CPU", "acceptor")]
    out = [produce, acceptor, queue]
    by_key = {r.key: r for r in earlier}
    for direction, row in (("produce", produce), ("consume", consume)):
        if direction == "consume":
            out.append(row)
        for key in PEERS[direction]:
            peer = by_key.get(key)
            if peer is not None:
                out.append(dataclasses.replace(peer, key=f"kafka_wire.{key}", workload=row.workload,
                                               note=f"the same samples as `{key}`"))
    return out + cpu_rows + acceptor_cpu + wake
