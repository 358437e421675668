"""confluent-kafka's schema-registry clients against ``arrowlog serve --registry-listen``:
Avro and JSON producers write typed topics (stored as columns, not bytes), the
matching deserializers read back what was produced (Avro byte-exact), and
records that do not decode or match are refused with INVALID_RECORD.

A PHP producer (php-rdkafka) is not packaged by Debian here: the JSONSerializer
producer stands in for it (JSON payloads, the same wire format).
"""

from __future__ import annotations

import json
import time

import pytest

import arrowlog

from .registry_server import RegistryServer
from .wireclient import make_batch
from .wireclient import produce as wire_produce

ck = pytest.importorskip("confluent_kafka")
pytest.importorskip("fastavro")
pytest.importorskip("aiohttp")
sr = pytest.importorskip("confluent_kafka.schema_registry")
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer  # noqa: E402
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer  # noqa: E402
from confluent_kafka.serialization import MessageField, SerializationContext  # noqa: E402

DEADLINE_S = 60.0

CLICK = json.dumps({"type": "record", "name": "Click", "namespace": "shop", "fields": [
    {"name": "user", "type": "string"},
    {"name": "n", "type": "long"},
    {"name": "count", "type": "int"},
    {"name": "score", "type": "double"},
    {"name": "ratio", "type": "float"},
    {"name": "ok", "type": "boolean"},
    {"name": "blob", "type": "bytes"},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["VIEW", "BUY"]}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tag", "type": ["null", "string"], "default": None},
]})


def click(i: int) -> dict:
    import datetime as dt

    return {"user": f"user-{i}", "n": i * 1_000_003 - 7, "count": -i, "score": i / 3, "ratio": 0.5,
            "ok": i % 2 == 0, "blob": bytes([i % 256]) * (i % 5), "kind": ["VIEW", "BUY"][i % 2],
            "at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=i),
            "tag": None if i % 3 else f"t{i}"}


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    srv = RegistryServer(tmp_path_factory.mktemp("typed") / "data")
    yield srv
    assert srv.stop() == 0, srv.log()


def batch_of(values: list) -> bytes:
    """One Kafka record batch holding ``values``."""
    import pyarrow as pa

    from arrowlog._native.kafka import encode_batch

    n = len(values)
    return encode_batch(pa.RecordBatch.from_pydict({
        "offset": pa.array(range(n), pa.int64()),
        "timestamp": pa.array([1_767_225_600_000] * n, pa.timestamp("ms")),
        "key": pa.array([None] * n, pa.binary()), "value": pa.array(values, pa.binary()),
        "headers": pa.nulls(n, pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])))}))


def produce(srv, topic: str, values: list) -> list:
    """Produce raw values; the delivery errors (None for each success)."""
    p = ck.Producer({"bootstrap.servers": srv.bootstrap, "linger.ms": 100, "message.send.max.retries": 0})
    errors = []
    for v in values:
        p.produce(topic, value=v, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(DEADLINE_S) == 0
    return errors


def consume(srv, topic: str, n: int) -> list:
    c = ck.Consumer({"bootstrap.servers": srv.bootstrap, "group.id": "g-" + topic,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([ck.TopicPartition(topic, 0, 0)])
    out, end = [], time.monotonic() + DEADLINE_S
    try:
        while len(out) < n and time.monotonic() < end:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is None, m.error()
                out.append(m.value())
    finally:
        c.close()
    assert len(out) == n, f"consumed {len(out)} of {n}"
    return out


def test_avro_producer_writes_columns_and_the_deserializer_reads_them_back_byte_exact(typed, topic):
    client = sr.SchemaRegistryClient({"url": typed.url})
    ser = AvroSerializer(client, CLICK)
    ctx = SerializationContext(topic, MessageField.VALUE)
    records = [click(i) for i in range(500)]
    wire = [ser(r, ctx) for r in records]
    assert produce(typed, topic, wire) == [None] * len(wire)

    table = arrowlog.replay(str(typed.data_dir), topic).to_arrow()
    assert "value" not in table.column_names                   # typed columns, no bytes
    assert table.column("user").to_pylist() == [r["user"] for r in records]
    assert table.column("n").type == "int64" and table.column("count").type == "int32"
    assert table.column("kind").to_pylist() == [r["kind"] for r in records]
    assert table.column("tag").null_count == sum(r["tag"] is None for r in records)
    assert str(table.column("at").type) == "timestamp[ms]"

    got = consume(typed, topic, len(wire))
    assert got == wire                                          # byte-exact: id and canonical Avro body
    de = AvroDeserializer(client)
    assert [de(v, ctx) for v in got] == records


def test_json_producer_writes_columns_and_the_deserializer_reads_them_back(typed, topic):
    schema = json.dumps({"type": "object", "title": "Order", "properties": {
        "id": {"type": "integer"}, "item": {"type": "string"}, "price": {"type": "number"},
        "paid": {"type": "boolean"}, "note": {"type": ["string", "null"]}},
        "required": ["id", "item", "price", "paid"]})
    client = sr.SchemaRegistryClient({"url": typed.url})
    ser = JSONSerializer(schema, client)
    ctx = SerializationContext(topic, MessageField.VALUE)
    records = [{"id": i, "item": f"item-{i}", "price": i * 1.25, "paid": bool(i % 2), "note": f"n{i}"}
               for i in range(50)]
    records[3]["note"] = None
    del records[3]["note"]
    assert produce(typed, topic, [ser(r, ctx) for r in records]) == [None] * len(records)

    table = arrowlog.replay(str(typed.data_dir), topic).to_arrow()
    assert "value" not in table.column_names
    assert table.column("id").to_pylist() == list(range(50))
    assert table.column("price").type == "double"
    assert table.column("note").null_count == 1

    de = JSONDeserializer(schema)
    assert [de(v, ctx) for v in consume(typed, topic, len(records))] == records

    sid = ser(records[0], ctx)[:5]
    for what, body in {"not JSON": b"{nope", "a required property missing": b'{"id": 1}',
                       "a wrong type": b'{"id": "x", "item": "a", "price": 1, "paid": true}',
                       "not an object": b"[1, 2]"}.items():
        errors = produce(typed, topic, [sid + body])
        assert errors[0] is not None and errors[0].code() == ck.KafkaError.INVALID_RECORD, what
    assert arrowlog.replay(str(typed.data_dir), topic).num_records == len(records)


def test_records_that_do_not_decode_or_match_are_refused_and_nothing_is_stored(typed, topic):
    client = sr.SchemaRegistryClient({"url": typed.url})
    ctx = SerializationContext(topic, MessageField.VALUE)
    good = AvroSerializer(client, CLICK)(click(1), ctx)
    assert produce(typed, topic, [good]) == [None]
    other = AvroSerializer(client, json.dumps({"type": "record", "name": "Other", "fields": [
        {"name": "x", "type": "int"}]}))(
        {"x": 1}, SerializationContext(topic + "-other", MessageField.VALUE))
    bad = {
        "opaque bytes": b"hello",
        "short header": b"\x00\x00\x00",
        "magic not 0": b"\x01" + good[1:],
        "another schema id": other,
        "truncated body": good[:-1],
        "trailing bytes": good + b"\x00",
        "enum index out of range": None,
    }
    # the enum index is the zig-zag varint just before the timestamp: corrupt it by re-encoding
    import io
    import struct

    import fastavro

    raw_schema = json.loads(CLICK)
    raw_schema["fields"][7]["type"] = "int"                   # write the enum slot as a plain int
    raw_schema["fields"][8]["type"] = "long"
    buf = io.BytesIO()
    row = dict(click(1), kind=5, at=0)
    fastavro.schemaless_writer(buf, fastavro.parse_schema(raw_schema), row)
    bad["enum index out of range"] = good[:5] + buf.getvalue()
    for what, value in bad.items():
        errors = produce(typed, topic, [value])
        assert errors[0] is not None and errors[0].code() == ck.KafkaError.INVALID_RECORD, what
    assert struct.unpack(">i", other[1:5])[0] != struct.unpack(">i", good[1:5])[0]
    # one batch with one bad record among good ones is refused whole
    reply = wire_produce(typed, topic, batch_of([good, b"nope", good]))
    assert reply["error_code"] == ck.KafkaError.INVALID_RECORD and "record 1" in reply["error_message"]
    assert arrowlog.replay(str(typed.data_dir), topic).num_records == 1
    assert wire_produce(typed, topic, batch_of([good, good]))["error_code"] == 0
    assert arrowlog.replay(str(typed.data_dir), topic).num_records == 3


def test_kafka_clients_cannot_write_the_schemas_topic(typed):
    reply = wire_produce(typed, "_schemas", make_batch(1))
    assert reply["error_code"] == ck.KafkaError.INVALID_RECORD and "REST API" in reply["error_message"]


def test_an_incompatible_schema_is_refused_by_the_registry_and_never_produced(typed, topic):
    client = sr.SchemaRegistryClient({"url": typed.url})
    ctx = SerializationContext(topic, MessageField.VALUE)
    assert produce(typed, topic, [AvroSerializer(client, CLICK)(click(0), ctx)]) == [None]
    changed = json.loads(CLICK)
    changed["fields"].append({"name": "required_new", "type": "string"})    # no default: not BACKWARD
    with pytest.raises(Exception) as info:
        AvroSerializer(client, json.dumps(changed))(dict(click(1), required_new="x"), ctx)
    assert "409" in str(info.value) or "incompatible" in str(info.value).lower()
    assert arrowlog.replay(str(typed.data_dir), topic).num_records == 1


def test_a_schema_without_a_column_form_leaves_the_topic_opaque(typed, topic):
    nested = json.dumps({"type": "record", "name": "Outer", "fields": [
        {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]}}]})
    client = sr.SchemaRegistryClient({"url": typed.url})
    ctx = SerializationContext(topic, MessageField.VALUE)
    value = AvroSerializer(client, nested)({"inner": {"x": 7}}, ctx)
    assert produce(typed, topic, [value]) == [None]
    assert consume(typed, topic, 1) == [value]
    assert arrowlog.replay(str(typed.data_dir), topic).to_arrow().column("value").to_pylist() == [value]


def test_create_topics_binds_a_named_subject_and_refuses_an_unknown_one(typed, topic):
    from confluent_kafka.admin import AdminClient, NewTopic

    client = sr.SchemaRegistryClient({"url": typed.url})
    subject = topic + "-clicks"
    sid = client.register_schema(subject, sr.Schema(CLICK, "AVRO"))
    admin = AdminClient({"bootstrap.servers": typed.bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 1, config={"value.schema.subject": subject})]).values():
        fut.result(DEADLINE_S)
    ctx = SerializationContext(topic, MessageField.VALUE)
    value = AvroSerializer(client, CLICK, conf={"auto.register.schemas": False, "use.latest.version": True,
                                                "subject.name.strategy": lambda c, name: subject})(click(2), ctx)
    assert value[1:5] == sid.to_bytes(4, "big")
    assert produce(typed, topic, [value]) == [None]
    assert arrowlog.replay(str(typed.data_dir), topic).to_arrow().column("user").to_pylist() == ["user-2"]

    missing = topic + "-x"
    futs = admin.create_topics([NewTopic(missing, 1, 1, config={"value.schema.subject": "no-such-subject"})])
    with pytest.raises(ck.KafkaException) as info:
        futs[missing].result(DEADLINE_S)
    assert info.value.args[0].code() == ck.KafkaError.INVALID_CONFIG
    assert "no-such-subject" in info.value.args[0].str()


def _library_topic(data, name: str, schema, rows: list[dict]) -> None:
    import pyarrow as pa

    from arrowlog.storage import LogDir

    with LogDir(str(data)) as d:
        t = d.create_topic(name, partitions=1, config={"value.schema": schema})
        t.partition(0).append(pa.RecordBatch.from_pydict({
            "timestamp": pa.array([1_767_225_600_000] * len(rows), pa.timestamp("ms")),
            "key": pa.array([None] * len(rows), pa.binary()),
            "value": pa.array(rows, pa.struct(list(schema))),
            "headers": pa.nulls(len(rows), pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])))}))


def test_library_typed_topics_register_themselves_for_kafka_clients(tmp_path):
    import datetime as dt

    import pyarrow as pa

    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), ("name", pa.string()),
                        ("at", pa.timestamp("ms"))])
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rows = [{"id": 1, "name": "a", "at": at}, {"id": 2, "name": None, "at": at}]
    data = tmp_path / "data"
    _library_topic(data, "before", schema, rows)                          # exists at start-up
    with RegistryServer(data) as srv:
        _library_topic(data, "after", schema, rows)                       # created while serving
        _library_topic(data, "odd", pa.schema([("tiny", pa.int8())]), [{"tiny": 1}])
        client = sr.SchemaRegistryClient({"url": srv.url})
        assert {"before-value"} <= set(client.get_subjects())
        for name in ("before", "after"):
            ctx = SerializationContext(name, MessageField.VALUE)
            de = AvroDeserializer(client)
            assert [de(v, ctx) for v in consume(srv, name, 2)] == rows
            ser = AvroSerializer(client, conf={"auto.register.schemas": False, "use.latest.version": True})
            assert produce(srv, name, [ser({"id": 3, "name": "c", "at": at}, ctx)]) == [None]
            assert arrowlog.replay(str(data), name).to_arrow().column("id").to_pylist() == [1, 2, 3]
        reply = wire_produce(srv, "odd", make_batch(1))                  # a column with no Avro form
        assert reply["error_code"] == ck.KafkaError.INVALID_RECORD and "int8" in reply["error_message"]


def test_schema_registry_client_api_end_to_end(typed, topic):
    client = sr.SchemaRegistryClient({"url": typed.url})
    subject = topic + "-value"
    v1 = sr.Schema(json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}), "AVRO")
    v2 = sr.Schema(json.dumps({"type": "record", "name": "R", "fields": [
        {"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": ""}]}), "AVRO")
    bad = sr.Schema(json.dumps({"type": "record", "name": "R", "fields": [
        {"name": "a", "type": "int"}, {"name": "c", "type": "string"}]}), "AVRO")
    id1 = client.register_schema(subject, v1)
    assert client.test_compatibility(subject, v2) is True
    assert client.test_compatibility(subject, bad) is False
    id2 = client.register_schema(subject, v2)
    assert subject in client.get_subjects()
    assert client.get_versions(subject) == [1, 2]
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, id2)
    assert client.get_version(subject, 1).schema_id == id1
    assert client.lookup_schema(subject, v1).version == 1
    assert json.loads(client.get_schema(id1).schema_str) == json.loads(v1.schema_str)
    with pytest.raises(sr.SchemaRegistryError) as info:
        client.register_schema(subject, bad)
    assert info.value.http_status_code == 409
    client.set_compatibility(subject, "NONE")
    assert client.get_compatibility(subject) == "NONE"
    assert client.register_schema(subject, bad) not in (id1, id2)
    assert client.delete_version(subject, 3) == 3
    assert client.delete_subject(subject) == [1, 2]
    assert client.delete_subject(subject, permanent=True) == [1, 2, 3]
    with pytest.raises(sr.SchemaRegistryError) as info:
        client.get_versions(subject)
    assert (info.value.http_status_code, info.value.error_code) == (404, 40401)
    with pytest.raises(sr.SchemaRegistryError) as info:
        sr.SchemaRegistryClient({"url": typed.url}).get_schema(987_654)
    assert info.value.error_code == 40403


def test_a_typed_topic_keeps_its_schema_after_its_subject_is_hard_deleted_and_a_restart(tmp_path):
    data = tmp_path / "data"
    with RegistryServer(data) as srv:
        client = sr.SchemaRegistryClient({"url": srv.url})
        ctx = SerializationContext("kept", MessageField.VALUE)
        value = AvroSerializer(client, CLICK)(click(4), ctx)
        assert produce(srv, "kept", [value]) == [None]
        client.delete_subject("kept-value")
        client.delete_subject("kept-value", permanent=True)
    with RegistryServer(data) as srv:
        client = sr.SchemaRegistryClient({"url": srv.url})
        assert client.get_subjects() == []
        got = consume(srv, "kept", 1)
        assert got == [value]
        assert AvroDeserializer(client)(got[0], SerializationContext("kept", MessageField.VALUE)) == click(4)


def test_mirror_carries_a_typed_topic_to_kafka_and_back(typed, tmp_path):
    import datetime as dt

    import pyarrow as pa

    from arrowlog.mirror import mirror

    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), ("name", pa.string()),
                        ("at", pa.timestamp("ms"))])
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    rows = [{"id": i, "name": None if i % 3 == 0 else f"n{i}", "at": at} for i in range(40)]
    name = "mirrored-typed"
    _library_topic(tmp_path / "src", name, schema, rows)
    conf = {"schema.registry.url": typed.url}
    quiet = lambda line: None  # noqa: E731
    mirror(str(tmp_path / "src"), f"kafka://{typed.bootstrap}", name, kafka_config=conf, progress=quiet)

    client = sr.SchemaRegistryClient({"url": typed.url})
    de = AvroDeserializer(client)
    ctx = SerializationContext(name, MessageField.VALUE)
    assert [de(v, ctx) for v in consume(typed, name, len(rows))] == rows              # wire format on Kafka
    assert arrowlog.replay(str(typed.data_dir), name).to_arrow().column("id").to_pylist() == list(range(40))

    mirror(f"kafka://{typed.bootstrap}", str(tmp_path / "back"), name, kafka_config=conf, progress=quiet)
    back = arrowlog.replay(str(tmp_path / "back"), name).to_arrow()
    assert back.select(["id", "name", "at"]).to_pylist() == \
        arrowlog.replay(str(tmp_path / "src"), name).to_arrow().select(["id", "name", "at"]).to_pylist()

    with pytest.raises(Exception, match="typed"):      # without the registry it is refused, as before
        mirror(str(tmp_path / "src"), f"kafka://{typed.bootstrap}", name, state=str(tmp_path / "s.json"),
               progress=quiet)


# -- schema evolution of a typed topic (docs/REGISTRY.md, storage/evolution.py) --------------

V1 = {"type": "record", "name": "Visit", "namespace": "shop", "fields": [
    {"name": "user", "type": "string"}, {"name": "n", "type": "int"}]}


def _schema(change: str | None) -> str:
    s = json.loads(json.dumps(V1))
    if change == "add optional":
        s["fields"].append({"name": "tag", "type": ["null", "string"], "default": None})
    elif change == "add required":
        s["fields"].append({"name": "country", "type": "string"})
    elif change == "remove field":
        s["fields"] = s["fields"][:1]
    elif change == "widen int to long":
        s["fields"][1]["type"] = "long"
    elif change == "string to int":
        s["fields"][0]["type"] = "int"
    return json.dumps(s)


def _record(change: str | None, i: int) -> dict:
    r = {"user": 7 if change == "string to int" else f"u{i}", "n": i}
    if change == "add optional":
        r["tag"] = f"t{i}"
    elif change == "add required":
        r["country"] = "NL"
    elif change == "remove field":
        del r["n"]
    elif change == "widen int to long":
        r["n"] = 2**40 + i
    return r


# Confluent's table for each change: registered under the mode, or 409. NONE registers anything;
# what the stored columns cannot widen to (a string becoming an int) is then refused at Produce.
EVOLUTION = {
    "add optional": {"BACKWARD": True, "FORWARD": True, "FULL": True, "NONE": True, "FULL_TRANSITIVE": True},
    "add required": {"BACKWARD": False, "FORWARD": True, "FULL": False, "NONE": True},
    "remove field": {"BACKWARD": True, "FORWARD": False, "FULL": False, "NONE": True},
    "widen int to long": {"BACKWARD": True, "FORWARD": False, "FULL": False, "NONE": True,
                          "BACKWARD_TRANSITIVE": True},
    "string to int": {"BACKWARD": False, "FORWARD": False, "FULL": False, "NONE": True},
}
CASES = [(change, mode, ok) for change, modes in EVOLUTION.items() for mode, ok in modes.items()]


@pytest.mark.parametrize("change, mode, registers", CASES, ids=[f"{c}-{m}" for c, m, _ in CASES])
def test_evolution_of_stored_columns_follows_the_compatibility_mode(typed, topic, change, mode, registers):
    client = sr.SchemaRegistryClient({"url": typed.url})
    ctx = SerializationContext(topic, MessageField.VALUE)
    old = AvroSerializer(client, _schema(None))(_record(None, 0), ctx)
    assert produce(typed, topic, [old]) == [None]
    client.set_compatibility(f"{topic}-value", mode)
    if not registers:
        with pytest.raises(sr.error.SchemaRegistryError) as info:
            AvroSerializer(client, _schema(change))(_record(change, 1), ctx)
        assert info.value.http_status_code == 409
        assert arrowlog.replay(str(typed.data_dir), topic).num_records == 1
        return
    new = AvroSerializer(client, _schema(change))(_record(change, 1), ctx)
    errors = produce(typed, topic, [new])
    table = arrowlog.replay(str(typed.data_dir), topic).to_arrow()
    if change == "string to int":     # registered under NONE, but the stored column is a string
        assert errors[0] is not None and errors[0].code() == ck.KafkaError.INVALID_RECORD
        reply = wire_produce(typed, topic, batch_of([new]))     # the reason, which librdkafka does not show
        assert reply["error_code"] == ck.KafkaError.INVALID_RECORD
        assert "field 'user' changes type" in reply["error_message"]
        assert table.num_rows == 1 and table.column("user").type == "string"
        return
    assert errors == [None]
    assert table.num_rows == 2
    de = AvroDeserializer(client)
    assert [de(v, ctx) for v in consume(typed, topic, 2)] == [_record(None, 0), _record(change, 1)]
    if change == "add optional":
        assert table.column("tag").to_pylist() == [None, "t1"]
    elif change == "add required":
        assert table.column("country").to_pylist() == [None, "NL"]
    elif change == "remove field":
        assert table.column("n").to_pylist() == [0, None]
    elif change == "widen int to long":
        assert table.column("n").type == "int64" and table.column("n").to_pylist() == [0, 2**40 + 1]


def test_avro_clients_across_an_evolution_read_exactly_what_was_produced(typed, topic):
    """v1 records, then v2 (a new optional field) records, then v1 records again from a
    producer that was not upgraded: replay, DuckDB and a Kafka consumer read all of them."""
    client = sr.SchemaRegistryClient({"url": typed.url})
    ctx = SerializationContext(topic, MessageField.VALUE)
    v1 = AvroSerializer(client, _schema(None))
    v2 = AvroSerializer(client, _schema("add optional"))
    first = [v1(_record(None, i), ctx) for i in range(3)]
    assert produce(typed, topic, first) == [None] * 3
    second = [v2(_record("add optional", i), ctx) for i in range(3, 6)]
    assert produce(typed, topic, second) == [None] * 3
    late = [v1(_record(None, 6), ctx)]
    assert produce(typed, topic, late) == [None]

    table = arrowlog.replay(str(typed.data_dir), topic).to_arrow()
    assert table.column("user").to_pylist() == [f"u{i}" for i in range(7)]
    assert table.column("tag").to_pylist() == [None] * 3 + ["t3", "t4", "t5"] + [None]
    duckdb = pytest.importorskip("duckdb")
    ds = arrowlog.dataset(str(typed.data_dir), topic)
    assert ds.schema.field("tag").type == "string"
    assert duckdb.sql("SELECT count(*), count(tag) FROM ds").fetchall() == [(7, 3)]

    got = consume(typed, topic, 7)
    assert got[:6] == first + second          # byte-exact, each with the id it was produced with
    de = AvroDeserializer(client)
    assert [de(v, ctx) for v in got] == ([_record(None, i) for i in range(3)]
                                         + [_record("add optional", i) for i in range(3, 6)]
                                         + [dict(_record(None, 6), tag=None)])
    # the late v1 record went into the v2 columns: it comes back as v2, its new field null
    assert got[6][1:5] == second[0][1:5]


def test_a_record_of_another_subject_is_still_refused_after_an_evolution(typed, topic):
    client = sr.SchemaRegistryClient({"url": typed.url})
    ctx = SerializationContext(topic, MessageField.VALUE)
    assert produce(typed, topic, [AvroSerializer(client, _schema(None))(_record(None, 0), ctx)]) == [None]
    assert produce(typed, topic, [AvroSerializer(client, _schema("add optional"))(
        _record("add optional", 1), ctx)]) == [None]
    other = AvroSerializer(client, _schema("add optional"))(
        _record("add optional", 2), SerializationContext(topic + "-x", MessageField.VALUE))
    # the same schema under another subject has the same id: a version of this subject too
    assert produce(typed, topic, [other]) == [None]
    foreign = AvroSerializer(client, json.dumps({"type": "record", "name": "F", "fields": [
        {"name": "z", "type": "int"}]}))({"z": 1}, SerializationContext(topic + "-y", MessageField.VALUE))
    reply = wire_produce(typed, topic, batch_of([foreign]))
    assert reply["error_code"] == ck.KafkaError.INVALID_RECORD
    assert "not a version of subject" in reply["error_message"]
    assert arrowlog.replay(str(typed.data_dir), topic).num_records == 3


def _append_rows(data, name: str, schema, rows: list[dict]) -> None:
    import pyarrow as pa

    from arrowlog.storage import LogDir

    with LogDir(str(data)) as d:
        d.topic(name).partition(0).append(pa.RecordBatch.from_pydict({
            "timestamp": pa.array([1_767_225_600_000] * len(rows), pa.timestamp("ms")),
            "key": pa.array([None] * len(rows), pa.binary()),
            "value": pa.array(rows, pa.struct(list(schema))),
            "headers": pa.nulls(len(rows), pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])))}))


def test_a_library_topic_evolved_by_alter_topic_registers_its_new_version(typed, topic, tmp_path):
    import pyarrow as pa

    from arrowlog.mirror import mirror
    from arrowlog.storage import LogDir

    v1 = pa.schema([pa.field("id", pa.int64(), nullable=False), ("name", pa.string())])
    v2 = pa.schema([pa.field("id", pa.int64(), nullable=False), ("name", pa.string()), ("country", pa.string())])
    old = [{"id": 1, "name": "a"}, {"id": 2, "name": None}]
    new = [{"id": 3, "name": "c", "country": "NL"}]
    mirrored = topic + "-m"
    for data, name in ((typed.data_dir, topic), (tmp_path / "src", mirrored)):
        _library_topic(data, name, v1, old)
        if name == topic:
            consume(typed, topic, 2)                  # registered as <topic>-value version 1 on first Fetch
        with LogDir(str(data)) as d:
            d.alter_topic(name, {"value.schema": v2})
        _append_rows(data, name, v2, new)

    client = sr.SchemaRegistryClient({"url": typed.url})
    de = AvroDeserializer(client)
    ctx = SerializationContext(topic, MessageField.VALUE)
    assert [de(v, ctx) for v in consume(typed, topic, 3)] == old + new     # each generation with its own id
    assert client.get_versions(f"{topic}-value") == [1, 2]

    # the mirror writes the newest columns to Kafka, older records with nulls
    mirror(str(tmp_path / "src"), f"kafka://{typed.bootstrap}", mirrored,
           kafka_config={"schema.registry.url": typed.url}, progress=lambda line: None)
    ctx = SerializationContext(mirrored, MessageField.VALUE)
    assert [de(v, ctx) for v in consume(typed, mirrored, 3)] == [dict(r, country=None) for r in old] + new


def test_an_evolved_topic_serves_both_versions_after_kill9_and_a_hard_delete(tmp_path):
    data = tmp_path / "data"
    srv = RegistryServer(data)
    try:
        client = sr.SchemaRegistryClient({"url": srv.url})
        ctx = SerializationContext("ev", MessageField.VALUE)
        values = [AvroSerializer(client, _schema(None))(_record(None, 0), ctx)]
        assert produce(srv, "ev", values) == [None]      # creates the topic with the columns of v1
        values.append(AvroSerializer(client, _schema("add optional"))(_record("add optional", 1), ctx))
        assert produce(srv, "ev", values[1:]) == [None]
    finally:
        srv.proc.kill()                  # kill -9: the evolution and its pin were already durable
        srv.stop()
    with RegistryServer(data) as srv:
        assert consume(srv, "ev", 2) == values
        client = sr.SchemaRegistryClient({"url": srv.url})
        client.delete_subject("ev-value")
        client.delete_subject("ev-value", permanent=True)
    with RegistryServer(data) as srv:
        assert consume(srv, "ev", 2) == values      # each generation's schema is kept with the topic


def test_json_schema_clients_across_an_evolution(typed, topic):
    # a closed content model: an open one may already hold any "note", so adding it is not BACKWARD
    v1 = {"type": "object", "title": "Order", "properties": {"id": {"type": "integer"}, "item": {"type": "string"}},
          "required": ["id", "item"], "additionalProperties": False}
    v2 = json.loads(json.dumps(v1))
    v2["properties"]["note"] = {"type": ["string", "null"]}
    client = sr.SchemaRegistryClient({"url": typed.url})
    ctx = SerializationContext(topic, MessageField.VALUE)
    first = [JSONSerializer(json.dumps(v1), client)({"id": 1, "item": "a"}, ctx)]
    assert produce(typed, topic, first) == [None]
    second = [JSONSerializer(json.dumps(v2), client)({"id": 2, "item": "b", "note": "n"}, ctx)]
    assert produce(typed, topic, second) == [None]
    table = arrowlog.replay(str(typed.data_dir), topic).to_pandas()
    assert table["note"].isna().tolist() == [True, False] and table["note"][1] == "n"
    assert table["id"].tolist() == [1, 2]
    got = consume(typed, topic, 2)
    assert [v[1:5] for v in got] == [first[0][1:5], second[0][1:5]]    # each with the id it was produced with
    de = JSONDeserializer(json.dumps(v2))
    assert [de(v, ctx) for v in got] == [{"id": 1, "item": "a"}, {"id": 2, "item": "b", "note": "n"}]
