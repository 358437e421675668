"""A writer for the fault tests to kill (run by faultlib.Writer).

    writer.py append   DATA CYCLE [--fsync | --fsync-every N] [--reopen-every N] [--retention-bytes N]
                       (also prints ``S <log start>`` when a synced append saw retention move the log start)
                       [--seed N] [--batches N] [--stop-on-error]
    writer.py producer DATA CYCLE [--fsync] [--seed N] [--batches N]

Prints ``R`` once the partition is open, then ``A <offset> <value>`` for each
record once it is acknowledged: after PartitionLog.append() returned
(``append``), after the flush(fsync=True) that covered it (``--fsync-every``),
or after Producer.flush() returned (``producer``). Lines go
out with one os.write each, so a SIGKILL can only cut the report short,
never claim an acknowledgement that did not happen.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

import faultlib

from arrowlog.errors import ArrowlogError


def emit(lines: list[bytes]) -> None:
    data = b"".join(lines)
    while data:
        n = os.write(1, data)
        data = data[n:]


def warm_up() -> None:
    """Import what the first append would import lazily (pyarrow.compute
    takes ~150 ms), so kills land in appends rather than in imports."""
    import pyarrow as pa

    faultlib.make_batch([b"warm-up"]).column(0).cast(pa.int64()).to_numpy()


def run_append(args, rng: random.Random) -> int:
    warm_up()
    config = dict(faultlib.TOPIC_CONFIG)
    if args.retention_bytes:
        config["retention.bytes"] = args.retention_bytes
    d, pl = faultlib.open_partition(args.data, config)
    emit([b"R\n"])
    batch = 0
    log_start = 0  # the last one reported
    pending: list[bytes] = []  # acknowledged at the next (f)sync
    while args.batches < 0 or batch < args.batches:
        n = rng.randint(1, 40)
        values = faultlib.batch_values(args.cycle, batch, n, rng.randint(0, 200))
        try:
            base = pl.append(faultlib.make_batch(values), fsync=args.fsync)
            pending.extend(b"A %d %s\n" % (base + j, v) for j, v in enumerate(values))
            if args.fsync_every and (batch + 1) % args.fsync_every == 0:
                pl.flush(fsync=True)
        except ArrowlogError as exc:
            emit([b"E %s: %s\n" % (type(exc).__name__.encode(), str(exc).encode())])
            if args.stop_on_error:
                return 3
            pending.clear()
            batch += 1
            continue
        if not args.fsync_every or (batch + 1) % args.fsync_every == 0:
            start = pl.log_start_offset
            if start > log_start:  # retention deleted a segment, durably: this (f)sync covered it
                pending.append(b"S %d\n" % start)
                log_start = start
            emit(pending)
            pending.clear()
        batch += 1
        if args.reopen_every and batch % args.reopen_every == 0:
            d.close()  # a clean close (sync, trim, clean mark), then open again
            d, pl = faultlib.open_partition(args.data, config)
    pl.close()
    return 0


def run_producer(args, rng: random.Random) -> int:
    import arrowlog.producer

    warm_up()
    faultlib.open_partition(args.data)[0].close()
    p = arrowlog.producer.Producer({"log.dir": args.data, "linger.ms": 1,
                                    "durability": "fsync" if args.fsync else "written"})
    emit([b"R\n"])
    seq = 0
    batch = 0
    while args.batches < 0 or batch < args.batches:
        delivered = []

        def on_delivery(err, msg, delivered=delivered):
            if err is None:
                delivered.append((msg.offset(), msg.value()))

        for _ in range(rng.randint(1, 60)):
            p.produce(faultlib.TOPIC, faultlib.value_for(args.cycle, seq, 0, 1, rng.randint(0, 100)),
                      partition=0, on_delivery=on_delivery)
            seq += 1
        p.flush()
        emit([b"A %d %s\n" % (off, v) for off, v in delivered])
        batch += 1
    p.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["append", "producer"])
    ap.add_argument("data")
    ap.add_argument("cycle", type=int)
    ap.add_argument("--fsync", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fsync-every", type=int, default=0, help="acknowledge after flush(fsync=True) every N batches")
    ap.add_argument("--reopen-every", type=int, default=0, help="close and reopen the log every N batches")
    ap.add_argument("--retention-bytes", type=int, default=0, help="create the topic with this retention.bytes")
    ap.add_argument("--batches", type=int, default=-1)
    ap.add_argument("--stop-on-error", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    return run_append(args, rng) if args.mode == "append" else run_producer(args, rng)


if __name__ == "__main__":
    sys.exit(main())
