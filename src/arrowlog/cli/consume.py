"""``arrowlog consume``: print records of a topic, like ``kcat -C`` / ``rpk topic consume``."""

from __future__ import annotations

import sys
from typing import Any

import click

from arrowlog.storage.reader import wait_for_data

from .common import command_body, err, group_ids, resolve_data_dir, stdout_is_tty
from .formatting import FormatError, make_formatter
from .offsets import OffsetRange, OffsetSyntaxError, parse_offset_spec
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

IDLE_WAIT_S = 0.5  # how long one idle wait blocks before looking again (appends wake it at once)


class _Cursor:
    __slots__ = ("partition", "log", "position", "end")

    def __init__(self, partition: int, log: Any, rng: OffsetRange):
        self.partition = partition
        self.log = log
        self.position = rng.start
        self.end = rng.end

    @property
    def done(self) -> bool:
        return self.end is not None and self.position >= self.end


@click.command(
    "consume",
    epilog="""\b
Examples:
  arrowlog consume orders -o start -e            # everything, then exit
  arrowlog consume orders -o -10                 # the last 10 records of each partition
  arrowlog consume orders -o @-1h -f             # the last hour, then follow
  arrowlog consume orders -o @2024-05-01:2024-05-02 --format '%k %v %o %T\\n'
  arrowlog consume orders -g billing             # resume from the group's offsets
""",
)
@click.argument("topic", shell_complete=complete_topics)
@click.option("-o", "--offset", "offset", default="start", show_default=True, metavar="EXPR",
              help="Where to start/stop: start, end, N, -N, +N, N:M, @TIME, @T1:T2 (see docs/CLI.md).")
@click.option("-p", "--partition", "partitions", multiple=True, metavar="N",
              help="Only these partitions (repeat, or 0,2 or 0-3).")
@click.option("-c", "--count", type=click.IntRange(min=1), default=None, help="Stop after COUNT records.")
@click.option("-e", "--exit-at-end", "exit_at_end", is_flag=True,
              help="Stop at the end of the log (the default unless -f).")
@click.option("-f", "--follow", is_flag=True, help="Keep waiting for new records, like tail -f.")
@click.option("-g", "--group", default=None, callback=group_ids,
              help="Consume as a member of GROUP: share its partitions, resume from and commit its offsets.")
@click.option("--format", "fmt", default=None, metavar="FORMAT",
              help="json, text, or a template like '%k %v %o %T\\n' [default: json when stdout is "
                   "not a terminal, text when it is].")
@command_body
def consume_cmd(topic: str, offset: str, partitions: tuple[str, ...], count: int | None,
                exit_at_end: bool, follow: bool, group: str | None, fmt: str | None, data: str | None) -> None:
    """Print the records of TOPIC to stdout."""
    if follow and exit_at_end:
        raise click.UsageError("-f (follow) and -e (exit at end) contradict each other")
    try:
        spec = parse_offset_spec(offset)
    except OffsetSyntaxError as e:
        raise click.BadParameter(str(e), param_hint="'-o'") from None
    try:
        formatter = make_formatter(fmt if fmt is not None else ("text" if stdout_is_tty() else "json"))
    except FormatError as e:
        raise click.BadParameter(str(e), param_hint="'--format'") from None
    wanted = parse_partitions(partitions)

    data_dir = resolve_data_dir(data)
    logdir = open_logdir(data_dir)
    t = get_topic(logdir, topic)
    out = sys.stdout.buffer
    if group is not None:
        if wanted:
            raise click.UsageError("-p cannot be used with -g: the group assigns the partitions")
        if spec.end is not None:
            raise click.UsageError("with -g, -o takes a start position (start, end, N, -N, +N, @TIME), not a range")
        from .consume_group import consume_as_group

        consume_as_group(data_dir, logdir, t, group, spec, formatter, out, count, follow)
        return
    cursors = []
    for p in pick_partitions(t, wanted):
        pl = t.partition(p)
        rng = resolve_partition_range(pl, spec, stop_at_end=not follow)
        if rng.clamped:
            err(f"arrowlog: partition {p}: offset {spec.start.describe()} is below the log start; "
                f"starting at {rng.start}")
        cursors.append(_Cursor(p, pl, rng))
    _run(logdir, topic, cursors, formatter, out, count, follow)


def _run(logdir: Any, topic: str, cursors: list[_Cursor], formatter: Any, out: Any, count: int | None,
         follow: bool) -> int:
    written = 0
    while True:
        active = [c for c in cursors if not c.done]
        if not active:
            return written
        progressed = False
        for c in active:
            before = c.position
            batches, nxt = read_batches(c.log, c.position, c.end)
            for b in batches:
                log_start, hwm = c.log.watermarks()
                chunk = []
                for rec in batch_records(b, topic, c.partition, log_start, hwm):
                    written += 1
                    chunk.append(formatter(rec, written))
                    c.position = rec.offset + 1
                    if count is not None and written >= count:
                        out.write(b"".join(chunk))
                        out.flush()
                        return written
                out.write(b"".join(chunk))
            c.position = max(c.position, nxt)
            progressed = progressed or c.position > before
        out.flush()
        if progressed:
            continue
        if not follow:
            return written  # nothing left below any cursor's end
        wait_for_data(logdir.notifier, [(c.log, c.position) for c in active], IDLE_WAIT_S)
