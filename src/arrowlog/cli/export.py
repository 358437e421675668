"""``arrowlog export``: a topic (or an offset/time range of it) into one file.

Formats: Parquet, Arrow IPC (file format), CSV and JSON lines, chosen by the
file's extension or ``--format``. Columns: ``partition`` then the stored
envelope (``offset``, ``timestamp``, ``key``, ``value``, ``headers``). The file
is written next to its destination and renamed into place when complete, so
a failed export never leaves a half-written FILE behind.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import click
import pyarrow as pa

from .common import CliError, color_enabled, command_body, human_bytes, note, resolve_data_dir, stderr_is_tty
from .formatting import make_formatter
from .offsets import OffsetSpec, OffsetSyntaxError, parse_offset_spec
from .store import (
    batch_records,
    complete_topics,
    get_topic,
    open_logdir,
    parse_partitions,
    pick_partitions,
    read_batches,
    resolve_partition_range,
)

FORMATS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow",
    ".csv": "csv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}

JSON_LINE = make_formatter("json")  # the same lines as ``consume --format json``

ENVELOPE = pa.schema([
    ("partition", pa.int32()),
    ("offset", pa.int64()),
    ("timestamp", pa.timestamp("ms")),
    ("key", pa.binary()),
    ("value", pa.binary()),
    ("headers", pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))),
])


def format_for(path: str, explicit: str | None) -> str:
    if explicit:
        return explicit
    ext = os.path.splitext(path)[1].lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        raise click.UsageError(
            f"cannot tell the format of {path!r} from its extension; use --format parquet|arrow|csv|jsonl")
    return fmt


def export_spec(offset: str | None, start: str | None, end: str | None) -> OffsetSpec:
    """``-o EXPR`` or ``--start``/``--end`` (each a single bound of the same grammar)."""
    try:
        if offset is not None:
            if start is not None or end is not None:
                raise click.UsageError("use either -o or --start/--end, not both")
            return parse_offset_spec(offset)
        first = parse_offset_spec(start or "start")
        if first.end is not None:
            raise click.BadParameter(f"{start!r} is a range; give one position", param_hint="'--start'")
        last = None
        if end is not None:
            e = parse_offset_spec(end)
            if e.end is not None:
                raise click.BadParameter(f"{end!r} is a range; give one position", param_hint="'--end'")
            last = e.start
        return OffsetSpec(first.start, last)
    except OffsetSyntaxError as e:
        raise click.BadParameter(str(e), param_hint="'-o/--start/--end'") from None


def with_partition(batch: pa.RecordBatch, partition: int) -> pa.RecordBatch:
    col = pa.array([partition] * batch.num_rows, pa.int32())
    return pa.RecordBatch.from_arrays([col, *batch.columns], names=["partition", *batch.schema.names])


def _text_column(arr: pa.Array) -> pa.Array:
    """Binary as UTF-8 text for CSV; rows that are not UTF-8 become base64."""
    try:
        return arr.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        import base64

        out: list[str | None] = []
        for v in arr.to_pylist():
            if v is None:
                out.append(None)
                continue
            try:
                out.append(v.decode("utf-8"))
            except UnicodeDecodeError:
                out.append("base64:" + base64.b64encode(v).decode("ascii"))
        return pa.array(out, pa.string())


def csv_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    cols = []
    for col in batch.columns:
        t = col.type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
            col = _text_column(col)
        elif pa.types.is_list(t) or pa.types.is_struct(t) or pa.types.is_large_list(t):
            col = pa.array(
                [None if v is None else json.dumps(_jsonable(v)) for v in col.to_pylist()], pa.string())
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            import base64

            return "base64:" + base64.b64encode(v).decode("ascii")
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


class _Sink:
    """Writes batches in one format; the writer is made from the first batch's schema."""

    def __init__(self, path: str, fmt: str, topic: str):
        self.path = path
        self.fmt = fmt
        self.topic = topic
        self.writer: Any = None
        self.file: Any = None
        self.schema: pa.Schema | None = None

    def _open(self, schema: pa.Schema) -> None:
        self.schema = schema
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(self.path, schema)
        elif self.fmt == "arrow":
            self.file = pa.OSFile(self.path, "wb")
            self.writer = pa.ipc.new_file(self.file, schema)
        elif self.fmt == "csv":
            import pyarrow.csv as pcsv

            self.writer = pcsv.CSVWriter(self._stream() or self.path, schema)
        else:
            self.file = self._stream() or open(self.path, "wb")  # noqa: SIM115 - closed in close()

    def _stream(self) -> Any:
        """stdout for ``--to -`` (kept open when the export is done)."""
        if self.path != "-":
            return None
        import sys

        return _Unclosable(sys.stdout.buffer)

    def write(self, batch: pa.RecordBatch, partition: int) -> None:
        if self.fmt == "jsonl":
            if self.file is None:
                self._open(batch.schema)
            self.file.write(b"".join(JSON_LINE(r, 0) for r in batch_records(batch, self.topic, partition)))
            return
        b = with_partition(batch, partition)
        if self.fmt == "csv":
            b = csv_batch(b)
        if self.writer is None:
            self._open(b.schema)
        elif b.schema != self.schema:
            b = b.cast(self.schema)
        self.writer.write_batch(b)

    def close(self) -> None:
        if self.writer is None and self.file is None:
            empty = pa.RecordBatch.from_pylist([], schema=ENVELOPE)
            self._open(csv_batch(empty).schema if self.fmt == "csv" else ENVELOPE)
        if self.writer is not None:
            self.writer.close()
        if self.file is not None:
            self.file.close()


class _Unclosable:
    """A stream whose close() only flushes: the sink must not close stdout."""

    def __init__(self, raw: Any):
        self._raw = raw

    def write(self, data: Any) -> int:
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        self._raw.flush()

    @property
    def closed(self) -> bool:
        return False


def _progress(enabled: bool) -> Any:
    """A one-line bar on stderr: records done/total, bytes, rate and ETA."""
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True, no_color=not color_enabled())
    return Progress(
        TextColumn("[bold]export"),
        BarColumn(bar_width=20),
        TextColumn("{task.completed:,}/{task.total:,} records"),
        TextColumn("{task.fields[bytes]}"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


def _rate(records: int, seconds: float) -> str:
    r = records / max(seconds, 1e-9)
    return f"{r / 1e6:.1f}M rec/s" if r >= 1e6 else f"{r / 1e3:.0f}k rec/s" if r >= 1e3 else f"{r:.0f} rec/s"


@click.command(
    "export",
    epilog="""\b
Examples:
  arrowlog export orders --to orders.parquet
  arrowlog export orders --to last-hour.arrow -o @-1h:end
  arrowlog export orders --to may.csv --start @2024-05-01 --end @2024-06-01
  arrowlog export orders --to - --format jsonl | head
""",
)
@click.argument("topic", shell_complete=complete_topics)
@click.option("--to", "dest", required=True, metavar="FILE", help="Output file (- for stdout, jsonl/csv only).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "arrow", "csv", "jsonl"]), default=None,
              help="Output format [default: from FILE's extension].")
@click.option("-o", "--offset", "offset", default=None, metavar="EXPR",
              help="Range in consume's -o grammar, e.g. @-1h:end or 100:200.")
@click.option("--start", default=None, metavar="POS", help="First position: start, N, +N, -N, @TIME.")
@click.option("--end", default=None, metavar="POS", help="Stop before: end, N, @TIME [default: the current end].")
@click.option("-p", "--partition", "partitions", multiple=True, metavar="N", help="Only these partitions.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")
@command_body
def export_cmd(topic: str, dest: str, fmt: str | None, offset: str | None, start: str | None,
               end: str | None, partitions: tuple[str, ...], quiet: bool, data: str | None) -> None:
    """Write TOPIC's records (all, or a range) to FILE."""
    spec = export_spec(offset, start, end)
    to_stdout = dest == "-"
    fmt = format_for(dest, fmt) if not to_stdout or fmt else "jsonl"
    if to_stdout and fmt not in ("jsonl", "csv"):
        raise click.UsageError("only --format jsonl or csv can be written to stdout")
    wanted = parse_partitions(partitions)
    logdir = open_logdir(resolve_data_dir(data))
    t = get_topic(logdir, topic)

    plan: list[tuple[int, Any, int, int | None]] = []  # stop_at_end: every end is known
    for p in pick_partitions(t, wanted):
        pl = t.partition(p)
        rng = resolve_partition_range(pl, spec, stop_at_end=True)
        plan.append((p, pl, rng.start, rng.end))
    total = sum(max(0, e - s) for _, _, s, e in plan if e is not None)

    if to_stdout:
        final = tmp = "-"
    else:
        final = os.path.abspath(dest)
        parent = os.path.dirname(final)
        if not os.path.isdir(parent):
            raise CliError(f"cannot write {dest}: directory {parent} does not exist")
        tmp = os.path.join(parent, f".{os.path.basename(final)}.{os.getpid()}.partial")
    sink = _Sink(tmp, fmt, topic)
    progress = _progress(not quiet and stderr_is_tty())
    records = 0
    nbytes = 0
    started = time.monotonic()
    try:
        task = None
        if progress is not None:
            progress.start()
            task = progress.add_task("export", total=total, bytes="0 B", rate="")
        for p, pl, s, e in plan:
            for batch in _batches(pl, s, e):
                sink.write(batch, p)
                records += batch.num_rows
                nbytes += batch.nbytes
                if progress is not None:
                    progress.update(task, completed=records, bytes=human_bytes(nbytes),
                                    rate=_rate(records, time.monotonic() - started))
        sink.close()
        if not to_stdout:
            os.replace(tmp, final)
    except BaseException:
        if not to_stdout and os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        if progress is not None:
            progress.stop()
    elapsed = time.monotonic() - started
    note(f"exported {records} records ({human_bytes(nbytes)}) from {topic} to {dest} as {fmt} "
         f"in {elapsed:.2f}s", quiet or to_stdout)


def _batches(pl: Any, start: int, end: int | None) -> Iterator[pa.RecordBatch]:
    pos = start
    while end is None or pos < end:
        batches, nxt = read_batches(pl, pos, end)
        yield from batches
        if nxt <= pos:
            return
        pos = nxt
