"""Machine description, versions, merging partial runs, and the PNG charts."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
from importlib import metadata

from .harness import ARROWLOG, Row, fmt_num, median, percentile

LATENCY_QUANTILES = [q / 2 for q in range(0, 199)] + [99.5, 99.9, 99.99, 100.0]


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _pkg(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(ctx, load_at_start: str = "") -> dict:
    """Machine, versions and durability settings, for the top of RESULTS.md."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo").splitlines()
                if ln.startswith("model name")), platform.processor() or "?")
    mem_kb = next((int(ln.split()[1]) for ln in _read("/proc/meminfo").splitlines()
                   if ln.startswith("MemTotal")), 0)
    fs = _cmd(["df", "-T", ctx.root]).splitlines()
    fs_desc = " ".join(fs[-1].split()[:2]) if len(fs) > 1 else "?"
    machine = {
        "CPU": f"{cpu}, {os.cpu_count()} logical cores",
        "memory": f"{mem_kb / 2**20:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "scratch filesystem": f"{fs_desc} ({os.path.dirname(ctx.root)})",
        "Python": sys.version.split()[0],
        "load average (1, 5, 15 min) when the run started": load_at_start or "?",
        "load average (1, 5, 15 min) when the run ended": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    versions = {"arrowlog": _pkg("arrowlog")}
    commit = _cmd(["git", "-C", os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "rev-parse", "--short", "HEAD"])
    if commit:
        versions["arrowlog"] += f" ({commit})"
    for p in ("pyarrow", "numpy", "pandas", "redis", "hiredis", "nats-py", "confluent-kafka", "matplotlib"):
        versions[p] = _pkg(p)
    try:
        import confluent_kafka

        versions["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    versions["SQLite"] = sqlite3.sqlite_version
    rv = _cmd(["redis-server", "--version"])
    versions["redis-server"] = next((p[2:] for p in rv.split() if p.startswith("v=")), "not installed")
    nv = _cmd(["nats-server", "--version"])
    versions["nats-server"] = nv.split()[-1] if nv else "not installed"
    durability = {
        "arrowlog": "default: flush() hands batches to the page cache (survives a process crash); "
                    'durable rows use durability="fsync" (flush() returns after fsync: survives power loss)',
        "Redis Streams": "AOF on, appendfsync everysec (may lose ~1 s on power loss); durable rows: appendfsync always",
        "NATS JetStream": "file storage, server default sync (fsync every 2 minutes)",
        "SQLite": "WAL, synchronous=NORMAL (survives a process crash); durable rows: synchronous=FULL",
        "confluent-kafka": "queueing in the client only; nothing is sent",
    }
    durability.update(ctx.durability)
    return {"machine": machine, "versions": versions, "durability": durability}


def latency_summary(samples: dict[str, list[float]]) -> dict[str, list[list[float]]]:
    """Per system, [quantile, µs] pairs: enough to draw the distribution without 10,000 floats."""
    out = {}
    for system, xs in samples.items():
        if xs:
            s = sorted(xs)
            out[system] = [[q, percentile(s, q)] for q in LATENCY_QUANTILES]
    return out


def load_rows(json_path: str) -> list[Row]:
    """The rows of an earlier results.json (a partial run merges its rows into them)."""
    with open(json_path) as f:
        return [Row.from_dict(d) for d in json.load(f).get("rows", [])]


def charts(results: dict, out_dir: str) -> list[str]:
    """Throughput per system for each workload, and the latency distribution. Returns relative paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    rows = [Row.from_dict(d) for d in results["rows"]]
    made = []
    chart_dir = os.path.join(out_dir, "charts")
    os.makedirs(chart_dir, exist_ok=True)

    workloads = []
    for r in rows:
        if r.kind == "throughput" and r.ok and r.workload not in workloads:
            workloads.append(r.workload)
    if workloads:
        fig, axes = plt.subplots(len(workloads), 1, figsize=(9, 1.0 + 1.25 * sum(
            1 + sum(1 for r in rows if r.workload == w and r.ok) * 0.35 for w in workloads)), squeeze=False)
        for ax, wl in zip(axes[:, 0], workloads, strict=True):
            sel = [r for r in rows if r.workload == wl and r.ok and r.kind == "throughput"]
            by_bytes = not all(r.records for r in sel)
            figs = [(r.byte_rates() if by_bytes else r.rates()) for r in sel]
            figs_ok = [(r, f) for r, f in zip(sel, figs, strict=True) if f]
            labels = [f"{r.system}\n{r.setting[:48]}" for r, _ in figs_ok]
            meds = [median(f) for _, f in figs_ok]
            lo = [m - min(f) for m, (_, f) in zip(meds, figs_ok, strict=True)]
            hi = [max(f) - m for m, (_, f) in zip(meds, figs_ok, strict=True)]
            colors = ["#d62728" if r.system == ARROWLOG else ("#7f7f7f" if r.system == "machine limit" else "#1f77b4")
                      for r, _ in figs_ok]
            # points, not bars: on a log axis a bar's length means nothing
            for i, (m, down, up, c) in enumerate(zip(meds, lo, hi, colors, strict=True)):
                ax.errorbar([m], [i], xerr=[[down], [up]], fmt="o", color=c, capsize=3)
                ax.annotate(fmt_num(m), (m, i), textcoords="offset points", xytext=(6, 4), fontsize=7)
            ax.set_yticks(list(range(len(meds))), labels, fontsize=7)
            ax.set_ylim(len(meds) - 0.5, -0.5)
            ax.set_xscale("log")
            ax.set_xlim(min(m - down for m, down in zip(meds, lo, strict=True)) / 2,
                        max(m + h for m, h in zip(meds, hi, strict=True)) * 3)
            ax.grid(True, axis="x", which="both", alpha=0.3)
            ax.set_title(wl, fontsize=9)
            ax.set_xlabel("bytes/s of values" if by_bytes else (sel[0].unit if sel else ""), fontsize=8)
            ax.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        path = os.path.join(chart_dir, "throughput.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append("charts/throughput.png")

    lat = results.get("latency_samples") or {}
    if lat:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for system, pairs in lat.items():
            qs = [q for q, _ in pairs]
            us = [v for _, v in pairs]
            ax.plot(us, qs, label=system, color="#d62728" if system == ARROWLOG else None)
        ax.set_xscale("log")
        ax.set_xlabel("latency, µs (produce+flush in process A → received in process B)")
        ax.set_ylabel("percentile")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(chart_dir, "latency.png"), dpi=110)
        plt.close(fig)
        made.append("charts/latency.png")
    return made
