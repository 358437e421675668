"""The speed targets the issues set, checked against the rows of each run."""

from .harness import Target

GB = 1e9

TARGETS = [
    Target("per-call produce ≥ 2× confluent-kafka's produce() queueing rate",
           "produce.one.arrowlog", versus="produce.one.confluent", min_ratio=2.0, issue=2),
    Target("produce_batch ≥ 1.5 GB/s of values", "produce.batch.arrowlog", min_value=1.5 * GB, use_bytes=True, issue=2),
    Target("replay(...).to_arrow() ≥ 0.8× pyarrow via pa.memory_map",
           "replay.arrow.arrowlog", versus="replay.arrow.mmap", min_ratio=0.8, issue=2),
    Target("consume(1000) loop ≥ 3 M records/s", "consume.all.arrowlog", min_value=3e6, issue=2),
    Target("consume(1000) loop faster than a SQLite fetchmany(1000) scan",
           "consume.all.arrowlog", versus="consume.all.sqlite", min_ratio=1.0, issue=2),
    Target("cross-process latency p99 < 1 ms", "latency.p99.arrowlog", max_value=1000.0, issue=3),
    Target("Kafka protocol: confluent-kafka producer ≥ 300,000 records/s", "kafka_wire.produce.arrowlog",
           min_value=300_000, issue=4),
    Target("Kafka protocol: confluent-kafka consumer ≥ 500,000 records/s", "kafka_wire.consume.arrowlog",
           min_value=500_000, issue=4),
    Target("Avro records over the wire into a typed topic's columns ≥ 300,000 records/s",
           "registry.avro_columns.arrowlog", min_value=300_000, issue=17),
    Target("unclean reopen scans ≥ 1 GiB/s of segment data", "recovery.unclean.arrowlog",
           min_value=2**30, use_bytes=True, issue=7),
    Target("clean reopen of a 1 GiB log < 1 s", "recovery.clean.arrowlog", max_value=1.0, issue=7),
    Target("one-hour window through DuckDB ≥ 20× the same query over replay().to_arrow()",
           "pushdown.duckdb.arrowlog", versus="pushdown.duckdb.replay", min_ratio=20.0, issue=16),
    Target("one-hour window through polars ≥ 20× the same query over replay().to_arrow()",
           "pushdown.polars.arrowlog", versus="pushdown.polars.replay", min_ratio=20.0, issue=16),
    Target("scraping /metrics every second costs the server < 1 % CPU at 100 partitions",
           "metrics.scrape_cpu.arrowlog", max_value=1.0, issue=18),
]
