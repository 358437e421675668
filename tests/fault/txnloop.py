"""A consume-transform-produce loop in a subprocess, SIGKILLed at random points, and the
exactly-once check of its output (test_transactions_kill.py over the wire,
test_transactions_local_kill.py in-process). The loop prints ``ready`` once it has
fenced its killed predecessor, a line per step (output produced, transaction
committed) and ``done`` at the end."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
from typing import Callable

import faultlib

RECORDS = 300
DEADLINE_S = 120.0
INPUT, OUTPUT, GROUP, TXN_ID = "ctp-in", "ctp-out", "ctp-group", "ctp-loop"
NAMES = {"group": GROUP, "input": INPUT, "output": OUTPUT, "txn": TXN_ID}

# After the setup: reads from ``consumer``, writes and commits with ``producer``.
LOOP = """
    print("ready", flush=True)
    position = max(committed, 0)
    while position < total:
        msgs = [m for m in consumer.consume(10, 1.0) if not m.error()]
        if not msgs:
            continue
        producer.begin_transaction()
        for m in msgs:
            producer.produce(%(output)r, value=m.value() + b"!")
        producer.flush(%(timeout)s)
        print("produced", flush=True)
        pause()
        position = msgs[-1].offset() + 1
        producer.send_offsets_to_transaction([TopicPartition(%(input)r, 0, position)],
                                             consumer.consumer_group_metadata(), %(timeout)s)
        pause()
        producer.commit_transaction(%(timeout)s)
        print("committed", position, flush=True)
        pause()
    print("done", flush=True)
"""


def loop_script(setup: str, timeout: float | None = None, pause_s: float = 0.0) -> str:
    """The loop's script: ``setup`` (indented like LOOP, %%(name)s of NAMES) makes
    ``consumer``, ``producer``, ``TopicPartition`` and ``committed`` from ``total`` and
    the first argument; ``timeout``: what the producer's calls are given (None: nothing);
    ``pause_s``: a pause after each step."""
    pause = f"""
    def pause():
        time.sleep({pause_s})
""" if pause_s else """
    def pause():
        pass
"""
    args = dict(NAMES, timeout="" if timeout is None else repr(timeout))
    return textwrap.dedent("""
    import sys, time
    total = int(sys.argv[2])
""" + setup + pause + LOOP) % args


def start_loop(script: str, target: str) -> subprocess.Popen:
    """Run ``script`` (loop_script) in a subprocess on ``target`` (its first argument)."""
    return subprocess.Popen([sys.executable, "-c", script, target, str(RECORDS)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=faultlib.writer_env())


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
