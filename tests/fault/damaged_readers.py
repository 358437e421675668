"""Read a (possibly damaged) data directory through every reader, in a child
process so that a reader that hangs fails one test instead of the suite.

``python damaged_readers.py DATA_DIR READER...`` prints one JSON line per
reader, as soon as that reader is done::

    {"reader": "replay", "error": null | {"type": ..., "arrowlog": bool, "message": ...},
     "records": {"<offset>": "<value as latin-1>"}}

Readers: replay, consumer, read (PartitionLog.read from the log start to the
high watermark), producer (one produce() + flush()). The parent gives the
child a deadline: a reader that spins never prints its line.
"""

from __future__ import annotations

import json
import sys
import time

import arrowlog
from arrowlog import Consumer, Producer, TopicPartition
from arrowlog.errors import ArrowlogError
from arrowlog.storage import LogDir

TOPIC = "t"
# A reader that makes no progress for this long is reported as stalled
# (a clean log of a few hundred records is read in well under a second).
STALL_SECONDS = 20.0


def read_replay(data: str) -> dict[int, bytes]:
    with arrowlog.replay(data, TOPIC) as r:
        table = r.to_arrow()
    return dict(zip(table.column("offset").to_pylist(), table.column("value").to_pylist()))


def read_consumer(data: str) -> dict[int, bytes]:
    c = Consumer({"log.dir": data, "enable.partition.eof": True, "auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(TOPIC, 0, arrowlog.OFFSET_BEGINNING)])
        out: dict[int, bytes] = {}
        deadline = time.monotonic() + STALL_SECONDS
        while time.monotonic() < deadline:
            for m in c.consume(1000, timeout=1.0):
                if m.error() is not None:
                    if m.error().code() == m.error()._PARTITION_EOF:
                        return out
                    raise ArrowlogError(f"consumer error message: {m.error()}")
                out[m.offset()] = m.value()
        raise TimeoutError(f"the consumer stalled at {len(out)} records without reaching the end")
    finally:
        c.close()


def read_partition(data: str) -> dict[int, bytes]:
    d = LogDir(data, create=False)
    try:
        pl = d.topic(TOPIC).partition(0)
        start, hw = pl.watermarks()
        out: dict[int, bytes] = {}
        offset = start
        deadline = time.monotonic() + STALL_SECONDS
        while offset < hw:
            if time.monotonic() > deadline:
                raise TimeoutError(f"read() made no progress past offset {offset} (high watermark {hw})")
            frames = pl.read(offset, 1 << 16)
            if not frames:
                raise TimeoutError(f"read({offset}) returned nothing below the high watermark {hw}")
            for fr in frames:
                offs = fr.batch.column(0).to_pylist()
                vals = fr.batch.column("value").to_pylist()
                for o, v in zip(offs, vals):
                    if o >= offset:
                        out[o] = v
                offset = max(offset, fr.base_offset + fr.record_count)
        return out
    finally:
        d.close()


def produce(data: str) -> dict[int, bytes]:
    p = Producer({"log.dir": data, "linger.ms": 0})
    try:
        p.produce(TOPIC, b"after-damage", partition=0)
        left = p.flush(STALL_SECONDS)
        if left:
            raise TimeoutError(f"flush() left {left} records undelivered")
    finally:
        p.close()
    return {}


READERS = {"replay": read_replay, "consumer": read_consumer, "read": read_partition, "producer": produce}


def main() -> None:
    data, names = sys.argv[1], sys.argv[2:]
    for name in names:
        result: dict = {"reader": name, "error": None, "records": {}}
        try:
            records = READERS[name](data)
            result["records"] = {str(o): (v or b"").decode("latin-1") for o, v in records.items()}
        except Exception as exc:  # noqa: BLE001 - the parent judges the type
            result["error"] = {"type": type(exc).__name__, "arrowlog": isinstance(exc, ArrowlogError),
                               "message": str(exc)}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
