"""What ``arrowlog serve`` does not implement is refused as "not supported"
(UNSUPPORTED_VERSION, or INVALID_REQUEST with a message), never as an
authorisation failure."""

from __future__ import annotations

import struct

import crc32c

from arrowlog.server import messages as M

from .wireclient import call


def produce_as(server, topic, records, transactional_id=None):
    resp = call(server, M.PRODUCE, 9, {
        "transactional_id": transactional_id, "acks": -1, "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}]})
    return resp["responses"][0]["partition_responses"][0]


def with_attributes(batch: bytes, bits: int) -> bytes:
    """A Kafka record batch with attribute ``bits`` set (and its CRC-32C redone)."""
    b = bytearray(batch)
    attrs = struct.unpack_from(">h", b, 21)[0] | bits
    struct.pack_into(">h", b, 21, attrs)
    struct.pack_into(">I", b, 17, crc32c.crc32c(bytes(b[21:])))
    return bytes(b)
