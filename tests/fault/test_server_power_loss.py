"""Power loss under ``arrowlog serve``: a wire produce is durable within the flush interval.

A confluent-kafka producer (acks=all, no retries) writes to a server whose
data directory is on a loop-mounted ext4 image. Once the server's periodic
flush has moved the recovery point past everything acknowledged so far (the
log stays open: no close, no shutdown sync), more records are produced and
the file system is shut down without flushing its journal
(FS_IOC_SHUTDOWN, NOLOGFLUSH), as a power loss would, and the server is
killed. After mounting the image again every record acknowledged before
that flush is there, intact, and nothing is duplicated.

Needs root and a loop device (CI has both); skipped otherwise.
"""

from __future__ import annotations

import gc
import os
import random
import time

import faultlib
import pytest
from test_server_kill import start_server

confluent_kafka = pytest.importorskip("confluent_kafka")

DEADLINE_S = 60.0


def produce_some(bootstrap: str, cycle: int, first_seq: int, n: int, rng) -> dict[int, bytes]:
    """Produce n records; the acknowledged ones, by offset."""
    acked: dict[int, bytes] = {}

    def delivered(err, msg):
        if err is None:
            acked[msg.offset()] = msg.value()

    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
                                  "retries": 0, "linger.ms": 2, "message.timeout.ms": 20000})
    for seq in range(first_seq, first_seq + n):
        p.produce(faultlib.TOPIC, faultlib.value_for(cycle, seq, 0, 1, rng.randint(0, 400)), partition=0,
                  on_delivery=delivered)
        p.poll(0)
    assert p.flush(DEADLINE_S) == 0, "records still unacknowledged"
    return acked


def wait_until_synced(data: str, offset: int) -> None:
    """Wait (the server running, the log open) until its recovery point reaches ``offset``."""
    d, pl = faultlib.open_partition(data)
    try:
        end = time.monotonic() + DEADLINE_S
        while pl.state.snapshot()["recovery_point"] < offset:
            assert time.monotonic() < end, f"the recovery point never reached {offset}: no periodic fsync"
            time.sleep(0.02)
    finally:
        d.close()
        del d, pl
        gc.collect()


def test_power_loss_keeps_what_the_server_flushed(ext4, seed):
    rng = random.Random(seed)
    img = ext4(160)
    img.mount()
    data = os.path.join(img.mnt, "data")
    faultlib.open_partition(data)[0].close()  # 64 KiB segments: the flush must cover rolled ones too
    gc.collect()
    acked: dict[int, bytes] = {}
    for cycle in range(faultlib.count(2, 10)):
        proc, bootstrap = start_server(data, "--flush-interval", "0.1")
        try:
            flushed = produce_some(bootstrap, cycle, 0, rng.randint(300, 1500), rng)
            assert flushed, "nothing was acknowledged"
            wait_until_synced(data, max(flushed) + 1)
            # more, acknowledged or not when the power goes: not required to survive
            later = produce_some(bootstrap, cycle, 10**6, rng.randint(0, 50), rng)
            img.shutdown()
        finally:
            proc.kill()
            proc.wait(30)
        acked.update(flushed)
        img.umount()
        img.mount()
        contents = faultlib.check_after_power_loss(data, acked, f"seed={seed} cycle={cycle}", whole_batches=False)
        # what survived of the later records is kept for the next cycle's checks
        acked.update({o: v for o, v in later.items() if contents.values.get(o) == v})
