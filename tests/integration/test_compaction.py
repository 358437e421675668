"""The cleaner against a dict model, and every reader across the gaps it
leaves (Consumer, replay, mirror source, offsets_for_times, the CLI)."""

import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pytest

import arrowlog
from arrowlog.errors import ConfigError
from arrowlog.storage import LogDir
from arrowlog.storage.cleaner import latest_rows

DAY = 86_400_000
T0 = 1_700_000_000_000


def _produce(path, topic, n_keys=40, n=2000, tombstone_every=9, seed=1, ts0=T0, flush_every=50):
    """Keyed updates (every ``tombstone_every``-th a tombstone); returns the
    records as dicts in offset order."""
    rng = random.Random(seed)
    p = arrowlog.Producer({"log.dir": str(path)})
    sent = []
    for i in range(n):
        if i % flush_every == 0:
            p.flush()
        key = b"k%d" % rng.randrange(n_keys)
        value = None if i % tombstone_every == 0 else b"v%d" % i
        p.produce(topic, value, key=key, timestamp=ts0 + i, headers=[("n", b"%d" % i)])
        sent.append({"key": key, "value": value, "ts": ts0 + i, "n": i})
    p.flush()
    p.close()
    return sent


def _all_records(plog):
    rows = []
    offset = plog.log_start_offset
    while offset < plog.high_watermark:
        frames = plog.read(offset)
        for fr in frames:
            rows += fr.batch.to_pylist()
        offset = frames[-1].next_offset
    return rows


def _expected(stored, clean_before, horizon):
    """The model: below ``clean_before`` each key's last record (tombstones
    only if at or after ``horizon``); everything from ``clean_before`` on."""
    last = {}
    for r in stored:
        if r["offset"] < clean_before:
            last[r["key"]] = r["offset"]
    keep = []
    for r in stored:
        if r["offset"] >= clean_before:
            keep.append(r)
        elif last[r["key"]] == r["offset"]:
            ts = int(r["timestamp"].timestamp() * 1000)
            if r["value"] is not None or ts >= horizon:
                keep.append(r)
    return keep


@pytest.fixture
def compacted(tmp_path):
    with LogDir(tmp_path) as ld:
        ld.create_topic("t", config={"cleanup.policy": "compact", "segment.bytes": 16384})
    _produce(tmp_path, "t")
    return tmp_path


def test_compact_keeps_exactly_the_latest_of_each_key(compacted):
    with LogDir(compacted) as ld:
        plog = ld.topic("t").partition(0)
        before = _all_records(plog)
        assert len(plog.segment_bases()) > 5
        active = plog.segment_bases()[-1]
        horizon = T0 + 1000  # tombstones older than this go
        (report,) = ld.compact("t", now_ms=horizon + DAY)
        assert report["segments_rewritten"] > 0 and report["bytes_reclaimed"] > 0
        after = _all_records(plog)
        assert after == _expected(before, active, horizon)  # offsets, timestamps, headers, order unchanged
        assert plog.high_watermark == len(before)
        assert plog.verify()["errors"] == []
    # the rewritten segments survive a reopen and a full recovery
    with LogDir(compacted) as ld:
        plog = ld.topic("t").partition(0)
        plog.recover()
        assert _all_records(plog) == after


def test_compact_twice_and_append_after(compacted):
    with LogDir(compacted) as ld:
        ld.compact("t", now_ms=T0 + 10 * DAY)
        first = _all_records(ld.topic("t").partition(0))
    _produce(compacted, "t", n=500, seed=2, ts0=T0 + 5000)
    with LogDir(compacted) as ld:
        plog = ld.topic("t").partition(0)
        before = _all_records(plog)
        assert before[:len(first)] == first
        active = plog.segment_bases()[-1]
        ld.compact("t", now_ms=T0 + 10 * DAY)
        assert _all_records(plog) == _expected(before, active, T0 + 9 * DAY)
        assert ld.compact("t", now_ms=T0 + 10 * DAY)[0]["segments_rewritten"] == 0  # nothing left to do


def test_young_tombstones_stay(compacted):
    with LogDir(compacted) as ld:
        plog = ld.topic("t").partition(0)
        before = _all_records(plog)
        ld.compact("t", now_ms=T0 + 10)  # every tombstone is younger than delete.retention.ms
        after = _all_records(plog)
        assert any(r["value"] is None for r in after)
        assert after == _expected(before, plog.segment_bases()[-1], T0 + 10 - DAY)


def test_min_compaction_lag_leaves_young_segments(tmp_path):
    with LogDir(tmp_path) as ld:
        ld.create_topic("t", config={"cleanup.policy": "compact", "segment.bytes": 16384,
                                     "min.compaction.lag.ms": 1500})
    _produce(tmp_path, "t")
    with LogDir(tmp_path) as ld:
        plog = ld.topic("t").partition(0)
        before = _all_records(plog)
        (report,) = ld.compact("t", now_ms=T0 + 2000)  # only records older than T0+500 are cleanable
        after = _all_records(plog)
        assert 0 < report["segments"] < len(plog.segment_bases()) - 1
        assert after == _expected(before, report["clean_offset"], T0 + 2000 - DAY)


def test_compact_refuses_a_delete_topic(tmp_path):
    with LogDir(tmp_path) as ld:
        ld.create_topic("t")
        with pytest.raises(ConfigError, match="cleanup.policy=delete"):
            ld.compact("t")


def test_consumer_replay_and_times_across_gaps(compacted):
    with LogDir(compacted) as ld:
        ld.compact("t", now_ms=T0 + 10 * DAY)
        survivors = _all_records(ld.topic("t").partition(0))
        plog = ld.topic("t").partition(0)
        want = [(r["offset"], r["key"], r["value"]) for r in survivors]
        # offsets_for_times: a removed record's time resolves to the next survivor
        gone = next(o for o in range(len(want) + 10_000) if o not in {w[0] for w in want})
        assert plog.offset_for_timestamp(T0 + gone) == min(w[0] for w in want if w[0] > gone)
    c = arrowlog.Consumer({"log.dir": str(compacted), "group.id": "g", "auto.offset.reset": "earliest"})
    try:
        c.subscribe(["t"])
        got = []
        deadline = 200
        while len(got) < len(want) and deadline:
            batch = c.consume(1000, timeout=1.0)
            deadline -= 1
            got += [(m.offset(), m.key(), m.value()) for m in batch]
        assert got == want
        # seeking to a removed offset resolves to the next survivor
        c.unsubscribe()
        c.assign([arrowlog.TopicPartition("t", 0, gone)])
        first = []
        while not first and deadline:
            first = c.consume(1, timeout=1.0)
            deadline -= 1
        assert first[0].offset() == min(w[0] for w in want if w[0] > gone)
    finally:
        c.close()
    with arrowlog.replay(str(compacted), "t") as r:
        table = r.to_arrow()
    assert list(zip(*(table.column(c).to_pylist() for c in ("offset", "key", "value")))) == want
    with arrowlog.replay(str(compacted), "t", start=gone) as r:
        assert r.to_arrow().column("offset")[0].as_py() == min(w[0] for w in want if w[0] > gone)


def test_cli_topic_compact_and_describe(compacted):
    run = [sys.executable, "-m", "arrowlog", "topic"]
    res = subprocess.run(run + ["compact", "t", "--data", str(compacted), "--json"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    (report,) = json.loads(res.stdout)
    assert report["segments_rewritten"] > 0
    res = subprocess.run(run + ["describe", "t", "--data", str(compacted), "--json"], capture_output=True, text=True,
                         timeout=120)
    part = json.loads(res.stdout)["partitions"][0]
    assert part["cleaner"]["bytes_reclaimed"] == report["bytes_reclaimed"]
    assert part["cleaner"]["last_error"] is None and part["cleaner"]["last_clean_ms"] is not None
    assert part["cleaner"]["dirty_ratio"] == 0.0


def test_latest_rows_is_the_last_occurrence():
    rng = np.random.default_rng(3)
    keys = [b"k%d" % k for k in rng.integers(0, 500, 20_000)]
    last = {}
    for i, k in enumerate(keys):
        last[k] = i
    chunks = pa.chunked_array([pa.array(keys[:7000], pa.binary()), pa.array(keys[7000:], pa.binary())])
    assert latest_rows(chunks).tolist() == sorted(last.values())


def _view_model(records):
    """The latest-per-key view by hand: each key's last record unless it is
    a tombstone, in offset order."""
    last = {}
    for r in records:
        last[r["key"]] = r
    return sorted((r for r in last.values() if r["value"] is not None), key=lambda r: r["offset"])


def test_latest_per_key_view_on_an_uncompacted_topic(tmp_path):
    with LogDir(tmp_path) as ld:
        ld.create_topic("t", config={"segment.bytes": 16384})
    _produce(tmp_path, "t")
    with LogDir(tmp_path) as ld:
        records = _all_records(ld.topic("t").partition(0))
    expected = _view_model(records)
    with arrowlog.replay(str(tmp_path), "t", latest_per_key=True) as r:
        table = r.to_arrow()
    assert table.column("offset").to_pylist() == [e["offset"] for e in expected]
    assert table.column("value").to_pylist() == [e["value"] for e in expected]
    assert table.column("headers").to_pylist() == [e["headers"] for e in expected]
    # a column selection without key or value still filters by them
    with arrowlog.replay(str(tmp_path), "t", columns=["offset"], latest_per_key=True) as r:
        assert r.to_arrow().column("offset").to_pylist() == [e["offset"] for e in expected]


def test_latest_per_key_view_is_the_same_before_and_after_compaction(compacted):
    with arrowlog.replay(str(compacted), "t", latest_per_key=True) as r:
        before = r.to_arrow()
    with LogDir(compacted) as ld:
        ld.compact("t", now_ms=T0 + 10 * DAY)
    with arrowlog.replay(str(compacted), "t", latest_per_key=True) as r:
        assert r.to_arrow().equals(before)


def test_background_cleaner_thread_cleans_dirty_partitions_and_records_failures(compacted, caplog):
    from arrowlog.storage.cleaner import CleanerThread

    with LogDir(compacted) as ld:
        plog = ld.topic("t").partition(0)
        before = plog.size_bytes()
        cleaner = CleanerThread(ld.compacted_partitions, interval_s=3600)
        assert cleaner.run_once() == 1  # never cleaned: all dirty
        assert plog.size_bytes() < before
        assert cleaner.run_once() == 0  # clean now: below min.cleanable.dirty.ratio
        # a failing round is logged loudly and recorded for topic describe
        with open(os.path.join(plog.directory, "00000000000000000000.log"), "r+b") as f:
            f.seek(200)
            f.write(b"\xff" * 8)
        health_path = os.path.join(plog.directory, "cleaner.json")
        with open(health_path) as f:
            h = json.load(f)
        h["clean_offset"] = 0  # make it dirty again
        with open(health_path, "w") as f:
            json.dump(h, f)
        with caplog.at_level("ERROR", logger="arrowlog.cleaner"):
            cleaner.run_once()
        assert "cleaner of t-0 failed" in caplog.text
        from arrowlog.storage.cleaner import health
        assert "fails its checks" in health(plog)["last_error"]


def test_producer_cleans_in_the_background(tmp_path):
    with LogDir(tmp_path) as ld:
        ld.create_topic("t", config={"cleanup.policy": "compact", "segment.bytes": 16384})
    p = arrowlog.Producer({"log.dir": str(tmp_path), "log.cleaner.backoff.ms": 50})
    try:
        for i in range(3000):
            if i % 50 == 0:
                p.flush()
            p.produce("t", b"v%d" % i, key=b"k%d" % (i % 10))
        p.flush()
        health_path = tmp_path / "topics" / "t" / "0" / "cleaner.json"
        deadline = time.monotonic() + 120
        while not health_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert health_path.exists(), "the producer's cleaner never ran"
    finally:
        p.close()
    with LogDir(tmp_path) as ld:
        plog = ld.topic("t").partition(0)
        assert len(_all_records(plog)) < 3000
        assert {r["key"]: r["value"] for r in _all_records(plog)} == {b"k%d" % k: b"v%d" % (2990 + k)
                                                                      for k in range(10)}


@pytest.mark.parametrize("start", [0, 123])
def test_latest_rows_with_nulls_slices_and_keys_of_every_length(start):
    keys = [None if i % 17 == 0 else (b"key-%d" % (i * 7919 % 3001)) * (i % 3) for i in range(50_000)]
    arr = pa.array(keys, pa.binary()).slice(start, 30_000)
    chunks = pa.chunked_array([arr.slice(0, 10_000), arr.slice(10_000)])
    last = {}
    for i, k in enumerate(keys[start:start + 30_000]):
        if k is not None:
            last[k] = i
    assert latest_rows(chunks).tolist() == sorted(last.values())
    assert latest_rows(arr).tolist() == sorted(last.values())


def test_console_pages_and_metrics_timestamps_across_gaps(compacted):
    from arrowlog.console.browse import Browser
    from arrowlog.metrics import record_timestamp

    with LogDir(compacted) as ld:
        ld.compact("t", now_ms=T0 + 10 * DAY)
        survivors = _all_records(ld.topic("t").partition(0))
        b = Browser(ld)
        seen, start = [], 0
        while start is not None:
            page = b.page("t", 0, start, rows=7)
            seen += [r.offset for r in page.rows]
            start = page.next
        assert seen == [r["offset"] for r in survivors]
        key = survivors[0]["key"]
        hits = b.search_key("t", key, start=0, rows=1000)
        assert [r.offset for r in hits.rows] == [r["offset"] for r in survivors if r["key"] == key]
        gone = survivors[0]["offset"] - 1  # a removed offset: the next survivor's time
        assert record_timestamp(ld.topic("t").partition(0), gone) == T0 + survivors[0]["offset"]


def test_the_range_reader_reads_on_past_frames_the_cleaner_emptied(compacted):
    # Many early frames hold only superseded updates: after a clean they are empty
    # (offsets spanned, no rows). A small read that lands on them must go on to the
    # next rows, never answer [] as if the log had nothing more.
    from arrowlog.storage.reader import RangeReader

    with LogDir(compacted) as ld:
        ld.compact("t", now_ms=T0 + 10 * DAY)
        pl = ld.topic("t").partition(0)
        frames = []
        offset = pl.log_start_offset
        while offset < pl.high_watermark:
            got = pl.read(offset, 1)
            frames += got
            offset = got[-1].next_offset
        empty = [fr for fr in frames if fr.rows == 0]
        assert empty, "the fixture should leave frames the cleaner emptied"
        start = empty[0].base_offset
        reader = RangeReader(pl, start)
        got = reader.read(1)   # one frame's worth at a time
        assert got and got[0].rows > 0 and got[0].base_offset > start
        # and the rows it found are the first ones at or after start
        expected = next(fr for fr in frames if fr.base_offset >= start and fr.rows > 0)
        assert got[0].batch.column(0)[0].as_py() == expected.batch.column(0)[0].as_py()
