"""The typed-topic codec: Confluent wire-format Avro <-> Arrow columns, against fastavro
as the reference (random records, every mapped type, nulls), and hostile bytes."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowlog.errors import InvalidRecordError

fastavro = pytest.importorskip("fastavro")
pa = pytest.importorskip("pyarrow")

from arrowlog.registry.codec import Codec  # noqa: E402
from arrowlog.registry.schemas import ParsedSchema  # noqa: E402

SCHEMA = {"type": "record", "name": "All", "fields": [
    {"name": "b", "type": "boolean"},
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "s", "type": "string"},
    {"name": "y", "type": "bytes"},
    {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "ns", "type": ["null", "string"], "default": None},
    {"name": "nl", "type": ["null", "long"], "default": None},
]}
SID = 258   # two non-zero id bytes
CODEC = Codec(SID, ParsedSchema(json.dumps(SCHEMA)))
PARSED = fastavro.parse_schema(SCHEMA)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)

records = st.fixed_dictionaries({
    "b": st.booleans(),
    "i": st.integers(-(2**31), 2**31 - 1),
    "l": st.integers(-(2**63), 2**63 - 1),
    "f": st.floats(width=32, allow_nan=False),
    "d": st.floats(allow_nan=False),
    "s": st.text(max_size=20),
    "y": st.binary(max_size=20),
    "e": st.sampled_from(["A", "B", "C"]),
    "ts": st.integers(-(2**40), 2**40).map(lambda ms: EPOCH + dt.timedelta(milliseconds=ms)),
    "day": st.dates(),
    "ns": st.none() | st.text(max_size=5),
    "nl": st.none() | st.integers(-(2**63), 2**63 - 1),
})


def wire(record: dict) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\x00" + SID.to_bytes(4, "big"))
    fastavro.schemaless_writer(buf, PARSED, record)
    return buf.getvalue()


@settings(max_examples=60, deadline=None)
@given(st.lists(records, min_size=1, max_size=30), st.data())
def test_decode_then_encode_is_byte_exact_and_matches_fastavro(rows, data):
    values = [wire(r) for r in rows]
    nulls = data.draw(st.lists(st.booleans(), min_size=len(values), max_size=len(values)))
    column = pa.array([None if null else v for v, null in zip(values, nulls)], pa.binary())
    decoded = CODEC.decode(column)
    assert decoded.null_count == sum(nulls)
    for got, r, null in zip(decoded.to_pylist(), rows, nulls):
        if null:
            assert got is None
            continue
        assert {k: got[k] for k in ("b", "i", "l", "s", "y", "e", "ns", "nl")} == \
            {k: r[k] for k in ("b", "i", "l", "s", "y", "e", "ns", "nl")}
        assert got["day"] == r["day"]
    assert CODEC.encode(decoded).to_pylist() == column.to_pylist()
    # a slice of a stored frame encodes the same as the whole
    if len(values) > 2:
        assert CODEC.encode(decoded.slice(1)).to_pylist() == column.to_pylist()[1:]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_hostile_bytes_are_refused_or_decoded_never_crash(body):
    value = b"\x00" + SID.to_bytes(4, "big") + body
    try:
        decoded = CODEC.decode(pa.array([value], pa.binary()))
    except InvalidRecordError:
        return
    # accepted: its canonical re-encoding decodes to the same record (a fixpoint)
    again = CODEC.encode(decoded)
    assert CODEC.encode(CODEC.decode(again)).equals(again)


@pytest.mark.parametrize("value,why", [
    (b"", "wire format"),
    (b"\x00\x00\x01", "wire format"),
    (b"\x01" + SID.to_bytes(4, "big"), "wire format"),
    (b"\x00" + (SID + 1).to_bytes(4, "big"), "schema id"),
    (b"\x00" + SID.to_bytes(4, "big") + b"\x02", "boolean byte"),
    (b"\x00" + SID.to_bytes(4, "big") + b"\x01" + b"\xff" * 11, "varint"),
])
def test_malformed_records_name_what_is_wrong(value, why):
    with pytest.raises(InvalidRecordError, match=why):
        CODEC.decode(pa.array([value], pa.binary()))


def test_a_string_that_is_not_utf8_is_refused():
    good = wire({"b": True, "i": 1, "l": 1, "f": 1.0, "d": 1.0, "s": "ab", "y": b"", "e": "A",
                 "ts": EPOCH, "day": dt.date(2026, 1, 1), "ns": None, "nl": None})
    bad = good.replace(b"\x04ab", b"\x04\xff\xfe")
    with pytest.raises(InvalidRecordError, match="UTF-8"):
        CODEC.decode(pa.array([bad], pa.binary()))


def test_a_length_beyond_the_record_is_refused_without_reading_past_it():
    body = b"\x00" + SID.to_bytes(4, "big") + b"\x01\x02\x02" + b"\x00" * 12 + b"\xfe\xff\xff\xff\x0f"
    with pytest.raises(InvalidRecordError, match="length"):
        CODEC.decode(pa.array([body], pa.binary()))


JSON_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "integer"}, "item": {"type": "string"}, "price": {"type": "number"},
    "paid": {"type": "boolean"}, "note": {"type": ["string", "null"]}, "opt": {"type": "integer"}},
    "required": ["id", "item", "price", "paid"]}
JSON_CODEC = Codec(9, ParsedSchema(json.dumps(JSON_SCHEMA), "JSON"))
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5)
documents = st.dictionaries(st.sampled_from(["id", "item", "price", "paid", "note", "opt", "extra"]), scalars) | \
    st.fixed_dictionaries({"id": st.integers(-(2**63), 2**63 - 1), "item": st.text(max_size=5),
                           "price": st.floats(allow_nan=False, allow_infinity=False), "paid": st.booleans(),
                           "note": st.none() | st.text(max_size=5)}, optional={"opt": st.integers(0, 9)})


@settings(max_examples=150, deadline=None)
@given(st.lists(documents, min_size=1, max_size=8))
def test_the_one_pass_json_path_agrees_with_per_record_validation(docs):
    """pyarrow.json decides a batch only when it agrees with jsonschema record by record."""
    values = pa.array([b"\x00" + (9).to_bytes(4, "big") + json.dumps(d).encode() for d in docs], pa.binary())
    fast = JSON_CODEC._decode_json_fast(values)
    try:
        slow = JSON_CODEC._decode_json(values.to_pylist())
    except InvalidRecordError:
        assert fast is None
        return
    assert fast is None or fast.equals(slow)


def test_the_one_pass_json_path_takes_plain_batches():
    docs = [{"id": i, "item": "x", "price": 1.5, "paid": True, "note": None} for i in range(100)]
    values = pa.array([b"\x00" + (9).to_bytes(4, "big") + json.dumps(d).encode() for d in docs], pa.binary())
    fast = JSON_CODEC._decode_json_fast(values)
    assert fast is not None and fast.field("id").to_pylist() == list(range(100))


def test_wide_and_duplicate_field_records():
    from arrowlog.registry.errors import RegistryError

    wide = {"type": "record", "name": "W", "fields": [{"name": f"f{i}", "type": "int"} for i in range(65)]}
    parsed = ParsedSchema(json.dumps(wide))
    assert parsed.arrow is None and "64" in parsed.arrow_reason            # stays bytes, not refused
    assert ParsedSchema(json.dumps(dict(wide, fields=wide["fields"][:64]))).arrow is not None
    dup = {"type": "record", "name": "D", "fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "long"}]}
    with pytest.raises(RegistryError, match="twice") as info:
        ParsedSchema(json.dumps(dup))
    assert info.value.error_code == 42201


def test_the_widest_encodings_fit_the_encoder_buffer():
    """Nullable longs at their extremes take 11 bytes each (branch + 10-byte varint)."""
    schema = {"type": "record", "name": "L", "fields": [
        {"name": f"x{i}", "type": ["null", "long"], "default": None} for i in range(8)]}
    codec = Codec(SID, ParsedSchema(json.dumps(schema)))
    parsed = fastavro.parse_schema(schema)
    rows = [{f"x{i}": (-(2**63) if (r + i) % 2 else 2**63 - 1) for i in range(8)} for r in range(1000)]
    values = []
    for r in rows:
        buf = io.BytesIO()
        buf.write(b"\x00" + SID.to_bytes(4, "big"))
        fastavro.schemaless_writer(buf, parsed, r)
        values.append(buf.getvalue())
    assert all(len(v) == 5 + 8 * 11 for v in values)
    column = pa.array(values, pa.binary())
    assert codec.encode(codec.decode(column)).to_pylist() == values


def test_the_encoder_refuses_arrays_of_the_wrong_width():
    from arrowlog._native.avro import encode_flat

    np = pytest.importorskip("numpy")
    ones = np.ones(2, dtype=np.uint8)
    with pytest.raises(ValueError, match="8-byte"):
        encode_flat(2, 1, bytes([2]), bytes([0]), [np.zeros(2, dtype=np.int32)], [ones], ones)


def test_the_native_codec_refuses_mismatched_field_descriptions():
    from arrowlog._native.avro import decode_flat, encode_flat

    np = pytest.importorskip("numpy")
    with pytest.raises(ValueError, match="nullable"):
        decode_flat([b"\x00\x00\x00\x00\x01\x02"], 1, bytes([2, 2]), bytes([0]), [0, 0])
    ones = np.ones(1, dtype=np.uint8)
    with pytest.raises(ValueError, match="nullable"):
        encode_flat(1, 1, bytes([2, 2]), b"", [np.zeros(1, np.int64)] * 2, [ones] * 2, ones)
