"""``arrowlog produce``: one record per stdin line, like ``kcat -P``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import BinaryIO

import click

from .common import CliError, command_body, note, resolve_data_dir
from .formatting import FormatError, ProduceRecord, parse_json_record, unescape
from .offsets import now_ms
from .store import get_topic, open_logdir

READ_BYTES = 1 << 20  # one read1() from stdin: what has arrived, up to this much
CHUNK_RECORDS = 50_000  # records per produce_batch() call at most
FLUSH = None  # between reads: what was read so far is written before waiting for more


def parse_header(text: str) -> tuple[str, bytes]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"bad header {text!r}: expected KEY=VALUE", param_hint="'-H'")
    return key, value.encode()


def iter_lines(stream: BinaryIO) -> Iterator[bytes | None]:
    """Lines without their newline (a last line without one still counts),
    and :data:`FLUSH` after each read, so that records typed or piped in
    slowly are written as they arrive while a fast pipe is batched."""
    pending = b""
    while True:
        block = stream.read1(READ_BYTES) if hasattr(stream, "read1") else stream.read(READ_BYTES)
        if not block:
            break
        lines = (pending + block).split(b"\n")
        pending = lines.pop()
        yield from lines
        yield FLUSH
    if pending:
        yield pending
        yield FLUSH


def line_records(
    lines: Iterator[bytes | None],
    *,
    key: bytes | None,
    key_delim: bytes | None,
    headers: list[tuple[str, bytes]],
    partition: int | None,
    as_json: bool,
) -> Iterator[ProduceRecord | None]:
    """Turn stdin lines into records according to ``-k``/``-K``/``-H``/``--json``."""
    n = 0
    for line in lines:
        if line is FLUSH:
            yield FLUSH
            continue
        n += 1
        if as_json:
            if not line.strip():
                continue
            try:
                rec = parse_json_record(line, n)
            except FormatError as e:
                raise CliError(f"--json input {e}", 2) from None
            if rec.partition is None:
                rec.partition = partition
            rec.headers = headers + rec.headers
            if rec.key is None:
                rec.key = key
            yield rec
            continue
        k = key
        v = line
        if key_delim is not None:
            k, sep, rest = line.partition(key_delim)
            if not sep:
                raise CliError(f"line {n}: no key delimiter {key_delim.decode(errors='replace')!r} in it", 2)
            v = rest
        yield ProduceRecord(value=v, key=k, headers=list(headers), partition=partition)


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
@click.argument("topic")
@click.option("-k", "--key", default=None, help="The same key for every record.")
@click.option("-K", "--key-delimiter", "key_delim", default=None, metavar="DELIM",
              help="Split each line at the first DELIM into key and value.")
@click.option("-H", "--header", "headers", multiple=True, metavar="K=V", help="A header on every record (repeat).")
@click.option("-p", "--partition", type=click.IntRange(min=0), default=None,
              help="Write to this partition [default: by key hash, else spread].")
@click.option("--json", "as_json", is_flag=True,
              help="Each line is a JSON object with key, value, headers (as consume writes them).")
@click.option("-q", "--quiet", is_flag=True, help="Do not report the count on stderr.")
@command_body
def produce_cmd(topic: str, key: str | None, key_delim: str | None, headers: tuple[str, ...],
                partition: int | None, as_json: bool, quiet: bool, data: str | None) -> None:
    """Write one record per line of stdin to TOPIC and report how many were written."""
    if key is not None and key_delim is not None:
        raise click.UsageError("-k (fixed key) and -K (key delimiter) cannot be used together")
    if key_delim is not None:
        key_delim = unescape(key_delim)
        if not key_delim:
            raise click.BadParameter("the key delimiter is empty", param_hint="'-K'")
    hdrs = [parse_header(h) for h in headers]
    data_dir = resolve_data_dir(data)
    logdir = open_logdir(data_dir)
    t = get_topic(logdir, topic)
    if partition is not None and partition >= t.num_partitions:
        raise CliError(f"topic {topic!r} has no partition {partition} (partitions 0-{t.num_partitions - 1})", 3)

    records = line_records(
        iter_lines(sys.stdin.buffer),
        key=None if key is None else key.encode(),
        key_delim=None if key_delim is None else key_delim.encode(),
        headers=hdrs,
        partition=partition,
        as_json=as_json,
    )
    written = produce_records(data_dir, topic, records, t.num_partitions)
    note(f"produced {written} record{'s' if written != 1 else ''} to {topic}", quiet)


def produce_records(data_dir: str, topic: str, records: Iterator[ProduceRecord | None], num_partitions: int) -> int:
    """Append records through :meth:`arrowlog.Producer.produce_batch`, one call
    per run of records bound for the same partition; returns how many were written."""
    import arrowlog

    written = 0
    chunk: list[ProduceRecord] = []

    def send() -> None:
        nonlocal written
        if not chunk:
            return
        keys = [r.key for r in chunk]
        stamps = [r.timestamp for r in chunk]
        if any(t is not None for t in stamps):
            now = now_ms()
            stamps = [now if t is None else t for t in stamps]
        headers = [r.headers or None for r in chunk]
        written += producer.produce_batch(
            topic,
            [r.value for r in chunk],
            keys=None if all(k is None for k in keys) else keys,
            timestamps=None if stamps[0] is None else stamps,
            headers=None if all(h is None for h in headers) else headers,
            partition=chunk[0].partition,
        )
        chunk.clear()

    producer = arrowlog.Producer({"log.dir": data_dir, "auto.create.topics.enable": False})
    try:
        for rec in records:
            if rec is FLUSH:
                send()
                continue
            if rec.partition is not None and rec.partition >= num_partitions:
                raise CliError(f"topic {topic!r} has no partition {rec.partition} "
                               f"(partitions 0-{num_partitions - 1})", 3)
            if chunk and (rec.partition != chunk[0].partition or len(chunk) >= CHUNK_RECORDS):
                send()
            chunk.append(rec)
        send()
        producer.flush()
    finally:
        producer.close()
    return written
