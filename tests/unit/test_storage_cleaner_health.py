"""cleaner.json is advisory: a damaged or hand-edited one (fields of the
wrong type, not JSON, not UTF-8) never fails a compaction or the trigger;
its bad fields count as never recorded."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest

from arrowlog.schema import PRODUCE_SCHEMA
from arrowlog.storage import LogDir
from arrowlog.storage.cleaner import HEALTH_FILE, needs_cleaning, read_health

BAD = {
    "clean_offset a string": b'{"clean_offset": "x", "cleans": 2}',
    "clean_offset null": b'{"clean_offset": null}',
    "clean_offset a list": b'{"clean_offset": [1]}',
    "clean_offset infinite": b'{"clean_offset": 1e400}',
    "clean_offset true": b'{"clean_offset": true}',
    "cleans a string": b'{"clean_offset": 0, "cleans": "two", "bytes_reclaimed": {}}',
    "not UTF-8": b'{"clean_offset": "\xff\xfe"}',
    "not an object": b"[1, 2]",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_damaged_cleaner_record_neither_fails_compaction_nor_its_trigger(tmp_path, case):
    with LogDir(str(tmp_path / "d")) as d:
        pl = d.create_topic("t", 1, config={"cleanup.policy": "compact", "segment.bytes": 4096,
                                            "min.cleanable.dirty.ratio": 0.01}).partition(0)
        for i in range(60):
            pl.append(pa.RecordBatch.from_pydict({"timestamp": [i], "key": [b"k%d" % (i % 3)],
                                                  "value": [b"v%d" % i + b"x" * 100], "headers": [None]},
                                                 schema=PRODUCE_SCHEMA))
        with open(os.path.join(pl.directory, HEALTH_FILE), "wb") as f:
            f.write(BAD[case])
        before = read_health(pl.directory)
        assert all(type(v) is int for v in before.values())
        assert needs_cleaning(pl)
        (report,) = d.compact("t")
        assert report["records_after"] < report["records_before"]
        h = json.loads(open(os.path.join(pl.directory, HEALTH_FILE), encoding="utf-8").read())
        assert h["clean_offset"] == report["clean_offset"] and h["cleans"] == before.get("cleans", 0) + 1
