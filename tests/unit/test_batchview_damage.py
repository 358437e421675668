"""BatchView (_native/core/messages.pxi) checks the batch it binds: a batch
whose offsets, bitmaps or header lists do not fit its buffers (a damaged
frame read with check.crcs off) is a CorruptRecordError naming the frame and
the column, raised by the read, never a SystemError or a wild read later."""

from __future__ import annotations

import struct

import pyarrow as pa
import pytest

from arrowlog._native import core
from arrowlog.errors import CorruptRecordError
from arrowlog.schema import ENVELOPE_SCHEMA

ROWS = 3


def stored_batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "offset": [5, 6, 7],
        "timestamp": [1, 2, 3],
        "key": [b"a", None, b"ccc"],
        "value": [b"v0", b"v1", None],
        "headers": [[("h", b"x"), ("i", None)], None, [("j", b"yy")]],
    }, schema=ENVELOPE_SCHEMA)


def mutable_offsets(arr: pa.Array) -> tuple[pa.Array, bytearray]:
    """``arr`` (binary or list) over a copy of its offsets that the caller
    may damage once a batch holds it (pyarrow checks arrays as they are made)."""
    bufs = arr.buffers()
    raw = bytearray(bufs[1].to_pybytes())
    offs = pa.py_buffer(raw)
    if pa.types.is_list(arr.type):
        return pa.Array.from_buffers(arr.type, len(arr), [bufs[0], offs], arr.null_count, children=[arr.values]), raw
    return pa.Array.from_buffers(arr.type, len(arr), [bufs[0], offs, bufs[2]], arr.null_count), raw


def entry_field_offsets(headers: pa.Array, i: int) -> tuple[pa.Array, bytearray]:
    """``headers`` over a copy of its entries' field ``i`` (0: keys, 1: values) offsets, as mutable_offsets."""
    entries = headers.values
    fields = [entries.field(j) for j in range(2)]
    fields[i], raw = mutable_offsets(fields[i])
    new_entries = pa.StructArray.from_arrays(fields, fields=list(entries.type))
    return pa.Array.from_buffers(headers.type, len(headers), headers.buffers()[:2], headers.null_count,
                                 children=[new_entries]), raw


COLUMNS = {
    "key": (2, lambda b: mutable_offsets(b.column(2))),
    "value": (3, lambda b: mutable_offsets(b.column(3))),
    "headers": (4, lambda b: mutable_offsets(b.column(4))),
    "header keys": (4, lambda b: entry_field_offsets(b.column(4), 0)),
    "header values": (4, lambda b: entry_field_offsets(b.column(4), 1)),
}


def damaged(which: str, values: tuple[int, ...]) -> pa.RecordBatch:
    """The stored batch with the offsets of ``which`` set to ``values`` after the batch was made."""
    b = stored_batch()
    column, make = COLUMNS[which]
    cols = [b.column(i) for i in range(5)]
    cols[column], raw = make(b)
    batch = pa.RecordBatch.from_arrays(cols, schema=ENVELOPE_SCHEMA)
    raw[:4 * len(values)] = struct.pack(f"<{len(values)}i", *values)
    return batch


def test_an_intact_batch_binds_and_reads():
    v = core.BatchView(stored_batch(), "t", 0, 5)
    got = [(m.offset(), m.key(), m.value(), m.headers()) for m in (v.message_at(i) for i in range(ROWS))]
    assert got == [(5, b"a", b"v0", [("h", b"x"), ("i", None)]), (6, None, b"v1", None), (7, b"ccc", None, [("j", b"yy")])]


@pytest.mark.parametrize("which, values, name", [
    # a value offset that goes down: value() read a negative size (SystemError)
    ("value", (0, 2, 1, 4), "value"),
    # past the data buffer: value() would read past the mapping
    ("value", (0, 2, 4, 1 << 30), "value"),
    ("key", (-8, 1, 1, 4), "key"),
    # a row's list of headers past the entries
    ("headers", (0, 2, 2, 9), "headers"),
    ("header keys", (0, 1, 1 << 20, 3), "headers"),
    ("header values", (0, 1, 1, 0), "headers"),
])
def test_a_batch_whose_offsets_do_not_fit_is_a_corrupt_record(which, values, name):
    batch = damaged(which, values)
    with pytest.raises(CorruptRecordError, match=f"frame at offset 5 is damaged: its {name} column"):
        core.BatchView(batch, "t", 0, 5)
