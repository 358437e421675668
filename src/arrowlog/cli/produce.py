"""``arrowlog produce``: one record per stdin line, like ``kcat -P``.

Stdin is read in blocks (whatever has arrived, up to 1 MiB), and each block
goes to :meth:`arrowlog.Producer.produce_batch` as columns: a fast pipe is
appended in large batches, while lines typed or trickling in are written as
they arrive.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import click

from .common import EXIT_NOT_FOUND, EXIT_USAGE, CliError, command_body, note, resolve_data_dir
from .formatting import FormatError, parse_json_record, unescape
from .offsets import now_ms
from .store import complete_topics, get_topic, open_logdir
from .topic import created_text

READ_BYTES = 1 << 20  # one read1() from stdin: what has arrived, up to this much

Header = tuple[str, bytes | None]


@dataclass
class Block:
    """Records for one ``produce_batch`` call: columns of equal length."""

    values: list[bytes | None]
    keys: list[bytes | None] | None = None
    headers: list[list[Header] | None] | None = None
    timestamps: list[int | None] | None = None  # None: the time it is produced
    partition: int | None = None


def parse_header(text: str) -> tuple[str, bytes]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"bad header {text!r}: expected KEY=VALUE", param_hint="'-H'")
    return key, value.encode()


def read_lines(stream: BinaryIO) -> Iterator[list[bytes]]:
    """The lines of each read, without their newline; a last line without
    one still counts."""
    pending = b""
    while True:
        block = stream.read1(READ_BYTES) if hasattr(stream, "read1") else stream.read(READ_BYTES)
        if not block:
            break
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        if lines:
            yield lines
    if pending:
        yield [pending]


def line_blocks(reads: Iterable[list[bytes]], *, key: bytes | None, key_delim: bytes | None,
                headers: list[Header], partition: int | None) -> Iterator[Block]:
    """Plain lines: the line is the value; ``-k`` a fixed key, ``-K`` a split."""
    seen = 0
    for lines in reads:
        n = len(lines)
        keys: list[bytes | None] | None = None
        values: list[bytes | None] = list(lines)
        if key_delim is not None:
            parts = [line.partition(key_delim) for line in lines]
            for i, (_, sep, _) in enumerate(parts):
                if not sep:
                    shown = key_delim.decode(errors="replace")
                    raise CliError(f"line {seen + i + 1}: no key delimiter {shown!r} in it", EXIT_USAGE)
            keys = [k for k, _, _ in parts]
            values = [v for _, _, v in parts]
        elif key is not None:
            keys = [key] * n
        seen += n
        yield Block(values, keys, [list(headers)] * n if headers else None, None, partition)


def json_blocks(reads: Iterable[list[bytes]], *, key: bytes | None, headers: list[Header],
                partition: int | None) -> Iterator[Block]:
    """``--json`` lines, in runs bound for the same partition; fields a line
    leaves out come from ``-k``, ``-H`` (added first) and ``-p``."""
    seen = 0
    for lines in reads:
        block: Block | None = None
        for line in lines:
            seen += 1
            if not line.strip():
                continue
            try:
                rec = parse_json_record(line, seen)
            except FormatError as e:
                raise CliError(f"--json input {e}", EXIT_USAGE) from None
            p = partition if rec.partition is None else rec.partition
            if block is None or block.partition != p:
                if block is not None:
                    yield block
                keys: list[bytes | None] = []
                header_rows: list[list[Header] | None] = []
                stamps: list[int | None] = []
                block = Block([], keys, header_rows, stamps, p)
            block.values.append(rec.value)
            keys.append(key if rec.key is None else rec.key)
            header_rows.append((headers + rec.headers) or None)
            stamps.append(rec.timestamp)
        if block is not None:
            yield block


@click.command(
    "produce",
    epilog="""\b
Examples:
  seq 1 5 | arrowlog produce orders
  printf 'user1:login\\nuser2:logout\\n' | arrowlog produce orders -K :
  echo hello | arrowlog produce orders -k greeting -H source=cli -p 0
  arrowlog consume orders -o start | arrowlog produce orders-copy --json
""",
)
@click.argument("topic", shell_complete=complete_topics)
@click.option("-k", "--key", default=None, help="The same key for every record.")
@click.option("-K", "--key-delimiter", "key_delim", default=None, metavar="DELIM",
              help="Split each line at the first DELIM into key and value.")
@click.option("-H", "--header", "headers", multiple=True, metavar="K=V", help="A header on every record (repeat).")
@click.option("-p", "--partition", type=click.IntRange(min=0), default=None,
              help="Write to this partition [default: by key hash, else spread].")
@click.option("--json", "as_json", is_flag=True,
              help="Each line is a JSON object with key, value, headers (as consume writes them).")
@click.option("--no-create", "no_create", is_flag=True,
              help="Fail (exit 3) if TOPIC does not exist, instead of creating it with one partition.")
@click.option("-q", "--quiet", is_flag=True, help="Do not report the count on stderr.")
@command_body
def produce_cmd(topic: str, key: str | None, key_delim: str | None, headers: tuple[str, ...],
                partition: int | None, as_json: bool, no_create: bool, quiet: bool, data: str | None) -> None:
    """Write one record per line of stdin to TOPIC and report how many were written.

    A missing TOPIC is created with one partition and the default topic
    config (records kept forever), as arrowlog.Producer does; --no-create
    refuses instead. Use 'topic create' first for more partitions."""
    if key is not None and key_delim is not None:
        raise click.UsageError("-k (fixed key) and -K (key delimiter) cannot be used together")
    if key_delim is not None:
        key_delim = unescape(key_delim)
        if not key_delim:
            raise click.BadParameter("the key delimiter is empty", param_hint="'-K'")
    hdrs: list[Header] = [parse_header(h) for h in headers]
    data_dir = resolve_data_dir(data)
    logdir = open_logdir(data_dir, create=not no_create)
    if not no_create and topic not in logdir.list_topics():
        t = logdir.create_topic(topic, exist_ok=True)  # another producer may create it meanwhile
        note(created_text(t, data_dir), quiet)
    t = get_topic(logdir, topic)
    if partition is not None and partition >= t.num_partitions:
        raise CliError(f"topic {topic!r} has no partition {partition} (partitions 0-{t.num_partitions - 1})",
                       EXIT_NOT_FOUND)

    # A topic with a value schema takes each line as a JSON object of its fields.
    reads = read_lines(sys.stdin.buffer)
    fixed_key = None if key is None else key.encode()
    if as_json:
        blocks = json_blocks(reads, key=fixed_key, headers=hdrs, partition=partition)
    else:
        blocks = line_blocks(reads, key=fixed_key, key_delim=None if key_delim is None else key_delim.encode(),
                             headers=hdrs, partition=partition)
    written = produce_blocks(data_dir, topic, blocks, t.num_partitions)
    note(f"produced {written} record{'s' if written != 1 else ''} to {topic}", quiet)


def produce_blocks(data_dir: str, topic: str, blocks: Iterable[Block], num_partitions: int) -> int:
    """Append each block with :meth:`arrowlog.Producer.produce_batch`; returns
    how many records were written."""
    import arrowlog

    written = 0
    lines_before = 0  # stdin lines of the blocks already appended
    producer = arrowlog.Producer({"log.dir": data_dir, "auto.create.topics.enable": False})
    try:
        for b in blocks:
            if b.partition is not None and b.partition >= num_partitions:
                raise CliError(f"topic {topic!r} has no partition {b.partition} "
                               f"(partitions 0-{num_partitions - 1})", EXIT_NOT_FOUND)
            stamps = b.timestamps
            if stamps is not None:
                if all(t is None for t in stamps):
                    stamps = None
                else:
                    now = now_ms()
                    stamps = [now if t is None else t for t in stamps]
            keys = b.keys if b.keys is not None and any(k is not None for k in b.keys) else None
            hdrs = b.headers if b.headers is not None and any(h for h in b.headers) else None
            try:
                written += producer.produce_batch(topic, b.values, keys=keys, timestamps=stamps, headers=hdrs,
                                                  partition=b.partition)
            except arrowlog.InvalidRecordError as exc:
                before = f" (lines 1-{lines_before}, read before, had been appended)" if lines_before else ""
                raise CliError(_as_stdin_line(str(exc), lines_before) + before, EXIT_USAGE) from None
            lines_before += len(b.values)
        producer.flush()
    finally:
        producer.close()
    return written


def _as_stdin_line(message: str, lines_before: int) -> str:
    """A record ``produce_batch`` refused is named by the stdin line it came
    from (``row 2 of produce_batch`` of the block after 10 lines: ``line 13``)."""
    return re.sub(r"\brow (\d+) of produce_batch\b",
                  lambda m: f"stdin line {lines_before + int(m.group(1)) + 1}", message, count=1)
