"""How fast do confluent-kafka clients produce/consume through arrowlog serve, and how soon does a Fetch long poll wake?

First the client alone: the same confluent-kafka Producer's ``produce()``
queueing rate with no broker reachable (the ceiling of the produce row:
issue 19 asks for ≥ 0.9× of it through the server), and the same producer
against a do-nothing acceptor (bench/null_broker.py: acks every Produce at
once, stores nothing; before the server's run, or after it with
``acceptor_last``): the best any server can do with this client. Then
starts ``python -m arrowlog.server`` on an ephemeral 127.0.0.1 port with a
fresh data directory, produces ``n_records`` values of ``value_size`` bytes
with a confluent-kafka Producer (librdkafka's defaults: producer_config(), the same for every row)
into a one-partition topic,
then reads them back with a confluent-kafka Consumer (no group, from the
beginning, CONSUMER_CONFIG: fetch.queue.backoff.ms=10, max.partition.fetch.bytes
8 MiB; see run()), touching every value.
For both directions the CPU seconds the server process and the client
process (its Python loop and librdkafka's threads) spent in the same window
are recorded too (the process CPU clock of each, all threads), so the rows can say
which side bounds each rate: records per CPU second of each side are the
rates each could reach if it never waited for the other, and unlike wall
time they hold still on a busy machine. Last, the Fetch wake-up: another process appends stamped single records
with the library's Producer straight into the server's data directory
(paced, one at a time) while the consumer long-polls at the end of the
partition (fetch.wait.max.ms=500); each record's latency is the consumer's
receipt time minus the stamp (CLOCK_MONOTONIC, shared by the processes).

    python -m bench.bench_kafka_wire --records 1000000 --value-size 100
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def producer_config(n_records: int) -> dict:
    """The producer as a user configures it, the same for the queueing row, the acceptor and
    the server (only bootstrap.servers differs, so the ratios are like for like): librdkafka's
    defaults (acks=all, linger.ms=5, batch.num.messages=10000, batch.size=1000000, no
    compression, not idempotent, no delivery callback), a local queue that holds the whole
    run, and no log lines (the queueing row's broker is unreachable on purpose)."""
    return {"queue.buffering.max.messages": max(n_records, 100_000), "queue.buffering.max.kbytes": 1_048_576,
            "log_level": 0}


# The consumer as a user who wants throughput sets it (see run()): a 10 ms fetch backoff,
# and up to 8 MiB per partition a Fetch (librdkafka's default, 1 MiB, is about one stored
# batch of the produce row: a Fetch per batch cost the server about twice the CPU per
# record, docs/PROTOCOL.md, Tests and speed; the client's CPU per record is the same).
CONSUMER_CONFIG = {"fetch.queue.backoff.ms": 10, "max.partition.fetch.bytes": 8 << 20}
WAKE_WARMUP = 20  # appends before the timed ones: the appender's first appends are slow
WAKE_PACE_S = 0.005  # between appends: the consumer is back in its long poll long before the next

APPENDER = """
import struct, sys, time
import arrowlog
data_dir, topic, warmup, count, pace = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
p = arrowlog.Producer({"log.dir": data_dir, "linger.ms": 0})
for i in range(warmup + count):
    time.sleep(pace)
    p.produce(topic, struct.pack("<qB", time.perf_counter_ns(), i >= warmup) + b"\\0" * 91, partition=0)
    p.flush()
p.close()
"""


def start_server(data_dir: str) -> tuple[subprocess.Popen, str]:
    return start_process(["-m", "arrowlog.server", "--data", data_dir, "--listen", "127.0.0.1:0",
                          "--log-level", "WARNING"], "arrowlog server")


def start_process(args: list[str], what: str) -> tuple[subprocess.Popen, str]:
    """``python <args>`` from the repository root, and the HOST:PORT it prints first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, env=env, text=True, cwd=ROOT)
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{what} did not start")
    return proc, line


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used so far, all its threads (its CLOCK_PROCESS_CPUTIME_ID,
    read from outside: clock_getcpuclockid(3); nanoseconds, not /proc's 10 ms ticks)."""
    clock = ctypes.c_int()
    err = ctypes.CDLL(None).clock_getcpuclockid(pid, ctypes.byref(clock))
    if err:
        raise OSError(err, f"clock_getcpuclockid({pid}): {os.strerror(err)}")
    return time.clock_gettime(clock.value)


def consume_loop(consumer, n_records: int, deadline: float) -> tuple[int, int]:
    """The measured consumer loop: consume(10,000) batches, len() of every value.
    Returns (records, value bytes)."""
    got = total = 0
    while got < n_records and time.perf_counter() < deadline:
        for m in consumer.consume(10_000, 1.0):
            if m.error() is None:
                total += len(m.value())
                got += 1
    return got, total


def queue_rate_s(n_records: int, value: bytes, topic: str) -> tuple[float, float, float]:
    """The same client's produce() of ``n_records`` with no broker reachable (queueing only):
    (seconds, this thread's CPU seconds, seconds of the purge() that then frees the records:
    what the served runs pay as delivery reports in flush(), outside the queueing figure)."""
    import confluent_kafka as ck

    from bench.peers import closed_port

    producer = ck.Producer({**producer_config(n_records), "bootstrap.servers": f"127.0.0.1:{closed_port()}"})
    produce = producer.produce
    t0, cpu0 = time.perf_counter(), time.thread_time()
    for _ in range(n_records):
        produce(topic, value)
    elapsed, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    t1 = time.perf_counter()
    producer.purge()
    producer.poll(0)
    return elapsed, cpu, time.perf_counter() - t1


def produce_through(ck, bootstrap: str, server_pid: int, topic: str, n_records: int,
                    value: bytes) -> tuple[float, float, float, float, float]:
    """The measured producer loop against the server at ``bootstrap``: produce() each value
    (a full local queue waits in poll()), then flush(). Returns (seconds, the server
    process's CPU seconds, this process's CPU seconds, this thread's CPU seconds,
    seconds in flush()) over that window. flush() serves the delivery reports of every
    record on this thread (confluent-kafka asks librdkafka for them whether or not a
    callback is set, and frees each record there), as poll() would during the loop."""
    producer = ck.Producer({**producer_config(n_records), "bootstrap.servers": bootstrap})
    produce = producer.produce
    t0, server0, client0, thread0 = time.perf_counter(), cpu_s(server_pid), time.process_time(), time.thread_time()
    for _ in range(n_records):
        try:
            produce(topic, value)
        except BufferError:
            producer.poll(0.01)
            produce(topic, value)
    t1 = time.perf_counter()
    remaining = producer.flush(120)
    t2 = time.perf_counter()
    cpu = (cpu_s(server_pid) - server0, time.process_time() - client0, time.thread_time() - thread0)
    if remaining:
        raise RuntimeError(f"{remaining} records were not delivered to {bootstrap}")
    return t2 - t0, *cpu, t2 - t1


def fetch_wake_us(ck, bootstrap: str, data_dir: str, topic: str, count: int) -> list[float]:
    """Latency (µs) from another process's append to the consumer holding the record."""
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-wake", "enable.auto.commit": False,
                            "fetch.wait.max.ms": 500, "fetch.min.bytes": 1})
    _low, high = consumer.get_watermark_offsets(ck.TopicPartition(topic, 0), 30)
    consumer.assign([ck.TopicPartition(topic, 0, high)])
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    appender = subprocess.Popen([sys.executable, "-c", APPENDER, data_dir, topic, str(WAKE_WARMUP), str(count),
                                 str(WAKE_PACE_S)], env=env)
    lat: list[float] = []
    try:
        deadline = time.monotonic() + 60 + count * WAKE_PACE_S * 4
        while len(lat) < count and time.monotonic() < deadline:
            m = consumer.poll(1.0)
            if m is None or m.error() is not None:
                continue
            now = time.perf_counter_ns()
            sent, timed = struct.unpack_from("<qB", m.value())
            if timed:
                lat.append((now - sent) / 1000)
    finally:
        appender.wait(60)
        consumer.close()
    if len(lat) < count:
        raise RuntimeError(f"the long-polling consumer received {len(lat)} of {count} appends")
    return lat


def through_acceptor(ck, topic: str, n_records: int, value: bytes) -> tuple[float, float, float, float, float]:
    """``produce_through`` the do-nothing acceptor (bench/null_broker.py), in its own process."""
    acceptor, bootstrap = start_process(["-m", "bench.null_broker"], "the do-nothing acceptor")
    try:
        return produce_through(ck, bootstrap, acceptor.pid, topic, n_records, value)
    finally:
        stop_server(acceptor)


def run(n_records: int = 1_000_000, value_size: int = 100, topic: str = "bench", wake_sends: int = 200,
        acceptor_last: bool = False) -> dict:
    """One run; the acceptor's produce goes before the server's, or after with ``acceptor_last``
    (the harness alternates them, so neither always has the warmer client and page cache)."""
    import confluent_kafka as ck
    import confluent_kafka.admin  # noqa: F401

    value = b"x" * value_size
    queue_s, queue_cpu_s, queue_release_s = queue_rate_s(n_records, value, topic)
    if not acceptor_last:
        acceptor_s, *acceptor_cpu = through_acceptor(ck, topic, n_records, value)
    with tempfile.TemporaryDirectory(prefix="arrowlog-bench-") as data_dir:
        proc, bootstrap = start_server(data_dir)
        try:
            admin = ck.admin.AdminClient({"bootstrap.servers": bootstrap})
            for fut in admin.create_topics([ck.admin.NewTopic(topic, 1, 1)]).values():
                fut.result(30)

            produce_s, *produce_cpu = produce_through(ck, bootstrap, proc.pid, topic, n_records, value)

            # librdkafka postpones a partition's next fetch by fetch.queue.backoff.ms
            # (default 1000 ms) once its local queue holds queued.min.messages
            # (100,000): with 100-byte records the consumer then sits idle most of
            # every second (about 200,000 records/s here, client and server both
            # idle). A 10 ms backoff measures the server instead of that pause.
            consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "bench",
                                    "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                    **CONSUMER_CONFIG})
            consumer.assign([ck.TopicPartition(topic, 0, 0)])
            t0, server0, client0 = time.perf_counter(), cpu_s(proc.pid), time.process_time()
            got, total = consume_loop(consumer, n_records, t0 + 120)
            consume_s = time.perf_counter() - t0
            consume_cpu = (cpu_s(proc.pid) - server0, time.process_time() - client0)
            consumer.close()
            if got < n_records:
                raise RuntimeError(f"consumed only {got} of {n_records} records")
            if total != n_records * value_size:
                raise RuntimeError(f"consumed {total} value bytes, expected {n_records * value_size}")
            wake = fetch_wake_us(ck, bootstrap, data_dir, topic, wake_sends) if wake_sends else []
        finally:
            stop_server(proc)
    if acceptor_last:
        acceptor_s, *acceptor_cpu = through_acceptor(ck, topic, n_records, value)
    mb = n_records * value_size / 1e6
    return {
        "system": "arrowlog serve (confluent-kafka client)",
        "n_records": n_records,
        "value_size": value_size,
        "produce_records_per_s": n_records / produce_s,
        "produce_mb_per_s": mb / produce_s,
        "consume_records_per_s": n_records / consume_s,
        "consume_mb_per_s": mb / consume_s,
        "produce_s": produce_s,
        "consume_s": consume_s,
        "queue_s": queue_s,
        "queue_thread_cpu_s": queue_cpu_s,
        "queue_release_s": queue_release_s,
        "acceptor_s": acceptor_s,
        "produce_acceptor_server_cpu_s": acceptor_cpu[0],
        "produce_acceptor_client_cpu_s": acceptor_cpu[1],
        "produce_acceptor_thread_cpu_s": acceptor_cpu[2],
        "produce_acceptor_flush_s": acceptor_cpu[3],
        "acceptor_last": acceptor_last,
        "producer_config": producer_config(n_records),
        "consumer_config": CONSUMER_CONFIG,
        "produce_server_cpu_s": produce_cpu[0],
        "produce_client_cpu_s": produce_cpu[1],
        "produce_thread_cpu_s": produce_cpu[2],
        "produce_flush_s": produce_cpu[3],
        "consume_server_cpu_s": consume_cpu[0],
        "consume_client_cpu_s": consume_cpu[1],
        "fetch_wake_us": sorted(wake),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--wake-sends", type=int, default=200, help="timed appends for the Fetch wake-up (0: none)")
    p.add_argument("--acceptor-last", action="store_true",
                   help="produce through the do-nothing acceptor after the server, not before")
    args = p.parse_args()
    print(json.dumps(run(args.records, args.value_size, wake_sends=args.wake_sends, acceptor_last=args.acceptor_last),
                     indent=2))


if __name__ == "__main__":
    main()
