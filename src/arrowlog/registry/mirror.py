"""Typed topics across ``arrowlog mirror`` with a Kafka cluster (``schema.registry.url``).

- A data directory's typed topic (``value.schema``) mirrored to Kafka: its Arrow
  schema is registered in the cluster's registry as ``<topic>-value`` (an Avro
  record of its columns) before the destination topic is created, and each
  record is written in the Confluent wire format with that id.
- A Kafka topic whose ``<topic>-value`` subject has a column form, mirrored to a
  data directory: the destination topic is created typed and the wire-format
  records become its columns again (a record with another schema id stops the
  mirror with the reason).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from arrowlog.errors import ArrowlogError, InvalidRecordError
from arrowlog.storage.evolution import conform_value

from .codec import Codec
from .schemas import ParsedSchema, avro_for_arrow


class MirrorTypes:
    def __init__(self, url: str, error: type[Exception]):
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self.client = SchemaRegistryClient({"url": url})
        self.error = error                       # the mirror's MirrorError
        self.encode: dict[str, Codec] = {}       # topic -> codec, directory -> Kafka
        self.decode: dict[str, Codec] = {}       # topic -> codec, Kafka -> directory

    def on_topic(self, source: Any, sink_is_kafka: bool, topic: str, config: dict) -> dict:
        """The destination config of ``topic``, registering or looking up its schema."""
        from confluent_kafka.schema_registry import Schema, SchemaRegistryError

        log = getattr(source, "log", None)
        subject = f"{topic}-value"
        if log is not None:                      # a data directory
            value_schema = log.topic(topic).value_schema
            if value_schema is None:
                return config
            if not sink_is_kafka:
                raise self.error(f"topic {topic!r} stores typed values; mirroring it between data "
                                 "directories is not supported")
            try:
                avro = avro_for_arrow(topic, value_schema)
                sid = self.client.register_schema(subject, Schema(avro, "AVRO"))
            except (ValueError, SchemaRegistryError) as exc:
                raise self.error(f"cannot register typed topic {topic!r} as {subject!r}: {exc}") from None
            self.encode[topic] = Codec(sid, ParsedSchema(avro))
            return config
        if sink_is_kafka:
            return config
        try:
            latest = self.client.get_latest_version(subject)
        except SchemaRegistryError:
            return config                        # no subject: the topic stays bytes
        try:
            parsed = ParsedSchema(latest.schema.schema_str, latest.schema.schema_type)
        except ArrowlogError as exc:
            raise self.error(f"schema {latest.schema_id} of {subject!r}: {exc}") from None
        if parsed.arrow is None:
            return config
        self.decode[topic] = Codec(latest.schema_id, parsed)
        return {**config, "value.schema": parsed.arrow}

    def convert(self, topic: str, batch: pa.RecordBatch) -> pa.RecordBatch:
        codec = self.encode.get(topic) or self.decode.get(topic)
        if codec is None:
            return batch
        i = batch.schema.get_field_index("value")
        value = batch.column(i)
        if topic in self.encode and value.type != codec.type:
            value = conform_value(value, codec.type)   # a frame of an older generation (storage/evolution.py)
        try:
            column = codec.encode(value) if topic in self.encode else codec.decode(value)
        except InvalidRecordError as exc:
            raise self.error(f"topic {topic!r}: {exc}") from None
        return batch.set_column(i, pa.field("value", column.type), column)
