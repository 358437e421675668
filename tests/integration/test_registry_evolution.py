"""Schema evolution of a typed topic's stored columns (storage/evolution.py): a topic's
value schema widens as a new generation, new frames carry the new columns, and every
reader (replay, dataset through DuckDB, the Consumer) gives one schema for a range that
spans generations, older frames with nulls."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest

import arrowlog
from arrowlog import Consumer, Producer, TopicPartition
from arrowlog.errors import ConfigError
from arrowlog.storage import LogDir
from arrowlog.storage.evolution import GENERATION, generation

V1 = pa.schema([("user", pa.string(), False), ("n", pa.int32(), False)])
V2 = pa.schema([("user", pa.string(), False), ("n", pa.int64(), False), ("country", pa.string())])


def _produce(path, topic, rows):
    with Producer(str(path)) as p:
        for row in rows:
            p.produce(topic, value=json.dumps(row))
        p.flush()


def _segments(path, topic, partition=0):
    d = os.path.join(path, "topics", topic, str(partition))
    return sorted(n for n in os.listdir(d) if n.endswith(".log"))


@pytest.fixture
def evolved(tmp_path):
    """A topic with two records of V1, evolved to V2, then one record of V2."""
    log = LogDir(tmp_path)
    log.create_topic("clicks", 1, {"value.schema": V1})
    _produce(tmp_path, "clicks", [{"user": "u1", "n": 1}, {"user": "u2", "n": 2}])
    log.alter_topic("clicks", {"value.schema": V2})
    _produce(tmp_path, "clicks", [{"user": "u3", "n": 2**40, "country": "NL"}])
    log.close()
    return tmp_path


def test_new_frames_carry_the_new_column_and_older_frames_read_with_nulls(evolved):
    table = arrowlog.replay(str(evolved), "clicks").to_arrow()
    assert table.schema.field("n").type == pa.int64()
    assert table.column("user").to_pylist() == ["u1", "u2", "u3"]
    assert table.column("n").to_pylist() == [1, 2, 2**40]
    assert table.column("country").to_pylist() == [None, None, "NL"]
    # the new generation started a segment of its own, whose header says so
    assert _segments(evolved, "clicks") == ["00000000000000000000.log", "00000000000000000002.log"]
    with LogDir(evolved) as log:
        t = log.topic("clicks")
        assert generation(t.value_schema) == 1
        frames = t.partition(0).read(0, 1) + t.partition(0).read(2, 1)
        assert [generation(f.batch.schema) for f in frames] == [0, 1]


def test_a_replay_that_starts_in_the_new_generation_or_selects_columns(evolved):
    assert arrowlog.replay(str(evolved), "clicks", start=2).to_arrow().column("country").to_pylist() == ["NL"]
    cols = arrowlog.replay(str(evolved), "clicks", columns=["offset", "country"]).to_arrow()
    assert cols.to_pydict() == {"offset": [0, 1, 2], "country": [None, None, "NL"]}


def test_duckdb_reads_both_generations_through_the_dataset(evolved):
    duckdb = pytest.importorskip("duckdb")
    ds = arrowlog.dataset(str(evolved), "clicks")
    assert ds.schema.field("country").type == pa.string()
    rows = duckdb.sql("SELECT user, n, country FROM ds ORDER BY \"offset\"").fetchall()
    assert rows == [("u1", 1, None), ("u2", 2, None), ("u3", 2**40, "NL")]
    # a filter on the new column is pushed down: old frames hold only nulls there
    assert duckdb.sql("SELECT user FROM ds WHERE country = 'NL'").fetchall() == [("u3",)]
    assert duckdb.sql("SELECT count(*) FROM ds WHERE n >= 2").fetchall() == [(2,)]


def test_polars_and_pandas_read_both_generations(evolved):
    pl = pytest.importorskip("polars")
    lf = arrowlog.scan_polars(str(evolved), "clicks")
    assert lf.filter(pl.col("country").is_null()).select("user").collect()["user"].to_list() == ["u1", "u2"]
    df = arrowlog.replay(str(evolved), "clicks").to_pandas()
    assert df["country"].isna().tolist() == [True, True, False] and df["n"].tolist() == [1, 2, 2**40]


def test_the_consumer_gives_every_record_the_newest_fields(evolved):
    c = Consumer({"log.dir": str(evolved), "group.id": "g", "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition("clicks", 0, 0)])
        got = []
        while len(got) < 3:
            got += [m.value() for m in c.consume(10, timeout=5)]
    finally:
        c.close()
    assert got == [{"user": "u1", "n": 1, "country": None}, {"user": "u2", "n": 2, "country": None},
                   {"user": "u3", "n": 2**40, "country": "NL"}]


def test_a_consumer_opened_before_the_evolution_sees_the_new_column(tmp_path):
    log = LogDir(tmp_path)
    log.create_topic("t", 1, {"value.schema": V1})
    _produce(tmp_path, "t", [{"user": "a", "n": 1}])
    c = Consumer({"log.dir": str(tmp_path), "group.id": "g", "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition("t", 0, 0)])
        first = c.consume(1, timeout=5)
        assert [m.value() for m in first] == [{"user": "a", "n": 1}]
        # another process evolves the topic and writes a record of the new generation
        code = ("import json, pyarrow as pa; from arrowlog.storage import LogDir; from arrowlog import Producer\n"
                f"LogDir({str(tmp_path)!r}).alter_topic('t', {{'value.schema': pa.schema([('user', pa.string(), False),"
                " ('n', pa.int64(), False), ('country', pa.string())])})\n"
                f"p = Producer({str(tmp_path)!r}); p.produce('t', value=json.dumps({{'user': 'b', 'n': 2, "
                "'country': 'NL'})); p.flush(); p.close()\n")
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
        later = []
        for _ in range(50):
            later += c.consume(1, timeout=2)
            if later:
                break
        assert [m.value() for m in later] == [{"user": "b", "n": 2, "country": "NL"}]
    finally:
        c.close()
        log.close()


def test_a_writer_holding_the_older_generation_writes_into_the_newer_one(tmp_path):
    """Process A evolves the topic while this process's Producer still holds V1:
    its records are conformed up to the newer generation, never written into a
    segment whose header says another schema."""
    log = LogDir(tmp_path)
    log.create_topic("t", 1, {"value.schema": V1})
    with Producer(str(tmp_path)) as p:
        p.produce("t", value=json.dumps({"user": "a", "n": 1}))
        p.flush()
        other = LogDir(tmp_path)
        other.alter_topic("t", {"value.schema": V2})
        other.topic("t").partition(0).append(pa.RecordBatch.from_arrays(
            [pa.array([0], pa.timestamp("ms", tz="UTC")), pa.array([None], pa.binary()),
             pa.array([{"user": "b", "n": 7, "country": "FR"}], pa.struct(list(V2))),
             pa.array([None], pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])))],
            names=["timestamp", "key", "value", "headers"]))
        other.close()
        p.produce("t", value=json.dumps({"user": "c", "n": 3}))   # still V1 to this producer
        p.flush()
    table = arrowlog.replay(str(tmp_path), "t").to_arrow()
    assert table.select(["user", "n", "country"]).to_pylist() == [
        {"user": "a", "n": 1, "country": None}, {"user": "b", "n": 7, "country": "FR"},
        {"user": "c", "n": 3, "country": None}]
    log.close()


def test_an_empty_partition_evolves_in_place(tmp_path):
    log = LogDir(tmp_path)
    log.create_topic("t", 1, {"value.schema": V1})
    log.topic("t").partition(0)          # its empty first segment, written with V1
    log.alter_topic("t", {"value.schema": V2})
    _produce(tmp_path, "t", [{"user": "a", "n": 1, "country": "NL"}])
    assert _segments(tmp_path, "t") == ["00000000000000000000.log"]
    assert arrowlog.replay(str(tmp_path), "t").to_arrow().column("country").to_pylist() == ["NL"]
    log.close()


@pytest.mark.parametrize("new, why", [
    (pa.schema([("user", pa.int64(), False), ("n", pa.int32(), False)]), "field 'user' changes type"),
    (pa.schema([("user", pa.string(), False), ("n", pa.string(), False)]), "field 'n' changes type"),
])
def test_a_change_that_does_not_widen_is_refused_and_changes_nothing(tmp_path, new, why):
    log = LogDir(tmp_path)
    log.create_topic("t", 1, {"value.schema": V1})
    _produce(tmp_path, "t", [{"user": "a", "n": 1}])
    with pytest.raises(ConfigError, match=why):
        log.alter_topic("t", {"value.schema": new})
    assert generation(LogDir(tmp_path).topic("t").value_schema) == 0
    assert arrowlog.replay(str(tmp_path), "t").to_arrow().schema.field("n").type == pa.int32()
    log.close()


def test_a_dropped_or_narrower_field_keeps_the_stored_column(tmp_path):
    log = LogDir(tmp_path)
    log.create_topic("t", 1, {"value.schema": V2})
    t = log.alter_topic("t", {"value.schema": pa.schema([("user", pa.string(), False), ("n", pa.int32(), False)])})
    assert t.value_schema.names == ["user", "n", "country"]
    assert t.value_schema.field("n").type == pa.int64()
    # the same schema again is not a new generation
    assert generation(log.alter_topic("t", {"value.schema": V2}).value_schema) == generation(t.value_schema)
    log.close()


def test_an_untyped_topic_does_not_evolve(tmp_path):
    log = LogDir(tmp_path)
    log.create_topic("raw", 1)
    with pytest.raises(ConfigError, match="stores bytes values"):
        log.alter_topic("raw", {"value.schema": V1})
    log.close()


def test_the_generation_is_kept_in_topic_json_and_rebuilt_from_segments(evolved):
    meta = json.load(open(os.path.join(evolved, "topics", "clicks", "topic.json")))
    assert meta["config"]["value.schema"]["metadata"] == {GENERATION.decode(): "1"}
    os.unlink(os.path.join(evolved, "topics", "clicks", "topic.json"))
    with open(os.path.join(evolved, "topics", "clicks", "topic.json"), "w") as f:
        f.write("{damaged")
    with LogDir(evolved) as log:
        log.repair_topic("clicks")
        assert log.topic("clicks").value_schema.names == ["user", "n", "country"]
        assert generation(log.topic("clicks").value_schema) == 1
    assert arrowlog.replay(str(evolved), "clicks").to_arrow().column("country").to_pylist() == [None, None, "NL"]


def test_compaction_rewrites_frames_of_an_older_generation(tmp_path):
    log = LogDir(tmp_path)
    # zstd: frames are written through the IPC stream writer, with their own generation's schema
    log.create_topic("c", 1, {"value.schema": V1, "cleanup.policy": "compact", "segment.bytes": 4096,
                             "compression.type": "zstd"})
    with Producer(str(tmp_path)) as p:
        for i in range(200):
            p.produce("c", key=f"k{i % 5}", value=json.dumps({"user": f"u{i}", "n": i}))
            p.flush()
    log.alter_topic("c", {"value.schema": V2})
    with Producer(str(tmp_path)) as p:
        p.produce("c", key="k0", value=json.dumps({"user": "last", "n": 1000, "country": "NL"}))
        p.flush()
    log.compact("c")
    table = arrowlog.replay(str(tmp_path), "c", latest_per_key=True).to_arrow()
    assert sorted(table.column("user").to_pylist()) == ["last", "u196", "u197", "u198", "u199"]
    assert table.column("country").to_pylist().count("NL") == 1
    log.close()


def test_a_writer_of_an_empty_partition_follows_its_re_created_segment(tmp_path):
    """This LogDir holds the writer of an empty partition when another one (as another
    process would) evolves the topic and re-creates that empty segment with the new
    header: the next append goes to the new file, not to the replaced one."""
    log = LogDir(tmp_path)
    log.create_topic("t", 1, {"value.schema": V1})
    mine = log.topic("t").partition(0)
    mine._writer_for(mine.state.snapshot())     # its writer is open, as before an append
    other = LogDir(tmp_path)
    other.alter_topic("t", {"value.schema": V2})
    other.topic("t").partition(0).append(_batch(V2, {"user": "b", "n": 7, "country": "FR"}))
    other.close()
    mine.append(_batch(V1, {"user": "c", "n": 3}))
    log.close()
    table = arrowlog.replay(str(tmp_path), "t").to_arrow()
    assert table.select(["user", "country"]).to_pylist() == [{"user": "b", "country": "FR"},
                                                              {"user": "c", "country": None}]


def _batch(schema, row):
    return pa.RecordBatch.from_arrays(
        [pa.array([0], pa.timestamp("ms", tz="UTC")), pa.array([None], pa.binary()),
         pa.array([row], pa.struct(list(schema))),
         pa.array([None], pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])))],
        names=["timestamp", "key", "value", "headers"])
