"""The registry's state, kept in the ``_schemas`` topic of the data directory.

Every change is one record appended (and fsynced) to ``_schemas`` partition 0
before it is acknowledged: key and value are JSON, the key says what the
record is about (a subject's version, a config, a topic binding) and a
record with a null value (a tombstone) removes its key. At start-up the
topic is replayed and the latest record of each key is kept: exactly what
log compaction keeps, so the topic is created with ``cleanup.policy=compact``
and becomes compacted once the cleaner exists, with nothing to migrate.
Thread-safety: one event loop thread (the server's).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pyarrow as pa

from arrowlog import errors as AE
from arrowlog.storage.reader import RangeReader

from . import errors as RE
from .compat import DEFAULT_MODE, MODES, compatible
from .errors import RegistryError, not_found
from .schemas import ParsedSchema, parse

log = logging.getLogger("arrowlog.registry")

TOPIC = "_schemas"
# Records of _schemas read at start-up, per call (bounded memory).
_READ_BYTES = 4 << 20


def _key(**fields: Any) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


class Version:
    __slots__ = ("subject", "version", "id", "deleted")

    def __init__(self, subject: str, version: int, schema_id: int, deleted: bool = False):
        self.subject, self.version, self.id, self.deleted = subject, version, schema_id, deleted


class Registry:
    """Subjects, versions, global ids and compatibility configs over a LogDir."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.schemas: dict[int, ParsedSchema] = {}       # id -> schema
        self.ids: dict[str, int] = {}                    # normalised key -> id
        self.subjects: dict[str, dict[int, Version]] = {}
        self.configs: dict[str | None, str] = {}
        self.bindings: dict[str, tuple[str, int]] = {}   # topic -> (subject, schema id of generation 0)
        self.generations: dict[str, dict[int, int]] = {}  # topic -> {generation: schema id} (evolved topics)
        self.max_id = 0                                  # ids are never reused, even after hard deletes
        self._pl = self._open()
        self._replay()

    # ------------------------------------------------------------ persistence
    def _open(self):
        try:
            t = self.logdir.topic(TOPIC)
        except AE.UnknownTopicError:
            t = self.logdir.create_topic(TOPIC, 1, {"cleanup.policy": "compact"}, exist_ok=True)
        return t.partition(0)

    def _replay(self) -> None:
        latest: dict[bytes, bytes | None] = {}
        reader = RangeReader(self._pl, self._pl.log_start_offset, self._pl.high_watermark, check_crc=True)
        while frames := reader.read(_READ_BYTES):
            for fr in frames:
                keys = fr.batch.column("key").to_pylist()
                values = fr.batch.column("value").to_pylist()
                for k, v in zip(keys, values):
                    if k is not None:
                        latest.pop(k, None)      # keep first-seen order of the latest record
                        latest[k] = v
        for k, v in latest.items():
            if v is not None:
                try:
                    self._apply(json.loads(k), json.loads(v))
                except (ValueError, KeyError, TypeError, RegistryError) as exc:
                    log.error("skipping an unreadable %s record %r: %s", TOPIC, k[:200], exc)
        if latest:
            log.info("schema registry: %d subjects, %d schemas from %s", len(self.subjects),
                     len(self.schemas), TOPIC)

    def _apply(self, key: dict, value: dict) -> None:
        kind = key["keytype"]
        if kind == "SCHEMA":
            sid = int(value["id"])
            if sid not in self.schemas:
                self._remember(sid, parse(value["schema"], value.get("schemaType")))
            self.subjects.setdefault(key["subject"], {})[int(key["version"])] = Version(
                key["subject"], int(key["version"]), sid, bool(value.get("deleted")))
        elif kind == "CONFIG":
            self.configs[key.get("subject")] = value["compatibilityLevel"]
        elif kind == "TOPIC":
            sid = int(value["id"])
            self.bindings[key["topic"]] = (value["subject"], sid)
            if sid not in self.schemas and "schema" in value:   # its versions were hard-deleted
                self._remember(sid, parse(value["schema"], value.get("schemaType")))
        elif kind == "TOPICGEN":
            sid = int(value["id"])
            self.generations.setdefault(key["topic"], {})[int(key["generation"])] = sid
            if sid not in self.schemas:
                self._remember(sid, parse(value["schema"], value.get("schemaType")))
        elif kind == "ID":
            self.max_id = max(self.max_id, int(value["max"]))

    def _write(self, key: bytes, value: dict | None) -> None:
        payload = None if value is None else json.dumps(value, separators=(",", ":")).encode()
        batch = pa.RecordBatch.from_arrays(
            [pa.array([int(time.time() * 1000)], pa.timestamp("ms", tz="UTC")), pa.array([key], pa.binary()),
             pa.array([payload], pa.binary()),
             pa.array([[]], pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())])))],
            names=["timestamp", "key", "value", "headers"])
        try:
            self._pl.append(batch, fsync=True)
        except (OSError, AE.ArrowlogError) as exc:
            raise RegistryError(500, RE.STORE_ERROR, f"cannot store in {TOPIC}: {exc}") from exc

    def _remember(self, sid: int, schema: ParsedSchema) -> None:
        self.schemas[sid] = schema
        self.ids.setdefault(schema.key, sid)
        self.max_id = max(self.max_id, sid)

    # ------------------------------------------------------------ reads
    def subject_names(self, deleted: bool = False) -> list[str]:
        return sorted(s for s, vs in self.subjects.items() if any(deleted or not v.deleted for v in vs.values()))

    def versions(self, subject: str, deleted: bool = False) -> list[Version]:
        vs = self.subjects.get(subject)
        live = [v for _, v in sorted((vs or {}).items()) if deleted or not v.deleted]
        if not live:
            raise not_found(RE.SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return live

    def version(self, subject: str, version: str | int, deleted: bool = False) -> Version:
        live = self.versions(subject, deleted)
        if version in ("latest", "-1", -1):
            return live[-1]
        try:
            n = int(version)
        except (TypeError, ValueError):
            n = 0
        if n < 1:
            raise RegistryError(422, RE.INVALID_VERSION, f"The specified version '{version}' is not a valid "
                                "version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")
        for v in live:
            if v.version == n:
                return v
        raise not_found(RE.VERSION_NOT_FOUND, f"Version {n} not found.")

    def schema(self, sid: int) -> ParsedSchema:
        s = self.schemas.get(sid)
        if s is None:
            raise not_found(RE.SCHEMA_NOT_FOUND, f"Schema {sid} not found")
        return s

    def compatibility(self, subject: str | None) -> str:
        if subject is not None and subject in self.configs:
            return self.configs[subject]
        return self.configs.get(None, DEFAULT_MODE)

    def lookup(self, subject: str, schema: ParsedSchema, deleted: bool = False) -> Version:
        for v in self.versions(subject, deleted):
            if self.schemas[v.id].key == schema.key:
                return v
        raise not_found(RE.SCHEMA_NOT_FOUND, "Schema not found")

    # ------------------------------------------------------------ writes
    def check(self, subject: str, schema: ParsedSchema, against: list[Version] | None = None) -> list[str]:
        """Reasons ``schema`` is incompatible with ``subject`` under its mode."""
        if against is None:
            against = [v for _, v in sorted(self.subjects.get(subject, {}).items()) if not v.deleted]
        earlier = [self.schemas[v.id] for v in against]
        if any(e.schema_type != schema.schema_type for e in earlier):
            return [f"the subject holds {earlier[-1].schema_type} schemas, not {schema.schema_type}"]
        return compatible(self.compatibility(subject), schema.schema_type, schema.value,
                          [e.value for e in earlier])

    def register(self, subject: str, schema: ParsedSchema) -> int:
        try:
            return self.lookup(subject, schema).id
        except RegistryError:
            pass
        problems = self.check(subject, schema)
        if problems:
            raise RegistryError(409, RE.INCOMPATIBLE_SCHEMA, "Schema being registered is incompatible with an "
                                f"earlier schema for subject \"{subject}\": " + "; ".join(problems))
        sid = self.ids.get(schema.key)
        if sid is None:
            sid = self.max_id + 1
            self._write(_key(keytype="ID"), {"max": sid})
        existing = self.subjects.get(subject, {})
        version = max(existing, default=0) + 1
        self._write(_key(keytype="SCHEMA", subject=subject, version=version, magic=1),
                    {"subject": subject, "version": version, "id": sid, "schema": schema.text,
                     "schemaType": schema.schema_type, "deleted": False})
        self._remember(sid, self.schemas.get(sid, schema))
        self.subjects.setdefault(subject, {})[version] = Version(subject, version, sid)
        return sid

    def _delete_version(self, v: Version, permanent: bool) -> None:
        key = _key(keytype="SCHEMA", subject=v.subject, version=v.version, magic=1)
        if permanent:
            self._write(key, None)
            del self.subjects[v.subject][v.version]
            if not self.subjects[v.subject]:
                del self.subjects[v.subject]
            in_use = any(x.id == v.id for vs in self.subjects.values() for x in vs.values())
            if not in_use and v.id not in self._pinned():
                gone = self.schemas.pop(v.id)
                self.ids.pop(gone.key, None)
        else:
            s = self.schemas[v.id]
            self._write(key, {"subject": v.subject, "version": v.version, "id": v.id, "schema": s.text,
                              "schemaType": s.schema_type, "deleted": True})
            v.deleted = True

    def delete_version(self, subject: str, version: str, permanent: bool) -> int:
        v = self.version(subject, version, deleted=permanent)
        if permanent and not v.deleted:
            raise not_found(RE.VERSION_NOT_SOFT_DELETED, f"Subject '{subject}' Version {v.version} was not "
                            "deleted first before being permanently deleted")
        self._delete_version(v, permanent)
        return v.version

    def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        vs = self.versions(subject, deleted=permanent)
        if permanent and any(not v.deleted for v in vs):
            raise not_found(RE.SUBJECT_NOT_SOFT_DELETED, f"Subject '{subject}' was not deleted first before "
                            "being permanently deleted")
        if not permanent and all(v.deleted for v in vs):
            raise not_found(RE.SUBJECT_SOFT_DELETED, f"Subject '{subject}' was soft deleted.")
        for v in vs:
            self._delete_version(v, permanent)
        if permanent and subject in self.configs:
            self._write(_key(keytype="CONFIG", subject=subject), None)
            del self.configs[subject]
        return [v.version for v in vs]

    def set_compatibility(self, subject: str | None, level: Any) -> str:
        mode = str(level).upper() if isinstance(level, str) else None
        if mode not in MODES:
            raise RegistryError(422, RE.INVALID_COMPATIBILITY, f"Invalid compatibility level {level!r}. "
                                f"Valid values are {', '.join(MODES)}")
        self._write(_key(keytype="CONFIG", subject=subject), {"compatibilityLevel": mode})
        self.configs[subject] = mode
        return mode

    def delete_compatibility(self, subject: str | None) -> str:
        if subject not in self.configs:
            if subject is None:
                return DEFAULT_MODE
            raise not_found(RE.SUBJECT_LEVEL_CONFIG_NOT_FOUND, f"Subject '{subject}' does not have "
                            "subject-level compatibility configured")
        self._write(_key(keytype="CONFIG", subject=subject), None)
        return self.configs.pop(subject)

    def _pinned(self) -> set[int]:
        """Ids whose schema stored records need (kept through hard deletes)."""
        return {sid for _, sid in self.bindings.values()} | {
            sid for gens in self.generations.values() for sid in gens.values()}

    def version_number(self, subject: str, sid: int) -> int | None:
        """The (highest) version of ``subject`` with schema ``sid``, soft-deleted ones included."""
        found = [v.version for v in self.subjects.get(subject, {}).values() if v.id == sid]
        return max(found) if found else None

    def pin(self, topic: str, generation: int, sid: int) -> None:
        """Record that generation ``generation`` of ``topic``'s value schema was written
        with schema ``sid`` (storage/evolution.py), keeping its schema for Fetch."""
        s = self.schema(sid)
        self._write(_key(keytype="TOPICGEN", topic=topic, generation=generation),
                    {"id": sid, "schema": s.text, "schemaType": s.schema_type})
        self.generations.setdefault(topic, {})[generation] = sid

    def bind(self, topic: str, subject: str, sid: int) -> None:
        """Record that ``topic`` stores the columns of schema ``sid`` of ``subject``."""
        s = self.schema(sid)     # kept with the binding: the topic's records need it after hard deletes
        self._write(_key(keytype="TOPIC", topic=topic), {"subject": subject, "id": sid, "schema": s.text,
                                                         "schemaType": s.schema_type})
        self.bindings[topic] = (subject, sid)
