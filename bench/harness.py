"""The harness's pure pieces: rows, statistics, timing, targets and RESULTS.md.

A benchmark module (``bench/bench_<question>.py``) exposes ``run(ctx)``, which
returns a list of :class:`Row`. A row is one system measured on one workload:
either throughput (``kind="throughput"``: ``samples`` are the elapsed seconds
of each timed run over the same ``records``/``nbytes`` of work) or latency
(``kind="latency"``: ``samples`` are one percentile per run, in microseconds).

A peer that cannot run (binary absent, client missing, server refused to
start) still produces a row, with ``missing`` saying why, so the report shows
the gap instead of silently dropping the system.

Ratios are always ``arrowlog / peer`` of the same workload and unit; for
throughput higher is better, for latency lower is better.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

ARROWLOG = "arrowlog"


@dataclass
class Row:
    key: str  # stable id, e.g. "produce.one.arrowlog"; targets refer to it
    workload: str  # table the row belongs to, e.g. "produce one by one"
    system: str  # "arrowlog", "Redis Streams", "machine limit", ...
    setting: str = ""  # what exactly ran: API, durability, batch size
    kind: str = "throughput"  # "throughput" or "latency"
    unit: str = "rec/s"  # label for records per second ("rec/s", "lookups/s") or latency ("µs")
    samples: list[float] = field(default_factory=list)
    records: int = 0  # operations per timed run (records, lookups)
    nbytes: int = 0  # payload bytes per timed run (for MB/s)
    missing: str | None = None  # why the row could not be measured
    note: str = ""

    # -- derived figures ---------------------------------------------------
    def rates(self) -> list[float]:
        """Operations per second of each run (throughput rows)."""
        return [self.records / s for s in self.samples if s > 0] if self.records else []

    def byte_rates(self) -> list[float]:
        return [self.nbytes / s for s in self.samples if s > 0] if self.nbytes else []

    def figures(self) -> list[float]:
        """The per-run figure the table shows: ops/s, bytes/s or µs."""
        if self.kind == "latency":
            return list(self.samples)
        return self.rates() or self.byte_rates()

    @property
    def ok(self) -> bool:
        return self.missing is None and bool(self.samples)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.ok:
            d["median"] = median(self.figures())
            d["spread_pct"] = spread_pct(self.figures())
            if self.kind == "throughput" and self.nbytes:
                d["median_bytes_per_s"] = median(self.byte_rates())
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# -- statistics ---------------------------------------------------------------
def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    if not xs:
        raise ValueError("median of no samples")
    return statistics.median(xs)


def spread_pct(xs: Iterable[float]) -> float:
    """Half the min-max range as a percentage of the median (0 for one sample)."""
    xs = list(xs)
    m = median(xs)
    if len(xs) < 2 or m == 0:
        return 0.0
    return (max(xs) - min(xs)) / 2 / abs(m) * 100


def percentile(sorted_xs: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_xs:
        raise ValueError("percentile of no samples")
    # rank = ceil(q% of n); the epsilon keeps 99.9% of 1000 at rank 999 despite float rounding
    k = max(0, min(len(sorted_xs) - 1, math.ceil(q * len(sorted_xs) / 100 - 1e-9) - 1))
    return sorted_xs[k]


# -- timing -------------------------------------------------------------------
def measure(
    body: Callable[[Any], Any],
    *,
    runs: int,
    warmup: int = 1,
    setup: Callable[[], Any] | None = None,
    teardown: Callable[[Any], Any] | None = None,
) -> list[float]:
    """Time ``body(state)`` ``warmup + runs`` times; return the timed runs' seconds.

    ``setup()`` makes a fresh state for each run (a new directory, an empty
    stream) and ``teardown(state)`` cleans it; neither is timed. If ``body``
    returns a float, that is taken as the elapsed time it measured itself
    (for work whose clock must start in another process).
    """
    out: list[float] = []
    for i in range(warmup + runs):
        state = setup() if setup is not None else None
        try:
            t0 = time.perf_counter()
            res = body(state)
            elapsed = time.perf_counter() - t0
        finally:
            if teardown is not None:
                teardown(state)
        if isinstance(res, float):
            elapsed = res
        if i >= warmup:
            out.append(elapsed)
    return out


class PeerUnavailable(Exception):
    """A peer system cannot run on this machine (binary or client absent)."""


def attempt(template: Row, produce_samples: Callable[[], list[float]]) -> Row:
    """Fill ``template.samples`` from ``produce_samples()``, or mark the row missing.

    Any exception (a peer that would not start, a client that is not
    installed, an arrowlog feature not built yet) is reported in the row.
    """
    if template.missing is not None:
        return template
    try:
        template.samples = list(produce_samples())
    except Exception as exc:  # reported, never swallowed silently
        template.missing = failure_reason(exc)
        template.samples = []
    return template


def failure_reason(exc: BaseException) -> str:
    """One line naming the exception and its first message line."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {reason}"[:200] if reason else type(exc).__name__


# -- comparisons --------------------------------------------------------------
def reference_for(row: Row, rows: list[Row]) -> Row | None:
    """The arrowlog row of the same workload and unit that ``row`` is compared with."""
    if row.system == ARROWLOG:
        return None
    for r in rows:
        if r.system == ARROWLOG and r.workload == row.workload and r.unit == row.unit and r.ok:
            return r
    return None


def ratio(a: Row, b: Row) -> float | None:
    """arrowlog/peer of the medians (ops/s when both count ops, else bytes/s, else latency)."""
    if not (a.ok and b.ok):
        return None
    if a.kind == "latency" or b.kind == "latency":
        x, y = median(a.samples), median(b.samples)
    elif a.records and b.records:
        x, y = median(a.rates()), median(b.rates())
    elif a.nbytes and b.nbytes:
        x, y = median(a.byte_rates()), median(b.byte_rates())
    else:
        return None
    return x / y if y else None


@dataclass
class Target:
    """A speed goal from the issues: a ratio between two rows, or an absolute floor/ceiling."""

    name: str
    key: str  # the arrowlog row
    versus: str | None = None  # the row it is compared with
    min_ratio: float | None = None  # key/versus >= min_ratio
    min_value: float | None = None  # median figure >= min_value (ops/s, or bytes/s if use_bytes)
    max_value: float | None = None  # median figure <= max_value (latency µs, seconds)
    use_bytes: bool = False
    issue: int = 2
    # a row of the same measurement in a mode the issue allows instead (e.g. the
    # low-latency poll mode): the target is met when either row meets it
    allowed: str | None = None
    allowed_label: str = ""

    def check(self, by_key: dict[str, Row]) -> tuple[str, bool | None]:
        """(what was measured, passed?) — passed is None when a row is missing."""
        shown, passed = self._check_row(self.key, by_key)
        if self.allowed is None or passed:
            return (shown, passed)
        other_shown, other_passed = self._check_row(self.allowed, by_key)
        label = self.allowed_label or f"`{self.allowed}`"
        return (f"{shown}; {label}: {other_shown}", other_passed)

    def _check_row(self, key: str, by_key: dict[str, Row]) -> tuple[str, bool | None]:
        row = by_key.get(key)
        if row is None or not row.ok:
            why = row.missing if row is not None else "not measured in this run"
            return (f"missing ({why})", None)
        if self.versus is not None:
            other = by_key.get(self.versus)
            if other is None or not other.ok:
                why = other.missing if other is not None else "not measured in this run"
                return (f"comparison row missing ({why})", None)
            r = ratio(row, other)
            if r is None:
                return ("not comparable", None)
            return (f"{r:.2f}×", self.min_ratio is None or r >= self.min_ratio)
        figs = row.byte_rates() if self.use_bytes else row.figures()
        v = median(figs)
        shown = fmt_bytes_rate(v) if self.use_bytes else fmt_figure(v, row)
        passed = True
        if self.min_value is not None:
            passed = passed and v >= self.min_value
        if self.max_value is not None:
            passed = passed and v <= self.max_value
        return (shown, passed)

    def requirement(self, row: Row | None = None) -> str:
        if self.versus is not None:
            return f"≥ {self.min_ratio:.3g}× `{self.versus}`"
        unit = f" {row.unit}" if row is not None else ""
        if self.min_value is not None:
            return "≥ " + (fmt_bytes_rate(self.min_value) if self.use_bytes else fmt_num(self.min_value) + unit)
        return "≤ " + fmt_num(self.max_value or 0) + unit


# -- formatting ---------------------------------------------------------------
def fmt_num(x: float) -> str:
    ax = abs(x)
    if ax >= 1e9:
        return f"{x / 1e9:.2f} G"
    if ax >= 1e6:
        return f"{x / 1e6:.2f} M"
    if ax >= 1e4:
        return f"{x / 1e3:.0f} k"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def fmt_bytes_rate(x: float) -> str:
    if x >= 1e9:
        return f"{x / 1e9:.2f} GB/s"
    return f"{x / 1e6:.0f} MB/s"


def fmt_figure(v: float, row: Row) -> str:
    if row.kind == "latency":
        return f"{v:.3g} {row.unit}" if v < 10 else f"{v:,.0f} {row.unit}"
    if row.records:
        return f"{fmt_num(v)} {row.unit}".replace("  ", " ")
    return fmt_bytes_rate(v)


def render_markdown(results: dict[str, Any], targets: list[Target], charts: list[str] = ()) -> str:
    """RESULTS.md from a results dict (as written to results.json)."""
    rows = [Row.from_dict(d) for d in results["rows"]]
    by_key = {r.key: r for r in rows}
    meta = results.get("meta", {})
    out: list[str] = []
    w = out.append
    w("# arrowlog benchmark results\n")
    w("Written by `python -m bench` (`make bench`); do not edit by hand. "
      f"Command: `{meta.get('command', 'python -m bench')}`. Started {meta.get('started', '?')}, "
      f"took {meta.get('duration_s', 0):.0f} s.\n")
    w(f"Every figure is the median of {meta.get('runs', '?')} timed runs after "
      f"{meta.get('warmup', '?')} warm-up run(s); ± is half the min–max range as a percentage of the median. "
      "The last column is arrowlog's figure divided by the peer's, measured in the same run "
      "(throughput: higher is better; latency: lower is better).\n")

    machine = meta.get("machine", {})
    if machine:
        w("## Machine\n")
        for k, v in machine.items():
            w(f"- **{k}**: {v}")
        w("")
    versions = meta.get("versions", {})
    if versions:
        w("## Versions\n")
        w(", ".join(f"{k} {v}" for k, v in versions.items()) + "\n")
    durability = meta.get("durability", {})
    if durability:
        w("## Durability settings\n")
        for k, v in durability.items():
            w(f"- **{k}**: {v}")
        w("")

    if targets:
        w("## Targets\n")
        w("| issue | target | row | measured | required | result |")
        w("|---|---|---|---|---|---|")
        for t in targets:
            shown, passed = t.check(by_key)
            verdict = "n/a" if passed is None else ("**pass**" if passed else "**FAIL**")
            w(f"| #{t.issue} | {t.name} | `{t.key}` | {shown} | {t.requirement(by_key.get(t.key))} | {verdict} |")
        w("")

    workloads: list[str] = []
    for r in rows:
        if r.workload not in workloads:
            workloads.append(r.workload)
    w("## Results\n")
    for wl in workloads:
        w(f"### {wl}\n")
        w("| system | setting | work per run | median | ± | MB/s | arrowlog / this | row |")
        w("|---|---|---|---|---|---|---|---|")
        for r in (r for r in rows if r.workload == wl):
            work = f"{r.records:,}" if r.records else (f"{r.nbytes / 1e6:,.0f} MB" if r.nbytes else "")
            if not r.ok:
                w(f"| {r.system} | {r.setting} | {work} | missing: {r.missing or 'no samples'} | | | | `{r.key}` |")
                continue
            figs = r.figures()
            mbs = fmt_bytes_rate(median(r.byte_rates())) if (r.nbytes and r.kind == "throughput") else ""
            ref = reference_for(r, rows)
            rr = ratio(ref, r) if ref is not None else None
            shown_ratio = f"{rr:.2f}×" if rr is not None else ("—" if r.system == ARROWLOG else "")
            w(f"| {r.system} | {r.setting} | {work} | {fmt_figure(median(figs), r)} | "
              f"{spread_pct(figs):.0f}% | {mbs} | {shown_ratio} | `{r.key}` |")
        notes = [f"`{r.key}`: {r.note}" for r in rows if r.workload == wl and r.note]
        if notes:
            w("")
            for n in notes:
                w(f"- {n}")
        w("")

    if charts:
        w("## Charts\n")
        for c in charts:
            w(f"![{c}]({c})\n")
    return "\n".join(out) + "\n"


def write_json(path: str, results: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=str)
