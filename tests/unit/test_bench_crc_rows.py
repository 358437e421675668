"""The CRC rows of the replay and consume benchmarks: how the three reads are
interleaved and what the notes say. Nothing real is timed here (``make bench``
does that); the reads are stand-ins that record their order."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bench import bench_replay  # noqa: E402
from bench.harness import Row, measure  # noqa: E402


class Ctx:
    runs, warmup = 2, 1

    def measure(self, body):
        return measure(body, runs=self.runs, warmup=self.warmup)


def test_the_three_reads_and_a_crc_pass_alternate_and_rotate(monkeypatch):
    order: list[str] = []
    monkeypatch.setattr(bench_replay, "crc_pass", lambda path: lambda: order.append("pass"))
    monkeypatch.setattr(bench_replay, "MIN_RUN_S", 0.0)
    checked = []
    samples = bench_replay.crc_trio(Ctx(), lambda mode: order.append(mode) or mode, checked.append, "unused")
    assert checked == ["off", "first", "again"]  # each read's result checked once, before timing
    timed = order[3:]
    cycles = [timed[i:i + 4] for i in range(0, len(timed), 4)]
    assert len(cycles) == (Ctx.runs + Ctx.warmup) * bench_replay.MIN_CYCLES
    for cycle in cycles:
        assert sorted(cycle) == ["again", "first", "off", "pass"]  # every kind once per cycle
    # no kind always follows the same one: the cycles start one later each time
    assert [c[0] for c in cycles[:4]] == ["off", "first", "again", "pass"]
    assert set(samples) == {"off", "first", "again", "pass"}
    assert all(len(s) == Ctx.runs for s in samples.values())  # warm-up rounds dropped


def test_notes_give_the_ratio_against_off_and_the_passes_added():
    def row(key, seconds):
        return Row(key, "w", "arrowlog", samples=[seconds] * 3, records=1)

    remembered, first, off = row("replay.x.arrowlog", 0.0105), row("replay.x.arrowlog-firstread", 0.014), \
        row("replay.x.arrowlog-nocrc", 0.010)
    bench_replay.crc_cost_note(remembered, off, 100_000_000, [0.004])
    bench_replay.crc_cost_note(first, off, 100_000_000, [0.004])
    assert remembered.note.startswith("remembered: 1.05× the time with CRC off (+0.5 ms)")
    assert first.note.startswith("first read: 1.40× the time with CRC off (+4.0 ms); 100 MB of segments")
    assert "takes 4.0 ms here (25.0 GB/s, fresh mapping): the check added 1.00 passes" in first.note
