"""MirrorTypes against a registry whose answer lacks what a codec needs."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("confluent_kafka.schema_registry")
pytest.importorskip("fastavro")

from confluent_kafka.schema_registry import RegisteredSchema, Schema  # noqa: E402

from arrowlog.mirror import MirrorError  # noqa: E402
from arrowlog.registry.mirror import MirrorTypes  # noqa: E402

AVRO = json.dumps({"type": "record", "name": "r", "fields": [{"name": "a", "type": "long"}]})


class OneVersion:
    """A registry client that knows one subject, with one latest version."""

    def __init__(self, latest: RegisteredSchema):
        self.latest = latest

    def get_latest_version(self, subject: str) -> RegisteredSchema:
        return self.latest


def kafka_source_types(latest: RegisteredSchema) -> MirrorTypes:
    types = MirrorTypes("http://127.0.0.1:9", MirrorError)
    types.client = OneVersion(latest)  # type: ignore[assignment]
    return types


def test_a_registered_schema_decodes_the_topic():
    types = kafka_source_types(RegisteredSchema("t-value", 1, 7, None, Schema(AVRO, "AVRO")))
    config = types.on_topic(object(), False, "t", {})
    assert config["value.schema"].names == ["a"]
    assert types.decode["t"].schema_id == 7


@pytest.mark.parametrize("schema_id, text, missing", [(None, AVRO, "no id"), (7, None, "no schema text")])
def test_a_latest_version_without_id_or_text_is_a_mirror_error(schema_id, text, missing):
    types = kafka_source_types(RegisteredSchema("t-value", 1, schema_id, None, Schema(text, "AVRO")))
    with pytest.raises(MirrorError, match=f"latest version of 't-value' has {missing}"):
        types.on_topic(object(), False, "t", {})
    assert "t" not in types.decode
