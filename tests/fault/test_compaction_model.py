"""Model test of compaction: random sequences of keyed produces, deletes
(tombstones), a clock moving on, cleaning rounds, rounds that die at a
random step of the swap, and process crashes, against a dict model.

After every step, reading the partition from the start must give:
records exactly as they were produced (offset, timestamp, key, value,
headers), in order, with no offset twice; for every key, its latest record
(the last one read for that key is the latest produced), unless that latest
record is a tombstone the cleaner was allowed to drop (older than
delete.retention.ms), in which case nothing of the key is left at all (no
older value comes back)."""

from __future__ import annotations

import os
import shutil

import faultlib
import pyarrow as pa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from arrowlog.schema import HEADERS_TYPE, PRODUCE_SCHEMA
from arrowlog.storage import cleaner

RETENTION_MS = 1000
CONFIG = {"segment.bytes": 4096, "index.interval.bytes": 500, "cleanup.policy": "compact",
          "delete.retention.ms": RETENTION_MS}
KEYS = [b"k%d" % i for i in range(8)]


class Crash(Exception):
    """The cleaner's process dies here."""


class CompactionModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.root = faultlib.fast_scratch("arrowlog-compaction-model-")
        self.data = os.path.join(self.root, "data")
        self.records: list[dict] = []  # every record produced, by offset
        self.now = 1_000_000
        self.dropped_ok: set[bytes] = set()  # keys whose latest is a tombstone a clean may have dropped
        self._open()

    def _open(self) -> None:
        self.dir, self.pl = faultlib.open_partition(self.data, CONFIG)

    def _abandon(self) -> None:
        faultlib.abandon(self.dir, self.pl)

    def teardown(self) -> None:
        try:
            self.dir.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- rules -----------------------------------------------------------------------

    @rule(rows=st.lists(st.tuples(st.sampled_from(KEYS), st.booleans(), st.integers(0, 60)), min_size=1,
                        max_size=12))
    def produce(self, rows):
        n = len(rows)
        keys = [k for k, _, _ in rows]
        values = [None if tomb else b"v%d-" % (len(self.records) + j) + b"x" * size
                  for j, (_, tomb, size) in enumerate(rows)]
        headers = [[{"key": "i", "value": b"%d" % (len(self.records) + j)}] for j in range(n)]
        batch = pa.RecordBatch.from_arrays(
            [pa.array([self.now] * n, pa.timestamp("ms", tz="UTC")), pa.array(keys, pa.binary()),
             pa.array(values, pa.binary()), pa.array(headers, HEADERS_TYPE)], schema=PRODUCE_SCHEMA)
        base = self.pl.append(batch)
        assert base == len(self.records)
        for j in range(n):
            self.records.append({"offset": base + j, "key": keys[j], "value": values[j], "ts": self.now,
                                 "headers": [("i", b"%d" % (base + j))]})
            self.dropped_ok.discard(keys[j])

    @rule(ms=st.integers(1, 1500))
    def clock(self, ms):
        self.now += ms

    def _allow_drops(self) -> None:
        """A round at ``now`` may drop the tombstones older than the retention."""
        latest = {}
        for r in self.records:
            latest[r["key"]] = r
        for key, r in latest.items():
            if r["value"] is None and r["ts"] < self.now - RETENTION_MS:
                self.dropped_ok.add(key)

    @rule()
    def clean(self):
        self._allow_drops()
        cleaner.clean_partition(self.pl, now_ms=self.now)

    @rule(at=st.integers(1, 40))
    def clean_and_die(self, at):
        """A round that dies at its ``at``-th step, then the process: the
        next opener finishes or discards the swap."""
        self._allow_drops()
        seen = [0]

        def step(name):
            seen[0] += 1
            if seen[0] == at:
                raise Crash(name)

        own, cleaner._step = cleaner._step, step
        try:
            cleaner.clean_partition(self.pl, now_ms=self.now)
        except Crash:
            pass
        finally:
            cleaner._step = own
        self._abandon()
        self._open()

    @rule()
    def crash(self):
        self._abandon()
        self._open()

    @rule()
    def reopen(self):
        self.dir.close()
        self._open()

    # -- the guarantee ---------------------------------------------------------------------

    @invariant()
    def reading_from_the_start(self):
        assert self.pl.high_watermark == len(self.records)
        got = []
        offset = self.pl.log_start_offset
        while offset < self.pl.high_watermark:
            frames = self.pl.read(offset)
            for fr in frames:
                got += fr.batch.to_pylist()
            offset = frames[-1].next_offset
        offsets = [r["offset"] for r in got]
        assert offsets == sorted(set(offsets)), "an offset twice, or out of order"
        last = {}
        for r in got:
            want = self.records[r["offset"]]
            assert (r["key"], r["value"], int(r["timestamp"].timestamp() * 1000)) == \
                (want["key"], want["value"], want["ts"]), f"record {r['offset']} changed"
            assert [(h["key"], h["value"]) for h in r["headers"]] == want["headers"]
            last[r["key"]] = r["offset"]
        latest = {}
        for r in self.records:
            latest[r["key"]] = r
        for key, r in latest.items():
            if key in last:
                assert last[key] == r["offset"], f"{key!r}: its latest record {r['offset']} is gone"
            else:
                assert key in self.dropped_ok, f"{key!r}: every record is gone, its latest was {r}"


test_compaction_matches_its_model = CompactionModel.TestCase
CompactionModel.TestCase.settings = settings(
    max_examples=faultlib.count(25, 300), stateful_step_count=faultlib.count(30, 80), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
