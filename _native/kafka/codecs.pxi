# Record batch compression codecs (attributes bits 0-2), via zlib and cramjam.
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


def _xerial_decompress(data):
    cdef const uint8_t[::1] mv = data
    cdef Py_ssize_t n = mv.shape[0]
    cdef Py_ssize_t pos = 16
    cdef int32_t size
    parts = []
    while pos < n:
        if pos + 4 > n:
            raise ValueError("truncated xerial snappy block header")
        size = be32(&mv[pos])
        pos += 4
        if size < 0 or pos + size > n:
            raise ValueError("truncated xerial snappy block")
        parts.append(bytes(cramjam.snappy.decompress_raw(bytes(mv[pos:pos + size]))))
        pos += size
    return b"".join(parts)


def decompress(int codec, data):
    """Decompress a record batch's records block written with ``codec``."""
    if codec == CODEC_NONE:
        return data
    if codec == CODEC_GZIP:
        return zlib.decompress(data, 47)  # 32 + 15: gzip or zlib header, auto-detected
    if codec == CODEC_SNAPPY:
        if bytes(data[:8]) == XERIAL_MAGIC:
            return _xerial_decompress(data)
        return cramjam.snappy.decompress_raw(data)
    if codec == CODEC_LZ4:
        return cramjam.lz4.decompress(data)
    if codec == CODEC_ZSTD:
        return cramjam.zstd.decompress(data)
    raise ValueError(f"unknown compression codec {codec}")


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
