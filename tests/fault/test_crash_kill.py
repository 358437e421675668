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
    # mode, fsync, quick count, long count
    "append": ("append", False, 30, 300),
    "append-fsync": ("append", True, 10, 100),
    "producer": ("producer", False, 16, 200),
}


@pytest.mark.parametrize("name", list(MODES))
def test_kill9_never_loses_acknowledged_records(name, data_dir, seed):
    mode, fsync, quick, long = MODES[name]
    rng = random.Random(seed)
    acked: dict[int, bytes] = {}
    seen: dict[int, bytes] = {}
    cycles = faultlib.count(quick, long)
    checked = 0
    for cycle in range(cycles):
        args = [mode, data_dir, str(cycle), "--seed", str(rng.randrange(1 << 30))]
        if fsync:
            args.append("--fsync")
        w = faultlib.Writer(*args)
        if rng.random() < 0.15:
            time.sleep(rng.uniform(0, 0.3))  # may land in start-up or recovery
        else:
            w.wait_ready()
            time.sleep(rng.uniform(0, 0.1))
        rc, err = w.kill()
        assert rc == -9, f"seed={seed} cycle={cycle}: writer died on its own (rc {rc}):\n{err}"
        acked.update(w.acked)
        # Sometimes let the next writer do the recovery (and maybe die in it).
        if rng.random() < 0.7 or cycle == cycles - 1:
            d, pl = faultlib.open_partition(data_dir)
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
