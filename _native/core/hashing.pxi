# CRC-32C and Kafka's murmur2 partitioner (C in include/crc32c.h, murmur2.h).


cdef inline const uint8_t *_borrow(object data, Py_buffer *buf) except NULL:
    PyObject_GetBuffer(data, buf, PyBUF_SIMPLE)
    return <const uint8_t *>buf.buf


def crc32c(data, uint32_t value=0):
    """CRC-32C of ``data`` (any buffer), continuing from ``value``.

    Same contract as ``crc32c.crc32c(data, value)`` and
    ``google_crc32c.extend(value, data)``.
    """
    cdef Py_buffer buf
    cdef const uint8_t *p = _borrow(data, &buf)
    cdef uint32_t r
    try:
        with nogil:
            r = arrowlog_crc32c(value, p, <size_t>buf.len)
    finally:
        PyBuffer_Release(&buf)
    return r


def crc32c_software(data, uint32_t value=0):
    """CRC-32C through the portable table path (tests check both paths)."""
    cdef Py_buffer buf
    cdef const uint8_t *p = _borrow(data, &buf)
    try:
        return arrowlog_crc32c_software(value, p, <size_t>buf.len)
    finally:
        PyBuffer_Release(&buf)


def crc32c_hardware_accelerated():
    """True when CRC-32C runs on the CPU's crc32 instruction."""
    return bool(arrowlog_crc32c_is_hw())


def murmur2(key):
    """Kafka's murmur2 hash of ``key`` (bytes-like), as a signed 32-bit int
    (Java ``Utils.murmur2``)."""
    cdef Py_buffer buf
    cdef const uint8_t *p = _borrow(key, &buf)
    cdef uint32_t h
    try:
        h = arrowlog_murmur2(p, <size_t>buf.len)
    finally:
        PyBuffer_Release(&buf)
    return <int32_t>h


def murmur2_partition(key, int32_t partitions):
    """The partition Kafka's default partitioner gives ``key``:
    ``toPositive(murmur2(key)) % partitions``."""
    if partitions <= 0:
        raise ValueError("partitions must be positive")
    cdef Py_buffer buf
    cdef const uint8_t *p = _borrow(key, &buf)
    try:
        return arrowlog_murmur2_partition(p, <size_t>buf.len, partitions)
    finally:
        PyBuffer_Release(&buf)
