# Record batch compression codecs (attributes bits 0-2), via zlib, zstandard and cramjam.
#
# Every decompressor is bounded: gzip and zstd stream with an output cap, snappy's
# declared sizes are checked before allocating, lz4 writes into a capped mapping.
#
# Snappy comes two ways: librdkafka writes raw snappy, the Java client wraps
# it in xerial framing (an 8-byte magic, two int32 versions, then blocks of
# [int32 length][raw snappy]); both are accepted, and xerial is written.

CODEC_NONE = 0
CODEC_GZIP = 1
CODEC_SNAPPY = 2
CODEC_LZ4 = 3
CODEC_ZSTD = 4
CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

cdef bytes XERIAL_MAGIC = b"\x82SNAPPY\x00"
# The xerial stream header: magic, version 1, minimum compatible version 1.
cdef bytes XERIAL_HEADER = XERIAL_MAGIC + b"\x00\x00\x00\x01\x00\x00\x00\x01"
# Java's SnappyOutputStream default block size.
cdef Py_ssize_t XERIAL_BLOCK = 32 * 1024


# Decompressed record blocks larger than this are refused unless the caller
# passes its own limit. 8 MiB is 8 times librdkafka's default batch.size (and
# Kafka's message.max.bytes) and inflates (gzip, the slowest codec) in about
# 25 ms, so a bomb stalls the server's event loop only briefly.
DEFAULT_MAX_UNCOMPRESSED = 8 * 1024 * 1024
# zstd output is read in pieces of this size, so a bomb stops at the limit.
cdef Py_ssize_t ZSTD_CHUNK = 1 << 20


cdef _too_large(str codec, Py_ssize_t limit):
    return RecordBatchError(f"{codec} record block inflates beyond {limit} bytes; "
                            "send smaller batches (or raise the server's request limit)")


cdef Py_ssize_t _snappy_raw_size(data, Py_ssize_t limit, Py_ssize_t before=0) except -1:
    """The uncompressed size a raw snappy block declares, checked before allocating: with the
    ``before`` bytes of the blocks ahead of it (xerial framing), at most ``limit``."""
    try:
        size = cramjam.snappy.decompress_raw_len(data)
    except Exception as exc:
        raise RecordBatchError(f"snappy block has no valid length: {exc}") from None
    if size > limit - before:
        raise _too_large("snappy", limit)
    return size


def _xerial_decompress(data, Py_ssize_t limit):
    cdef const uint8_t[::1] mv = data
    cdef Py_ssize_t n = mv.shape[0]
    cdef Py_ssize_t pos = 16
    cdef Py_ssize_t total = 0
    cdef int64_t size
    parts = []
    while pos < n:
        if n - pos < 4:
            raise RecordBatchError("truncated xerial snappy block header")
        size = be32(&mv[pos])
        pos += 4
        if size < 0 or size > n - pos:
            raise RecordBatchError("truncated xerial snappy block")
        block = mv[pos:pos + size]
        total += _snappy_raw_size(block, limit, total)
        parts.append(bytes(cramjam.snappy.decompress_raw(block)))
        pos += size
    return b"".join(parts)


def _zstd_decompress(data, Py_ssize_t limit):
    """Stream the zstd frames out in chunks, never holding more than ``limit`` bytes."""
    parts = []
    cdef Py_ssize_t total = 0
    with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as reader:
        while True:
            chunk = reader.read(ZSTD_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise _too_large("zstd", limit)
            parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _lz4_decompress(data, Py_ssize_t limit):
    """LZ4 frames into an anonymous mapping one byte larger than ``limit``:
    pages are only committed as they are written, and a full mapping means too large."""
    out = mmap.mmap(-1, limit + 1)
    try:
        n = cramjam.lz4.decompress_into(data, out)
    except cramjam.DecompressionError as exc:
        if "whole buffer" in str(exc):
            raise _too_large("lz4", limit) from None
        raise
    if n > limit:
        raise _too_large("lz4", limit)
    return memoryview(out)[:n]


def _gzip_decompress(data, Py_ssize_t limit):
    d = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header, auto-detected
    out = d.decompress(data, limit + 1)
    if len(out) > limit:
        raise _too_large("gzip", limit)
    if not d.eof:
        raise RecordBatchError("gzip record block is truncated")
    return out


def decompress(int codec, data, Py_ssize_t max_size=DEFAULT_MAX_UNCOMPRESSED):
    """Decompress a record batch's records block written with ``codec``.

    The output never exceeds ``max_size`` bytes: a block that would inflate
    further raises ``RecordBatchError`` before more memory is taken.
    """
    if max_size < 0:
        raise ValueError("max_size must not be negative")
    if codec == CODEC_NONE:
        return data
    if codec == CODEC_GZIP:
        return _gzip_decompress(data, max_size)
    if codec == CODEC_SNAPPY:
        if bytes(data[:8]) == XERIAL_MAGIC:
            return _xerial_decompress(data, max_size)
        _snappy_raw_size(data, max_size)
        return cramjam.snappy.decompress_raw(data)
    if codec == CODEC_LZ4:
        return _lz4_decompress(data, max_size)
    if codec == CODEC_ZSTD:
        return _zstd_decompress(data, max_size)
    raise RecordBatchError(f"unknown compression codec {codec}")


def compress(int codec, data):
    """Compress a records block with ``codec`` the way Kafka clients do."""
    if codec == CODEC_NONE:
        return bytes(data)
    if codec == CODEC_GZIP:
        c = zlib.compressobj(6, zlib.DEFLATED, 31)  # 16 + 15: gzip header
        return c.compress(data) + c.flush()
    if codec == CODEC_SNAPPY:
        mv = memoryview(data)
        parts = [XERIAL_HEADER]
        for start in range(0, len(mv), XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(bytes(mv[start:start + XERIAL_BLOCK])))
            parts.append(len(block).to_bytes(4, "big"))
            parts.append(block)
        return b"".join(parts)
    if codec == CODEC_LZ4:
        return bytes(cramjam.lz4.compress(data))
    if codec == CODEC_ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise ValueError(f"unknown compression codec {codec}")
