"""How a dataset scan turns stored frames into batches of the columns it
was asked for (:mod:`arrowlog.dataset`): the envelope's columns, the
partition, a typed value's fields (zero-copy) or JSON fields parsed out of
the value, per schema a plan kept for every frame alike."""

from __future__ import annotations

import weakref
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ._dataset_stats import byte_widths
from ._json import parse_json_values
from .storage.evolution import conform

_ENVELOPE = ("offset", "timestamp", "key")  # batch columns 0..2; value is 3, headers 4
_COLUMN, _PARTITION, _PARSED, _FIELD = "column", "partition", "parsed", "field"  # where a scan's column comes from
SHAPED_FRAMES = 1024  # shaped frames a dataset keeps (zero-copy views of the mapped segments)


class FrameShaper:
    """Stored frames of one topic shaped to a scan's schema."""

    def __init__(self, envelope: Any, stored_fields: list[str], value_fields: list[str] | None,
                 json: dict[str, pa.Field] | None, partitions: Any, what: str):
        self._envelope = envelope          # frames of older value schemas read in it (storage/evolution.py)
        self._stored_fields = stored_fields
        self._value_fields = value_fields  # None: the value is one binary column
        self._json = json                  # column name -> JSON field, with value_format="json"
        self._partitions = partitions      # a Replay: it caches the partition column arrays
        self._what = what
        self.plans: dict[int, tuple[pa.Schema, tuple[list, list[int]]]] = {}  # id(schema) -> (schema, plan)
        self.shaped: dict[tuple[int, int], tuple[Any, pa.Schema, pa.RecordBatch, list[int]]] = {}  # shaped_frame

    def shaped_frame(self, stored: pa.RecordBatch, partition: int,
                     schema: pa.Schema) -> tuple[pa.RecordBatch, list[int]]:
        """The stored frame's batch with ``schema``'s columns (none parsed
        from JSON), and the bytes per row of its fixed-width columns without
        a validity bitmap (0 for the others: the dataset's byte count).

        Kept while the segment keeps the stored batch (at most SHAPED_FRAMES
        of them): a segment hands out the same batch object for a frame until
        the frame changes or the segment is closed (Segment.frame_batch), and
        scans ask for the same schema object (the dataset's projections), so
        a window read again reuses its shaped frames. The entry holds the
        stored batch weakly: it pins no mapping the segment let go of (a
        segment retention deleted frees its blocks)."""
        key = (id(stored), id(schema))
        hit = self.shaped.get(key)
        if hit is not None and hit[0]() is stored and hit[1] is schema:
            return hit[2], hit[3]
        out = self.shape(conform(stored, self._envelope), partition, schema)
        fixed = [w if w and out.column(i).buffers()[0] is None else 0 for i, w in enumerate(self.plan(schema)[1])]
        shaped = self.shaped
        if len(shaped) >= SHAPED_FRAMES:
            oldest = next(iter(shaped), None)  # dicts keep insertion order; a segment may have emptied it meanwhile
            if oldest is not None:
                shaped.pop(oldest, None)

        def gone(_: Any) -> None:  # the segment let go of the stored batch
            shaped.pop(key, None)

        shaped[key] = (weakref.ref(stored, gone), schema, out, fixed)
        return out, fixed

    def shape_all(self, batches: list[pa.RecordBatch], partition: int, schema: pa.Schema) -> list[pa.RecordBatch]:
        """``batches`` (stored frames) with ``schema``'s columns. JSON values
        are parsed in one pass over all of them, building only the fields
        ``schema`` asks for."""
        json = self._json if self._json is not None else {}
        wanted = [f.name for f in schema if f.name in json]
        if not wanted or not batches:
            return [self.shape(b, partition, schema) for b in batches]
        parsed = parse_json_values(pa.chunked_array([b.column(3) for b in batches], pa.binary()),
                                   pa.schema([json[name] for name in wanted]), self._what)
        out, position = [], 0
        for b in batches:
            part = parsed.slice(position, b.num_rows)
            values = {name: part.column(json[name].name).combine_chunks() for name in wanted}
            out.append(self.shape(b, partition, schema, values))
            position += b.num_rows
        return out

    def shape(self, batch: pa.RecordBatch, partition: int, schema: pa.Schema,
               parsed: dict[str, pa.Array] | None = None) -> pa.RecordBatch:
        """``batch`` (a stored frame) with ``schema``'s columns; ``parsed``: the JSON value
        fields, by column name, already parsed out of it."""
        if not len(schema):
            return batch.select([])  # no columns, but the rows (a count needs them)
        arrays = []
        value = None
        for kind, where in self.plan(schema)[0]:
            if kind is _COLUMN:
                arrays.append(batch.column(where))
            elif kind is _PARTITION:
                arrays.append(self._partitions._partition_column(partition, batch.num_rows))
            elif kind is _PARSED:
                arrays.append(parsed[where])  # type: ignore[index]
            else:
                if value is None:
                    value = batch.column(3)
                # without null values the child is the field (zero-copy); else nulls come from the struct
                arrays.append(value.field(where) if value.null_count == 0 else pc.struct_field(value, [where]))
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def plan(self, schema: pa.Schema) -> tuple[list[tuple[str, Any]], list[int]]:
        """Where each of ``schema``'s columns comes from in a stored frame,
        and their byte widths (0: not fixed-width), kept per schema object: a
        scan shapes every frame alike."""
        hit = self.plans.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        plan: list[tuple[str, Any]] = []
        for name in schema.names:
            if name == "partition":
                plan.append((_PARTITION, None))
            elif name in _ENVELOPE:
                plan.append((_COLUMN, _ENVELOPE.index(name)))
            elif name == "headers":
                plan.append((_COLUMN, 4))
            elif name == "value" and self._value_fields is None:
                plan.append((_COLUMN, 3))
            elif self._json is not None and name in self._json:
                plan.append((_PARSED, name))
            else:
                plan.append((_FIELD, self._stored_fields.index(name)))
        shaped = (plan, byte_widths(schema))
        if len(self.plans) >= 256:
            self.plans.clear()
        self.plans[id(schema)] = (schema, shaped)  # the entry keeps the schema, so its id is not reused
        return shaped
