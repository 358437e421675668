# Memory-mapped files.
#
# A segment reserves `capacity` bytes of address space up front (its maximum
# size) and maps the file MAP_SHARED over all of it. Only the first
# `allocated` bytes are backed by the file: touching a page past the file's
# end raises SIGBUS, so the writer grows the file with posix_fallocate
# (which fails cleanly with ENOSPC on a full disk) before it writes there, and
# readers never look past the published position. Address space is cheap on
# 64-bit machines; remapping on growth would invalidate Arrow buffers that
# replay has handed out.

import os as _os


cdef class MappedFile:
    """``fd`` mapped MAP_SHARED over ``capacity`` bytes.

    Thread-safety: the mapping itself is immutable; writes through it are
    serialised by the partition's append lock. The mapping is released when
    the last view of it (ByteView, Arrow buffer, Message) is gone, so data a
    reader holds stays readable after retention deletes the file.
    """

    def __cinit__(self, int fd, Py_ssize_t capacity, bint writable=False, str path=""):
        self.base = NULL
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        cdef int prot = PROT_READ | (PROT_WRITE if writable else 0)
        cdef void *p
        with nogil:
            p = mmap(NULL, <size_t>capacity, prot, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            raise OSError(errno, _os.strerror(errno), path)
        self.base = <uint8_t *>p
        self.capacity = capacity
        self.writable = writable
        self.path = path

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, <size_t>self.capacity)
            self.base = NULL

    @property
    def address(self):
        return <uintptr_t>self.base

    cdef inline int _check(self, Py_ssize_t offset, Py_ssize_t length) except -1:
        if offset < 0 or length < 0 or offset + length > self.capacity:
            raise IndexError(f"range [{offset}, {offset + length}) outside mapping of {self.capacity} bytes")
        return 0

    def view(self, Py_ssize_t offset, Py_ssize_t length):
        """A zero-copy view of [offset, offset+length)."""
        self._check(offset, length)
        return make_view(self, self.base + offset, length, self.writable)

    def write(self, Py_ssize_t offset, data):
        """Copy ``data`` (any buffer) to ``offset``; returns its length."""
        if not self.writable:
            raise BufferError("mapping is read-only")
        cdef Py_buffer buf
        PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
        try:
            self._check(offset, buf.len)
            with nogil:
                memcpy(self.base + offset, buf.buf, <size_t>buf.len)
            return buf.len
        finally:
            PyBuffer_Release(&buf)

    def zero(self, Py_ssize_t offset, Py_ssize_t length):
        if not self.writable:
            raise BufferError("mapping is read-only")
        self._check(offset, length)
        with nogil:
            memset(self.base + offset, 0, <size_t>length)

    def read(self, Py_ssize_t offset, Py_ssize_t length):
        """A copy of [offset, offset+length) as bytes."""
        self._check(offset, length)
        return PyBytes_FromStringAndSize(<char *>self.base + offset, length)

    def crc32c(self, Py_ssize_t offset, Py_ssize_t length, uint32_t value=0):
        self._check(offset, length)
        cdef uint32_t r
        with nogil:
            r = arrowlog_crc32c(value, self.base + offset, <size_t>length)
        return r

    def advise_sequential(self, Py_ssize_t offset, Py_ssize_t length):
        self._check(offset, length)
        cdef uintptr_t start = (<uintptr_t>(self.base + offset)) & ~(<uintptr_t>4095)
        madvise(<void *>start, <size_t>(<uintptr_t>(self.base + offset + length) - start), MADV_SEQUENTIAL)


def fallocate(int fd, long offset, long length):
    """posix_fallocate: reserve blocks so later stores through a mapping
    cannot hit a full disk (a SIGBUS); raises OSError(ENOSPC) instead."""
    cdef int rc
    with nogil:
        rc = posix_fallocate(fd, offset, length)
    if rc != 0:
        raise OSError(rc, _os.strerror(rc))
