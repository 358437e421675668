"""kill -9 at random moments: nothing acknowledged is ever lost.

A writer process appends (or produces) batches and reports every
acknowledged record over a pipe; it is SIGKILLed at a random moment
(sometimes while it is still opening, i.e. recovering, the log). After
each reopen every acknowledged record is intact, offsets are contiguous,
nothing is duplicated, no partial batch is visible, and nothing a previous
reopen showed has changed. The log accumulates over every cycle and crosses
segment rolls (64 KiB segments).
"""

from __future__ import annotations

import random
import time

import faultlib
import pytest

MODES = {
    # writer arguments, quick count, long count
    "append": (["append"], 30, 300),
    "append-fsync": (["append", "--fsync"], 10, 100),
    # kills also land in clean closes and opens, and in retention at rolls
    # (acknowledged records below the log start are legitimately gone)
    "append-reopen-retention": (["append", "--reopen-every", "7", "--retention-bytes", "200000"], 14, 200),
    "producer": (["producer"], 16, 200),
}


@pytest.mark.parametrize("name", list(MODES))
def test_kill9_never_loses_acknowledged_records(name, data_dir, seed):
    writer_args, quick, long = MODES[name]
    mode = writer_args[0]
    config = dict(faultlib.TOPIC_CONFIG)  # as the writer creates the topic, should it come first
    if "--retention-bytes" in writer_args:
        config["retention.bytes"] = int(writer_args[writer_args.index("--retention-bytes") + 1])
    rng = random.Random(seed)
    acked: dict[int, bytes] = {}
    seen: dict[int, bytes] = {}
    cycles = faultlib.count(quick, long)
    checked = 0
    for cycle in range(cycles):
        w = faultlib.Writer(mode, data_dir, str(cycle), "--seed", str(rng.randrange(1 << 30)), *writer_args[1:])
        if rng.random() < 0.15:
            time.sleep(rng.uniform(0, 0.3))  # may land in start-up or recovery
        else:
            w.wait_ready()
            # by progress, not by a guess, so the checks below always have
            # something to check: an acknowledged record, and retention
            if not acked:
                w.wait_for(lambda w: w.acked, "acknowledged a record")
            if "--retention-bytes" in writer_args:
                w.wait_for(lambda w: w.log_start > 0, "saw retention delete a segment")
            time.sleep(rng.uniform(0, 0.1))  # the moment of the kill: random by design
        rc, err = w.kill()
        assert rc == -9, f"seed={seed} cycle={cycle}: writer died on its own (rc {rc}):\n{err}"
        acked.update(w.acked)
        # Sometimes let the next writer do the recovery (and maybe die in it).
        if rng.random() < 0.7 or cycle == cycles - 1:
            d, pl = faultlib.open_partition(data_dir, config)
            try:
                contents = faultlib.read_log(pl)
                faultlib.check_log(contents, acked, seen, whole_batches=mode == "append")
            except AssertionError as exc:
                raise AssertionError(f"seed={seed} cycle={cycle}: {exc}") from None
            finally:
                d.close()
            seen = contents.values
            checked += 1
    assert checked and acked, "the writers acknowledged nothing: the test did not test"
    if "--retention-bytes" in writer_args:
        assert contents.log_start > 0, "retention never deleted a segment: the test did not test it"
