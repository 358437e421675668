"""How fast do Avro records produced over the wire become a typed topic's columns?

Starts ``python -m arrowlog.server --registry-listen`` on ephemeral 127.0.0.1
ports, registers an Avro record schema (a click: string, long, int, double,
boolean, enum, timestamp-millis, nullable string), and serialises ``n``
records in the Confluent wire format up front (fastavro; not timed). Each
timed run produces them with one confluent-kafka Producer (acks=1,
linger.ms=5) into a fresh one-partition topic and waits for every delivery:

- ``registry.avro_columns.arrowlog``: the topic is bound to the schema
  (TopicNameStrategy), so the server decodes every record into columns;
- ``registry.avro_opaque.arrowlog``: the same bytes, same client, same server,
  into a topic without a subject (stored as opaque bytes): the baseline.

    python bench/bench_registry.py --records 1000000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCHEMA = {"type": "record", "name": "Click", "namespace": "bench", "fields": [
    {"name": "user", "type": "string"},
    {"name": "seq", "type": "long"},
    {"name": "page", "type": "int"},
    {"name": "price", "type": "double"},
    {"name": "bought", "type": "boolean"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["VIEW", "CART", "BUY"]}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "campaign", "type": ["null", "string"], "default": None},
]}


def start_server(data_dir: str) -> tuple[subprocess.Popen, str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "arrowlog.server", "--data", data_dir, "--listen", "127.0.0.1:0",
         "--registry-listen", "127.0.0.1:0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, env=env, text=True)
    bootstrap, url = proc.stdout.readline().strip(), proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError("arrowlog server with the registry did not start")
    return proc, bootstrap, url


def register(url: str, subject: str) -> int:
    req = urllib.request.Request(f"{url}/subjects/{subject}/versions", method="POST",
                                 data=json.dumps({"schema": json.dumps(SCHEMA)}).encode(),
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["id"]


def wire_records(n: int, schema_id: int) -> list[bytes]:
    import fastavro

    parsed = fastavro.parse_schema(SCHEMA)
    prefix = b"\x00" + schema_id.to_bytes(4, "big")
    out = []
    for i in range(n):
        buf = io.BytesIO()
        buf.write(prefix)
        fastavro.schemaless_writer(buf, parsed, {
            "user": f"user-{i % 10_000}", "seq": i, "page": i % 97, "price": i * 0.01, "bought": i % 7 == 0,
            "kind": ("VIEW", "CART", "BUY")[i % 3], "at": 1_767_225_600_000 + i,
            "campaign": None if i % 4 else f"c{i % 13}"})
        out.append(buf.getvalue())
    return out


def produce_all(bootstrap: str, topic: str, values: list[bytes]) -> float:
    import confluent_kafka as ck

    producer = ck.Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 5,
                            "queue.buffering.max.messages": 1_000_000,
                            "queue.buffering.max.kbytes": 1_048_576})
    failed = []

    def delivered(err, msg):
        if err is not None:
            failed.append(err)

    producer.produce(topic, values[0], on_delivery=delivered)   # creates the topic (Metadata)
    producer.flush(60)
    t0 = time.perf_counter()
    for v in values:
        try:
            producer.produce(topic, v, on_delivery=delivered)
        except BufferError:
            producer.poll(0.01)
            producer.produce(topic, v, on_delivery=delivered)
    remaining = producer.flush(300)
    elapsed = time.perf_counter() - t0
    if remaining or failed:
        raise RuntimeError(f"{remaining} records undelivered, {len(failed)} refused: {failed[:1]}")
    return elapsed


def run_once(n: int) -> dict:
    """One server; the typed and the opaque run on the same records."""
    with tempfile.TemporaryDirectory(prefix="arrowlog-bench-registry-") as data_dir:
        proc, bootstrap, url = start_server(data_dir)
        try:
            typed = "clicks-" + uuid.uuid4().hex[:8]
            sid = register(url, f"{typed}-value")
            values = wire_records(n, sid)
            opaque_s = produce_all(bootstrap, "opaque-" + uuid.uuid4().hex[:8], values)
            typed_s = produce_all(bootstrap, typed, values)
            sys.path.insert(0, str(ROOT / "src"))
            import arrowlog

            table = arrowlog.replay(data_dir, typed).to_arrow()
            if table.num_rows != n + 1 or "value" in table.column_names:
                raise RuntimeError(f"the typed topic holds {table.num_rows} rows, columns {table.column_names}")
        finally:
            proc.terminate()
            proc.wait(30)
    nbytes = sum(len(v) for v in values)
    return {"n_records": n, "nbytes": nbytes, "typed_s": typed_s, "opaque_s": opaque_s,
            "typed_records_per_s": n / typed_s, "opaque_records_per_s": n / opaque_s}


def run(ctx) -> list:
    from bench.harness import Row, attempt

    n = ctx.n
    results: list[dict] = []

    def samples() -> list[float]:
        for _ in range(ctx.warmup):
            run_once(min(n, 50_000))
        for _ in range(ctx.runs):
            results.append(run_once(n))
        return [r["typed_s"] for r in results]

    workload = "Kafka protocol: Avro records into columns"
    typed = attempt(Row("registry.avro_columns.arrowlog", workload, "arrowlog",
                        "confluent-kafka Producer (acks=1, linger.ms=5) → arrowlog serve, Confluent wire-format "
                        "Avro decoded into a typed topic's 8 columns", records=n), samples)
    if results:
        typed.nbytes = results[0]["nbytes"]
    opaque = Row("registry.avro_opaque.arrowlog", workload, "arrowlog, opaque bytes",
                 "the same wire-format values and client into an untyped topic (same server, same run)",
                 records=n, nbytes=typed.nbytes, missing=typed.missing,
                 samples=[r["opaque_s"] for r in results] if typed.ok else [])
    return [typed, opaque]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000)
    args = p.parse_args()
    print(json.dumps(run_once(args.records), indent=2))


if __name__ == "__main__":
    main()
