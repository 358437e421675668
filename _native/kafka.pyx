"""Kafka record batch v2 codec: the hot path of ``arrowlog serve``.

A Produce request carries record batches v2; ``decode_record_set`` checks each
batch (magic, length, CRC-32C, record count), decompresses it and turns its
records into the Arrow envelope columns the storage layer appends
(``timestamp``, ``key``, ``value``, ``headers``) without a Python object per
record. ``encode_batch`` does the reverse for Fetch: one stored Arrow batch
(``Frame.batch``) becomes one record batch v2, written straight into the
``bytes`` object that goes on the wire.

Record batch v2, all integers big-endian (61-byte header, Kafka's
``DefaultRecordBatch``)::

    0  base_offset            i64
    8  batch_length           i32   bytes after this field
    12 partition_leader_epoch i32
    16 magic                  i8    = 2
    17 crc                    u32   CRC-32C of bytes 21..end
    21 attributes             i16   bits 0-2 codec, 3 timestamp type,
                                    4 transactional, 5 control
    23 last_offset_delta      i32
    27 base_timestamp         i64
    35 max_timestamp          i64
    43 producer_id            i64
    51 producer_epoch         i16
    53 base_sequence          i32
    57 record_count           i32
    61 records                (compressed as one block when codec != 0)

Each record, with zigzag varints::

    length varint, attributes i8, timestamp_delta varlong, offset_delta varint,
    key_length varint (-1 = null), key, value_length varint (-1 = null), value,
    header_count varint, then per header: key_length varint, key (utf-8),
    value_length varint (-1 = null), value

Thread-safety: the functions are pure; they hold the GIL.
"""

from libc.stdint cimport (
    INT64_MAX, INT64_MIN, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t,
)
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize

import mmap
import zlib

import cramjam
import pyarrow as pa
import zstandard

from arrowlog.errors import ArrowlogError

cdef extern from "crc32c.h":
    uint32_t arrowlog_crc32c(uint32_t crc, const void *data, size_t n) nogil

# Kafka error codes a bad batch is answered with.
CORRUPT_MESSAGE = 2
INVALID_RECORD = 87
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43


class RecordBatchError(ArrowlogError, ValueError):
    """A record batch that must be refused (``error_code`` is the Kafka error the
    broker answers with): the message says which batch and what was wrong."""

    def __init__(self, message, error_code=CORRUPT_MESSAGE):
        super().__init__(message)
        self.error_code = error_code


include "kafka/varint.pxi"
include "kafka/codecs.pxi"
include "kafka/scratch.pxi"
include "kafka/decode.pxi"
include "kafka/encode.pxi"
