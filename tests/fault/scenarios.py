"""Fault scenarios that run in a child process (a SIGBUS there fails one
test instead of killing the test run). ``python scenarios.py NAME ARGS_JSON``
prints one JSON line with what happened.
"""

from __future__ import annotations

import json
import os
import sys

import faultlib
import pyarrow as pa

from arrowlog._native import core
from arrowlog.errors import ArrowlogError, StorageError
from arrowlog.storage import LogDir


def disk_full(fs: str, segment_bytes: int, value_bytes: int, bulk: bool = False) -> dict:
    """Fill the file system, append until it refuses, check nothing was
    acknowledged past the error, free the space, append again (``bulk``:
    through append_bulk, produce_batch's native frame writer)."""
    data = os.path.join(fs, "data")
    d, pl = faultlib.open_partition(data, {"segment.bytes": segment_bytes, "retention.ms": -1})
    filler = os.path.join(fs, "filler")
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    os.posix_fallocate(fd, 0, max(free - (512 << 10), 4096))
    os.close(fd)
    acked: dict[int, bytes] = {}
    errors: list[str] = []
    hw_at_first_error = None
    for b in range(100_000):
        vals = faultlib.batch_values(0, b, 4, value_bytes)
        try:
            if bulk:
                ts = core.wall_clock_ms()
                base = pl.append_bulk(pa.nulls(4, pa.binary()), pa.array(vals, pa.binary()), ts,
                                      min_timestamp=ts, max_timestamp=ts)
            else:
                base = pl.append(faultlib.make_batch(vals))
        except ArrowlogError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            if hw_at_first_error is None:
                hw_at_first_error = pl.high_watermark
            if len(errors) >= 5:
                break
            continue
        assert not errors, f"append {b} succeeded between failures while the disk stayed full"
        acked.update((base + j, v) for j, v in enumerate(vals))
    hw_after = pl.high_watermark
    os.unlink(filler)
    resumed = []
    for b in range(100_000, 100_010):
        vals = faultlib.batch_values(1, b, 4, value_bytes)
        base = pl.append(faultlib.make_batch(vals))
        acked.update((base + j, v) for j, v in enumerate(vals))
        resumed.append(base)
    contents = faultlib.read_log(pl)
    faultlib.check_log(contents, acked)
    d.close()
    d, pl = faultlib.open_partition(data)
    faultlib.check_log(faultlib.read_log(pl), acked)
    d.close()
    return {"errors": errors, "acked": len(acked), "hw_at_first_error": hw_at_first_error, "hw_after": hw_after,
            "resumed": resumed, "is_storage_error": all(e.startswith(("StorageError", "PartitionFailed"))
                                                        for e in errors)}


def read_only(mnt: str, remount: str) -> dict:
    """The file system turns read-only under an open log (ext4's
    errors=remount-ro, simulated with ``remount,abort``)."""
    import subprocess

    data = os.path.join(mnt, "data")
    d, pl = faultlib.open_partition(data)
    acked: dict[int, bytes] = {}
    for b in range(20):
        vals = faultlib.batch_values(0, b, 3, 50)
        base = pl.append(faultlib.make_batch(vals))
        acked.update((base + j, v) for j, v in enumerate(vals))
    r = subprocess.run(["mount", "-o", remount, mnt], capture_output=True, text=True)
    if r.returncode:
        return {"setup_failed": r.stderr}
    out: dict = {"write_errors": []}
    hw = pl.high_watermark
    for attempt in range(3):
        try:
            pl.append(faultlib.make_batch([b"after"]), fsync=True)
            out["write_errors"].append(None)
        except StorageError as exc:
            out["write_errors"].append(f"{type(exc).__name__}: {exc}")
    out["hw_unchanged"] = pl.high_watermark == hw
    faultlib.check_log(faultlib.read_log(pl), acked)  # reads keep working
    out["read_ok"] = True
    d.close()
    return out


def reader(data: str, done: str, timeout: float = 60.0) -> dict:
    """Follow the partition from another process: the high watermark never
    goes back, offsets arrive contiguous from 0, every record is well formed
    and every frame is a whole batch. Returns a digest of what was read."""
    import hashlib
    import time

    d, pl = faultlib.open_partition(data)
    digest = hashlib.sha256()
    offset = 0
    last_hw = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hw = pl.high_watermark
        assert hw >= last_hw, f"high watermark went back from {last_hw} to {hw}"
        last_hw = hw
        if offset >= hw:
            if os.path.exists(done) and pl.high_watermark == offset:
                break
            pl.wait(offset, 0.05)
            continue
        for fr in pl.read(offset, 1 << 16):
            assert fr.base_offset == offset, f"expected a frame at {offset}, got {fr}"
            vals = fr.batch.column(3).to_pylist()
            parsed = [faultlib.parse_value(v) for v in vals]
            assert [p[2] for p in parsed] == list(range(parsed[0][3])), f"partial batch at {offset}"
            for v in vals:
                digest.update(b"%d " % offset + v + b"\n")
                offset += 1
    d.close()
    return {"records": offset, "digest": digest.hexdigest()}


def retention_under_reader(data: str) -> dict:
    """A reader holds batches of the oldest segment while another process's
    retention deletes it: the held batches stay readable (the mapping
    outlives the file), a new read there is OffsetOutOfRangeError."""
    import subprocess

    from arrowlog.errors import OffsetOutOfRangeError

    cfg = {"segment.bytes": 8192, "retention.ms": -1, "retention.bytes": 20000}
    d, pl = faultlib.open_partition(data, cfg)
    expected = {}
    for b in range(40):
        vals = faultlib.batch_values(0, b, 3, 200)
        base = pl.append(faultlib.make_batch(vals))
        expected.update((base + j, v) for j, v in enumerate(vals))
    # retention ran at each roll; read what is left of the oldest segment
    start = pl.log_start_offset
    held = pl.read(start, 1 << 20)
    held_values = [(fr.base_offset, fr.batch.column(3).to_pylist()) for fr in held]
    for b in range(40, 80):
        vals = faultlib.batch_values(0, b, 3, 200)
        pl.append(faultlib.make_batch(vals))
    script = ("import faultlib\n"
              f"d, pl = faultlib.open_partition({data!r}, {cfg!r})\n"
              "print(pl.enforce_retention())\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=faultlib.writer_env())
    assert r.returncode == 0, r.stderr
    new_start = pl.log_start_offset
    out = {"start": start, "new_start": new_start}
    try:
        pl.read(start, 1 << 20)
        out["read_below_start"] = "returned data"
    except OffsetOutOfRangeError as exc:
        out["read_below_start"] = f"OffsetOutOfRangeError: {exc}"
    # the batches held from before are intact
    for (base, vals), fr in zip(held_values, held):
        assert fr.batch.column(3).to_pylist() == vals
        assert all(expected[base + j] == v for j, v in enumerate(vals))
    out["held_ok"] = True
    d.close()
    return out


def read_across_roll(data: str) -> dict:
    """Read the active segment, let it roll (its index is trimmed), read it
    again: the view opened before the roll must not look past the trimmed
    index (that was a SIGBUS)."""
    d, pl = faultlib.open_partition(data, {"segment.bytes": 8192, "retention.ms": -1})
    expected = {}
    vals = faultlib.batch_values(0, 0, 3, 100)
    pl.append(faultlib.make_batch(vals, 1_700_000_000_000))
    expected.update(enumerate(vals))
    pl.read(0, 100)
    pl.offset_for_timestamp(0)
    for b in range(1, 20):
        vals = faultlib.batch_values(0, b, 3, 300)
        base = pl.append(faultlib.make_batch(vals, 1_700_000_000_000 + b))
        expected.update((base + j, v) for j, v in enumerate(vals))
    out = {"segments": len(pl.segment_bases())}
    for off in range(pl.high_watermark):
        fr = pl.read(off, 1)[0]
        assert fr.batch.column(3)[off - fr.base_offset].as_py() == expected[off]
    out["time"] = [pl.offset_for_timestamp(1_700_000_000_000 + b) for b in range(20)]
    d.close()
    return out


def disk_full_at_open(fs: str, free_pages: int) -> dict:
    """Leave ``free_pages`` pages free, then open a new partition and append
    one record: either it works or it is a StorageError (never a raw
    OSError); once space is freed the partition works."""
    data = os.path.join(fs, "data")
    d = LogDir(data)
    d.create_topic(faultlib.TOPIC, partitions=1, config={"segment.bytes": 1 << 20})
    filler = os.path.join(fs, "filler")
    st = os.statvfs(fs)
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    os.posix_fallocate(fd, 0, st.f_bavail * st.f_frsize - free_pages * 4096)
    os.close(fd)
    error = None
    is_storage_error = True
    try:
        d.topic(faultlib.TOPIC).partition(0).append(faultlib.make_batch([b"first"]))
    except Exception as exc:  # noqa: BLE001 - the test judges the type
        error = f"{type(exc).__name__}: {exc}"
        is_storage_error = isinstance(exc, StorageError)
    d.close()
    os.unlink(filler)
    d = LogDir(data)
    pl = d.topic(faultlib.TOPIC).partition(0)
    pl.append(faultlib.make_batch([b"after"]))
    values = list(faultlib.read_log(pl).values.values())
    d.close()
    return {"error": error, "is_storage_error": is_storage_error, "values": [v.decode() for v in values]}


def main() -> int:
    name, args = sys.argv[1], json.loads(sys.argv[2])
    result = globals()[name](**args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
