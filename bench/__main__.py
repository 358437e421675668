"""``python -m bench``: run the comparison suite and write RESULTS.md, results.json and charts.

    python -m bench                 # everything: 1,000,000 records, 3 runs each
    python -m bench --quick         # smoke run: 20,000 records, 1 warm-up + 2 runs, to a temp dir
    python -m bench --only consume  # one benchmark (repeatable); merges into existing results

Progress goes to stderr; the path of RESULTS.md is printed on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import sys
import tempfile
import time
import traceback

from . import adapters, report
from .context import Context
from .harness import Row, failure_reason, render_markdown, write_json
from .targets import TARGETS

HERE = os.path.dirname(os.path.abspath(__file__))

# Order matters: produce first (it leaves the NATS stream that consume reads).
BENCHMARKS = ["machine", "produce", "consume", "replay", "seek", "latency", "group", "recovery",
              "kafka_wire", "pushdown", "registry", "metrics", "compaction", "partitions"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load(name: str):
    """The benchmark module, or None if its file does not exist (kafka_wire comes with the server)."""
    if not os.path.exists(os.path.join(HERE, f"bench_{name}.py")):
        return None
    return importlib.import_module(f"bench.bench_{name}")


def call_run(name: str, mod, ctx, earlier: list[Row]) -> list[Row]:
    if name == "kafka_wire":  # the server's module has its own run() signature: adapted
        return getattr(adapters, name)(ctx, mod, earlier)
    rows = mod.run(ctx)
    out = []
    for r in rows or []:
        out.append(r if isinstance(r, Row) else Row.from_dict(r))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description="arrowlog side by side with its peers.")
    ap.add_argument("--quick", action="store_true", help="small smoke run (20,000 records, 2 runs)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    ap.add_argument("--records", type=int, help="records per workload (default 1,000,000; --quick 20,000)")
    ap.add_argument("--runs", type=int, help="timed runs per row (default 3; --quick 2)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up runs per row (default 1)")
    ap.add_argument("--out", help="output directory (default bench/, or a temp dir with --quick)")
    ap.add_argument("--no-charts", action="store_true", help="skip the matplotlib charts")
    args = ap.parse_args(argv)

    names = []
    for item in args.only:
        names += [x.strip() for x in item.split(",") if x.strip()]
    unknown = [x for x in names if x not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = names or BENCHMARKS

    n = args.records or (20_000 if args.quick else 1_000_000)
    runs = args.runs or (2 if args.quick else 3)
    out = args.out or (os.path.join(tempfile.gettempdir(), "arrowlog-bench-quick") if args.quick else HERE)
    os.makedirs(out, exist_ok=True)

    ctx = Context(n=n, runs=runs, warmup=args.warmup, quick=args.quick,
                  latency_sends=1_000 if args.quick else 10_000)
    started = dt.datetime.now(dt.timezone.utc)
    load_at_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.perf_counter()
    rows: list[Row] = []
    json_path = os.path.join(out, "results.json")
    prior = report.load_rows(json_path) if (args.only and os.path.exists(json_path)) else []
    try:
        for name in names:
            mod = load(name)
            if mod is None:
                log(f"{name}: bench/bench_{name}.py not present, skipped")
                continue
            log(f"{name}: running")
            t = time.perf_counter()
            try:
                new = call_run(name, mod, ctx, prior + rows)
            except Exception as exc:  # a broken benchmark is reported, the others still run
                traceback.print_exc(file=sys.stderr)
                new = [Row(f"{name}.error", name, "harness", missing=failure_reason(exc))]
            for r in new:
                state = "ok" if r.ok else f"missing ({r.missing})"
                log(f"  {r.key}: {state}")
            rows += new
            log(f"{name}: {time.perf_counter() - t:.1f} s")
    finally:
        meta = report.describe(ctx, load_at_start)
        ctx.close()

    duration = time.perf_counter() - t0
    if prior:  # a partial run replaces every earlier row of the benchmarks it ran (keys start with their name)
        rows = [r for r in prior if r.key.split(".", 1)[0] not in names] + rows
    cmd = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    meta.update(command=cmd.strip(), started=started.isoformat(timespec="seconds"), duration_s=duration,
                runs=runs, warmup=args.warmup, records=n)
    results = {"meta": meta, "rows": [r.to_dict() for r in rows],
               "latency_samples": report.latency_summary(ctx.latency_samples)}
    charts = [] if args.no_charts else report.charts(results, out)
    write_json(json_path, results)
    md_path = os.path.join(out, "RESULTS.md")
    with open(md_path, "w") as f:
        f.write(render_markdown(results, TARGETS, charts))
    log(f"done in {duration:.0f} s")
    print(md_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
