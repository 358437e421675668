# Reusable memory for the decoded columns of Produce requests.
#
# A record batch's columns are built on buffers sized for the worst case of
# its records block (decode.pxi). Allocated fresh for every request, the
# larger ones (a 1 MB request's values) came from newly mapped pages: the
# heap grew, was trimmed back when the batch was freed, and grew again, so
# page faults and brk calls were about 13 % of serve's CPU per produced
# record (perf, docs/PROTOCOL.md, Tests and speed). Here those buffers are
# kept and handed out again once nothing references them any more: every
# reader of a decoded column holds a reference to its bytearray (an Arrow
# buffer over it is a buffer export, which holds one), so a kept buffer whose
# only reference is the pool's own is free, whatever thread last used it.
# The checks and the hand-out run under the GIL. (The request bodies these
# batches are decoded from have their own pool, server/framing.py's BodyPool:
# a body is given back when its response is written; a decoded batch has no
# such moment, so its buffers are checked when the next one is needed.)

from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.ref cimport PyObject, Py_REFCNT

cdef extern from "Python.h":
    ctypedef struct PyByteArrayObject:
        Py_ssize_t ob_exports

# Smaller buffers come from the allocator as before (its free lists reuse them
# cheaply); larger ones are rare (the server trims memory after such a request).
cdef Py_ssize_t SCRATCH_MIN_BYTES = 64 * 1024
cdef Py_ssize_t SCRATCH_MAX_BYTES = 8 << 20
# All kept buffers together, free or in use.
cdef Py_ssize_t SCRATCH_LIMIT_BYTES = 32 << 20

cdef inline bytearray _uninitialised(Py_ssize_t size):
    """A bytearray whose pages are not touched until written (for buffers sized by
    the worst case, or written entirely before they are read)."""
    return <bytearray>PyByteArray_FromStringAndSize(NULL, size)


cdef dict _scratch_classes = {}     # size class (a power of two) -> [bytearray]
cdef Py_ssize_t _scratch_kept = 0


cdef inline bint _scratch_free(PyObject *obj) noexcept:
    return Py_REFCNT(<object>obj) == 1 and (<PyByteArrayObject *>obj).ob_exports == 0


cdef bytearray _scratch(Py_ssize_t size, bint zeroed):
    """A bytearray of at least ``size`` bytes: a kept one nothing uses any more, or a
    new one (kept while the pool has room). Its bytes are undefined unless ``zeroed``;
    callers use its first ``size`` bytes (slice the Arrow buffer made over it)."""
    global _scratch_kept
    cdef Py_ssize_t cls, i
    cdef list kept
    cdef bytearray buf
    if size < SCRATCH_MIN_BYTES or size > SCRATCH_MAX_BYTES:
        return bytearray(size) if zeroed else _uninitialised(size)
    cls = SCRATCH_MIN_BYTES
    while cls < size:
        cls <<= 1
    kept = _scratch_classes.get(cls)
    if kept is None:
        kept = _scratch_classes[cls] = []
    buf = None
    for i in range(PyList_GET_SIZE(kept)):
        if _scratch_free(PyList_GET_ITEM(kept, i)):
            buf = <bytearray>PyList_GET_ITEM(kept, i)
            break
    if buf is None:
        buf = _uninitialised(cls)
        if _scratch_kept + cls <= SCRATCH_LIMIT_BYTES:
            kept.append(buf)
            _scratch_kept += cls
    if zeroed:
        memset(PyByteArray_AS_STRING(buf), 0, <size_t>size)
    return buf


def release_scratch():
    """Forget the kept buffers (those in use are freed with their last reader), so
    their memory can go back to the OS. Returns the bytes that were kept."""
    global _scratch_kept
    kept = _scratch_kept
    _scratch_classes.clear()
    _scratch_kept = 0
    return kept


def scratch_kept():
    """Bytes of decode buffers kept for reuse (statistics, tests)."""
    return _scratch_kept
