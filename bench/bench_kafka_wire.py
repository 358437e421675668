"""How fast do confluent-kafka clients produce/consume through arrowlog serve?

Starts ``python -m arrowlog.server`` on an ephemeral 127.0.0.1 port with a
fresh data directory, produces ``n_records`` values of ``value_size`` bytes
with a confluent-kafka Producer (acks=1, linger.ms=5) into a one-partition
topic, then reads them back with a confluent-kafka Consumer (no group, from
the beginning, fetch.queue.backoff.ms=10: see run()). Reports records/s and
MB/s for each direction.

    python bench/bench_kafka_wire.py --records 1000000 --value-size 100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def start_server(data_dir: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "arrowlog.server", "--data", data_dir, "--listen", "127.0.0.1:0",
         "--log-level", "WARNING"],
        stdout=subprocess.PIPE, env=env, text=True)
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise RuntimeError("arrowlog server did not start")
    return proc, line


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(n_records: int = 1_000_000, value_size: int = 100, topic: str = "bench") -> dict:
    import confluent_kafka as ck
    import confluent_kafka.admin  # noqa: F401

    value = b"x" * value_size
    with tempfile.TemporaryDirectory(prefix="arrowlog-bench-") as data_dir:
        proc, bootstrap = start_server(data_dir)
        try:
            admin = ck.admin.AdminClient({"bootstrap.servers": bootstrap})
            for fut in admin.create_topics([ck.admin.NewTopic(topic, 1, 1)]).values():
                fut.result(30)

            producer = ck.Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 5,
                                    "queue.buffering.max.messages": 1_000_000,
                                    "queue.buffering.max.kbytes": 1_048_576})
            t0 = time.perf_counter()
            for _ in range(n_records):
                try:
                    producer.produce(topic, value)
                except BufferError:
                    producer.poll(0.01)
                    producer.produce(topic, value)
            remaining = producer.flush(120)
            produce_s = time.perf_counter() - t0
            if remaining:
                raise RuntimeError(f"{remaining} records were not delivered")

            # librdkafka postpones a partition's next fetch by fetch.queue.backoff.ms
            # (default 1000 ms) once its local queue holds queued.min.messages
            # (100,000): with 100-byte records the consumer then sits idle most of
            # every second (about 200,000 records/s here, client and server both
            # idle). A 10 ms backoff measures the server instead of that pause.
            consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "bench",
                                    "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                    "fetch.queue.backoff.ms": 10})
            consumer.assign([ck.TopicPartition(topic, 0, 0)])
            got = 0
            t0 = time.perf_counter()
            deadline = t0 + 120
            while got < n_records and time.perf_counter() < deadline:
                for m in consumer.consume(10_000, 1.0):
                    if m.error() is None:
                        got += 1
            consume_s = time.perf_counter() - t0
            consumer.close()
            if got < n_records:
                raise RuntimeError(f"consumed only {got} of {n_records} records")
        finally:
            stop_server(proc)
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
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--value-size", type=int, default=100)
    args = p.parse_args()
    print(json.dumps(run(args.records, args.value_size), indent=2))


if __name__ == "__main__":
    main()
