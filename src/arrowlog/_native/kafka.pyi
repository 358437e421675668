# Type stubs for arrowlog._native.kafka (compiled from _native/kafka.pyx and
# _native/kafka/*.pxi): Kafka record batches (magic 2) to and from Arrow.
# Keep in step with the .pyx: tests/unit/test__sourcecode.py runs mypy.stubtest.
from typing import Any, TypeAlias

import pyarrow as pa

_Buffer: TypeAlias = bytes | bytearray | memoryview

ATTR_CODEC_MASK: int
ATTR_LOG_APPEND_TIME: int
ATTR_TRANSACTIONAL: int
ATTR_CONTROL: int
CODEC_NONE: int
CODEC_GZIP: int
CODEC_SNAPPY: int
CODEC_LZ4: int
CODEC_ZSTD: int
CODEC_NAMES: dict[int, str]
CORRUPT_MESSAGE: int
DEFAULT_MAX_UNCOMPRESSED: int
INVALID_RECORD: int
UNSUPPORTED_FOR_MESSAGE_FORMAT: int

class RecordBatchError(ValueError):
    """A record batch that must be refused; ``error_code`` is the Kafka error."""

    error_code: int
    def __init__(self, message: str, error_code: int = ...) -> None: ...

class DecodedBatch:
    """One record batch of a Produce request: its header and its records as Arrow."""

    base_offset: int
    partition_leader_epoch: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    min_record_timestamp: int
    max_record_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int
    size: int
    records: pa.RecordBatch
    @property
    def codec(self) -> int: ...
    @property
    def is_transactional(self) -> bool: ...
    @property
    def is_control(self) -> bool: ...

def decode_record_set(data: _Buffer, check_crc: bool = True,
                      max_uncompressed: int = ...) -> list[DecodedBatch]: ...
def encode_batch(batch: pa.RecordBatch, codec: int = 0, producer_id: int = -1, producer_epoch: int = -1,
                 base_sequence: int = -1, first_offset: int = -1, next_offset: int = -1) -> bytes: ...
def batch_info(data: _Buffer) -> dict[str, Any]: ...
def compress(codec: int, data: _Buffer) -> bytes: ...
def decompress(codec: int, data: _Buffer, max_size: int = ...) -> Any: ...
def encode_varint(value: int) -> bytes: ...
def decode_varint(data: _Buffer, pos: int = 0) -> tuple[int, int]: ...
def crc32c(data: _Buffer, value: int = 0) -> int: ...

def release_scratch() -> int: ...
def scratch_kept() -> int: ...
