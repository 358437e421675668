"""How fast does the cleaner compact a topic, and how fast is the
latest-per-key view, next to pandas ``drop_duplicates(keep="last")`` of the
same records?

One compacted partition of 10 M keyed updates over 1 M keys, 10% of them
tombstones (200,000 over 20,000 with --quick): 8-byte keys, 16-byte values.
Before timing, the data is checked: after ``LogDir.compact`` the log holds
exactly the latest value of each live key (plus the active segment, which is
never cleaned, and nothing twice), with offsets unchanged, and the view
equals the same thing computed with numpy.

Rows:

- ``compaction.clean.arrowlog``: ``LogDir.compact(topic)`` on a fresh copy of
  the log, MB/s of segment data cleaned (target, issue 15: >= 300 MB/s);
  ``compaction.clean.pandas``: ``DataFrame.drop_duplicates("key",
  keep="last")`` plus dropping tombstones, over the same records (Arrow-backed
  columns, built untimed), at the same MB/s basis.
- ``compaction.view.arrowlog``: ``replay(..., latest_per_key=True).to_arrow()``
  in seconds (target < 1 s); ``compaction.view.pandas``: the same
  drop_duplicates, in seconds.

``python -m bench.bench_compaction [--quick]`` runs it alone.
"""

from __future__ import annotations

import os
import shutil
import sys

from .harness import Row

TOPIC = "compacted"
KEY = 8
VALUE = 16
NOW = 10**13  # every tombstone is past delete.retention.ms


def sizes(quick: bool) -> tuple[int, int]:
    return (200_000, 20_000) if quick else (10_000_000, 1_000_000)


def records(n: int, n_keys: int):
    """(keys, values, key ids, live mask) as Arrow arrays and numpy."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(15)
    ids = rng.integers(0, n_keys, n)
    live = rng.random(n) >= 0.10
    kbuf = pa.py_buffer(ids.astype(">u8").tobytes())
    keys = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(np.arange(n + 1, dtype=np.int32) * KEY), kbuf])
    vdata = rng.integers(0, 256, n * VALUE, dtype=np.uint8)
    valid = pa.py_buffer(np.packbits(live, bitorder="little"))
    values = pa.Array.from_buffers(pa.binary(), n, [valid, pa.py_buffer(np.arange(n + 1, dtype=np.int32) * VALUE),
                                                    pa.py_buffer(vdata)], null_count=int((~live).sum()))
    return keys, values, ids, live


def build(root: str, quick: bool) -> tuple[str, int]:
    """The compacted topic's data directory (and its closed segments' bytes)."""
    import arrowlog
    from arrowlog.storage import LogDir

    n, n_keys = sizes(quick)
    path = os.path.join(root, "compaction-data")
    shutil.rmtree(path, ignore_errors=True)
    keys, values, _, _ = records(n, n_keys)
    with LogDir(path) as ld:
        ld.create_topic(TOPIC, config={"cleanup.policy": "compact", "segment.bytes": (1 << 20) if quick else (64 << 20)})
    p = arrowlog.Producer({"log.dir": path, "fsync.interval.ms": 0})
    step = (1 << 12) if quick else (1 << 16)
    for i in range(0, n, step):
        p.produce_batch(TOPIC, values.slice(i, step), keys=keys.slice(i, step), partition=0)
    p.flush()
    p.close()
    with LogDir(path) as ld:
        plog = ld.topic(TOPIC).partition(0)
        closed = sum(os.path.getsize(os.path.join(plog.directory, f"{b:020d}.log")) for b in plog.segment_bases()[:-1])
    return path, closed


def check(path: str, quick: bool) -> None:
    """After one clean: exactly the latest value of each live key (the active
    segment aside), offsets unchanged; the view equals numpy's answer."""
    import numpy as np

    import arrowlog
    from arrowlog.storage import LogDir

    n, n_keys = sizes(quick)
    keys, values, ids, live = records(n, n_keys)

    def latest_live(upto: int):
        last = np.full(n_keys, -1, dtype=np.int64)
        np.maximum.at(last, ids[:upto], np.arange(upto))
        last = last[last >= 0]
        return np.sort(last[live[last]])

    want = latest_live(n)
    with LogDir(path) as ld:
        active = ld.topic(TOPIC).partition(0).segment_bases()[-1]
        ld.compact(TOPIC, now_ms=NOW)
    with arrowlog.replay(path, TOPIC, columns=["offset", "key", "value"]) as r:
        t = r.to_arrow()
    got = t.column("offset").to_numpy()
    closed = got[got < active]
    # the cleaned range (closed segments) keeps exactly each live key's latest record in it
    if not np.array_equal(closed, latest_live(active)):
        raise AssertionError(f"compaction kept {len(closed)} records below the active segment, expected "
                             f"{len(latest_live(active))} (the latest of each live key)")
    if not np.array_equal(got[got >= active], np.arange(active, n)):
        raise AssertionError("the active segment changed")
    if t.column("value").slice(0, len(closed)).to_pylist()[:100] != values.take(closed[:100]).to_pylist():
        raise AssertionError("a survivor's value changed")
    with arrowlog.replay(path, TOPIC, columns=["offset"], latest_per_key=True) as r:
        view = r.to_arrow().column("offset").to_numpy()
    if not np.array_equal(view, want):
        raise AssertionError(f"latest_per_key gave {len(view)} rows, expected {len(want)}")


def pandas_frame(quick: bool):
    import pandas as pd
    import pyarrow as pa

    n, n_keys = sizes(quick)
    keys, values, _, _ = records(n, n_keys)
    return pa.table({"key": keys, "value": values}).to_pandas(types_mapper=pd.ArrowDtype)


def pandas_latest(df):
    out = df.drop_duplicates("key", keep="last")
    return out[out["value"].notna()]


def run(ctx=None, quick: bool = False):
    if ctx is None:
        return _standalone(quick)
    import arrowlog
    from arrowlog.storage import LogDir

    quick = ctx.quick
    n, n_keys = sizes(quick)
    root = ctx.scratch("compaction")
    state: dict = {}

    def data() -> tuple[str, int]:
        if "path" not in state:
            state["path"], state["closed"] = build(root, quick)
            fresh = os.path.join(root, "checked")
            shutil.copytree(state["path"], fresh)
            check(fresh, quick)
            shutil.rmtree(fresh)
        return state["path"], state["closed"]

    def clean_samples() -> list[float]:
        path, _ = data()

        def setup():
            copy = os.path.join(root, "copy")
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(path, copy)
            return copy

        def body(copy):
            with LogDir(copy) as ld:
                ld.compact(TOPIC, now_ms=NOW)

        return ctx.measure(body, setup=setup, teardown=lambda copy: shutil.rmtree(copy, ignore_errors=True))

    def view_samples() -> list[float]:
        path, _ = data()

        def body(_):
            with arrowlog.replay(path, TOPIC, latest_per_key=True) as r:
                r.to_arrow()

        return ctx.measure(body)

    def pandas_samples() -> list[float]:
        df = pandas_frame(quick)
        return ctx.measure(lambda _: pandas_latest(df))

    closed = data()[1]
    wl_clean = "compact a topic"
    wl_view = "latest value per key"
    setting = f"{n:,} updates over {n_keys:,} keys, 10% tombstones"
    return [
        ctx.row(Row("compaction.clean.arrowlog", wl_clean, "arrowlog", f"LogDir.compact: {setting}",
                    unit="MB/s", nbytes=closed), clean_samples),
        ctx.row(Row("compaction.clean.pandas", wl_clean, "pandas", "drop_duplicates('key', keep='last') + tombstones "
                    "dropped, same records (per closed-segment byte)", unit="MB/s", nbytes=closed), pandas_samples),
        ctx.row(Row("compaction.view.arrowlog", wl_view, "arrowlog", f"replay(latest_per_key=True).to_arrow(): {setting}",
                    kind="latency", unit="s"), view_samples),
        ctx.row(Row("compaction.view.pandas", wl_view, "pandas", "drop_duplicates('key', keep='last') + tombstones "
                    "dropped, same records", kind="latency", unit="s"), pandas_samples),
    ]


class _Ctx:
    """Just enough of the harness context for a standalone run."""

    def __init__(self, quick: bool, root: str):
        self.quick = quick
        self.root = root

    def scratch(self, name: str) -> str:
        import tempfile

        return tempfile.mkdtemp(prefix=name + "-", dir=self.root)

    def measure(self, body, setup=None, teardown=None, runs: int = 3) -> list[float]:
        import time

        out = []
        for _ in range(runs + 1):
            arg = setup() if setup else None
            try:
                t0 = time.perf_counter()
                body(arg)
                out.append(time.perf_counter() - t0)
            finally:
                if teardown:
                    teardown(arg)
        return out[1:]

    def row(self, template: Row, produce_samples) -> Row:
        template.samples = produce_samples()
        return template


def _standalone(quick: bool) -> dict:
    import statistics
    import tempfile

    root = tempfile.mkdtemp(prefix="bench-compaction-")
    try:
        rows = run(_Ctx(quick, root))
        out = {}
        for row in rows:
            med = statistics.median(row.samples)
            out[row.key] = (row.nbytes / med / 1e6) if row.unit == "MB/s" else med
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    for k, v in run(quick="--quick" in sys.argv).items():
        print(f"{k}: {v:.3f}")
