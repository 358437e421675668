"""Typed topics over the Kafka protocol: the broker's calls into the registry.

A topic becomes typed when it is created (auto-created by a Kafka client's
Metadata request, or by CreateTopics) while its TopicNameStrategy subject
``<topic>-value`` (or the subject its ``value.schema.subject`` config names)
has a latest version whose schema maps onto flat columns: the topic is
created with that Arrow schema as its ``value.schema`` and bound to the
schema id (the binding is kept in ``_schemas``). From then on:

- Produce: ``on_produce`` decodes each batch's wire-format values into the
  topic's struct column; a record that does not decode, carries another
  schema id, or does not match refuses the whole request (INVALID_RECORD with
  the reason), so nothing is stored half-typed.
- Fetch: ``on_fetch`` encodes the stored columns back into wire-format values
  with the schema id their frame was written with.

Schema evolution: records of a newer version of the topic's subject evolve the
topic's columns (storage/evolution.py, evolve.py); each generation of the
columns is written with one schema id, kept in the segment header and pinned in
``_schemas``, so Fetch re-encodes every frame with the id it was produced with.

Topics typed by the library (``value.schema`` given directly) register
themselves as ``<topic>-value`` (an Avro record of their columns) at start-up
or on first use over the wire, so Kafka clients read and write them too.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from arrowlog.errors import ConfigError, InvalidRecordError
from arrowlog.server import errors as E
from arrowlog.storage.evolution import conform_value, generation, same_columns, schema_id, widen

from .codec import Codec, OtherSchemaId
from .errors import RegistryError
from .schemas import avro_for_arrow, parse
from .store import TOPIC as SCHEMAS_TOPIC
from .store import Registry

log = logging.getLogger("arrowlog.registry")


class _Batch:
    """A decoded Kafka batch with its records replaced (the other attributes delegate)."""

    __slots__ = ("_batch", "records")

    def __init__(self, batch, records: pa.RecordBatch):
        self._batch = batch
        self.records = records

    def __getattr__(self, name):
        return getattr(self._batch, name)


class TypedTopics:
    def __init__(self, registry: Registry, store):
        self.registry = registry
        self.store = store               # the broker's server.store.Store
        self._codecs: dict[int, Codec] = {}
        self._checked: dict[str, tuple[pa.Schema, Codec]] = {}   # topic -> (its value schema, codec) that fit

    def codec(self, schema_id: int) -> Codec:
        c = self._codecs.get(schema_id)
        if c is None:
            try:
                schema = self.registry.schema(schema_id)
            except RegistryError as exc:
                raise InvalidRecordError(f"the topic's schema {schema_id} is gone: {exc}") from None
            c = self._codecs[schema_id] = Codec(schema_id, schema)
        return c

    def install(self, broker) -> None:
        """Serve ``broker``'s typed topics: Produce and Fetch call ``on_produce``/``on_fetch``,
        and topic creation (auto-created or CreateTopics) goes through ``create_topic``."""
        inner = broker.store.create_topic

        def create_topic(name: str, partitions: int, config: dict | None = None, validate_only: bool = False):
            try:
                config, binding = self.topic_config(name, config)
            except ConfigError as exc:
                return E.INVALID_CONFIG, str(exc)
            code, msg = inner(name, partitions, config, validate_only)
            if code == E.NONE and binding is not None and not validate_only:
                self.registry.bind(name, *binding)
                log.info("topic %s stores the columns of schema %d (%s)", name, binding[1], binding[0])
            return code, msg

        broker.store.create_topic = create_topic
        broker.typed = self

    def topic_config(self, topic: str, config: dict | None) -> tuple[dict, tuple[str, int] | None]:
        """(the config to create ``topic`` with, (subject, schema id) it binds to or None).

        ``value.schema.subject`` names the subject; without it (and without a
        ``value.schema``) TopicNameStrategy's ``<topic>-value`` types the topic
        when it is registered and its latest schema has a column form."""
        config = dict(config or {})
        subject = config.pop("value.schema.subject", None)
        if config.get("value.schema") is not None:
            if subject is not None:
                raise ConfigError("give a topic value.schema or value.schema.subject, not both")
            return config, None
        explicit = subject is not None
        subject = subject or f"{topic}-value"
        try:
            v = self.registry.version(subject, "latest")
        except RegistryError:
            if explicit:
                raise ConfigError(f"value.schema.subject {subject!r} is not registered: register its schema "
                                  "first") from None
            return config, None
        schema = self.registry.schema(v.id)
        if schema.arrow is None:
            if explicit:
                raise ConfigError(f"schema {v.id} of {subject!r} cannot type a topic: {schema.arrow_reason}")
            log.info("topic %s stays untyped: schema %d of %s: %s", topic, v.id, subject, schema.arrow_reason)
            return config, None
        config["value.schema"] = schema.arrow
        return config, (subject, v.id)

    def _generation_id(self, topic: str, stored: pa.Schema) -> int:
        """The schema id frames of value schema ``stored`` (a generation of ``topic``'s) were
        written with: said by the schema itself (written over Kafka), else pinned in the
        registry, else (a topic typed or evolved by the library) registered now as the next
        version of ``<topic>-value``."""
        sid = schema_id(stored)
        if sid is not None:
            return sid
        gen = generation(stored)
        if gen == 0:
            bound = self.registry.bindings.get(topic) or self._register_library_topic(topic, stored)
            return bound[1]
        pinned = self.registry.generations.get(topic, {}).get(gen)
        if pinned is not None:
            return pinned
        subject = self.registry.bindings[topic][0] if topic in self.registry.bindings else f"{topic}-value"
        sid = self._register_library_schema(topic, subject, stored)
        self.registry.pin(topic, gen, sid)
        return sid

    def _codec_for(self, topic: str, t) -> Codec:
        """The codec of the current generation of typed topic ``t``."""
        checked = self._checked.get(topic)
        if checked is not None and checked[0] is t.value_schema:
            return checked[1]
        sid = self._generation_id(topic, t.value_schema)
        c = self.codec(sid)
        try:
            fits = same_columns(widen(t.value_schema, c.arrow), t.value_schema)
        except ConfigError:
            fits = False
        if not fits:
            raise InvalidRecordError(f"topic {topic!r} stores {t.value_schema}, which cannot hold the columns of "
                                     f"its schema {sid}")
        self._checked[topic] = (t.value_schema, c)
        return c

    def _register_library_schema(self, topic: str, subject: str, value_schema: pa.Schema) -> int:
        try:
            return self.registry.register(subject, parse(avro_for_arrow(topic, value_schema)))
        except (ValueError, RegistryError) as exc:
            raise InvalidRecordError(f"topic {topic!r} is typed by the library (value.schema) and cannot be "
                                     f"registered as {subject!r} for Kafka clients: {exc}") from None

    def _register_library_topic(self, topic: str, value_schema: pa.Schema) -> tuple[str, int]:
        """Register a topic typed by the library (``value.schema``) as ``<topic>-value`` and bind it."""
        subject = f"{topic}-value"
        sid = self._register_library_schema(topic, subject, value_schema)
        self.registry.bind(topic, subject, sid)
        log.info("library topic %s registered as %s (schema %d)", topic, subject, sid)
        return subject, sid

    def register_library_topics(self) -> None:
        """Register every library-typed topic not yet bound (at start-up; others on first use)."""
        for name in self.store.list_topics():
            t = self.store.topic(name)
            if t is not None and t.value_schema is not None and name not in self.registry.bindings:
                try:
                    self._register_library_topic(name, t.value_schema)
                except InvalidRecordError as exc:
                    log.warning("%s", exc)

    @staticmethod
    def write_refusal(topic: str) -> str | None:
        """Why Kafka clients may not produce to ``topic`` at all (None: they may)."""
        if topic == SCHEMAS_TOPIC:
            return f"{SCHEMAS_TOPIC} is written by the schema registry only: use its REST API"
        return None

    def on_produce(self, topic: str, batches: list) -> list:
        """``batches`` with their values turned into the topic's columns (untyped topics: unchanged)."""
        refusal = self.write_refusal(topic)
        if refusal is not None:
            raise InvalidRecordError(refusal)
        t = self.store.topic(topic)
        if t is None or t.value_schema is None:
            return batches
        t.refresh()       # another process may have evolved it
        c = self._codec_for(topic, t)
        target = pa.struct(list(t.value_schema))
        columns = [b.records.column(b.records.schema.get_field_index("value")) for b in batches]
        try:
            decoded = [conform_value(c.decode(col), target) for col in columns]
        except OtherSchemaId:
            from .evolve import VersionedBatches

            subject = self.registry.bindings[topic][0] if topic in self.registry.bindings else f"{topic}-value"
            decoded, evolve_to = VersionedBatches(self, topic, subject, c, t.value_schema).decode(columns)
            if evolve_to is not None:
                self._evolve(topic, evolve_to)
        out = []
        for b, column in zip(batches, decoded):
            rb = b.records
            i = rb.schema.get_field_index("value")
            out.append(_Batch(b, rb.set_column(i, pa.field("value", column.type), column)))
        return out

    def _evolve(self, topic: str, codec: Codec) -> None:
        """Evolve ``topic``'s columns to store ``codec``'s records, as a generation written with its id."""
        try:
            t = self.store.log.evolve_topic(topic, codec.arrow, schema_id=codec.schema_id)
        except ConfigError as exc:
            raise InvalidRecordError(f"topic {topic!r} cannot store the records of schema {codec.schema_id}: "
                                     f"{exc}") from None
        self.registry.pin(topic, generation(t.value_schema), codec.schema_id)
        log.info("topic %s evolved to schema %d (generation %d): %s", topic, codec.schema_id,
                 generation(t.value_schema), ", ".join(t.value_schema.names))

    def on_fetch(self, topic: str, batch: pa.RecordBatch) -> pa.RecordBatch:
        """A stored frame with its value columns turned back into wire-format bytes."""
        i = batch.schema.get_field_index("value")
        if not pa.types.is_struct(batch.schema.field(i).type):
            return batch
        t = self.store.topic(topic)
        if t is None or t.value_schema is None:
            return batch
        stored = pa.schema(list(batch.schema.field(i).type), metadata=batch.schema.metadata)
        c = self.codec(self._generation_id(topic, stored))
        value = batch.column(i)
        if value.type != c.type:     # the columns hold more than this schema (an evolved topic)
            value = conform_value(value, c.type)
        return batch.set_column(i, pa.field("value", pa.binary()), c.encode(value))
