"""Damaged layout of a cleanly closed partition: a missing segment, a gap
between segments, impossible values in partition.state, a broken
topic.json.

Each case must end, within seconds, in a clear ArrowlogError naming the
damaged file (never a hang, a raw ValueError/IndexError/KeyError, or wrong
data) through every reader; `arrowlog verify` must report it (exit 5, no
"internal error", never "ok"), and after `arrowlog recover` every reader
works again and returns only records the log really held.

Readers run in a child process with a deadline, so a reader that spins
fails its case instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import faultlib
import pytest

from arrowlog._native import core

READERS = ("read", "replay", "consumer", "producer")
# A reader that finishes nothing within this many seconds hangs (a clean
# read of this log takes well under one second, even on a loaded machine).
DEADLINE = 120.0
SEGMENTS = 6


def state_path(data: str) -> str:
    return os.path.join(data, "topics", faultlib.TOPIC, "0", "partition.state")


def segment_paths(data: str) -> list[str]:
    part = os.path.join(data, "topics", faultlib.TOPIC, "0")
    return [os.path.join(part, n) for n in sorted(os.listdir(part)) if n.endswith(".log")]


def set_state(data: str, **fields: int) -> None:
    """Overwrite payload fields of a closed partition's state file, keeping
    it marked clean (the seqlock is even: nobody is publishing)."""
    with open(state_path(data), "r+b") as f:
        for name, value in fields.items():
            f.seek(24 + 8 * core.STATE_SLOT[name])
            f.write(struct.pack("<q", value))


def state_fields(data: str) -> dict[str, int]:
    with open(state_path(data), "rb") as f:
        raw = f.read(128)
    assert raw[12:16] == b"\1\0\0\0", "the pristine partition was not closed cleanly"
    return {name: struct.unpack_from("<q", raw, 24 + 8 * i)[0] for i, name in enumerate(core.STATE_FIELDS)}


@pytest.fixture(scope="module")
def pristine():
    """A cleanly closed partition of several segments, and its records."""
    with faultlib.scratch("arrowlog-layout-") as base:
        data = os.path.join(base, "pristine")
        yield data, faultlib.closed_partition(data, segments=SEGMENTS, segment_bytes=6 << 10, index_interval=512)


@pytest.fixture
def damaged(pristine, tmp_path):
    data, values = pristine
    copy = str(tmp_path / "data")
    shutil.copytree(data, copy)
    return copy, values


def run_readers(data: str, readers=READERS) -> dict[str, dict]:
    proc = subprocess.run([sys.executable, "-X", "faulthandler", os.path.join(faultlib.HERE, "damaged_readers.py"),
                           data, *readers], capture_output=True, text=True, timeout=DEADLINE,
                          env=faultlib.writer_env())
    results = {}
    for line in proc.stdout.splitlines():
        r = json.loads(line)
        results[r["reader"]] = r
    missing = [r for r in readers if r not in results]
    assert not missing, f"readers {missing} did not finish (rc {proc.returncode}): {proc.stderr[-3000:]}"
    return results


def cli(data: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arrowlog", *args, "--data", data], capture_output=True, text=True,
                          timeout=DEADLINE, env=faultlib.writer_env())


def check_outcome(results: dict, values: dict[int, bytes], names: str, what: str) -> None:
    """Each reader failed with a clear ArrowlogError naming ``names`` or
    returned only true records."""
    for reader, r in results.items():
        err = r["error"]
        if err is not None:
            assert err["arrowlog"], f"{what}: {reader} raised a raw {err['type']}: {err['message']}"
            assert err["type"] not in ("TimeoutError",), f"{what}: {reader} stalled: {err['message']}"
            assert names in err["message"], f"{what}: {reader}'s error does not name {names}: {err['message']}"
            continue
        # nothing at all from a log that holds records is not "only true records"
        assert reader == "producer" or r["records"] or not values, f"{what}: {reader} returned nothing, no error"
        for off, v in r["records"].items():
            assert values.get(int(off)) == v.encode("latin-1"), f"{what}: {reader} returned a wrong record at {off}"


def check_verify_and_recover(data: str, values: dict[int, bytes], what: str) -> dict:
    res = cli(data, "verify")
    assert res.returncode == 5, f"{what}: verify exited {res.returncode}: {res.stdout}{res.stderr}"
    assert "internal error" not in res.stderr.lower(), f"{what}: {res.stderr}"
    assert "DAMAGED" in res.stdout, f"{what}: verify did not report the damage: {res.stdout}"
    res = cli(data, "recover")
    assert res.returncode == 0, f"{what}: recover exited {res.returncode}: {res.stdout}{res.stderr}"
    res = cli(data, "verify")
    assert res.returncode == 0, f"{what}: verify after recover exited {res.returncode}: {res.stdout}{res.stderr}"
    after = run_readers(data)
    for reader, r in after.items():
        assert r["error"] is None, f"{what}: {reader} still fails after recover: {r['error']}"
    top = max(values)
    check_outcome(after, {**values, **{o: b"after-damage" for o in range(top + 1, top + 3)}}, "", what)
    return after


def contiguous_suffix(records: dict, values: dict) -> tuple[int, int]:
    offs = sorted(int(o) for o in records)
    assert offs == list(range(offs[0], offs[-1] + 1)), "the recovered log has a hole"
    return offs[0], offs[-1]


def test_missing_oldest_segment(damaged):
    data, values = damaged
    paths = segment_paths(data)
    os.unlink(paths[0])
    check_outcome(run_readers(data), values, "00000000000000000000.log", "missing oldest segment")
    second = int(os.path.basename(paths[1])[:20])
    after = check_verify_and_recover(data, values, "missing oldest segment")
    first, last = contiguous_suffix(after["read"]["records"], values)
    # everything from the first surviving segment on is still there
    assert first == second and last >= max(values)


def test_missing_middle_segment(damaged):
    data, values = damaged
    paths = segment_paths(data)
    missing = os.path.basename(paths[2])
    os.unlink(paths[2])
    check_outcome(run_readers(data), values, missing, "missing middle segment")
    after = check_verify_and_recover(data, values, "missing middle segment")
    # documented choice: the suffix after the gap becomes the log
    first, last = contiguous_suffix(after["read"]["records"], values)
    assert first == int(os.path.basename(paths[3])[:20]) and last >= max(values)
    assert after["read"]["records"] == after["replay"]["records"] == after["consumer"]["records"]
    # the missing segment's indexes mean nothing without it: recover leaves none behind
    left = os.listdir(os.path.dirname(paths[0])) + os.listdir(os.path.join(os.path.dirname(paths[0]), "quarantine"))
    assert not [n for n in left if n.startswith(missing[:20])], left


def test_gap_between_segments(damaged):
    """A closed segment that ends before the next one begins (its last
    frame cut off at a frame boundary)."""
    data, values = damaged
    paths = segment_paths(data)
    with open(paths[1], "rb") as f:
        raw = f.read()
    header_size = struct.unpack_from("<I", raw, 8)[0]
    pos, last = header_size, header_size
    while pos < len(raw):
        last = pos
        pos += core.FRAME_HEADER_SIZE + struct.unpack_from("<I", raw, pos + 16)[0]
    with open(paths[1], "r+b") as f:
        f.truncate(last)
    check_outcome(run_readers(data), values, "", "gap between segments")
    after = check_verify_and_recover(data, values, "gap between segments")
    first, last_off = contiguous_suffix(after["read"]["records"], values)
    assert first == int(os.path.basename(paths[2])[:20]) and last_off >= max(values)


STATE_CASES = {
    "next_offset=10^12": {"next_offset": 10**12},
    "next_offset=-1": {"next_offset": -1},
    "log_start=-5": {"log_start_offset": -5},
    "log_start=10^9": {"log_start_offset": 10**9},
    "log_start=next_offset+1": {"log_start_offset": -1},  # set from the pristine state below
    "active_position=1": {"active_position": 1},
    "active_position=10^12": {"active_position": 10**12},
    "active_base=10^12": {"active_base_offset": 10**12},
    "active_base=0": {"active_base_offset": 0},
    "active_position misaligned": {"active_position": -1},  # set from the pristine state below
    "index_entries=10^9": {"offset_index_entries": 10**9, "time_index_entries": -3},
    "time_index_entries=10^9": {"time_index_entries": 10**9},
    "bytes_since_index=2^40": {"bytes_since_index": 1 << 40},
    "next_offset too small": {"next_offset": 3},
    "recovery_point=10^9": {"recovery_point": 10**9},
}


@pytest.mark.parametrize("case", sorted(STATE_CASES))
def test_impossible_partition_state(damaged, case):
    data, values = damaged
    before = state_fields(data)
    fields = dict(STATE_CASES[case])
    if case == "log_start=next_offset+1":
        fields["log_start_offset"] = before["next_offset"] + 1
    if case == "active_position misaligned":
        fields["active_position"] = before["active_position"] + 4
    set_state(data, **fields)
    check_outcome(run_readers(data), values, "partition.state", case)
    after = check_verify_and_recover(data, values, case)
    # the state is a cache of the segments: recovery loses no record
    assert {int(o) for o in after["read"]["records"]} == set(range(before["next_offset"]))


@pytest.mark.parametrize("field,offset,value", [("version", 8, 2), ("clean", 12, 7)])
def test_impossible_partition_state_header(damaged, field, offset, value):
    """A state file of another format version is never rewritten behind
    the user's back, nor is a clean mark that is neither 0 nor 1 trusted:
    both are reported until `arrowlog recover` rebuilds the state."""
    data, values = damaged
    with open(state_path(data), "r+b") as f:
        f.seek(offset)
        f.write(struct.pack("<I", value))
    check_outcome(run_readers(data), values, "partition.state", f"{field}={value}")
    res = cli(data, "verify")
    assert f"{field}" in res.stdout and str(value) in res.stdout, res.stdout
    after = check_verify_and_recover(data, values, f"{field}={value}")
    assert {int(o) for o in after["read"]["records"]} == set(values)
    with open(state_path(data), "rb") as f:
        assert struct.unpack_from("<II", f.read(16), 8) == (1, 1)


TOPIC_JSON_CASES = {
    "bad JSON": b'{"name": "t", "partitions": 1, "config": {',
    "empty": b"",
    "not an object": b"[1, 2]",
    "partitions a string": b'{"name": "t", "partitions": "one", "config": {}}',
    "partitions negative": b'{"name": "t", "partitions": -4, "config": {}}',
    "partitions huge": b'{"name": "t", "partitions": 1000000000000, "config": {}}',
    "no partitions": b'{"name": "t", "config": {}}',
    "no config": b'{"name": "t", "partitions": 1}',
    "config a list": b'{"name": "t", "partitions": 1, "config": []}',
    "config value wrong type": b'{"name": "t", "partitions": 1, "config": {"segment.bytes": "big"}}',
}


@pytest.mark.parametrize("case", sorted(TOPIC_JSON_CASES))
def test_broken_topic_json(damaged, case):
    data, values = damaged
    with open(os.path.join(data, "topics", faultlib.TOPIC, "topic.json"), "wb") as f:
        f.write(TOPIC_JSON_CASES[case])
    check_outcome(run_readers(data), values, "topic.json", case)
    after = check_verify_and_recover(data, values, case)
    assert {int(o) for o in after["read"]["records"]} == set(values)


def test_retention_leaves_a_damaged_partition_and_topic_alone(damaged):
    """Retention over the whole directory skips a topic whose topic.json is
    broken and never deletes segments of a partition whose state is
    impossible (active_base_offset=10^12 would make every segment look old)."""
    from arrowlog.storage import LogDir

    data, _ = damaged
    set_state(data, active_base_offset=10**12)
    other = os.path.join(data, "topics", "other")
    os.makedirs(other)
    with open(os.path.join(other, "topic.json"), "w") as f:
        f.write("{broken")
    before = segment_paths(data)
    with LogDir(data, create=False) as d:
        pl = d.topic(faultlib.TOPIC).partition(0)
        pl.config["retention.bytes"] = 1  # everything but the active segment is beyond it
        assert d.enforce_retention() == 0
    assert segment_paths(data) == before


@pytest.mark.parametrize("config", [{}, {"retention.ms": 1}])
def test_topic_json_of_an_older_version_takes_defaults(damaged, config):
    """A topic.json without keys a newer version added is not damage: the
    missing keys take their defaults and every reader and verify work."""
    data, values = damaged
    with open(os.path.join(data, "topics", faultlib.TOPIC, "topic.json"), "w") as f:
        json.dump({"name": faultlib.TOPIC, "partitions": 1, "config": config}, f)
    results = run_readers(data)
    for reader, r in results.items():
        assert r["error"] is None, f"{reader}: {r['error']}"
    assert {int(o) for o in results["read"]["records"]} == set(values)
    assert results["replay"]["records"] == results["read"]["records"]
    res = cli(data, "verify")
    assert res.returncode == 0, res.stdout + res.stderr
    res = cli(data, "topic", "describe", faultlib.TOPIC)
    assert res.returncode == 0 and "segment.bytes" in res.stdout, res.stdout + res.stderr


def test_bit_rot_in_a_closed_segment(damaged):
    """One flipped bit inside a frame of a synced middle segment: readers
    name the file, verify names that segment only (no segment after it is
    "missing"), and recover treats it as a gap: that segment and the ones
    before it move to quarantine/, the log resumes after it."""
    data, values = damaged
    paths = segment_paths(data)
    rotten = os.path.basename(paths[2])
    frames = faultlib.frame_layout(open(paths[2], "rb").read())
    pos, size = frames[len(frames) // 2][:2]
    with open(paths[2], "r+b") as f:
        f.seek(pos + size // 2)
        byte = f.read(1)[0]
        f.seek(pos + size // 2)
        f.write(bytes([byte ^ 0x10]))
    check_outcome(run_readers(data, ("read", "replay", "consumer")), values, rotten, "bit rot")
    res = cli(data, "verify")
    assert res.returncode == 5 and rotten in res.stdout and "missing" not in res.stdout, res.stdout
    after = check_verify_and_recover(data, values, "bit rot")
    first, last = contiguous_suffix(after["read"]["records"], values)
    assert first == int(os.path.basename(paths[3])[:20]) and last >= max(values)
    quarantine = os.path.join(os.path.dirname(paths[0]), "quarantine")
    assert sorted(n for n in os.listdir(quarantine) if n.endswith(".log")) == [os.path.basename(p) for p in paths[:3]]


def test_bit_rot_in_synced_frames_of_the_active_segment(damaged):
    """Rot in the active segment below the recovery point is not a torn
    write: recover must not cut the log back (offsets would be given again
    to new records). That segment and those before it move to quarantine/
    and the log goes on, empty, at the offset it had reached."""
    data, values = damaged
    paths = segment_paths(data)
    top = state_fields(data)["next_offset"]
    frames = faultlib.frame_layout(open(paths[-1], "rb").read())
    pos, size = frames[0][:2]
    with open(paths[-1], "r+b") as f:
        f.seek(pos + size // 2)
        byte = f.read(1)[0]
        f.seek(pos + size // 2)
        f.write(bytes([byte ^ 0x10]))
    assert cli(data, "verify").returncode == 5
    assert cli(data, "recover").returncode == 0
    res = cli(data, "verify")
    assert res.returncode == 0, res.stdout + res.stderr
    quarantine = os.path.join(os.path.dirname(paths[0]), "quarantine")
    assert sorted(n for n in os.listdir(quarantine) if n.endswith(".log")) == [os.path.basename(p) for p in paths]
    assert run_readers(data, ("producer",))["producer"]["error"] is None
    after = run_readers(data, ("read", "replay", "consumer"))
    for reader, r in after.items():
        assert r["error"] is None and r["records"] == {str(top): "after-damage"}, (reader, r)
