# C declarations shared by every layer of the core.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.buffer cimport (
    PyBUF_ANY_CONTIGUOUS, PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer,
)
from cpython.exc cimport PyErr_CheckSignals
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset

cdef extern from "crc32c.h" nogil:
    uint32_t arrowlog_crc32c(uint32_t crc, const void *data, size_t n)
    uint32_t arrowlog_crc32c_software(uint32_t crc, const void *data, size_t n)
    int arrowlog_crc32c_is_hw()

cdef extern from "murmur2.h" nogil:
    uint32_t arrowlog_murmur2(const void *key, size_t n)
    int32_t arrowlog_murmur2_partition(const void *key, size_t n, int32_t partitions)

cdef extern from "sync.h" nogil:
    uint64_t arrowlog_load_u64(const uint64_t *p)
    void arrowlog_store_u64(uint64_t *p, uint64_t v)
    uint32_t arrowlog_load_u32(const uint32_t *p)
    void arrowlog_store_u32(uint32_t *p, uint32_t v)
    uint32_t arrowlog_add_u32(uint32_t *p, uint32_t v)
    uint32_t arrowlog_sub_u32(uint32_t *p, uint32_t v)
    void arrowlog_fence()
    void arrowlog_seq_begin(uint64_t *seq)
    void arrowlog_seq_end(uint64_t *seq)
    int arrowlog_seq_read(const uint64_t *seq, void *dst, const void *src, size_t n)
    int arrowlog_futex_wait(uint32_t *word, uint32_t expected, double timeout_ms)
    void arrowlog_futex_wake(uint32_t *word)

cdef extern from "<sys/mman.h>" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    int msync(void *addr, size_t length, int flags)
    int madvise(void *addr, size_t length, int advice)
    int PROT_READ, PROT_WRITE, MAP_SHARED, MS_SYNC, MADV_SEQUENTIAL, MADV_WILLNEED
    void *MAP_FAILED

cdef extern from "<fcntl.h>" nogil:
    int posix_fallocate(int fd, long offset, long length)

cdef extern from "<unistd.h>" nogil:
    int fdatasync(int fd)

cdef extern from "<sys/uio.h>" nogil:
    cdef struct iovec:
        void *iov_base
        size_t iov_len
    ssize_t pwritev(int fd, const iovec *iov, int iovcnt, long offset)

cdef extern from "<errno.h>" nogil:
    int errno

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    int nanosleep(const timespec *req, timespec *rem)
    int CLOCK_REALTIME
    int CLOCK_MONOTONIC

cdef inline int64_t now_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000

cdef inline double monotonic_s() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def wall_clock_ms():
    """Milliseconds since the epoch, as the log stamps records."""
    return now_ms()


cdef inline int64_t load_i64(const uint8_t *p) noexcept nogil:
    cdef int64_t v
    memcpy(&v, p, 8)
    return v

cdef inline uint32_t load_u32(const uint8_t *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v

cdef inline void store_i64(uint8_t *p, int64_t v) noexcept nogil:
    memcpy(p, &v, 8)

cdef inline void store_u32(uint8_t *p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)


cdef class ByteView:
    """A read-only or writable view of raw memory owned by ``owner``.

    Exposes the buffer protocol so that ``pa.py_buffer(view)`` and
    ``memoryview(view)`` wrap the bytes without copying; ``owner`` (a
    MappedFile) stays alive as long as any view or Arrow buffer does.
    """

    def __getbuffer__(self, Py_buffer *view, int flags):
        if (flags & PyBUF_WRITABLE) and not self.writable:
            raise BufferError("read-only view")
        PyBuffer_FillInfo(view, self, self.ptr, self.size, not self.writable, flags)

    def __len__(self):
        return self.size

    @property
    def address(self):
        return <uintptr_t>self.ptr


cdef ByteView make_view(object owner, uint8_t *ptr, Py_ssize_t size, bint writable):
    cdef ByteView v = ByteView.__new__(ByteView)
    v.owner = owner
    v.ptr = ptr
    v.size = size
    v.writable = writable
    return v
