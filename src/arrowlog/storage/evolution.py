"""Schema evolution of a typed topic's stored columns.

A typed topic's value schema (``value.schema`` in topic.json) may change
after records were stored, but only by *widening*, so that every frame ever
written reads in the newest schema:

- a new field, appended after the others and nullable (frames written
  before it read it as null);
- a field's type widened as Avro promotes it: int32 -> int64 -> float64,
  int32/int64 -> float32/float64, float32 -> float64;
- a non-nullable field becoming nullable (a later version made it optional,
  or dropped it: the stored column stays, and holds null from then on).

A field is never removed from the stored columns, renamed, narrowed or
retyped otherwise: ``widen`` refuses that with a ConfigError naming the field.

Each change is a new *generation* of the value schema. The schema's metadata
says which (``arrowlog.generation``; absent means 0, every topic written
before evolution existed) and, for a topic typed over Kafka, the schema
registry id of that generation (``arrowlog.schema.id``). The envelope schema
in a segment's header carries that metadata (docs/FORMAT.md), so every frame
says which generation wrote it; format version 1 is unchanged, since the
header always held the Arrow schema of its frames. A partition starts a new
segment before its first frame of a new generation (``follow_generation``).

Readers give one schema for any range: ``conform`` turns a frame of an
older generation into the current one (missing fields null, widened types
cast), and ``Topic.envelope_for`` re-reads topic.json when a frame is newer
than what this process knew (another process evolved the topic).

Crash safety: the commit point of an evolution is the atomic rewrite of
topic.json (tmp, fsync, rename, fsync dir). A crash before it leaves the old
generation; after it, segments of the new generation appear with the next
append. Frames are never rewritten.
"""

from __future__ import annotations

import os

import pyarrow as pa

from ..errors import ConfigError

GENERATION = b"arrowlog.generation"
SCHEMA_ID = b"arrowlog.schema.id"

# Avro's promotions that Arrow casts exactly (int64 -> float64 may round, as Avro's long -> double does).
_WIDENS = {
    (pa.int32(), pa.int64()), (pa.int32(), pa.float32()), (pa.int32(), pa.float64()),
    (pa.int64(), pa.float32()), (pa.int64(), pa.float64()), (pa.float32(), pa.float64()),
}


def generation(schema: pa.Schema | None) -> int:
    """The generation of a value or envelope schema (0 when it says none)."""
    md = schema.metadata if schema is not None else None
    if not md or GENERATION not in md:
        return 0
    return int(md[GENERATION])


def schema_id(schema: pa.Schema | None) -> int | None:
    """The schema registry id the frames of ``schema`` were produced with, if it says one."""
    md = schema.metadata if schema is not None else None
    if not md or SCHEMA_ID not in md:
        return None
    return int(md[SCHEMA_ID])


def widen(current: pa.Schema, new: pa.Schema) -> pa.Schema:
    """The fields that store both ``current``'s records and ``new``'s: current's fields in
    their order (widened where ``new`` widens them, nullable where ``new`` lacks them or
    allows null), then ``new``'s new fields, nullable. Metadata is not carried.
    Raises ConfigError naming every field that cannot be stored that way."""
    problems = []
    fields = []
    for f in current:
        i = new.get_field_index(f.name)
        if i < 0:
            fields.append(f.with_nullable(True))
            continue
        g = new.field(i)
        t = f.type
        if g.type != t:
            if (t, g.type) in _WIDENS:
                t = g.type
            elif (g.type, t) not in _WIDENS:    # a narrower writer type is read widened
                problems.append(f"field {f.name!r} changes type from {f.type} to {g.type} (stored columns can "
                                "only widen: int -> long -> float -> double)")
                continue
        fields.append(pa.field(f.name, t, f.nullable or g.nullable))
    names = set(current.names)
    for g in new:
        if g.name not in names:
            fields.append(g.with_nullable(True))
    if len(set(new.names)) != len(new.names):
        problems.append("the new schema repeats a field name")
    if problems:
        raise ConfigError("the topic's stored columns cannot evolve to this value schema: " + "; ".join(problems))
    return pa.schema(fields)


def evolved(current: pa.Schema, new: pa.Schema, sid: int | None = None) -> pa.Schema:
    """``widen(current, new)`` as the next generation (with registry id ``sid``, if given)."""
    md = {GENERATION: str(generation(current) + 1).encode()}
    if sid is not None:
        md[SCHEMA_ID] = str(int(sid)).encode()
    return widen(current, new).with_metadata(md)


def same_columns(a: pa.Schema, b: pa.Schema) -> bool:
    """Whether two value schemas store the same columns (metadata aside)."""
    return a.equals(b, check_metadata=False)


def conform_value(value: pa.Array, target: pa.DataType) -> pa.Array:
    """A struct column of an older generation as ``target`` (a struct type that widens it):
    fields it lacks are null, widened fields are cast, null records stay null."""
    have = value.type
    children = []
    for f in target:
        i = have.get_field_index(f.name)
        if i < 0:
            children.append(pa.nulls(len(value), f.type))
            continue
        child = value.field(i)
        children.append(child if child.type == f.type else child.cast(f.type))
    mask = value.is_null() if value.null_count else None
    return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)


def conform(batch: pa.RecordBatch, envelope: pa.Schema) -> pa.RecordBatch:
    """A stored frame's batch in the envelope schema ``envelope`` (the topic's newest):
    the same batch when it is of that generation already."""
    if batch.schema.equals(envelope, check_metadata=True):
        return batch
    i = envelope.get_field_index("value")
    target = envelope.field(i).type
    value = batch.column(i)
    if pa.types.is_struct(target) and pa.types.is_struct(value.type) and value.type != target:
        value = conform_value(value, target)
    columns = list(batch.columns)
    columns[i] = value
    return pa.RecordBatch.from_arrays(columns, schema=envelope)


def follow_generation(pl, st: dict, seg):
    """Called by PartitionLog.append (append lock held) when the active segment ``seg``
    was written with another schema than the partition's: returns the (segment,
    state snapshot) to append to. A newer segment (another process evolved the
    topic) is adopted: the partition writes its generation from now on, and the
    caller conforms its batch up to it. An older one is followed by a segment of
    the partition's generation: a new one after it, or, when it holds no frame
    yet, a fresh header in its place (the rename is atomic; its position is
    republished, and a crash in between is repaired by recovery, which reads the
    position from the header)."""
    from .segment import Segment

    if generation(seg.schema) > generation(pl.schema):
        pl.use_schema(seg.schema)
        return seg, st
    if st["next_offset"] != seg.base_offset:
        pl._roll(st, seg, st["active_position"])
        st = pl.state.snapshot()
        return pl._writer_for(st), st
    seg.close()
    pl._writer = None
    new = Segment.create(pl.directory, seg.base_offset, pl.schema, pl.compression, pl._capacity(), pl._now_ms())
    pl._writer = new
    pl._dir_dirty = True
    # a new generation makes other processes drop their views of the old file (reading.py, _writer_for)
    gen = st["generation"] + 1
    pl._writer_generation = gen
    pl.state.publish(active_position=new.header_size, segment_created_ms=new.created_ms, generation=gen)
    return new, pl.state.snapshot()


def same_file(fd: int, path: str) -> bool:
    """Whether open file ``fd`` is still the file at ``path`` (not replaced by a rename)."""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
