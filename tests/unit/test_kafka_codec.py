"""Record batch v2 codec (arrowlog._native.kafka) against kafka-python's
``kafka.record`` classes as a test-only oracle."""

from __future__ import annotations

import crc32c as crc32c_oracle
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowlog._native import kafka as K
from arrowlog.schema import PRODUCE_SCHEMA

record = pytest.importorskip("kafka.record.default_records")
from kafka.record.memory_records import MemoryRecords  # noqa: E402

HEADERS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
# kafka-python can write none, gzip and zstd here (snappy and lz4 need extra packages);
# snappy and lz4 are checked by round trip and by real clients in tests/interop.
ORACLE_CODECS = [0, 1, 4]


def oracle_batch(records, codec=0, producer_id=-1, epoch=-1, seq=-1):
    b = record.DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                         producer_id=producer_id, producer_epoch=epoch,
                                         base_sequence=seq, batch_size=1 << 30)
    for i, (ts, key, value, headers) in enumerate(records):
        b.append(i, timestamp=ts, key=key, value=value, headers=headers)
    return bytes(b.build())


def stored(records, first_offset=0):
    """An Arrow batch shaped like Frame.batch."""
    return pa.RecordBatch.from_pydict({
        "offset": pa.array(range(first_offset, first_offset + len(records)), pa.int64()),
        "timestamp": pa.array([r[0] for r in records], pa.timestamp("ms")),
        "key": pa.array([r[1] for r in records], pa.binary()),
        "value": pa.array([r[2] for r in records], pa.binary()),
        "headers": pa.array([[{"key": k, "value": v} for k, v in r[3]] or None for r in records], HEADERS),
    })


SAMPLE = [
    (1_700_000_000_000, None, b"plain", []),
    (1_700_000_000_005, b"key", None, [("h1", b"v1"), ("h2", None)]),
    (1_699_999_999_000, b"", b"", []),   # an earlier timestamp: negative delta
    (1_700_000_001_000, b"k" * 300, b"v" * 70_000, [("\u00e9t\u00e9", b"\x00\xff")]),
]


@pytest.mark.parametrize("codec", ORACLE_CODECS)
def test_decode_oracle_batches(codec):
    data = oracle_batch(SAMPLE, codec, producer_id=42, epoch=3, seq=17)
    [b] = K.decode_record_set(data)
    assert (b.producer_id, b.producer_epoch, b.base_sequence, b.record_count) == (42, 3, 17, 4)
    assert b.codec == codec and b.size == len(data)
    rb = b.records
    assert rb.schema.equals(PRODUCE_SCHEMA)
    assert [t.value for t in rb.column("timestamp")] == [r[0] for r in SAMPLE]
    assert rb.column("key").to_pylist() == [r[1] for r in SAMPLE]
    assert rb.column("value").to_pylist() == [r[2] for r in SAMPLE]
    hs = rb.column("headers").to_pylist()
    assert hs[0] is None
    assert hs[1] == [{"key": "h1", "value": b"v1"}, {"key": "h2", "value": None}]


@pytest.mark.parametrize("codec", range(5))
def test_encode_is_read_by_oracle(codec):
    data = K.encode_batch(stored(SAMPLE, first_offset=1000), codec=codec)
    batch = record.DefaultRecordBatch(data)
    assert batch.validate_crc()
    assert batch.base_offset == 1000 and batch.compression_type == codec
    if codec in ORACLE_CODECS:
        recs = list(MemoryRecords(data).next_batch())
        assert [r.offset for r in recs] == [1000, 1001, 1002, 1003]
        assert [r.timestamp for r in recs] == [r[0] for r in SAMPLE]
        assert [r.key for r in recs] == [r[1] for r in SAMPLE]
        assert [r.value for r in recs] == [r[2] for r in SAMPLE]
        assert [list(r.headers) for r in recs] == [list(r[3]) for r in SAMPLE]
    # and our own decoder reads every codec back
    [b] = K.decode_record_set(data)
    assert b.records.equals(stored(SAMPLE).drop_columns(["offset"]).cast(PRODUCE_SCHEMA))


def test_crc_matches_crc32c_package():
    data = K.encode_batch(stored(SAMPLE))
    assert K.batch_info(data)["crc"] == crc32c_oracle.crc32c(data[21:])
    assert K.crc32c(b"123456789") == 0xE3069283


def test_header_fields_and_sliced_input():
    full = stored(SAMPLE, first_offset=50)
    data = K.encode_batch(full.slice(1, 2))
    info = K.batch_info(data)
    assert info["base_offset"] == 51 and info["record_count"] == 2 and info["last_offset_delta"] == 1
    assert info["base_timestamp"] == SAMPLE[1][0] and info["max_timestamp"] == SAMPLE[1][0]
    assert info["batch_length"] == len(data) - 12 and info["magic"] == 2
    recs = list(MemoryRecords(data).next_batch())
    assert [r.key for r in recs] == [b"key", b""]


@pytest.mark.parametrize("damage", ["crc", "truncate", "magic", "count", "length"])
def test_refuses_damaged_batches(damage):
    data = bytearray(oracle_batch(SAMPLE[:2]))
    if damage == "crc":
        data[-3] ^= 1
    elif damage == "truncate":
        data = data[:-4]
    elif damage == "magic":
        data[16] = 1
    elif damage == "count":
        data[60] += 1
        data[17:21] = crc32c_oracle.crc32c(bytes(data[21:])).to_bytes(4, "big")
    elif damage == "length":
        data[8:12] = (10**6).to_bytes(4, "big")
    with pytest.raises(K.RecordBatchError):
        K.decode_record_set(bytes(data))


def test_several_batches_in_one_record_set():
    data = oracle_batch(SAMPLE[:1]) + oracle_batch(SAMPLE[1:3], codec=1)
    batches = K.decode_record_set(data)
    assert [b.record_count for b in batches] == [1, 2]


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_codecs_round_trip(codec):
    payload = bytes(range(256)) * 500
    assert bytes(K.decompress(codec, K.compress(codec, payload))) == payload


def test_raw_snappy_is_accepted():
    import cramjam

    payload = b"librdkafka writes raw snappy" * 100
    assert bytes(K.decompress(2, bytes(cramjam.snappy.compress_raw(payload)))) == payload


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_zigzag_varint_round_trip(v):
    enc = K.encode_varint(v)
    assert K.decode_varint(enc) == (v, len(enc))


def test_zigzag_known_encodings():
    # Kafka's examples: 0 -> 00, -1 -> 01, 1 -> 02, -2 -> 03, 300 -> d8 04
    assert [K.encode_varint(v) for v in (0, -1, 1, -2, 300)] == [b"\x00", b"\x01", b"\x02", b"\x03", b"\xd8\x04"]
    with pytest.raises(ValueError):
        K.decode_varint(b"\x80\x80")


record_st = st.tuples(
    st.integers(min_value=0, max_value=1 << 45),
    st.one_of(st.none(), st.binary(max_size=40)),
    st.one_of(st.none(), st.binary(max_size=200)),
    st.lists(st.tuples(st.text(max_size=8), st.one_of(st.none(), st.binary(max_size=8))), max_size=3),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(record_st, min_size=1, max_size=30), st.sampled_from([0, 1, 2, 3, 4]))
def test_encode_decode_round_trip(records, codec):
    batch = stored(records, first_offset=7)
    data = K.encode_batch(batch, codec=codec)
    [b] = K.decode_record_set(data)
    assert b.records.equals(batch.drop_columns(["offset"]).cast(PRODUCE_SCHEMA))
    if codec == 0:
        recs = list(MemoryRecords(data).next_batch())
        assert [(r.timestamp, r.key, r.value, list(r.headers)) for r in recs] == \
            [(t, k, v, list(h)) for t, k, v, h in records]


@settings(max_examples=60, deadline=None)
@given(st.lists(record_st, min_size=1, max_size=300), st.sampled_from(ORACLE_CODECS))
def test_decoded_records_match_pyarrow_table(records, codec):
    """The decoder's columns come from the native envelope builder it shares with
    produce()'s accumulator: a batch written by kafka-python decodes to exactly
    what pa.Table.from_pydict builds in PRODUCE_SCHEMA (a record without headers
    has a null list, as Kafka cannot tell none from an empty list)."""
    [b] = K.decode_record_set(oracle_batch(records, codec))
    b.records.validate(full=True)
    expected = pa.Table.from_pydict({
        "timestamp": [r[0] for r in records],
        "key": [r[1] for r in records],
        "value": [r[2] for r in records],
        "headers": [[{"key": k, "value": v} for k, v in r[3]] or None for r in records],
    }, schema=PRODUCE_SCHEMA)
    assert pa.Table.from_batches([b.records]).equals(expected)
    assert (b.min_record_timestamp, b.max_record_timestamp) == (min(r[0] for r in records),
                                                                max(r[0] for r in records))


def _big_set(fill: bytes, n: int = 2_000):
    """A record set whose values (n x 100 bytes) need pooled decode buffers (≥ 64 KiB)."""
    return oracle_batch([(1_700_000_000_000 + i, None, fill * 100, []) for i in range(n)])


def _value_data_address(rb):
    return rb.column("value").buffers()[2].address


def test_decode_buffers_are_reused_once_the_batch_is_gone():
    K.release_scratch()
    first = K.decode_record_set(_big_set(b"a"))[0].records
    address = _value_data_address(first)
    assert K.scratch_kept() > 0
    del first
    second = K.decode_record_set(_big_set(b"b"))[0].records
    assert _value_data_address(second) == address     # the same (already mapped) memory
    assert second.column("value")[0].as_py() == b"b" * 100


def test_decode_buffers_in_use_are_never_handed_out_again():
    K.release_scratch()
    first = K.decode_record_set(_big_set(b"a"))[0].records
    view = memoryview(first.column("value").buffers()[2])    # a reader holding only the buffer
    only_buffer = K.decode_record_set(_big_set(b"b"))[0].records
    del first
    again = K.decode_record_set(_big_set(b"c", 1_500))[0].records
    assert bytes(view[:100]) == b"a" * 100 and len(set(bytes(view))) == 1
    assert only_buffer.column("value").to_pylist() == [b"b" * 100] * 2_000
    assert again.column("value").to_pylist() == [b"c" * 100] * 1_500
    assert again.validate(full=True) is None and again.num_rows == 1_500


def test_release_scratch_forgets_kept_buffers():
    K.decode_record_set(_big_set(b"a"))
    assert K.release_scratch() > 0
    assert K.scratch_kept() == 0


def test_a_batch_without_headers_shares_one_cached_null_headers_column():
    """No fresh pa.nulls(n, HEADERS_TYPE) per Produce: a batch whose records have no
    headers gets a slice of one cached all-null column (storage stores its own null
    column for it), still a valid column of n null lists."""
    small, large = (K.decode_record_set(oracle_batch([(1_700_000_000_000 + i, None, b"v", []) for i in range(n)]))[0]
                    for n in (3, 2_000))
    for b, n in ((small, 3), (large, 2_000)):
        headers = b.records.column("headers")
        headers.validate(full=True)
        assert len(headers) == n and headers.null_count == n and headers.to_pylist() == [None] * n
    # the same offsets buffer under both: one cached column, not one built per batch
    assert small.records.column("headers").buffers()[1].address == large.records.column("headers").buffers()[1].address


def test_a_headerless_batch_above_the_cached_rows_gets_its_own_null_headers():
    n = 70_000   # above the cached column's 65,536 rows
    [b] = K.decode_record_set(oracle_batch([(1_700_000_000_000, None, b"", [])] * n))
    headers = b.records.column("headers")
    headers.validate(full=True)
    assert len(headers) == n and headers.null_count == n
