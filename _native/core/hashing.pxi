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


def murmur2_partitions(keys, int32_t partitions):
    """Partition of every key of a pa.BinaryArray (null keys: -1), as a
    numpy int32 array; the vectorised form of murmur2_partition."""
    import numpy as np
    if partitions <= 0:
        raise ValueError("partitions must be positive")
    cdef Py_ssize_t n = len(keys)
    out = np.empty(n, dtype=np.int32)
    cdef int32_t[::1] res = out
    bufs = keys.buffers()
    cdef Py_ssize_t shift = keys.offset
    cdef uintptr_t addr
    cdef const uint8_t *valid = NULL
    if bufs[0] is not None and keys.null_count:
        addr = bufs[0].address
        valid = <const uint8_t *>addr
    addr = bufs[1].address
    cdef const int32_t *off = (<const int32_t *>addr) + shift
    cdef const uint8_t *data = NULL
    if bufs[2] is not None:
        addr = bufs[2].address
        data = <const uint8_t *>addr
    cdef Py_ssize_t i
    with nogil:
        for i in range(n):
            if valid != NULL and not (valid[(i + shift) >> 3] >> ((i + shift) & 7)) & 1:
                res[i] = -1
            else:
                res[i] = arrowlog_murmur2_partition(data + off[i], <size_t>(off[i + 1] - off[i]), partitions)
    return out
