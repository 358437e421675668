"""``arrowlog produce``: one record per stdin line, like ``kcat -P``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

import click

from .common import CliError, command_body, note, resolve_data_dir
from .formatting import FormatError, ProduceRecord, parse_json_record, unescape
from .store import get_topic, open_logdir

POLL_EVERY = 10_000  # serve delivery callbacks every N records so the queue stays bounded


def parse_header(text: str) -> tuple[str, bytes]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"bad header {text!r}: expected KEY=VALUE", param_hint="'-H'")
    return key, value.encode()


def iter_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Lines without their newline; a last line without one still counts."""
    for line in stream:
        if line.endswith(b"\n"):
            line = line[:-1]
        yield line


def line_records(
    lines: Iterator[bytes],
    *,
    key: bytes | None,
    key_delim: bytes | None,
    headers: list[tuple[str, bytes]],
    partition: int | None,
    as_json: bool,
) -> Iterator[ProduceRecord]:
    """Turn stdin lines into records according to ``-k``/``-K``/``-H``/``--json``."""
    for n, line in enumerate(lines, 1):
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
    written, failed = produce_records(data_dir, topic, records, t.num_partitions)
    if failed:
        raise CliError(f"{failed} of {written + failed} records were not written to {topic!r}")
    note(f"produced {written} record{'s' if written != 1 else ''} to {topic}", quiet)


def produce_records(data_dir: str, topic: str, records: Iterator[ProduceRecord], num_partitions: int) -> tuple[int, int]:
    """Send records through :class:`arrowlog.Producer`; returns (written, failed)."""
    import arrowlog

    failures: list[Any] = []
    sent = 0

    def on_delivery(error: Any, msg: Any) -> None:
        if error is not None:
            failures.append(error)

    producer = arrowlog.Producer({"log.dir": data_dir})
    try:
        for rec in records:
            if rec.partition is not None and rec.partition >= num_partitions:
                raise CliError(f"topic {topic!r} has no partition {rec.partition}", 3)
            kwargs: dict[str, Any] = {"key": rec.key, "on_delivery": on_delivery}
            if rec.partition is not None:
                kwargs["partition"] = rec.partition
            if rec.timestamp is not None:
                kwargs["timestamp"] = rec.timestamp
            if rec.headers:
                kwargs["headers"] = rec.headers
            producer.produce(topic, rec.value, **kwargs)
            sent += 1
            if sent % POLL_EVERY == 0:
                producer.poll(0)
    finally:
        producer.flush()
        close = getattr(producer, "close", None)
        if close is not None:
            close()
    return sent - len(failures), len(failures)
