# cython: language_level=3
"""Decoding Confluent wire-format Avro records of a flat record schema into columns.

``decode_flat(values, schema_id, kinds, nullable, enum_sizes)`` reads each
value (``0x00``, the 4-byte big-endian schema id, then the Avro binary body)
and appends its fields to per-field buffers; arrowlog.registry.codec turns
them into Arrow arrays. Every length is checked against the bytes left and a
body must be used up exactly; a violation raises ValueError naming the record.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

import numpy as np

# Field kinds (arrowlog.registry.codec uses the same numbers).
DEF K_BOOL = 0
DEF K_INT = 1
DEF K_LONG = 2
DEF K_FLOAT = 3
DEF K_DOUBLE = 4
DEF K_STRING = 5
DEF K_BYTES = 6
DEF K_ENUM = 7


cdef inline int read_long(const uint8_t* p, Py_ssize_t n, Py_ssize_t* pos, int64_t* out) except -1:
    cdef uint64_t acc = 0
    cdef int shift = 0
    cdef uint8_t b
    while True:
        if pos[0] >= n:
            raise ValueError("a varint runs past the end of the record")
        b = p[pos[0]]
        pos[0] += 1
        acc |= (<uint64_t>(b & 0x7F)) << shift
        if not (b & 0x80):
            break
        shift += 7
        if shift >= 64:
            raise ValueError("a varint is longer than 10 bytes")
    out[0] = <int64_t>((acc >> 1) ^ (-(acc & 1)))
    return 0


def decode_flat(list values, int schema_id, bytes kinds, bytes nullable, list enum_sizes):
    """Columns of ``values``: a list, per field, of (data, valid) where data is a
    numpy array (numbers, enum indexes) or (offsets int32 array, bytes) for
    strings and bytes, and valid a uint8 array (1: present)."""
    cdef Py_ssize_t nrec = len(values), nf = len(kinds), i, f, n, pos, size
    cdef const uint8_t* p
    cdef const uint8_t* k = <const uint8_t*>PyBytes_AS_STRING(kinds)
    cdef const uint8_t* nl = <const uint8_t*>PyBytes_AS_STRING(nullable)
    cdef int64_t v, branch
    cdef int32_t sid
    cdef uint8_t kind
    cdef object value
    cdef list nums = [], valids = [], datas = []
    cdef char* cols[64]
    cdef uint8_t* oks[64]
    cdef int64_t limits[64]
    cdef Py_ssize_t used[64]
    cdef int32_t* offsets
    if nf > 64:
        raise ValueError("a flat record of more than 64 fields is not decoded natively")
    if len(nullable) != nf or len(enum_sizes) != nf:
        raise ValueError("one nullable flag and one enum size per field")
    for f in range(nf):
        kind = k[f]
        dtype = {K_BOOL: np.uint8, K_INT: np.int32, K_LONG: np.int64, K_FLOAT: np.float32,
                 K_DOUBLE: np.float64, K_ENUM: np.int32}.get(kind, np.int32)
        arr = np.zeros(nrec + 1 if kind in (K_STRING, K_BYTES) else nrec, dtype=dtype)
        ok = np.ones(nrec, dtype=np.uint8)
        nums.append(arr)
        valids.append(ok)
        datas.append(bytearray())
        cols[f] = <char*><size_t>arr.ctypes.data
        oks[f] = <uint8_t*><size_t>ok.ctypes.data
        limits[f] = enum_sizes[f] if kind == K_ENUM else 0
        used[f] = 0
    for i in range(nrec):
        value = values[i]
        if not isinstance(value, bytes):
            raise ValueError(f"record {i} has no value (a null value cannot fill a typed record)")
        p = <const uint8_t*>PyBytes_AS_STRING(value)
        n = PyBytes_GET_SIZE(value)
        if n < 5 or p[0] != 0:
            raise ValueError(f"record {i} is not in the Confluent wire format (magic byte 0x00, "
                             "4-byte schema id, payload)")
        sid = (<int32_t>p[1] << 24) | (<int32_t>p[2] << 16) | (<int32_t>p[3] << 8) | <int32_t>p[4]
        if sid != schema_id:
            raise LookupError(sid)
        pos = 5
        for f in range(nf):
            kind = k[f]
            if nl[f]:
                read_long(p, n, &pos, &branch)
                if branch == 0:
                    oks[f][i] = 0
                    if kind == K_STRING or kind == K_BYTES:
                        offsets = <int32_t*>cols[f]
                        offsets[i + 1] = offsets[i]
                    continue
                if branch != 1:
                    raise ValueError(f"record {i}, field {f}: union branch {branch} does not exist")
            if kind == K_BOOL:
                if pos >= n:
                    raise ValueError(f"record {i} ends inside field {f}")
                if p[pos] > 1:
                    raise ValueError(f"record {i}, field {f}: a boolean byte is {p[pos]}, not 0 or 1")
                (<uint8_t*>cols[f])[i] = p[pos]
                pos += 1
            elif kind == K_INT or kind == K_ENUM:
                read_long(p, n, &pos, &v)
                if v < -2147483648 or v > 2147483647:
                    raise ValueError(f"record {i}, field {f}: {v} does not fit an Avro int")
                if kind == K_ENUM and not 0 <= v < limits[f]:
                    raise ValueError(f"record {i}, field {f}: enum index {v} is not one of the {limits[f]} symbols")
                (<int32_t*>cols[f])[i] = <int32_t>v
            elif kind == K_LONG:
                read_long(p, n, &pos, &v)
                (<int64_t*>cols[f])[i] = v
            elif kind == K_FLOAT or kind == K_DOUBLE:
                size = 4 if kind == K_FLOAT else 8
                if pos + size > n:
                    raise ValueError(f"record {i} ends inside field {f}")
                memcpy(cols[f] + i * size, p + pos, size)
                pos += size
            else:  # string, bytes
                read_long(p, n, &pos, &v)
                if v < 0 or v > n - pos:
                    raise ValueError(f"record {i}, field {f}: a length of {v} with {n - pos} bytes left")
                size = <Py_ssize_t>v
                if used[f] + size > 2147483647:
                    raise ValueError("more than 2 GiB of strings in one batch")
                buf = <bytearray>datas[f]
                if used[f] + size > PyByteArray_GET_SIZE(buf):
                    PyByteArray_Resize(buf, max(2 * (used[f] + size), 4096))
                memcpy(PyByteArray_AS_STRING(buf) + used[f], p + pos, size)
                used[f] += size
                pos += size
                (<int32_t*>cols[f])[i + 1] = <int32_t>used[f]
        if pos != n:
            raise ValueError(f"record {i} has {n - pos} bytes after its last field: it does not match "
                             f"schema {schema_id}")
    out = []
    for f in range(nf):
        if k[f] == K_STRING or k[f] == K_BYTES:
            out.append(((nums[f], bytes(datas[f][:used[f]])), valids[f]))
        else:
            out.append((nums[f], valids[f]))
    return out


_WIDTH = {K_BOOL: 1, K_INT: 4, K_ENUM: 4, K_LONG: 8, K_FLOAT: 4, K_DOUBLE: 8}


def _check_array(arr, Py_ssize_t width, Py_ssize_t f):
    """The raw pointers below read ``width``-byte items: refuse anything else."""
    if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.itemsize != width or \
            not arr.flags.c_contiguous:
        raise ValueError(f"field {f}: wants a contiguous 1-d array of {width}-byte items")


cdef inline Py_ssize_t write_long(uint8_t* out, int64_t value) noexcept:
    cdef uint64_t z = (<uint64_t>value << 1) ^ <uint64_t>(value >> 63)
    cdef Py_ssize_t i = 0
    while z >= 0x80:
        out[i] = <uint8_t>((z & 0x7F) | 0x80)
        z >>= 7
        i += 1
    out[i] = <uint8_t>z
    return i + 1


def encode_flat(Py_ssize_t nrec, int schema_id, bytes kinds, bytes nullable, list columns, list valids,
                record_valid):
    """The wire-format values of ``nrec`` records (the inverse of decode_flat): returns
    (offsets, data) of a binary column, int32 offsets and bytes. ``columns`` holds per
    field a numpy array (numbers, bool as uint8, enum indexes as int32) or (offsets
    int32 array of nrec+1, bytes) for strings and bytes; ``valids`` a uint8 array per
    field; ``record_valid`` a uint8 array (0: a null record, written as no bytes)."""
    cdef Py_ssize_t nf = len(kinds), i, f, pos = 0, size, bound
    cdef const uint8_t* k = <const uint8_t*>PyBytes_AS_STRING(kinds)
    cdef const uint8_t* nl = <const uint8_t*>PyBytes_AS_STRING(nullable)
    cdef const char* cols[64]
    cdef const char* blobs[64]
    cdef const uint8_t* oks[64]
    cdef const uint8_t* rec_ok
    cdef const int32_t* soffs
    cdef Py_ssize_t blob_sizes[64]
    cdef uint8_t kind
    cdef uint8_t* out
    cdef int32_t* offsets
    cdef list keep = []
    if nf > 64:
        raise ValueError("a flat record of more than 64 fields is not encoded natively")
    if len(nullable) != nf:
        raise ValueError("one nullable flag per field")
    if len(columns) != nf or len(valids) != nf:
        raise ValueError("one column and one validity array per field")
    # per record: 5 header bytes; per field at most a union byte and a 10-byte varint (or 8
    # bytes of a double), plus the bytes of its strings
    bound = nrec * (5 + 11 * nf)
    for f in range(nf):
        col = columns[f]
        if k[f] == K_STRING or k[f] == K_BYTES:
            offs, blob = col
            _check_array(offs, 4, f)
            if len(offs) != nrec + 1:
                raise ValueError(f"field {f}: {len(offs)} offsets for {nrec} records")
            keep.append(offs)
            keep.append(blob)
            cols[f] = <const char*><size_t>offs.ctypes.data
            blobs[f] = <const char*>PyBytes_AS_STRING(blob)
            blob_sizes[f] = len(blob)
            bound += len(blob)
        else:
            _check_array(col, _WIDTH[k[f]], f)
            if len(col) != nrec:
                raise ValueError(f"field {f}: {len(col)} values for {nrec} records")
            keep.append(col)
            cols[f] = <const char*><size_t>col.ctypes.data
        _check_array(valids[f], 1, f)
        if len(valids[f]) != nrec:
            raise ValueError(f"field {f}: {len(valids[f])} validity bytes for {nrec} records")
        keep.append(valids[f])
        oks[f] = <const uint8_t*><size_t>valids[f].ctypes.data
    _check_array(record_valid, 1, -1)
    if len(record_valid) != nrec:
        raise ValueError("one record validity byte per record")
    rec_ok = <const uint8_t*><size_t>record_valid.ctypes.data
    if bound > 2147483647:
        raise ValueError("more than 2 GiB of encoded records in one batch")
    data = bytearray(bound)
    out = <uint8_t*>PyByteArray_AS_STRING(data)
    offs_out = np.zeros(nrec + 1, dtype=np.int32)
    offsets = <int32_t*><size_t>offs_out.ctypes.data
    for i in range(nrec):
        if rec_ok[i]:
            out[pos] = 0
            out[pos + 1] = <uint8_t>((schema_id >> 24) & 0xFF)
            out[pos + 2] = <uint8_t>((schema_id >> 16) & 0xFF)
            out[pos + 3] = <uint8_t>((schema_id >> 8) & 0xFF)
            out[pos + 4] = <uint8_t>(schema_id & 0xFF)
            pos += 5
            for f in range(nf):
                kind = k[f]
                if nl[f]:
                    if not oks[f][i]:
                        out[pos] = 0
                        pos += 1
                        continue
                    out[pos] = 2
                    pos += 1
                elif not oks[f][i]:
                    raise ValueError(f"record {i}: field {f} is null but its schema does not allow null")
                if kind == K_BOOL:
                    out[pos] = 1 if (<const uint8_t*>cols[f])[i] else 0
                    pos += 1
                elif kind == K_INT or kind == K_ENUM:
                    pos += write_long(out + pos, (<const int32_t*>cols[f])[i])
                elif kind == K_LONG:
                    pos += write_long(out + pos, (<const int64_t*>cols[f])[i])
                elif kind == K_FLOAT or kind == K_DOUBLE:
                    size = 4 if kind == K_FLOAT else 8
                    memcpy(out + pos, cols[f] + i * size, size)
                    pos += size
                else:
                    soffs = <const int32_t*>cols[f]
                    size = soffs[i + 1] - soffs[i]
                    if size < 0 or soffs[i] < 0 or soffs[i + 1] > blob_sizes[f]:
                        raise ValueError(f"record {i}: field {f} has offsets {soffs[i]}..{soffs[i + 1]} "
                                         f"outside its {blob_sizes[f]} bytes")
                    pos += write_long(out + pos, size)
                    memcpy(out + pos, blobs[f] + soffs[i], size)
                    pos += size
        offsets[i + 1] = <int32_t>pos
    return offs_out, bytes(data[:pos])
