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
time they hold still on a busy machine. The same consumer also reads the same records from a
do-nothing fetch responder (bench/null_broker.py --fetch-records: pre-encoded batches, each
Fetch answered at once), the best any server can do for it.

Where the ceiling is without Python: bench/rdkafka_probe.c, compiled here with gcc against
Debian's librdkafka-dev (linked to the librdkafka the confluent-kafka wheel bundles, so both
clients run the same library; skipped, with the reason in the results, when it cannot be
built), produces the same records with the same configuration (queueing only, through the
acceptor, through the server into a topic of its own) and consumes the server's topic and the
responder's, summing every byte of every value; a C run that fails leaves the C rows
missing with its error and the others measured.

Last, the Fetch wake-up: another process appends stamped single records
with the library's Producer straight into the server's data directory
(paced, one at a time) while the consumer long-polls at the end of the
partition (fetch.wait.max.ms=500); each record's latency is the consumer's
receipt time minus the stamp (CLOCK_MONOTONIC, shared by the processes).

    python -m bench.bench_kafka_wire --records 1000000 --value-size 100
"""

from __future__ import annotations

import argparse
import ctypes
import gc
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


RESPONDER_TOPIC = "fetch-bench"
PROBE_SOURCE = ROOT / "bench" / "rdkafka_probe.c"
PROBE_BINARY = ROOT / "build" / "bench" / "rdkafka_probe"


def confluent_librdkafka() -> Path | None:
    """The librdkafka shared library the confluent-kafka wheel loads (bundled next to the
    package as confluent_kafka.libs/librdkafka-*.so*), or None (a build against the system's)."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*")) if libs.is_dir() else []
    return found[0] if found else None


def build_probe() -> tuple[Path | None, str]:
    """bench/rdkafka_probe.c compiled with gcc against Debian's librdkafka-dev headers, linked
    to the same librdkafka the confluent-kafka rows use (the wheel's, when it bundles one:
    the C API is stable across versions) or else the system's: (binary, how it was built),
    or (None, why it could not be)."""
    lib = confluent_librdkafka()
    link = [str(lib), f"-Wl,-rpath,{lib.parent}"] if lib else ["-lrdkafka"]
    how = f"gcc -O2, librdkafka-dev headers, linked to {lib.name if lib else 'the system librdkafka'}"
    if not Path("/usr/include/librdkafka/rdkafka.h").exists():
        return None, "librdkafka-dev is not installed (make system-deps installs it)"
    if PROBE_BINARY.exists() and PROBE_BINARY.stat().st_mtime >= PROBE_SOURCE.stat().st_mtime:
        return PROBE_BINARY, how
    PROBE_BINARY.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(PROBE_BINARY), str(PROBE_SOURCE), *link],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"gcc could not run: {exc}"
    if done.returncode != 0:
        return None, "gcc failed: " + (done.stderr.strip().splitlines() or ["no output"])[-1]
    return PROBE_BINARY, how


def run_probe(probe: Path, mode: str, n_records: int, value_size: int, topic: str, server_pid: int,
              config: dict) -> dict:
    """One run of the C client (bench/rdkafka_probe.c): its JSON figures."""
    args = [str(probe), mode, str(n_records), str(value_size), topic, str(server_pid),
            *(f"{k}={v}" for k, v in config.items())]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120 + n_records / 5_000)
    if done.returncode != 0:
        raise RuntimeError(f"rdkafka_probe {mode}: " + (done.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(done.stdout)


class CClient:
    """The C client's runs within one benchmark run. Its figures go into ``figures``; the
    first failure (or a probe that could not be built) is kept in ``figures['c_client_missing']``
    and skips the C client's later runs, so the confluent-kafka rows are measured either way."""

    def __init__(self, n_records: int, value_size: int) -> None:
        self.n_records, self.value_size = n_records, value_size
        self.probe, how = build_probe()
        self.figures: dict = {"c_client": how if self.probe else None,
                              "c_client_missing": None if self.probe else how}

    def run(self, mode: str, topic: str, server_pid: int, config: dict, **names: str) -> None:
        """Run ``mode`` and keep its figures as ``names`` (result field -> figure key)."""
        if self.probe is None or self.figures["c_client_missing"]:
            return
        try:
            got = run_probe(self.probe, mode, self.n_records, self.value_size, topic, server_pid, config)
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            self.figures["c_client_missing"] = f"{type(exc).__name__}: {exc}"
            return
        self.figures.update({key: got[field] for field, key in names.items()}, c_librdkafka=got["librdkafka"])


def consumer_config(bootstrap: str, group: str = "bench") -> dict:
    """The measured consumer's configuration (Python and C alike)."""
    return {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", **CONSUMER_CONFIG}


def consume_from(ck, bootstrap: str, server_pid: int, topic: str, n_records: int, value_size: int,
                 gc_paused: bool = False) -> tuple[float, float, float, float]:
    """The measured Python consumer from offset 0 of ``topic`` partition 0: (seconds, the
    server's CPU seconds, this process's, this thread's: the Python loop and confluent-kafka's
    consume(), which builds the Message objects). ``gc_paused``: Python's cyclic garbage
    collector is off during the loop (consume(10000) allocates 10,000 Message objects, which
    the collector tracks, per call: about 1,300 collections a million records, 10 of them full)."""
    consumer = ck.Consumer(consumer_config(bootstrap))
    consumer.assign([ck.TopicPartition(topic, 0, 0)])
    if gc_paused:
        gc.disable()
    try:
        t0, server0, client0, thread0 = time.perf_counter(), cpu_s(server_pid), time.process_time(), time.thread_time()
        got, total = consume_loop(consumer, n_records, t0 + 120)
        elapsed = time.perf_counter() - t0
        cpu = (cpu_s(server_pid) - server0, time.process_time() - client0, time.thread_time() - thread0)
    finally:
        gc.enable()
    consumer.close()
    if got < n_records:
        raise RuntimeError(f"consumed only {got} of {n_records} records from {bootstrap}")
    if total != n_records * value_size:
        raise RuntimeError(f"consumed {total} value bytes from {bootstrap}, expected {n_records * value_size}")
    return elapsed, *cpu


def through_responder(ck, c: CClient, n_records: int, value_size: int) -> dict:
    """The Python and the C consumer against the do-nothing fetch responder (bench/null_broker.py
    --fetch-records: the same records as pre-encoded batches of 5,000, answered at once)."""
    # the topic is named here: importing bench.null_broker would bring pyarrow and arrowlog into
    # this process, tens of thousands more objects for the cyclic GC the consumer loop triggers
    responder, bootstrap = start_process(["-m", "bench.null_broker", "--fetch-records", str(n_records),
                                          "--value-size", str(value_size), "--fetch-topic", RESPONDER_TOPIC],
                                         "the do-nothing fetch responder")
    try:
        out: dict = {}
        consume_s, *cpu = consume_from(ck, bootstrap, responder.pid, RESPONDER_TOPIC, n_records, value_size)
        out.update(responder_consume_s=consume_s, responder_consume_server_cpu_s=cpu[0],
                   responder_consume_client_cpu_s=cpu[1], responder_consume_thread_cpu_s=cpu[2])
        c.run("consume", RESPONDER_TOPIC, responder.pid, consumer_config(bootstrap, "bench-c"),
              seconds="c_responder_consume_s", process_cpu_s="c_responder_consume_client_cpu_s",
              server_cpu_s="c_responder_consume_server_cpu_s")
        return out
    finally:
        stop_server(responder)


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


def through_acceptor(ck, c: CClient, topic: str, n_records: int,
                     value: bytes) -> tuple[float, float, float, float, float]:
    """``produce_through`` the do-nothing acceptor (bench/null_broker.py), in its own process,
    then the C client's produce of the same records to it."""
    acceptor, bootstrap = start_process(["-m", "bench.null_broker"], "the do-nothing acceptor")
    try:
        py = produce_through(ck, bootstrap, acceptor.pid, topic, n_records, value)
        c.run("produce", topic + "-c", acceptor.pid, {**producer_config(n_records), "bootstrap.servers": bootstrap},
              seconds="c_acceptor_s", thread_cpu_s="c_acceptor_thread_cpu_s",
              process_cpu_s="c_acceptor_client_cpu_s", server_cpu_s="c_acceptor_server_cpu_s")
        return py
    finally:
        stop_server(acceptor)


def run(n_records: int = 1_000_000, value_size: int = 100, topic: str = "bench", wake_sends: int = 200,
        acceptor_last: bool = False) -> dict:
    """One run; the acceptor's produce goes before the server's, or after with ``acceptor_last``
    (the harness alternates them, so neither always has the warmer client and page cache)."""
    import confluent_kafka as ck
    import confluent_kafka.admin  # noqa: F401

    value = b"x" * value_size
    c = CClient(n_records, value_size)
    queue_s, queue_cpu_s, queue_release_s = queue_rate_s(n_records, value, topic)
    from bench.peers import closed_port

    c.run("queue", topic, 0, {**producer_config(n_records), "bootstrap.servers": f"127.0.0.1:{closed_port()}"},
          seconds="c_queue_s", thread_cpu_s="c_queue_thread_cpu_s")
    if not acceptor_last:
        acceptor_s, *acceptor_cpu = through_acceptor(ck, c, topic, n_records, value)
        responder = through_responder(ck, c, n_records, value_size)
    with tempfile.TemporaryDirectory(prefix="arrowlog-bench-") as data_dir:
        proc, bootstrap = start_server(data_dir)
        try:
            admin = ck.admin.AdminClient({"bootstrap.servers": bootstrap})
            for fut in admin.create_topics([ck.admin.NewTopic(name, 1, 1) for name in (topic, topic + "-c")]).values():
                fut.result(30)

            produce_s, *produce_cpu = produce_through(ck, bootstrap, proc.pid, topic, n_records, value)
            # the same records from C into a topic of their own
            c.run("produce", topic + "-c", proc.pid, {**producer_config(n_records), "bootstrap.servers": bootstrap},
                  seconds="c_produce_s", thread_cpu_s="c_produce_thread_cpu_s",
                  process_cpu_s="c_produce_client_cpu_s", server_cpu_s="c_produce_server_cpu_s")

            # librdkafka postpones a partition's next fetch by fetch.queue.backoff.ms
            # (default 1000 ms) once its local queue holds queued.min.messages
            # (100,000): with 100-byte records the consumer then sits idle most of
            # every second (about 200,000 records/s here, client and server both
            # idle). A 10 ms backoff measures the server instead of that pause.
            consume_s, *consume_cpu = consume_from(ck, bootstrap, proc.pid, topic, n_records, value_size)
            nogc_s, *nogc_cpu = consume_from(ck, bootstrap, proc.pid, topic, n_records, value_size, gc_paused=True)
            # the same records, read by the C client
            c.run("consume", topic, proc.pid, consumer_config(bootstrap, "bench-c"), seconds="c_consume_s",
                  process_cpu_s="c_consume_client_cpu_s", server_cpu_s="c_consume_server_cpu_s")
            wake = fetch_wake_us(ck, bootstrap, data_dir, topic, wake_sends) if wake_sends else []
        finally:
            stop_server(proc)
    if acceptor_last:
        acceptor_s, *acceptor_cpu = through_acceptor(ck, c, topic, n_records, value)
        responder = through_responder(ck, c, n_records, value_size)
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
        "consume_thread_cpu_s": consume_cpu[2],
        "consume_nogc_s": nogc_s,
        "consume_nogc_thread_cpu_s": nogc_cpu[2],
        **responder,
        **c.figures,
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
