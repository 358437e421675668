"""A Confluent-compatible schema registry inside ``arrowlog serve`` (docs/REGISTRY.md).

- ``store.Registry``: subjects, versions, ids and compatibility configs, kept
  in the ``_schemas`` topic of the data directory.
- ``app``: the REST API (aiohttp), served next to the Kafka listener.
- ``compat``: Avro and JSON Schema compatibility per Confluent's modes.
- ``codec``/``typed``: Confluent wire-format records <-> a typed topic's columns.
- ``service.RegistryKafkaServer``: the Kafka server with the registry started.
"""

from .errors import RegistryError

__all__ = ["RegistryError"]
