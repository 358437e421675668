"""The one native reader of an envelope frame's IPC message (_native/core/
envframe.pxi) behind both of its users, the consumer's FrameFollower
(core/follow.pxi) and the small-partition replay (core/replayview.pxi):
fed the same mangled message, neither crashes or reads outside the frame,
and what either still answers is what pyarrow decodes from those bytes."""

from __future__ import annotations

import os
import struct

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrowlog._native import core
from arrowlog.backends.local.clean_read import CleanStates
from arrowlog.errors import CorruptRecordError
from arrowlog.schema import ENVELOPE_SCHEMA, PRODUCE_SCHEMA, REPLAY_SCHEMA
from arrowlog.storage import LogDir
from arrowlog.storage.layout_mark import write_mark

FRAME_HEADER = 40
ROWS = [(b"k0", b"v" * 9, [("h", b"x"), ("arrowlog.other", None)]), (None, b"", None), (b"k2", None, [])]
WRITTEN = [(1 + i, 1_000 + i, k, v, h and [(hk.encode(), hv) for hk, hv in h])  # (offset, timestamp, ...)
           for i, (k, v, h) in enumerate(ROWS)]


def written(path: str) -> tuple[str, int, int]:
    """A one-partition topic closed cleanly: one record, then the target
    frame of ROWS. (its segment file, the target frame's position, its end)."""
    with LogDir(path) as d:
        d.create_topic("t", 1)
        log = d.topic("t").partition(0)
        for rows in ([(b"first", b"v", None)], ROWS):
            log.append(pa.RecordBatch.from_pydict({
                "timestamp": [1_000 + i for i in range(len(rows))], "key": [r[0] for r in rows],
                "value": [r[1] for r in rows], "headers": [r[2] for r in rows]}, schema=PRODUCE_SCHEMA))
    seg = os.path.join(path, "topics", "t", "0", f"{0:020d}.log")
    with open(seg, "rb") as f:
        data = f.read()
    first = struct.unpack_from("<I", data, 8)[0]  # the segment header's size: the first frame
    target = first + FRAME_HEADER + struct.unpack_from("<I", data, first + 16)[0]
    return seg, target, target + FRAME_HEADER + struct.unpack_from("<I", data, target + 16)[0]


def mangle(seg: str, at: int, flips: list[tuple[int, int]]) -> bytes:
    """XOR the message bytes ``flips`` (position, mask) of the frame at
    ``at``, leave the layout mark vouching for the file again; the message."""
    with open(seg, "r+b") as f:
        f.seek(at + 16)
        body = struct.unpack("<I", f.read(4))[0]
        f.seek(at + FRAME_HEADER)
        msg = bytearray(f.read(body))
        for where, mask in flips:
            msg[where % body] ^= mask
        f.seek(at + FRAME_HEADER)
        f.write(msg)
    remark(os.path.dirname(seg))
    return bytes(msg)


def remark(directory: str) -> None:
    """The partition's layout mark vouches for its files as they are now."""
    fd = os.open(os.path.join(directory, "partition.state"), os.O_RDWR)
    try:
        st = core.PartitionState(core.MappedFile(fd, core.STATE_FILE_SIZE, False, "partition.state")).snapshot()
        write_mark(fd, directory, st)
    finally:
        os.close(fd)


RAW_HEADERS = pa.list_(pa.struct([("key", pa.binary()), ("value", pa.binary())]))
UNDECODABLE = "a header key that is not UTF-8"


def rows_of(batch: pa.RecordBatch) -> list[tuple]:
    """(offset, timestamp ms, key, value, headers) of each row; header keys
    as their bytes (a mangled one need not be UTF-8)."""
    headers = [None if h is None else [(e["key"], e["value"]) for e in h]
               for h in batch["headers"].cast(RAW_HEADERS).to_pylist()]
    return list(zip(batch["offset"].to_pylist(), batch["timestamp"].cast(pa.int64()).to_pylist(),
                    batch["key"].to_pylist(), batch["value"].to_pylist(), headers, strict=True))


def recounted(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` over the same buffers, its null counts taken from the
    validity bitmaps (what the native readers use) rather than the nodes."""
    def remade(arr: pa.Array, bufs: list, children=None) -> pa.Array:
        return pa.Array.from_buffers(arr.type, len(arr), bufs, null_count=-1, children=children)

    cols = [remade(batch[i], batch[i].buffers()) for i in range(4)]
    headers = batch["headers"]
    entries = headers.values
    b = headers.buffers()
    keys = pa.Array.from_buffers(pa.binary(), len(entries), b[3:6], null_count=-1)  # not UTF-8 checked
    struct = pa.Array.from_buffers(RAW_HEADERS.value_type, len(entries), b[2:3], null_count=-1,
                                   children=[keys, remade(entries.field(1), b[6:9])])
    headers = pa.Array.from_buffers(RAW_HEADERS, len(headers), b[0:2], null_count=-1, children=[struct])
    return pa.RecordBatch.from_arrays([*cols, headers], names=batch.schema.names)


def pyarrow_rows(msg: bytes) -> list[tuple] | None:
    """The rows pyarrow reads from the message after validating it fully;
    None when it refuses it."""
    try:
        batch = pa.ipc.read_record_batch(pa.ipc.read_message(pa.py_buffer(msg)), ENVELOPE_SCHEMA)
        batch.validate()  # sizes first: recounting over buffers too short for their length aborts pyarrow
        batch = recounted(batch)
        batch.validate(full=True)
    except (pa.ArrowException, ValueError, OSError, SystemError):
        return None
    return rows_of(batch)


def as_the_follower_sees(rows: list[tuple] | None) -> list[tuple] | None:
    """``rows`` as follower_rows() gives them: headers with a key that is not
    UTF-8 raise there (Message.headers() decodes the keys)."""
    def seen(h):
        try:
            for k, _ in h or ():
                k.decode()
        except UnicodeDecodeError:
            return UNDECODABLE
        return h
    return None if rows is None else [(*r[:4], seen(r[4])) for r in rows]


def replay_rows(path: str) -> list[tuple] | None:
    """The target frame's rows read by core.SmallReader; None when it sends
    the partition the general way (which is not asked to read here)."""
    with LogDir(path) as d:
        clean = CleanStates(d.topic("t"), [0])
    assert clean.index == {0: 0}, "the layout mark no longer vouches for the partition"
    asked = []
    table = clean.table({0: (1, 1 + len(ROWS))}, REPLAY_SCHEMA, False,
                        lambda parts: asked.extend(parts) or REPLAY_SCHEMA.empty_table())
    if asked:
        return None
    return [row for batch in table.to_batches() for row in rows_of(batch)]


def follower_rows(path: str, at: int) -> list[tuple] | None:
    """The target frame's rows read by a core.FrameFollower (no CRC check);
    None when it leaves them to the general read."""
    seg = os.path.join(path, "topics", "t", "0", f"{0:020d}.log")
    fd = os.open(seg, os.O_RDONLY)
    try:
        mapped = core.MappedFile(fd, os.fstat(fd).st_size, False, seg)
    finally:
        os.close(fd)
    with LogDir(path) as d:
        log = d.topic("t").partition(0)
        follower = core.FrameFollower(log.state, mapped, log.state.snapshot()["generation"], 0, 1, at, "t", 0, None,
                                      lambda positions: None)
        view = follower.next_view(1)
        if view is False:
            return None
        assert view is not None
        return [(m.offset(), m.timestamp()[1], m.key(), m.value(), headers_of(m))
                for m in (view.message_at(i) for i in range(view.num_rows))]


def headers_of(m) -> list | str | None:
    try:
        headers = m.headers()
    except CorruptRecordError:  # a header key that is not UTF-8, named as damage
        return UNDECODABLE
    return None if headers is None else [(k.encode(), v) for k, v in headers]


def test_both_users_read_the_unmangled_frame(tmp_path):
    path = str(tmp_path / "d")
    seg, at, _ = written(path)
    msg = mangle(seg, at, [])
    assert pyarrow_rows(msg) == WRITTEN
    assert replay_rows(path) == WRITTEN
    assert follower_rows(path, at) == WRITTEN


def test_both_users_decline_a_message_whose_offsets_leave_the_data(tmp_path):
    path = str(tmp_path / "d")
    seg, at, end = written(path)
    with open(seg, "rb") as f:
        f.seek(at + FRAME_HEADER)
        msg = f.read(end - at - FRAME_HEADER)
    values = msg.index(b"v" * 9)  # the value data: its offsets (0, 9, 9, 9) end right before it
    ends_at = values - 8 + msg[values - 8:values].index(struct.pack("<i", 9))
    mangled = mangle(seg, at, [(ends_at, 0x40)])  # the last value's end: 9 -> 73, past the data
    assert pyarrow_rows(mangled) is None
    assert replay_rows(path) is None
    assert follower_rows(path, at) is None


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(in_metadata=st.booleans(),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4))
def test_a_mangled_message_is_declined_or_read_as_pyarrow_reads_it(tmp_path_factory, in_metadata, flips):
    path = str(tmp_path_factory.mktemp("d"))
    seg, at, end = written(path)
    with open(seg, "rb") as f:
        f.seek(at + FRAME_HEADER + 4)
        meta = struct.unpack("<i", f.read(4))[0]
    lo, hi = (0, 8 + meta) if in_metadata else (8 + meta, end - at - FRAME_HEADER)  # the metadata or the body
    msg = mangle(seg, at, [(lo + int(where * (hi - lo)), mask) for where, mask in flips])
    expected = pyarrow_rows(msg)
    for got, seen in ((replay_rows(path), lambda rows: rows), (follower_rows(path, at), as_the_follower_sees)):
        # (pyarrow verifies metadata neither reads: a flip there leaves the rows as written)
        assert got is None or got == seen(expected) or (in_metadata and expected is None and got == seen(WRITTEN))
