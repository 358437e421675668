"""kill -9 of the Kafka-protocol server: what it acknowledged survives.

A real Kafka client (confluent-kafka, acks=all, no retries, so that nothing
is sent twice) produces to ``arrowlog serve``; every record whose delivery
report came back without an error is acknowledged. The server is SIGKILLed
at a random moment, then the data directory is opened directly (which
recovers it) and checked: every acknowledged record at its offset, offsets
contiguous, nothing duplicated. The next cycle starts a new server on the
same directory.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import faultlib
import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")


def start_server(data: str, *options: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "arrowlog.server", "--data", data,
                             "--listen", "127.0.0.1:0", "--partitions", "1", "--log-level", "WARNING",
                             *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=faultlib.writer_env())
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise AssertionError("arrowlog server did not start:\n" + proc.stderr.read())
    return proc, line


def test_kill9_server_keeps_acknowledged_records(data_dir, seed):
    faultlib.open_partition(data_dir)[0].close()  # 64 KiB segments: rolls under load
    rng = random.Random(seed)
    acked: dict[int, bytes] = {}
    seen: dict[int, bytes] = {}
    for cycle in range(faultlib.count(4, 40)):
        proc, bootstrap = start_server(data_dir)
        p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                                      "retries": 0, "linger.ms": 2, "message.timeout.ms": 5000})

        def delivered(err, msg):
            if err is None:
                acked[msg.offset()] = msg.value()

        deadline = time.monotonic() + rng.uniform(0.2, 1.0)
        seq = 0
        while time.monotonic() < deadline:
            for _ in range(rng.randint(1, 50)):
                p.produce(faultlib.TOPIC, faultlib.value_for(cycle, seq, 0, 1, rng.randint(0, 200)), partition=0,
                          on_delivery=delivered)
                seq += 1
            p.poll(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        p.poll(0.2)  # reports of what was acknowledged before the kill
        p.purge()
        p.flush(1)
        del p
        err = proc.stderr.read()
        assert proc.returncode == -9, f"seed={seed} cycle={cycle}: the server died on its own:\n{err[-3000:]}"
        d, pl = faultlib.open_partition(data_dir)
        try:
            contents = faultlib.read_log(pl)
            faultlib.check_log(contents, acked, seen, whole_batches=False)
        except AssertionError as exc:
            raise AssertionError(f"seed={seed} cycle={cycle}: {exc}") from None
        finally:
            d.close()
        seen = contents.values
    assert acked, "the server acknowledged nothing: the test did not test"
    os.sync()
