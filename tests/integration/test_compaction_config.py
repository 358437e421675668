"""Compacted topics: configs (Kafka's names and defaults) and the refusal of
unkeyed records."""

import subprocess
import sys

import pyarrow as pa
import pytest

import arrowlog
from arrowlog.errors import ConfigError, InvalidRecordError
from arrowlog.storage import LogDir


def test_defaults_are_kafkas(tmp_path):
    with LogDir(tmp_path) as ld:
        cfg = ld.create_topic("t").config
    assert cfg["cleanup.policy"] == "delete"
    assert cfg["min.cleanable.dirty.ratio"] == 0.5
    assert cfg["min.compaction.lag.ms"] == 0
    assert cfg["max.compaction.lag.ms"] == (1 << 63) - 1
    assert cfg["delete.retention.ms"] == 86_400_000


@pytest.mark.parametrize("given, stored", [("compact", "compact"), ("delete,compact", "compact,delete"),
                                           ("Compact, Delete", "compact,delete"), (["compact"], "compact")])
def test_cleanup_policy_values(tmp_path, given, stored):
    with LogDir(tmp_path) as ld:
        assert ld.create_topic("t", config={"cleanup.policy": given}).config["cleanup.policy"] == stored


@pytest.mark.parametrize("key, value", [("cleanup.policy", "compacted"), ("cleanup.policy", ""),
                                        ("min.cleanable.dirty.ratio", 1.5), ("delete.retention.ms", -1),
                                        ("min.compaction.lag.ms", -5)])
def test_bad_values_are_refused_at_create_and_alter(tmp_path, key, value):
    with LogDir(tmp_path) as ld:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            ld.create_topic("t", config={key: value})
        ld.create_topic("u")
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            ld.alter_topic("u", {key: value})


def test_alter_turns_compaction_on_and_survives_reopen(tmp_path):
    with LogDir(tmp_path) as ld:
        ld.create_topic("t")
        ld.alter_topic("t", {"cleanup.policy": "compact", "delete.retention.ms": 5})
    with LogDir(tmp_path) as ld:
        cfg = ld.topic("t").config
        assert (cfg["cleanup.policy"], cfg["delete.retention.ms"]) == ("compact", 5)


def test_cli_alter_sets_compaction_configs(tmp_path):
    with LogDir(tmp_path) as ld:
        ld.create_topic("t")
    subprocess.run([sys.executable, "-m", "arrowlog", "topic", "alter", "t", "--data", str(tmp_path),
                    "-c", "cleanup.policy=compact", "-c", "min.cleanable.dirty.ratio=0.2"], check=True,
                   capture_output=True, timeout=120)
    with LogDir(tmp_path) as ld:
        cfg = ld.topic("t").config
        assert (cfg["cleanup.policy"], cfg["min.cleanable.dirty.ratio"]) == ("compact", 0.2)


def test_unkeyed_record_refused_by_produce(tmp_path):
    with LogDir(tmp_path) as ld:
        ld.create_topic("t", config={"cleanup.policy": "compact"})
    p = arrowlog.Producer({"log.dir": str(tmp_path)})
    try:
        p.produce("t", b"v", key=b"k")
        with pytest.raises(InvalidRecordError, match="needs a key"):
            p.produce("t", b"v")
        with pytest.raises(InvalidRecordError, match="row 1 of produce_batch"):
            p.produce_batch("t", [b"a", b"b"], keys=[b"k", None])
        p.flush()
    finally:
        p.close()
    with LogDir(tmp_path) as ld:
        assert ld.topic("t").partition(0).high_watermark == 1


def test_unkeyed_append_refused_by_storage(tmp_path):
    """The server's Produce goes straight to append(): INVALID_RECORD there."""
    with LogDir(tmp_path) as ld:
        log = ld.create_topic("t", config={"cleanup.policy": "compact,delete"}).partition(0)
        batch = pa.RecordBatch.from_arrays(
            [pa.array([1, 2], pa.timestamp("ms", tz="UTC")), pa.array([b"k", None], pa.binary()),
             pa.array([b"a", b"b"], pa.binary()), pa.nulls(2, log.schema.field("headers").type)],
            schema=pa.schema(list(log.schema)[1:]))
        with pytest.raises(InvalidRecordError, match="needs a key"):
            log.append(batch)
        assert log.high_watermark == 0


def test_unkeyed_records_still_fine_on_delete_topics(tmp_path):
    with LogDir(tmp_path) as ld:
        ld.create_topic("t")
    p = arrowlog.Producer({"log.dir": str(tmp_path)})
    p.produce("t", b"v")
    p.flush()
    p.close()
    with LogDir(tmp_path) as ld:
        assert ld.topic("t").partition(0).high_watermark == 1
