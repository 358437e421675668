"""Index entry counts that partition.state publishes for the active segment
but its index files do not hold (damage published by another opener, inside
the state's bounds: a full index is 10 MiB): a read by offset or by time
through any opener is a CorruptRecordError naming both counts, never a
lookup past the file's end under its mapping (a SIGBUS)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from arrowlog.errors import CorruptRecordError
from arrowlog.schema import PRODUCE_SCHEMA
from arrowlog.storage import LogDir


@pytest.mark.parametrize("count", [200_000, -(1 << 63) + 20])
@pytest.mark.parametrize("field", ["offset_index_entries", "time_index_entries"])
@pytest.mark.parametrize("call", ["read", "offset_for_timestamp"])
def test_a_published_entry_count_beyond_the_index_file_is_an_error(tmp_path, field, call, count):
    path = str(tmp_path / "d")
    with LogDir(path) as d:
        log = d.create_topic("t", 1, config={"index.interval.bytes": 1}).partition(0)
        for i in range(20):
            log.append(pa.RecordBatch.from_pydict({"timestamp": [i], "key": [b"k"], "value": [b"v" * 100],
                                                   "headers": [None]}, schema=PRODUCE_SCHEMA))
        good = log.state.snapshot()[field]
        log.state.publish(**{field: count})   # (negative: the sign bit flipped)
        with LogDir(path, create=False) as other:
            reader = other.topic("t").partition(0)
            with pytest.raises(CorruptRecordError, match=f"{field}={count}.*the active segment's index files hold"):
                reader.read(15, 1 << 20) if call == "read" else reader.offset_for_timestamp(12)
            log.state.publish(**{field: good})   # as it was: the same reader reads again
            assert (reader.read(15, 1 << 20)[0].base_offset if call == "read"
                    else reader.offset_for_timestamp(12)) in (12, 15)
