# The C-level contract of arrowlog._native.kafka: its extension types, with
# their attributes and cdef methods, and the C struct those methods take.
#
# It sits in the package (beside the .pyi stub) so that Cython finds it for
# the module arrowlog._native.kafka (setup.py puts src/ on the include path)
# and other Cython code can cimport it.
#
# Cython reads this file before kafka.pyx: an attribute declared here must
# not be declared again in a .pxi (it would shadow this one and hide a
# `public` attribute from Python). The .pyi stub (src/arrowlog/_native/
# kafka.pyi) is the Python-level view of DecodedBatch; _HeaderColumn is
# module-private (no Python-visible attribute).

from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t


# The headers column being written by the record parser (kafka/decode.pxi):
# where the next header goes, and the buffers of a _HeaderColumn.
cdef struct HeaderBufs:
    bint present
    Py_ssize_t max_headers, used, key_used, value_used, value_nulls, lists
    int32_t *loff       # per record: offset of its first header (count + 1)
    uint8_t *lval       # per record: has headers
    int32_t *koff       # per header: key offsets, value offsets, value validity
    int32_t *voff
    uint8_t *vval
    uint8_t *kdat
    uint8_t *vdat


cdef class DecodedBatch:
    """One record batch of a Produce request: its header and its records as Arrow."""
    cdef public int64_t base_offset
    cdef public int32_t partition_leader_epoch
    cdef public int16_t attributes
    cdef public int32_t last_offset_delta
    cdef public int64_t base_timestamp
    cdef public int64_t max_timestamp
    cdef public int64_t min_record_timestamp   # of the decoded records (the header has no minimum)
    cdef public int64_t max_record_timestamp
    cdef public int64_t producer_id
    cdef public int16_t producer_epoch
    cdef public int32_t base_sequence
    cdef public int32_t record_count
    cdef public Py_ssize_t size                # bytes on the wire, header included
    cdef public object records                 # pa.RecordBatch in PRODUCE_SCHEMA (arrowlog.schema)


cdef class _HeaderColumn:
    """The headers column of one record batch, built without a Python object per
    header (kafka/decode.pxi)."""
    cdef Py_ssize_t count
    cdef bytearray list_offsets
    cdef bytearray list_valid
    cdef bytearray key_offsets
    cdef bytearray value_offsets
    cdef bytearray value_valid
    cdef bytearray key_data
    cdef bytearray value_data

    cdef void attach(self, HeaderBufs *h, Py_ssize_t n)
    cdef object column(self, HeaderBufs *h)
