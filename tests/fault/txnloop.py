"""A consume-transform-produce loop in a subprocess, SIGKILLed at random points, and the
exactly-once check of its output (test_transactions_kill.py over the wire,
test_transactions_local_kill.py in-process). The loop prints ``ready`` once it has
fenced its killed predecessor, a line per step (output produced, transaction
committed) and ``done`` at the end."""

from __future__ import annotations

import random
import subprocess
import time
from typing import Callable

import faultlib

RECORDS = 300
DEADLINE_S = 120.0


def kill_and_finish(start: Callable[[], subprocess.Popen], rng: random.Random, seed: int) -> None:
    """Start the loop and SIGKILL it 10 times (50 with ARROWLOG_FAULT_LONG=1), each after a
    random number of steps plus a little: before, inside or after a commit; then run it to the end."""
    for _ in range(faultlib.count(10, 50)):
        loop = start()
        try:
            assert loop.stdout.readline().strip() == "ready", f"seed {seed}: the loop did not start"
            for _ in range(rng.randint(0, 6)):
                if not loop.stdout.readline():
                    break
            time.sleep(rng.uniform(0, 0.02))
        finally:
            loop.kill()
            loop.wait(30)
    last = start()
    try:
        out, _ = last.communicate(timeout=DEADLINE_S)
    finally:
        if last.poll() is None:
            last.kill()
            last.wait(30)
    assert out.strip().endswith("done"), f"seed {seed}: the last run did not finish: {out[-500:]}"


def check_exactly_once(got: list[bytes], seed: int) -> None:
    """Every input value ``in-NNNNN`` once in the output (as ``in-NNNNN!``), in order."""
    expected = [b"in-%05d!" % i for i in range(RECORDS)]
    missing = sorted(set(expected) - set(got))
    assert not missing, f"seed {seed}: {len(missing)} input record(s) not in the output, e.g. {missing[:3]}"
    assert len(got) == len(set(got)), f"seed {seed}: {len(got) - len(set(got))} output record(s) duplicated"
    assert got == expected, f"seed {seed}: output out of order"
