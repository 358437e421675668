# Zigzag varints (records), unsigned varints (flexible protocol versions)
# and big-endian integers, over a bounds-checked read cursor.

# A record batch header is 61 bytes; batch_length counts from byte 12.
cdef enum:
    BATCH_HEADER_SIZE = 61
    LENGTH_PREFIX = 12
    CRC_START = 21


cdef struct Cursor:
    const uint8_t *p
    const uint8_t *end
    bint bad            # set on underflow or an over-long varint


cdef inline uint64_t read_uvarint(Cursor *c) noexcept nogil:
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef uint8_t b
    while True:
        if c.p >= c.end or shift > 63:
            c.bad = 1
            return 0
        b = c.p[0]
        c.p += 1
        v |= (<uint64_t>(b & 0x7F)) << shift
        if not (b & 0x80):
            return v
        shift += 7


cdef inline int64_t read_varlong(Cursor *c) noexcept nogil:
    cdef uint64_t v = read_uvarint(c)
    return <int64_t>((v >> 1) ^ (0 - (v & 1)))


cdef inline int32_t read_varint(Cursor *c) noexcept nogil:
    cdef int64_t v = read_varlong(c)
    if v < -2147483648 or v > 2147483647:
        c.bad = 1
        return 0
    return <int32_t>v


cdef inline int uvarint_size(uint64_t u) noexcept nogil:
    cdef int n = 1
    while u >= 0x80:
        u >>= 7
        n += 1
    return n


cdef inline int varlong_size(int64_t v) noexcept nogil:
    return uvarint_size((<uint64_t>v << 1) ^ <uint64_t>(v >> 63))


cdef inline int write_uvarint(uint8_t *p, uint64_t u) noexcept nogil:
    cdef int n = 0
    while u >= 0x80:
        p[n] = <uint8_t>((u & 0x7F) | 0x80)
        u >>= 7
        n += 1
    p[n] = <uint8_t>u
    return n + 1


cdef inline int write_varlong(uint8_t *p, int64_t v) noexcept nogil:
    return write_uvarint(p, (<uint64_t>v << 1) ^ <uint64_t>(v >> 63))


cdef inline int16_t be16(const uint8_t *p) noexcept nogil:
    return <int16_t>((<uint32_t>p[0] << 8) | p[1])


cdef inline uint32_t be32u(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline int32_t be32(const uint8_t *p) noexcept nogil:
    return <int32_t>be32u(p)


cdef inline int64_t be64(const uint8_t *p) noexcept nogil:
    return <int64_t>(((<uint64_t>be32u(p)) << 32) | be32u(p + 4))


cdef inline void put16(uint8_t *p, int16_t v) noexcept nogil:
    p[0] = <uint8_t>((<uint16_t>v) >> 8)
    p[1] = <uint8_t>v


cdef inline void put32(uint8_t *p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v


cdef inline void put64(uint8_t *p, int64_t v) noexcept nogil:
    put32(p, <uint32_t>((<uint64_t>v) >> 32))
    put32(p + 4, <uint32_t>v)


def encode_varint(int64_t value):
    """Zigzag-encode ``value`` as Kafka's record varint/varlong."""
    cdef uint8_t tmp[10]
    cdef int n = write_varlong(tmp, value)
    return PyBytes_FromStringAndSize(<char *>tmp, n)


def decode_varint(const uint8_t[::1] data, Py_ssize_t pos=0):
    """Decode one zigzag varint at ``pos``: returns ``(value, next_pos)``."""
    cdef Cursor c
    if pos < 0 or pos > data.shape[0]:
        raise ValueError("position out of range")
    c.p = &data[0] + pos if data.shape[0] else NULL
    c.end = &data[0] + data.shape[0] if data.shape[0] else NULL
    c.bad = 0
    cdef int64_t v = read_varlong(&c)
    if c.bad:
        raise ValueError("truncated or over-long varint")
    return v, <Py_ssize_t>(c.p - &data[0])


def crc32c(data, uint32_t value=0):
    """CRC-32C (Castagnoli) of a bytes-like object, continuing from ``value``."""
    cdef const uint8_t[::1] mv = data
    if mv.shape[0] == 0:
        return value
    return arrowlog_crc32c(value, &mv[0], mv.shape[0])
