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
    def consume_row(key: str, system: str, setting: str, field: str, note: str, nbytes: int = nb) -> Row:
        return Row(f"kafka_wire.consume.{key}", "Kafka protocol: consume", system, setting, records=n,
                   nbytes=nbytes, missing=produce.missing, note=note,
                   samples=[r[field] for r in results] if produce.ok else [])

    responder = consume_row(
        "responder", "do-nothing fetch responder",
        "the same consumer and loop against bench/null_broker.py --fetch-records: the same records as pre-encoded "
        "batches of 5,000, each Fetch answered at once (no read, no CRC check, no encoding)", "responder_consume_s",
        "the best any server can do for this consumer on this machine; the consume row's ratio to it is the "
        "server's share")
    nogc = consume_row(
        "arrowlog-nogc", "arrowlog, Python GC off",
        "the same consumer and loop from arrowlog serve with Python's cyclic garbage collector off during the loop "
        "(gc.disable(); not how the issue's row is measured)", "consume_nogc_s",
        "right after the consume row, from the same server: what the collector's passes over the Message objects "
        "consume(10000) allocates cost the consuming thread")
    thread_cpu = consume_row(
        "client_thread_cpu", "confluent-kafka, Python thread CPU",
        "records per CPU second of the consuming thread alone (consume(10000): librdkafka's batch call and one "
        "Message per record; the loop) in the window of `kafka_wire.consume.arrowlog`", "consume_thread_cpu_s",
        "the consume row's ceiling with any server: this one thread does this work per record whatever feeds it",
        nbytes=0)
    out = [produce, acceptor, queue]
    by_key = {r.key: r for r in earlier}
    for direction, row in (("produce", produce), ("consume", consume)):
        if direction == "consume":
            out += [row, nogc, responder]
        for key in PEERS[direction]:
            peer = by_key.get(key)
            if peer is not None:
                out.append(dataclasses.replace(peer, key=f"kafka_wire.{key}", workload=row.workload,
                                               note=f"the same samples as `{key}`"))
    return out + cpu_rows + [thread_cpu] + acceptor_cpu + c_client_rows(results, produce, n, nb) + wake


def c_client_rows(results: list[dict], produce: Row, n: int, nb: int) -> list[Row]:
    """The same produce and consume from C (bench/rdkafka_probe.c, librdkafka with no Python,
    the same configuration), in the same runs: whether the server takes ≥ 0.9× a client's
    queueing rate and feeds ≥ 3 M records/s when the client is not Python."""
    missing = produce.missing or next((r["c_client_missing"] for r in results if r.get("c_client_missing")), None)
    built = next((f"{r['c_client']}, librdkafka {r.get('c_librdkafka', '?')}" for r in results if r.get("c_client")), "")

    def row(key: str, workload: str, system: str, setting: str, field: str, nbytes: int = 0, note: str = "") -> Row:
        ok = missing is None and produce.ok
        return Row(f"kafka_wire.{key}", workload, system, setting, records=n, nbytes=nbytes, missing=missing,
                   samples=[r[field] for r in results] if ok else [], note=note)

    pw, cw = "Kafka protocol: produce, librdkafka from C", "Kafka protocol: consume, librdkafka from C"
    config = f"the kafka_wire rows' configuration ({CLIENT}); {built}"
    return [
        row("produce.c_arrowlog", pw, "arrowlog", f"arrowlog serve ← bench/rdkafka_probe.c producev() of each "
            f"value, then flush(), one partition; {config}", "c_produce_s", nb),
        row("produce.c_acceptor", pw, "do-nothing acceptor", "the same C producer against bench/null_broker.py",
            "c_acceptor_s", nb),
        row("produce.c_queue", pw, "librdkafka from C, no broker", "the same C producer's producev() loop, "
            "no broker reachable (queueing only)", "c_queue_s", nb,
            note="with no Python at all, is the served rate ≥ 0.9× the client's own queueing rate?"),
        row("produce.c_thread_cpu", pw, "librdkafka from C, producing thread CPU", "records per CPU second of the "
            "C producer's own thread in the window of `kafka_wire.produce.c_arrowlog` (its producev() loop and "
            "flush(); librdkafka's threads not counted)", "c_produce_thread_cpu_s",
            note="against `kafka_wire.produce.c_queue_thread_cpu`: what the same thread spends per record when a "
                 "broker is reachable"),
        row("produce.c_queue_thread_cpu", pw, "librdkafka from C, queueing thread CPU", "records per CPU second of "
            "the same thread in the queueing loop (`kafka_wire.produce.c_queue`)", "c_queue_thread_cpu_s"),
        row("produce.c_client_cpu", pw, "librdkafka from C, CPU", "records per CPU second of the C producer process "
            "(all threads) in the window of `kafka_wire.produce.c_arrowlog`", "c_produce_client_cpu_s"),
        row("produce.c_server_cpu", pw, "arrowlog serve, CPU", "records per CPU second of the server process in the "
            "window of `kafka_wire.produce.c_arrowlog`", "c_produce_server_cpu_s"),
        row("consume.c_arrowlog", cw, "arrowlog", f"arrowlog serve → bench/rdkafka_probe.c: assigned partition, "
            f"rd_kafka_consume_batch_queue() of up to 10,000, every byte of every value summed; {config}",
            "c_consume_s", nb, note="with no Python at all, can the server feed ≥ 3 M records/s?"),
        row("consume.c_responder", cw, "do-nothing fetch responder", "the same C consumer against bench/null_broker.py "
            "--fetch-records (pre-encoded batches of 5,000, each Fetch answered at once)", "c_responder_consume_s", nb),
        row("consume.c_client_cpu", cw, "librdkafka from C, CPU", "records per CPU second of the C consumer process "
            "(all threads) in the window of `kafka_wire.consume.c_arrowlog`", "c_consume_client_cpu_s"),
        row("consume.c_server_cpu", cw, "arrowlog serve, CPU", "records per CPU second of the server process in the "
            "window of `kafka_wire.consume.c_arrowlog`", "c_consume_server_cpu_s"),
    ]
