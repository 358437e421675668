"""replay(..., value_format="json"): JSON values as typed Arrow columns, parsed by pyarrow.json in one pass."""

import json

import duckdb
import pyarrow as pa
import pytest

import arrowlog
from arrowlog._json import parse_json_values
from arrowlog.errors import ConfigError, InvalidRecordError

ITEMS = ["espresso", "grinder", "kettle"]


def orders(n):
    return [{"orderId": f"o-{i}", "item": ITEMS[i % 3], "quantity": i % 4 + 1, "total": round(i * 1.25, 2)}
            for i in range(n)]


@pytest.fixture
def data(tmp_path):
    d = str(tmp_path / "data")
    with arrowlog.Producer({"log.dir": d, "num.partitions": 2}) as p:
        for i, o in enumerate(orders(3000)):
            p.produce("orders", json.dumps(o).encode(), key=str(i).encode())
    return d


def expected_totals(n):
    sums = {}
    for o in orders(n):
        sums[o["item"]] = sums.get(o["item"], 0.0) + o["total"]
    return sums


def test_json_values_are_typed_columns(data):
    t = arrowlog.replay(data, "orders", value_format="json").to_arrow()
    assert t.num_rows == 3000
    assert t.schema.names == ["partition", "offset", "timestamp", "key", "orderId", "item", "quantity", "total",
                              "headers"]
    assert t.schema.field("quantity").type == pa.int64()
    assert t.schema.field("total").type == pa.float64()
    assert t.schema.field("item").type == pa.string()
    by_order = {r["orderId"]: r for r in t.select(["orderId", "item", "quantity", "total"]).to_pylist()}
    assert by_order["o-7"] == {"orderId": "o-7", "item": "grinder", "quantity": 4, "total": 8.75}


def test_duckdb_groups_json_fields_without_decode(data):
    r = arrowlog.replay(data, "orders", value_format="json")  # noqa: F841 (duckdb finds it by name)
    rows = duckdb.sql("select item, sum(total) from r group by item order by item").fetchall()
    want = expected_totals(3000)
    assert [item for item, _ in rows] == sorted(want)
    for item, total in rows:
        assert total == pytest.approx(want[item])


def test_parsing_never_calls_json_loads_per_record(data, monkeypatch):
    calls = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda *a, **k: calls.append(1) or real(*a, **k))
    t = arrowlog.replay(data, "orders", value_format="json").to_arrow()
    assert t.num_rows == 3000
    assert len(calls) < 10  # topic metadata at most, never once per record


def test_value_schema_fixes_types_and_streams(data):
    schema = pa.schema([("item", pa.string()), ("total", pa.float32())])
    r = arrowlog.replay(data, "orders", value_format="json", value_schema=schema, columns=["item", "total"])
    assert r.schema == schema
    batches = list(r.to_reader())
    assert len(batches) >= 2  # one per stored frame and partition, not one parse of everything
    t = pa.Table.from_batches(batches)
    assert t.schema == schema and t.num_rows == 3000
    assert sum(t.column("total").to_pylist()) == pytest.approx(sum(expected_totals(3000).values()), rel=1e-5)


def test_unknown_column_with_value_schema_is_refused_early(data):
    with pytest.raises(ConfigError, match="unknown replay column"):
        arrowlog.replay(data, "orders", value_format="json", value_schema=pa.schema([("item", pa.string())]),
                        columns=["nope"])


def test_record_column_names_get_a_prefix_and_odd_values_parse(tmp_path):
    d = str(tmp_path / "d")
    values = [b'{"offset": 5, "timestamp": "t", "n": 1}', None, b"", b'{\n  "n": 2.5\n}']
    with arrowlog.Producer({"log.dir": d}) as p:
        for v in values:
            p.produce("t", v)
    t = arrowlog.replay(d, "t", value_format="json").to_arrow()
    assert "value_offset" in t.schema.names and "value_timestamp" in t.schema.names
    assert t.column("offset").to_pylist() == [0, 1, 2, 3]
    assert t.column("value_offset").to_pylist() == [5, None, None, None]
    assert t.column("n").to_pylist() == [1.0, None, None, 2.5]


@pytest.mark.parametrize("bad", [b"[1, 2]", b"not json", b'{"a": 1} {"a": 2}'])
def test_a_value_that_is_not_one_json_object_is_an_invalid_record(tmp_path, bad):
    d = str(tmp_path / "d")
    with arrowlog.Producer({"log.dir": d}) as p:
        p.produce("t", b'{"a": 1}')
        p.produce("t", bad)
    with pytest.raises(InvalidRecordError, match="value_format='json'.*one JSON object"):
        arrowlog.replay(d, "t", value_format="json").to_arrow()


def test_bad_options_are_config_errors(data, tmp_path):
    with pytest.raises(ConfigError, match="value_format"):
        arrowlog.replay(data, "orders", value_format="avro")
    with pytest.raises(ConfigError, match="value_schema"):
        arrowlog.replay(data, "orders", value_schema=pa.schema([("a", pa.int64())]))
    log = arrowlog.LogDir(str(tmp_path / "typed"))
    log.create_topic("typed", config={"value.schema": {"fields": [{"name": "a", "type": "int64"}]}})
    with pytest.raises(ConfigError, match="typed values"):
        arrowlog.replay(log, "typed", value_format="json")
    log.close()


def test_parse_json_values_empty_and_chunked():
    assert parse_json_values(pa.array([], pa.binary())).num_rows == 0
    chunked = pa.chunked_array([pa.array([b'{"a": 1}'], pa.binary()), pa.array([b'{"a": 2}'], pa.binary())])
    assert parse_json_values(chunked).column("a").to_pylist() == [1, 2]


def test_parse_json_values_with_a_schema_for_typed_values():
    schema = pa.schema([("id", pa.int64()), ("name", pa.string())])
    values = pa.array([b'{"id": 1, "name": "a"}', b'{"id": 2}'], pa.binary())
    t = parse_json_values(values, schema)
    assert t.schema == schema and t.to_pylist() == [{"id": 1, "name": "a"}, {"id": 2, "name": None}]
    with pytest.raises(InvalidRecordError, match="one JSON object"):
        parse_json_values(pa.array([b'{"id": 1, "extra": true}'], pa.binary()), schema, unexpected="error")
    with pytest.raises(InvalidRecordError):
        parse_json_values(pa.array([b'{"id": "x"}'], pa.binary()), schema)
