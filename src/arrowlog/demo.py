"""`make demo`: the scenario arrowlog exists for, end to end.

An order service publishes OrderPlaced events to the topic ``orders``; an
``inventory-service`` consumer reads them independently of the producer,
from the earliest offset, in another process; the whole topic is replayed
as Arrow, and a DuckDB query over ``arrowlog.dataset(value_format="json")``
totals the last minute's orders: the time filter goes into the scan, which
reads only that minute's frames and parses only the JSON fields the query
uses; a replay from a point in time shows rewind.

The demo runs in a scratch directory that it marks as its own (a
``.arrowlog-demo`` file) and replaces on the next run. It refuses a
directory that holds anything else, so ``arrowlog demo ~/work`` never
deletes a thing. Only numpy and pyarrow are needed (no pandas).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import time
from types import ModuleType

from .errors import ArrowlogError


def cli_command() -> str:
    """How to run ``arrowlog`` from here: the bare name when it is on PATH,
    else the script beside this interpreter (``.venv/bin/arrowlog`` after
    ``make demo``, whose virtual environment is not activated)."""
    beside = os.path.join(os.path.dirname(sys.executable), "arrowlog")
    if shutil.which("arrowlog") or not os.path.exists(beside):
        return "arrowlog"
    rel = os.path.relpath(beside)
    return rel if not rel.startswith("..") else beside


N_ORDERS = 200_000
DEFAULT_DIR = "demo-data"
# The file that makes a directory the demo's own, so a re-run may replace it.
MARKER = ".arrowlog-demo"


class DemoDirectoryError(ArrowlogError):
    """The demo's directory holds something the demo did not put there."""


def prepare_dir(data_dir: str) -> None:
    """Make ``data_dir`` an empty directory marked as the demo's: a missing
    or empty one is created, one the demo made before is emptied, anything
    else is refused (nothing is deleted)."""
    if os.path.lexists(data_dir) and not os.path.isdir(data_dir):
        raise DemoDirectoryError(f"{data_dir} exists and is not a directory; give the demo a scratch "
                                 "directory: arrowlog demo DIR")
    if os.path.isdir(data_dir) and os.listdir(data_dir):
        if not os.path.isfile(os.path.join(data_dir, MARKER)):
            raise DemoDirectoryError(
                f"{data_dir} is not empty and was not made by the demo (no {MARKER} file); the demo replaces "
                "its directory on every run, so give it a new or empty one: arrowlog demo DIR (a directory left by "
                "an older demo, without the marker, you can delete yourself)")
        shutil.rmtree(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, MARKER), "w") as f:
        f.write("made by 'arrowlog demo': the next run of the demo replaces this directory\n")


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


def orders_last_minute(data_dir: str, since_ms: int):
    """Step 4's query: the last minute's order totals by item, through
    arrowlog.dataset, which reads only the frames of that minute and, with
    value_format="json", builds only the JSON fields the query uses. With
    DuckDB installed the query is SQL and its plan shows the time filter in
    the arrow scan; without it, the same pushdown through pyarrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    import arrowlog

    ds = arrowlog.dataset(data_dir, "orders", value_format="json")
    say("   as a dataset with value_format='json', the JSON fields are columns: "
        + ", ".join(f"{f.name}: {f.type}" for f in ds.schema))
    since = arrowlog.timestamp_ms(since_ms)
    duckdb: ModuleType | None
    try:
        import duckdb as duckdb_module

        duckdb = duckdb_module
    except ImportError:
        duckdb = None
    start = time.perf_counter()
    if duckdb is not None:
        con = duckdb.connect()
        con.register("orders", ds)
        sql = ("select item, count(*) as orders, sum(total) as total from orders "
               f"where \"timestamp\" >= TIMESTAMPTZ '{since.isoformat()}' group by item order by total desc")
        table = con.sql(sql).to_arrow_table()
        how = "DuckDB over arrowlog.dataset(value_format='json')"
    else:
        rows = ds.to_table(columns=["item", "total"], filter=pc.field("timestamp") >= pa.scalar(since))
        table = rows.group_by("item").aggregate([("total", "count"), ("total", "sum")]).rename_columns(
            ["item", "orders", "total"]).sort_by([("total", "descending")])
        how = "arrowlog.dataset(value_format='json').to_table(filter=...) (pip install 'arrowlog[duckdb]' for SQL)"
    query_s = time.perf_counter() - start
    say(f"   the last minute's orders by item ({how}): {query_s * 1000:.1f} ms; the scan looked at "
        f"{ds.stats['frames_read']} frames (zero-copy) and decoded the {ds.stats['frames_scanned']} of that minute "
        f"({ds.stats['rows_scanned']:,} records, JSON fields item and total only)")
    if duckdb is not None:
        say("   " + sql)
        plan = con.sql("explain " + sql).fetchall()[0][1].splitlines()
        scan = [i for i, line in enumerate(plan) if "ARROW_SCAN" in line.upper() or "ARROW SCAN" in line.upper()]
        if scan:  # the scan's box of the plan: its filter is the one pushed into arrowlog
            top = max(i for i in range(scan[0] + 1) if "╭" in plan[i] or i == 0)
            plan = plan[top:]
        say("   its plan ends in the arrow scan, which takes the time filter:")
        for line in plan:
            say("     " + line.rstrip())
        con.close()
    for row in table.to_pylist():
        say(f"     {row['item']:<10} {row['orders']:>7,} orders  {row['total']:>14,.2f}")
    say(f"   grand total: {pc.sum(table.column('total')).as_py():,.2f} (the last minute)")
    ds.close()
    return table


def main(argv: list[str] | None = None) -> int:
    import arrowlog

    argv = sys.argv[1:] if argv is None else argv
    data_dir = argv[0] if argv else os.environ.get("ARROWLOG_DEMO_DIR", DEFAULT_DIR)
    prepare_dir(data_dir)
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
            customer = f"c-{rng.randrange(5000):05d}"
            event = {"event": "OrderPlaced", "orderId": f"o-{i:07d}", "customer": customer,
                     "item": rng.choice(items), "quantity": rng.randint(1, 4),
                     "total": round(rng.uniform(5, 500), 2), "placedAt": ts}
            producer.produce("orders", json.dumps(event).encode(), key=customer.encode(), timestamp=ts)
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
    raw = arrowlog.replay(data_dir, "orders").to_arrow()
    arrow_s = time.perf_counter() - start
    say(f"4. replayed the whole topic: {raw.num_rows:,} records as Arrow in {arrow_s * 1000:.1f} ms "
        f"(zero-copy from the mapped segments)")
    table = orders_last_minute(data_dir, base_ms + N_ORDERS - 60_000)

    cutoff = arrowlog.timestamp_ms(cutoff_ms)
    rewind = arrowlog.replay(data_dir, "orders", start=cutoff, columns=["partition", "offset"]).to_arrow()
    firsts = rewind.group_by("partition").aggregate([("offset", "min")]).sort_by("partition").to_pylist()
    say(f"5. rewind: replay from {cutoff.isoformat(timespec='milliseconds')} returns {rewind.num_rows:,} events "
        f"(the last quarter), offsets starting at "
        + ", ".join(f"p{r['partition']}:{r['offset_min']}" for r in firsts))
    del raw, table, rewind  # the zero-copy columns keep segments mapped

    with arrowlog.Consumer({"log.dir": data_dir}) as c:
        tps = c.offsets_for_times([arrowlog.TopicPartition("orders", p, cutoff_ms) for p in range(3)])
        c.assign(tps)
        first = c.poll(5.0)
        value = None if first is None else first.value()
        if first is None or first.error() is not None or value is None:
            say(f"6. a consumer sought by time but read nothing: {first and first.error()}")
            return 1
        say(f"6. a consumer seeks by time with offsets_for_times and resumes at partition {first.partition()} "
            f"offset {first.offset()}: {json.loads(value)['orderId']}")
    say(f"\ndone. Data is in {data_dir}; try: {cli_command()} --data {data_dir} topic describe orders")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
