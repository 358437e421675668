"""`make demo`: the scenario arrowlog exists for, end to end.

An order service publishes OrderPlaced events to the topic ``orders``; an
``inventory-service`` consumer reads them independently of the producer,
from the earliest offset, in another process; the whole topic is replayed
into pandas to total the orders; a replay from a point in time shows rewind.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import time

N_ORDERS = 200_000
DEFAULT_DIR = "demo-data"


def say(text: str = "") -> None:
    print(text, flush=True)


def inventory_service(data_dir: str, expected: int, result: mp.Queue) -> None:
    """A separate process: reads every OrderPlaced from the earliest offset
    and counts units per item, at its own pace."""
    import arrowlog

    start = time.perf_counter()
    units: dict[str, int] = {}
    seen = 0
    with arrowlog.Consumer({"log.dir": data_dir, "group.id": "inventory-service",
                            "auto.offset.reset": "earliest", "enable.auto.commit": False}) as consumer:
        consumer.subscribe(["orders"])
        while seen < expected:
            batch = consumer.consume(1000, timeout=5.0)
            for msg in batch:
                event = json.loads(msg.value())
                units[event["item"]] = units.get(event["item"], 0) + event["quantity"]
                seen += 1
            if batch:
                consumer.commit(asynchronous=False)  # at-least-once: commit what was processed
        committed = consumer.committed([arrowlog.TopicPartition("orders", p) for p in range(3)])
    result.put((seen, units, time.perf_counter() - start, [tp.offset for tp in committed]))


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    import arrowlog

    argv = sys.argv[1:] if argv is None else argv
    data_dir = argv[0] if argv else os.environ.get("ARROWLOG_DEMO_DIR", DEFAULT_DIR)
    shutil.rmtree(data_dir, ignore_errors=True)
    say(f"arrowlog demo: an embedded event log in {data_dir}\n")

    log = arrowlog.LogDir(data_dir)
    log.create_topic("orders", partitions=3)
    log.close()
    say("1. created topic 'orders' with 3 partitions")

    # The consumer starts first, in its own process, and waits for events.
    ctx = mp.get_context("spawn")
    result: mp.Queue = ctx.Queue()
    worker = ctx.Process(target=inventory_service, args=(data_dir, N_ORDERS, result))
    worker.start()

    rng = random.Random(7)
    items = ["espresso", "grinder", "kettle", "filter", "mug", "scale"]
    base_ms = int(time.time() * 1000) - N_ORDERS  # one order per millisecond, ending now
    cutoff_ms = base_ms + N_ORDERS * 3 // 4
    start = time.perf_counter()
    with arrowlog.Producer({"log.dir": data_dir, "linger.ms": 5}) as producer:
        for i in range(N_ORDERS):
            ts = base_ms + i
            event = {"event": "OrderPlaced", "orderId": f"o-{i:07d}", "customer": f"c-{rng.randrange(5000):05d}",
                     "item": rng.choice(items), "quantity": rng.randint(1, 4),
                     "total": round(rng.uniform(5, 500), 2), "timestamp": ts}
            producer.produce("orders", json.dumps(event).encode(), key=event["customer"].encode(), timestamp=ts)
        producer.flush()
    produce_s = time.perf_counter() - start
    say(f"2. producer published {N_ORDERS:,} OrderPlaced events in {produce_s:.2f} s "
        f"({N_ORDERS / produce_s:,.0f} events/s, keyed by customer)")

    while True:
        try:
            seen, units, consume_s, committed = result.get(timeout=0.5)
            break
        except Exception:
            if not worker.is_alive():
                say("the inventory-service process failed; see its error above")
                return 1
    worker.join()
    say(f"3. consumer group 'inventory-service' (pid {worker.pid}) read all {seen:,} events from the earliest "
        f"offset in another process, at its own pace ({seen / consume_s:,.0f} events/s), committing as it went; "
        f"committed offsets per partition: {committed}")
    say("   units per item: " + ", ".join(f"{k}={v:,}" for k, v in sorted(units.items())))

    start = time.perf_counter()
    table = arrowlog.replay(data_dir, "orders").to_arrow()
    arrow_s = time.perf_counter() - start
    df = pd.DataFrame([json.loads(v) for v in table.column("value").to_pylist()])
    say(f"4. replayed the whole topic: {table.num_rows:,} records as Arrow in {arrow_s * 1000:.1f} ms "
        f"(zero-copy from the mapped segments), then into pandas")
    totals = df.groupby("item")["total"].agg(["count", "sum"]).sort_values("sum", ascending=False)
    say("   order totals by item:")
    for item, row in totals.iterrows():
        say(f"     {item:<10} {int(row['count']):>7,} orders  {row['sum']:>14,.2f}")
    say(f"   grand total: {df['total'].sum():,.2f}")

    cutoff = arrowlog.timestamp_ms(cutoff_ms)
    rewind = arrowlog.replay(data_dir, "orders", start=cutoff).to_pandas()
    say(f"5. rewind: replay from {cutoff.isoformat(timespec='milliseconds')} returns {len(rewind):,} events "
        f"(the last quarter), offsets starting at "
        + ", ".join(f"p{p}:{int(g['offset'].min())}" for p, g in rewind.groupby("partition")))

    with arrowlog.Consumer({"log.dir": data_dir}) as c:
        tps = c.offsets_for_times([arrowlog.TopicPartition("orders", p, cutoff_ms) for p in range(3)])
        c.assign(tps)
        first = c.poll(5.0)
        say(f"6. a consumer seeks by time with offsets_for_times and resumes at partition {first.partition()} "
            f"offset {first.offset()}: {json.loads(first.value())['orderId']}")
    say("\ndone. Data is in " + data_dir + "; try: .venv/bin/arrowlog --data " + data_dir + " topic describe orders")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
