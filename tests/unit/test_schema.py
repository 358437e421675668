"""One envelope: every layer builds records in the schemas of arrowlog.schema."""

import re
import subprocess
from pathlib import Path

import arrowlog
from arrowlog import schema
from arrowlog._native import core
from arrowlog._native import kafka as K
from arrowlog.storage import LogDir

ROOT = Path(arrowlog.__file__).resolve().parents[2]
DEFINED_ONCE = ("TIMESTAMP_TYPE", "HEADER_TYPE", "HEADERS_TYPE", "ENVELOPE_SCHEMA", "PRODUCE_SCHEMA", "REPLAY_SCHEMA")


def test_the_schemas_are_defined_in_one_module_only():
    files = subprocess.run(["git", "ls-files", "src", "_native"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    names = "|".join(DEFINED_ONCE)
    pattern = re.compile(rf"^\s*({names})\s*(:[^=]*)?=", re.M)
    defined = {f: pattern.findall((ROOT / f).read_text()) for f in files if f.endswith((".py", ".pyx", ".pxi"))}
    assert {f: [m[0] for m in found] for f, found in defined.items() if found} == {
        "src/arrowlog/schema.py": list(DEFINED_ONCE)}


def test_native_builders_produce_the_produce_schema():
    acc = core.RecordAccumulator()
    acc.append_record(b"k", b"v", 1_700_000_000_000, [("h", b"x")])
    assert acc.take().schema.equals(schema.PRODUCE_SCHEMA)
    from kafka.record.default_records import DefaultRecordBatchBuilder  # the oracle encoder
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    builder.append(0, timestamp=1_700_000_000_000, key=b"k", value=b"v", headers=[("h", b"x")])
    [decoded] = K.decode_record_set(bytes(builder.build()))
    assert decoded.records.schema.equals(schema.PRODUCE_SCHEMA)


def test_stored_frames_and_replays_use_the_envelope(data_dir):
    with LogDir(data_dir) as d:
        log = d.create_topic("t").partition(0)
        acc = core.RecordAccumulator()
        acc.append_record(b"k", b"v", 1_700_000_000_000)
        log.append(acc.take())
        [frame] = log.read(0)
        assert frame.batch.schema.equals(schema.ENVELOPE_SCHEMA)
    with arrowlog.replay(data_dir, "t") as r:
        assert r.schema.equals(schema.REPLAY_SCHEMA)
        assert r.to_arrow().schema.equals(schema.REPLAY_SCHEMA)
