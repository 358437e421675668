"""The native record batch decoder against lying and random input: every input
either decodes or raises RecordBatchError (an ArrowlogError), never crashes,
never allocates more than the bytes (or the decompression limit) justify.

Each crash found in issue 12 is a case here; hypothesis then mutates valid
batches of every codec (with the CRC re-signed, so mutations reach the record
parser) and feeds random bytes, bounded by max_examples.
"""

from __future__ import annotations

import gzip
import struct
import threading
import time
import zlib
from datetime import timedelta

import cramjam
import pyarrow as pa
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka_batch_craft import claiming as with_count
from kafka_batch_craft import resign
from kafka_batch_craft import with_block as compressed_batch
from rss import peak_growth

from arrowlog._native import kafka as K
from arrowlog.errors import ArrowlogError

CODECS = [0, 1, 2, 3, 4]
HEADERS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))


def stored(n: int, value_size: int = 8, with_headers: bool = False) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "offset": pa.array(range(n), pa.int64()),
        "timestamp": pa.array([1_700_000_000_000 + i for i in range(n)], pa.timestamp("ms")),
        "key": pa.array([b"k%d" % i if i % 3 else None for i in range(n)], pa.binary()),
        "value": pa.array([(b"v%d-" % i).ljust(value_size, b"x") for i in range(n)], pa.binary()),
        "headers": pa.array([[{"key": "h", "value": b"%d" % i}] if with_headers and i % 2 else None
                             for i in range(n)], HEADERS),
    })


def refused(data, **kw) -> K.RecordBatchError:
    with pytest.raises(K.RecordBatchError) as info:
        K.decode_record_set(data, **kw)
    assert isinstance(info.value, ArrowlogError)
    return info.value


def test_record_count_2_30_plus_1_with_20000_real_records_is_refused():
    # Issue 12: count * 8 and (count + 1) * 4 wrapped in 32 bits and the records
    # were written past an 8-byte buffer: SIGSEGV.
    data = with_count(K.encode_batch(stored(20_000)), (1 << 30) + 1)
    assert len(data) > 200_000
    err = refused(data)
    assert "claims 1073741825 records" in str(err)
    assert err.error_code == K.INVALID_RECORD


def test_record_count_2_31_minus_1_is_refused_cleanly():
    # Issue 12: "negative count" traceback and a dropped connection.
    err = refused(with_count(K.encode_batch(stored(20_000)), (1 << 31) - 1))
    assert "2147483647 records" in str(err)


def test_negative_record_count_is_refused():
    err = refused(with_count(K.encode_batch(stored(3)), -5))
    assert "record_count -5" in str(err)


def test_empty_batch_is_refused_with_the_whole_set():
    # Storage refuses an empty batch; refusing it here keeps a set from being half appended.
    good = K.encode_batch(stored(2))
    err = refused(good + compressed_batch(0, b"", count=0))
    assert "at least one record" in str(err) and err.error_code == K.INVALID_RECORD


def test_69_byte_batch_claiming_268435455_records_allocates_nothing():
    # Issue 12: 4.26 GB peak. 61-byte header + 8 bytes of body.
    data = with_count(K.encode_batch(stored(1, value_size=0))[:61] + b"\x00" * 8, 268_435_455)
    assert len(data) == 69
    with peak_growth() as grew:
        err = refused(data)
    assert "268435455 records" in str(err) and "8-byte body" in str(err)
    assert grew.mib < 16


@pytest.mark.parametrize("codec", [1, 3, 4])
def test_compressed_batch_claiming_more_records_than_the_limit_allows(codec):
    block = K.compress(codec, b"\x00" * 100)
    err = refused(compressed_batch(codec, block, count=(1 << 20)), max_uncompressed=1 << 20)
    assert "cannot hold" in str(err)


def test_count_larger_than_the_inflated_block_is_refused():
    # 1,000 claimed records, but the block inflates to only 700 bytes.
    block = K.compress(1, b"\x0e" + b"\x00" * 699)
    err = refused(compressed_batch(1, block, count=1000))
    assert "only 700 bytes" in str(err)


@pytest.mark.parametrize("codec", [1, 2, 3, 4])
def test_decompression_stops_at_the_limit(codec):
    payload = b"\x00" * (8 << 20)
    block = K.compress(codec, payload)
    assert bytes(K.decompress(codec, block, 8 << 20)) == payload
    with pytest.raises(K.RecordBatchError, match="inflates beyond"):
        K.decompress(codec, block, (8 << 20) - 1)


def test_raw_snappy_declared_size_is_checked_before_allocating():
    block = bytes(cramjam.snappy.compress_raw(b"\x00" * (4 << 20)))
    with pytest.raises(K.RecordBatchError, match="snappy record block inflates beyond 1048576"):
        K.decompress(2, block, 1 << 20)
    # A lying varint header: claims 2^40 bytes.
    with pytest.raises(K.RecordBatchError):
        K.decompress(2, b"\x80\x80\x80\x80\x80\x20" + b"\x00" * 10, 1 << 20)


def test_xerial_snappy_bomb_is_refused_naming_the_whole_limit():
    """Xerial framing: 2,000 blocks of 48 KB each declaring 1 MiB (98 MB inflating to 2 GiB) stop at the
    limit before a block past it is inflated, and the error names the limit, not what was left of it
    (it said "inflates beyond 0 bytes")."""
    raw = bytes(cramjam.snappy.compress_raw(b"\x00" * (1 << 20)))
    block = struct.pack(">i", len(raw)) + raw
    xerial = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    assert len(K.decompress(2, xerial + block * 32, 32 << 20)) == 32 << 20   # exactly the limit
    bomb = xerial + block * 2000
    with peak_growth() as grew:
        with pytest.raises(K.RecordBatchError, match="snappy record block inflates beyond 33554432 bytes"):
            K.decompress(2, bomb, 32 << 20)
    assert grew.mib < 100


def zstd_bomb() -> bytes:
    """33 KB of zstd inflating to 1 GiB: 16 frames of 64 MiB of zeros (issue 12's figures)."""
    return zstandard.ZstdCompressor(level=3).compress(b"\x00" * (64 << 20)) * 16


def gzip_bomb() -> bytes:
    """522 KB of gzip inflating to 512 MiB, compressed a MiB at a time."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\x00" * (1 << 20)
    return b"".join(c.compress(zeros) for _ in range(512)) + c.flush()


def lz4_bomb() -> bytes:
    return bytes(cramjam.lz4.compress(b"\x00" * (256 << 20)))


@pytest.mark.parametrize("codec,make", [(4, zstd_bomb), (1, gzip_bomb), (3, lz4_bomb)], ids=["zstd", "gzip", "lz4"])
def test_bombs_stay_within_the_limit(codec, make):
    # Issue 12: a 33 KB zstd batch inflating to 1 GiB took 3.18 GB; gzip 522 KB -> 1.64 GB.
    block = make()
    assert len(block) < 1100 << 10
    with peak_growth() as grew:
        err = refused(compressed_batch(codec, block, count=1), max_uncompressed=32 << 20)
    assert "inflates beyond 33554432 bytes" in str(err)
    assert grew.mib < 100


def test_gzip_truncated_stream_is_refused():
    block = gzip.compress(K.encode_batch(stored(10))[61:])[:-20]
    refused(compressed_batch(1, block, count=10))


def test_unknown_codec_is_refused():
    err = refused(compressed_batch(6, b"\x00" * 20, count=1))
    assert "unknown compression codec 6" in str(err)


def test_record_shorter_than_its_fixed_fields_is_refused():
    # One record whose length says 0: the attributes byte would be read past it.
    err = refused(with_count(K.encode_batch(stored(1, value_size=0))[:61] + b"\x00" * 7, 1))
    assert "record 0" in str(err)


def test_huge_header_count_is_refused_before_looping():
    one = bytearray(K.encode_batch(stored(1, value_size=4)))
    # The last byte of the single record is its header count (0): claim 2^31-1 headers.
    assert one[-1] == 0
    body = one[61:-1] + bytes(K.encode_varint((1 << 31) - 1))
    body[0] += 8  # the record length (zigzag) grows by the 4 extra varint bytes
    err = refused(with_count(bytes(one[:61] + body), 1))
    assert "record 0 has a bad header count" in str(err)


def one_record_with_headers(headers: bytes, count: int) -> bytes:
    """A batch of one record (no key, no value) carrying ``count`` encoded ``headers``."""
    record = b"\x00\x00\x00\x01\x01" + bytes(K.encode_varint(count)) + headers
    return compressed_batch(0, bytes(K.encode_varint(len(record))) + record, count=1)


def test_a_million_headers_decode_without_an_object_each():
    # 2 bytes on the wire per header (empty key, null value): as Python objects these took
    # about 200 bytes each; as Arrow buffers about 9.
    n = 1_000_000
    data = one_record_with_headers(b"\x00\x01" * (n - 1) + b"\x02k\x02v", n)
    with peak_growth() as grew:
        [b] = K.decode_record_set(data)
    print(f"{n:,} headers in {len(data) / 1e6:.1f} MB: peak RSS grew {grew.mib:.0f} MiB")
    assert grew.mib < 48
    [hs] = b.records.column("headers").to_pylist()[:1]
    assert len(hs) == n and hs[0] == {"key": "", "value": None} and hs[-1] == {"key": "k", "value": b"v"}


def test_header_key_that_is_not_utf8_is_refused():
    err = refused(one_record_with_headers(b"\x02\xff\x01", 1))
    assert "not UTF-8" in str(err) and err.error_code == K.INVALID_RECORD


def _largest_gap_while(fn) -> tuple[float, float]:
    """Run ``fn`` in a thread while this one ticks every millisecond: the longest
    this thread waited between ticks, and how long ``fn`` took."""
    took = []

    def run():
        t0 = time.perf_counter()
        fn()
        took.append(time.perf_counter() - t0)

    worker = threading.Thread(target=run)
    last = time.perf_counter()
    gap = 0.0
    worker.start()
    while worker.is_alive():
        time.sleep(0.001)
        now = time.perf_counter()
        gap = max(gap, now - last)
        last = now
    worker.join()
    return gap, took[0]


def test_large_batches_are_decoded_without_holding_the_gil():
    # So a server can decode a big Produce on a worker thread and keep serving. A decode
    # holding the GIL makes the other thread wait all along; scheduling noise does not
    # repeat, so the best of three runs is taken.
    n = 4_000_000
    record = b"\x0c\x00\x00\x00\x01\x01\x00"
    data = compressed_batch(0, record * n, count=n)
    best = None
    for _ in range(3):
        gap, took = _largest_gap_while(lambda: K.decode_record_set(data))
        print(f"{n:,} records decoded in {took * 1000:.0f} ms; the other thread waited at most "
              f"{gap * 1000:.0f} ms")
        if best is None or gap / took < best:
            best = gap / took
        if best < 0.5:
            break
    assert best < 0.5


# --------------------------------------------------------------------------- fuzz

def _valid_batches():
    out = []
    for codec in CODECS:
        for n, headers in ((1, False), (7, True)):
            out.append(K.encode_batch(stored(n, value_size=5, with_headers=headers), codec=codec))
    return out


VALID = _valid_batches()


def _check_any(data: bytes) -> None:
    for check_crc in (True, False):
        try:
            batches = K.decode_record_set(data, check_crc=check_crc, max_uncompressed=1 << 20)
        except K.RecordBatchError as exc:
            assert str(exc) and exc.error_code in (K.CORRUPT_MESSAGE, K.INVALID_RECORD,
                                                   K.UNSUPPORTED_FOR_MESSAGE_FORMAT)
        else:
            for b in batches:
                assert b.records.num_rows == b.record_count
                b.records.validate(full=True)


mutation = st.tuples(st.integers(min_value=0, max_value=4095), st.integers(min_value=0, max_value=255))


@settings(max_examples=400, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(VALID))), st.lists(mutation, min_size=1, max_size=6),
       st.integers(min_value=0, max_value=4096), st.booleans())
def test_fuzz_mutated_valid_batches(which, flips, cut, sign):
    data = bytearray(VALID[which])
    for pos, value in flips:
        data[pos % len(data)] = value
    data = data[:max(1, len(data) - cut % 16)] if cut % 3 == 0 else data
    if sign and len(data) > 21:
        data = bytearray(resign(data))
    _check_any(bytes(data))


@settings(max_examples=300, deadline=timedelta(seconds=5))
@given(st.binary(min_size=0, max_size=300), st.sampled_from(CODECS), st.integers(0, 1 << 31))
def test_fuzz_random_record_blocks_behind_a_valid_header(block, codec, count):
    # A correct header and CRC around random records: the record parser sees arbitrary bytes.
    _check_any(compressed_batch(codec, block, count=count % 50 if count % 4 else count))


@settings(max_examples=200, deadline=timedelta(seconds=5))
@given(st.binary(min_size=0, max_size=200))
def test_fuzz_random_bytes(data):
    _check_any(data)
