# The key -> latest-row map of log compaction (storage/cleaner.py) and of
# replay(latest_per_key=True): one pass over the key columns of a partition's
# batches, in offset order, into an open-addressing hash table. A slot holds
# the key's 64-bit hash and where its latest row is (batch, row); a hash match
# is confirmed by comparing the key bytes, so colliding keys stay apart.

from libc.string cimport memcmp

import numpy as _np

cdef struct KeyCol:
    const int32_t *offsets     # already shifted by the array's offset
    const uint8_t *data
    const uint8_t *valid       # NULL: no nulls
    Py_ssize_t bit             # the array's offset, for the validity bitmap
    Py_ssize_t length
    int64_t first_row          # global row number of the column's row 0

cdef struct Slot:
    uint64_t hash
    uint64_t prefix            # the key's first 8 bytes (zero-padded): most compares stay in the table
    int32_t col                # -1: empty
    int32_t row
    int32_t length


cdef inline uint64_t _prefix(const uint8_t *p, Py_ssize_t n) nogil:
    cdef uint64_t w = 0
    memcpy(&w, p, <size_t>(n if n < 8 else 8))
    return w


cdef inline uint64_t _rotl(uint64_t x, int r) nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t _hash_bytes(const uint8_t *p, Py_ssize_t n) nogil:
    """A 64-bit hash of n bytes, 8 at a time (xxhash64-style rounds)."""
    cdef uint64_t h = <uint64_t>0x27D4EB2F165667C5 + <uint64_t>n
    cdef uint64_t w
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        w *= <uint64_t>0xC2B2AE3D27D4EB4F
        w = _rotl(w, 31) * <uint64_t>0x9E3779B185EBCA87
        h ^= w
        h = _rotl(h, 27) * <uint64_t>0x9E3779B185EBCA87 + <uint64_t>0x85EBCA77C2B2AE63
        i += 8
    while i < n:
        h ^= p[i] * <uint64_t>0x27D4EB2F165667C5
        h = _rotl(h, 11) * <uint64_t>0x9E3779B185EBCA87
        i += 1
    h ^= h >> 33
    h *= <uint64_t>0xC2B2AE3D27D4EB4F
    h ^= h >> 29
    h *= <uint64_t>0x165667B19E3779F9
    h ^= h >> 32
    return h


cdef int _grow(Slot **table, Py_ssize_t *cap) nogil:
    cdef Py_ssize_t old_cap = cap[0], new_cap = old_cap * 2, i, j
    cdef Slot *old = table[0]
    cdef Slot *new = <Slot *>malloc(new_cap * sizeof(Slot))
    if new == NULL:
        return -1
    for i in range(new_cap):
        new[i].col = -1
    for i in range(old_cap):
        if old[i].col >= 0:
            j = <Py_ssize_t>(old[i].hash & <uint64_t>(new_cap - 1))
            while new[j].col >= 0:
                j = (j + 1) & (new_cap - 1)
            new[j] = old[i]
    free(old)
    table[0] = new
    cap[0] = new_cap
    return 0


def latest_rows_of(list keys):
    """Global row numbers (ascending, an int64 numpy array) of the last row
    of each distinct non-null key, over ``keys``: pyarrow binary arrays in
    order (rows numbered across them). Null keys are left out."""
    cdef Py_ssize_t ncols = len(keys), c, i, n, slot, used = 0, cap = 1024
    cdef KeyCol *cols = <KeyCol *>malloc(max(ncols, 1) * sizeof(KeyCol))
    if cols == NULL:
        raise MemoryError()
    cdef Slot *table = NULL
    cdef int64_t total = 0
    cdef uintptr_t addr
    cdef uint64_t h, pre
    cdef const uint8_t *kp
    cdef Py_ssize_t kn, k
    cdef KeyCol *kc
    cdef KeyCol *other
    cdef bint failed = False
    cdef Py_ssize_t shift
    try:
        for c in range(ncols):
            arr = keys[c]
            if arr.type != _pa.binary():
                raise TypeError(f"keys must be binary arrays, not {arr.type}")
            bufs = arr.buffers()
            cols[c].length = len(arr)
            cols[c].first_row = total
            total += len(arr)
            cols[c].bit = arr.offset
            cols[c].valid = NULL
            if bufs[0] is not None and arr.null_count:
                addr = bufs[0].address
                cols[c].valid = <const uint8_t *>addr
            cols[c].offsets = NULL
            cols[c].data = NULL
            if len(arr):
                addr = bufs[1].address
                shift = arr.offset
                cols[c].offsets = (<const int32_t *>addr) + shift
                if bufs[2] is not None:
                    addr = bufs[2].address
                    cols[c].data = <const uint8_t *>addr
        while cap < 2 * min(total, 1 << 21):
            cap *= 2
        table = <Slot *>malloc(cap * sizeof(Slot))
        if table == NULL:
            raise MemoryError()
        with nogil:
            for i in range(cap):
                table[i].col = -1
            for c in range(ncols):
                kc = &cols[c]
                for i in range(kc.length):
                    if kc.valid != NULL:
                        k = i + kc.bit
                        if not (kc.valid[k >> 3] >> (k & 7)) & 1:
                            continue
                    kp = kc.data + kc.offsets[i]
                    kn = kc.offsets[i + 1] - kc.offsets[i]
                    h = _hash_bytes(kp, kn)
                    pre = _prefix(kp, kn)
                    slot = <Py_ssize_t>(h & <uint64_t>(cap - 1))
                    while table[slot].col >= 0:
                        if table[slot].hash == h and table[slot].length == kn and table[slot].prefix == pre:
                            if kn <= 8:
                                break
                            other = &cols[table[slot].col]
                            n = table[slot].row
                            if memcmp(other.data + other.offsets[n] + 8, kp + 8, <size_t>(kn - 8)) == 0:
                                break
                        slot = (slot + 1) & (cap - 1)
                    if table[slot].col < 0:
                        used += 1
                    table[slot].hash = h
                    table[slot].prefix = pre
                    table[slot].length = <int32_t>kn
                    table[slot].col = <int32_t>c
                    table[slot].row = <int32_t>i
                    if used * 2 > cap:
                        if _grow(&table, &cap) != 0:
                            failed = True
                            break
                if failed:
                    break
        if failed:
            raise MemoryError()
        out = _np.empty(used, dtype=_np.int64)
        _fill_rows(table, cap, cols, out)
        out.sort()
        return out
    finally:
        free(table)
        free(cols)


cdef void _fill_rows(Slot *table, Py_ssize_t cap, KeyCol *cols, int64_t[::1] out):
    cdef Py_ssize_t i, j = 0
    for i in range(cap):
        if table[i].col >= 0:
            out[j] = cols[table[i].col].first_row + table[i].row
            j += 1
