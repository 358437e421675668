# Type stubs for arrowlog._native.avro (compiled from _native/avro.pyx): Confluent
# wire-format Avro records of a flat record schema into column buffers.
# Keep in step with the .pyx: tests/unit/test__sourcecode.py runs mypy.stubtest.
from typing import Any

def decode_flat(values: list[Any], schema_id: int, kinds: bytes, nullable: bytes,
                enum_sizes: list[Any]) -> list[Any]: ...
def encode_flat(nrec: int, schema_id: int, kinds: bytes, nullable: bytes, columns: list[Any], valids: list[Any],
                record_valid: Any) -> tuple[Any, bytes]: ...
