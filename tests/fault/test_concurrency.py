"""Many processes on one partition.

Writers in several processes interleave whole batches (one killed -9
midway must not hurt the other); readers in other processes only ever see
a growing, contiguous prefix of whole batches; retention in one process
deleting a segment another has mapped gives "offset out of range", never
SIGBUS; offsets must stay under 2^31 from a segment's base, so the log
rolls before a relative offset could overflow an index entry.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import time

import faultlib
import pytest

from arrowlog.storage import appending as appending_module
from arrowlog.storage import segment as segment_module


def test_two_writers_interleave_whole_batches(data_dir, seed):
    faultlib.open_partition(data_dir)[0].close()
    rng = random.Random(seed)
    a = faultlib.Writer("append", data_dir, "1", "--seed", str(rng.randrange(1 << 30)), "--batches", "150")
    b = faultlib.Writer("append", data_dir, "2", "--seed", str(rng.randrange(1 << 30)))
    victim = faultlib.Writer("append", data_dir, "3", "--seed", str(rng.randrange(1 << 30)))
    for w in (a, b, victim):
        w.wait_ready()
    time.sleep(rng.uniform(0.02, 0.2))  # the moment of the kill: random by design
    rc, err = victim.kill()  # may die holding the append lock: flock is released with it
    assert rc == -9, err
    rc, err = a.finish()
    assert rc == 0, err
    b.wait_for(lambda w: w.acked, "acknowledged a record")  # by progress: both cycles must be in the log
    b.kill()
    acked = {**a.acked, **b.acked, **victim.acked}
    assert len(acked) == len(a.acked) + len(b.acked) + len(victim.acked), "two writers got the same offset"
    d, pl = faultlib.open_partition(data_dir)
    try:
        contents = faultlib.read_log(pl)
        faultlib.check_log(contents, acked)
        cycles = {faultlib.parse_value(fv[0])[0] for _, fv in contents.frames}
        assert {1, 2} <= cycles
    finally:
        d.close()


class Readers:
    """Reader processes (scenarios.reader) following a partition until
    ``finish()`` tells them the writers are done."""

    def __init__(self, data_dir: str, done: str, n: int):
        self.done = done
        self.procs = [subprocess.Popen(faultlib.scenario_cmd("reader", data=data_dir, done=done),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env=faultlib.writer_env()) for _ in range(n)]

    def finish(self) -> list[dict]:
        open(self.done, "w").close()
        results = []
        for r in self.procs:
            out, err = r.communicate(timeout=120)
            results.append(faultlib.scenario_result(r.returncode, out, err, "reader"))
        return results


def digest(contents, records: int) -> str:
    """What scenarios.reader computes over the first ``records`` records."""
    h = hashlib.sha256()
    for off in range(records):
        h.update(b"%d " % off + contents.values[off] + b"\n")
    return h.hexdigest()


def test_readers_in_other_processes_see_a_growing_prefix(data_dir, tmp_path, seed):
    faultlib.open_partition(data_dir)[0].close()
    readers = Readers(data_dir, str(tmp_path / "done"), 3)
    w = faultlib.Writer("append", data_dir, "0", "--seed", str(seed), "--batches", "300")
    rc, err = w.finish()
    assert rc == 0, err
    results = readers.finish()
    d, pl = faultlib.open_partition(data_dir)
    try:
        contents = faultlib.read_log(pl)
    finally:
        d.close()
    for res in results:
        assert res["records"] == contents.high_watermark
        assert res["digest"] == digest(contents, contents.high_watermark)


def test_readers_follow_writers_that_get_killed(data_dir, tmp_path, seed):
    """Readers keep the partition open (so later writers do not recover it)
    while writer after writer is SIGKILLed mid-append: the readers see only
    whole, published batches, and every acknowledged record."""
    faultlib.open_partition(data_dir)[0].close()
    rng = random.Random(seed)
    readers = Readers(data_dir, str(tmp_path / "done"), 2)
    acked: dict[int, bytes] = {}
    for cycle in range(faultlib.count(5, 40)):
        w = faultlib.Writer("append", data_dir, str(cycle), "--seed", str(rng.randrange(1 << 30)))
        w.wait_ready()
        if not acked:  # by progress: at least one acknowledged record to check
            w.wait_for(lambda w: w.acked, "acknowledged a record")
        time.sleep(rng.uniform(0.01, 0.2))  # the moment of the kill: random by design
        rc, err = w.kill()
        assert rc == -9, f"seed={seed} cycle={cycle}: {err}"
        acked.update(w.acked)
    results = readers.finish()
    d, pl = faultlib.open_partition(data_dir)
    try:
        contents = faultlib.read_log(pl)
        faultlib.check_log(contents, acked)
    finally:
        d.close()
    assert acked, "the writers acknowledged nothing"
    # The readers saw the published log; recovery may add a batch the last
    # writer wrote whole but died before publishing. Theirs is a prefix.
    for res in results:
        assert max(acked) < res["records"] <= contents.high_watermark, f"seed={seed}: {res}"
        assert res["digest"] == digest(contents, res["records"]), \
            f"seed={seed}: a reader saw other records than the log holds"


def test_retention_under_a_reader_is_offset_out_of_range(data_dir):
    out = faultlib.scenario("retention_under_reader", data=data_dir)
    assert out["new_start"] > out["start"], out
    assert out["read_below_start"].startswith("OffsetOutOfRangeError"), out
    assert out["held_ok"]


def test_reading_a_segment_again_after_it_rolled(data_dir):
    out = faultlib.scenario("read_across_roll", data=data_dir)
    assert out["segments"] > 1
    assert out["time"] == [3 * b for b in range(20)]


def test_relative_offset_limits_are_those_of_u32_index_entries():
    assert segment_module.MAX_RELATIVE_OFFSET == appending_module.MAX_RELATIVE_OFFSET == (1 << 31) - 1
    assert segment_module.MAX_SEGMENT_BYTES == (1 << 31) - 1


def test_offsets_near_2_pow_31_roll_the_segment(data_dir):
    """Constructed state: a fresh partition told that its next offset is
    just under 2^31, instead of writing two billion records."""
    d, pl = faultlib.open_partition(data_dir)
    near = (1 << 31) - 10
    with pl._append_locked():
        pl.state.publish(next_offset=near, log_start_offset=near, recovery_point=near)
    first = pl.append(faultlib.make_batch(faultlib.batch_values(0, 0, 5, 0)))
    assert first == near and pl.segment_bases() == [0]  # relative offset 2^31-6: still fits
    second = pl.append(faultlib.make_batch(faultlib.batch_values(0, 1, 20, 0)))
    assert second == near + 5
    bases = pl.segment_bases()
    assert bases == [0, near + 5], f"no roll before the relative offset passed 2^31: {bases}"
    contents = faultlib.read_log(pl)
    assert contents.high_watermark == near + 25
    assert [base for base, _ in contents.frames] == [near, near + 5]
    d.close()
    d, pl = faultlib.open_partition(data_dir)
    try:
        assert faultlib.read_log(pl).high_watermark == near + 25
        assert pl.read(near + 7, 1)[0].base_offset == near + 5
    finally:
        d.close()


@pytest.mark.parametrize("limit", [50, 97])
def test_roll_rule_with_a_small_limit(data_dir, monkeypatch, limit):
    """The same rule at a scale that can be written: no segment ever holds
    an offset more than ``limit`` past its base."""
    monkeypatch.setattr(appending_module, "MAX_RELATIVE_OFFSET", limit)
    d, pl = faultlib.open_partition(data_dir, {"segment.bytes": 1 << 20, "retention.ms": -1})
    rng = random.Random(limit)
    for b in range(60):
        pl.append(faultlib.make_batch(faultlib.batch_values(0, b, rng.randint(1, 12), 0)))
    contents = faultlib.read_log(pl)
    bases = pl.segment_bases()
    d.close()
    assert len(bases) > 1
    for base, vals in contents.frames:
        seg = max(b for b in bases if b <= base)
        assert base + len(vals) - 1 - seg <= limit, f"frame {base}+{len(vals)} in segment {seg} passes {limit}"
    faultlib.check_log(contents, {})


def test_readers_survive_a_writer_that_died_mid_publish(data_dir):
    """Constructed: the seqlock counter left odd, as by a SIGKILL between
    seq_begin and seq_end (a window of one 96-byte copy)."""
    import os
    import struct

    d, pl = faultlib.open_partition(data_dir)
    try:
        pl.append(faultlib.make_batch(faultlib.batch_values(0, 0, 2, 0)))
        with open(os.path.join(pl.directory, "partition.state"), "r+b") as f:
            f.seek(16)
            seq = struct.unpack("<Q", f.read(8))[0]
            f.seek(16)
            f.write(struct.pack("<Q", seq | 1))
        assert pl.high_watermark == 2
        assert pl.read(0, 100)[0].record_count == 2
        assert not pl.state.torn  # repaired under the append lock
        pl.append(faultlib.make_batch(faultlib.batch_values(0, 1, 1, 0)))
        assert pl.high_watermark == 3
    finally:
        d.close()
