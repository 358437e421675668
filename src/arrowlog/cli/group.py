"""``arrowlog group list|describe|reset|delete``, after ``kafka-consumer-groups``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from .common import CliError, NotFound, command_body, group_ids, note, out, print_table, resolve_data_dir
from .groups import GroupStore, open_group_store
from .offsets import OffsetSyntaxError, parse_time_ms
from .store import get_topic, open_logdir, parse_partitions, pick_partitions

LAG_COLUMNS = ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "OWNER"]

# Reset modes.
TO_EARLIEST = "earliest"
TO_LATEST = "latest"
TO_OFFSET = "offset"
TO_DATETIME = "datetime"
SHIFT_BY = "shift"


def plan_reset(
    mode: str,
    value: int | None,
    current: int | None,
    log_start: int,
    high_watermark: int,
    offset_for_time: Callable[[int], int | None],
) -> int:
    """The new committed offset of one partition, kept within [log start, high watermark].

    A partition with no committed offset shifts from its log start offset.
    """
    if mode == TO_EARLIEST:
        target = log_start
    elif mode == TO_LATEST:
        target = high_watermark
    elif mode == TO_OFFSET:
        target = int(value or 0)
    elif mode == TO_DATETIME:
        found = offset_for_time(int(value or 0))
        target = high_watermark if found is None else found
    elif mode == SHIFT_BY:
        target = (log_start if current is None else current) + int(value or 0)
    else:
        raise ValueError(f"unknown reset mode {mode!r}")
    return min(max(target, log_start), high_watermark)


def lag_rows(store: GroupStore, logdir: Any, group: str) -> list[dict[str, Any]]:
    """One row per partition of every topic the group has committed offsets for."""
    committed = store.committed(group)
    owners = store.members(group)
    topics = sorted({t for t, _ in committed} | {t for t, _ in owners})
    known = set(logdir.list_topics())
    rows = []
    for topic in topics:
        if topic not in known:
            for (t, p), off in sorted(committed.items()):
                if t == topic:
                    rows.append(_row(group, topic, p, off, None, owners.get((t, p))))
            continue
        tp = logdir.topic(topic)
        for p in range(tp.num_partitions):
            hwm = tp.partition(p).high_watermark
            rows.append(_row(group, topic, p, committed.get((topic, p)), hwm, owners.get((topic, p))))
    return rows


def _row(group: str, topic: str, p: int, current: int | None, end: int | None, owner: str | None) -> dict[str, Any]:
    lag = None if current is None or end is None else max(0, end - current)
    return {"group": group, "topic": topic, "partition": p, "current_offset": current,
            "log_end_offset": end, "lag": lag, "owner": owner}


def _known_group(store: GroupStore, group: str) -> None:
    if group not in store.list_groups():
        known = ", ".join(sorted(store.list_groups())) or "none"
        raise NotFound(f"unknown group {group!r} (groups: {known})")


@click.group("group", epilog="Example:\n\n  arrowlog group describe billing")
def group_group() -> None:
    """Inspect consumer groups, their lag, and reset their offsets."""


@group_group.command("list", epilog="Example:\n\n  arrowlog group list")
@command_body
def list_cmd(data: str | None) -> None:
    """List the consumer groups that have committed offsets."""
    data_dir = resolve_data_dir(data)
    open_logdir(data_dir)
    for g in sorted(open_group_store(data_dir).list_groups()):
        out(g)


@group_group.command(
    "describe",
    epilog="""\b
Examples:
  arrowlog group describe billing
  arrowlog group describe                      # every group
  arrowlog group describe billing --json | jq '[.[].lag] | add'
""",
)
@click.argument("groups", nargs=-1, callback=group_ids)
@click.option("--json", "as_json", is_flag=True, help="A JSON array of rows instead of a table.")
@command_body
def describe_cmd(groups: tuple[str, ...], as_json: bool, data: str | None) -> None:
    """Show each partition's committed offset, log end offset, lag and owner
    (for GROUPS, or every group)."""
    data_dir = resolve_data_dir(data)
    logdir = open_logdir(data_dir)
    store = open_group_store(data_dir)
    rows: list[dict[str, Any]] = []
    for g in groups or sorted(store.list_groups()):
        _known_group(store, g)
        rows.extend(lag_rows(store, logdir, g))
    if as_json:
        out(json.dumps(rows))
        return
    print_table(LAG_COLUMNS, [[r["group"], r["topic"], r["partition"], r["current_offset"],
                               r["log_end_offset"], r["lag"], r["owner"]] for r in rows])


def _reset_mode(to_earliest: bool, to_latest: bool, to_offset: int | None, to_datetime: str | None,
                shift_by: int | None) -> tuple[str, int | None]:
    chosen = [(TO_EARLIEST, None) if to_earliest else None,
              (TO_LATEST, None) if to_latest else None,
              (TO_OFFSET, to_offset) if to_offset is not None else None,
              (TO_DATETIME, to_datetime) if to_datetime is not None else None,
              (SHIFT_BY, shift_by) if shift_by is not None else None]
    picked = [c for c in chosen if c is not None]
    if len(picked) != 1:
        raise click.UsageError(
            "give exactly one of --to-earliest, --to-latest, --to-offset N, --to-datetime T, --shift-by N")
    mode, value = picked[0]
    if isinstance(value, str):  # --to-datetime
        try:
            return mode, parse_time_ms(value)
        except OffsetSyntaxError as e:
            raise click.BadParameter(str(e), param_hint="'--to-datetime'") from None
    return mode, value


@group_group.command(
    "reset",
    epilog="""\b
Examples:
  arrowlog group reset billing -t orders --to-earliest            # dry run: prints the plan
  arrowlog group reset billing -t orders --to-datetime -1h --execute
  arrowlog group reset billing --all-topics --shift-by -100 --execute
""",
)
@click.argument("group", callback=group_ids)
@click.option("-t", "--topic", "topics", multiple=True, help="Reset this topic (repeat).")
@click.option("--all-topics", is_flag=True, help="Reset every topic the group has offsets for.")
@click.option("-p", "--partition", "partitions", multiple=True, metavar="N", help="Only these partitions.")
@click.option("--to-earliest", is_flag=True, help="To the log start offset.")
@click.option("--to-latest", is_flag=True, help="To the high watermark (skip everything).")
@click.option("--to-offset", type=int, default=None, metavar="N", help="To offset N.")
@click.option("--to-datetime", default=None, metavar="TIME",
              help="To the first record at or after TIME (2024-05-01T10:00:00Z, -1h, epoch ms).")
@click.option("--shift-by", type=int, default=None, metavar="N", help="Move by N (negative: back).")
@click.option("--execute", is_flag=True, help="Apply the plan (without it this is a dry run).")
@command_body
def reset_cmd(group: str, topics: tuple[str, ...], all_topics: bool, partitions: tuple[str, ...],
              to_earliest: bool, to_latest: bool, to_offset: int | None, to_datetime: str | None,
              shift_by: int | None, execute: bool, data: str | None) -> None:
    """Plan, and with --execute apply, new committed offsets for GROUP."""
    mode, value = _reset_mode(to_earliest, to_latest, to_offset, to_datetime, shift_by)
    if bool(topics) == all_topics:
        raise click.UsageError("give -t TOPIC (repeatable) or --all-topics")
    wanted = parse_partitions(partitions)
    data_dir = resolve_data_dir(data)
    logdir = open_logdir(data_dir)
    store = open_group_store(data_dir)
    committed = store.committed(group)
    if all_topics:
        _known_group(store, group)
        topics = tuple(sorted({t for t, _ in committed}))
    plan: dict[tuple[str, int], int] = {}
    rows = []
    for topic in topics:
        t = get_topic(logdir, topic)
        for p in pick_partitions(t, wanted):
            pl = t.partition(p)
            current = committed.get((topic, p))
            new = plan_reset(mode, value, current, pl.log_start_offset, pl.high_watermark, pl.offset_for_timestamp)
            plan[(topic, p)] = new
            rows.append([group, topic, p, current, new])
    print_table(["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"], rows)
    if not execute:
        note("dry run: nothing changed; add --execute to apply this plan")
        return
    owners = store.members(group)
    busy = sorted({o for tp, o in owners.items() if tp in plan and o})
    if busy:
        raise CliError(f"group {group!r} has live members ({', '.join(busy)}); stop them before a reset")
    store.commit(group, plan)
    note(f"reset {len(plan)} partition offset{'s' if len(plan) != 1 else ''} of group {group}")


@group_group.command("delete", epilog="Example:\n\n  arrowlog group delete billing")
@click.argument("groups", nargs=-1, required=True, callback=group_ids)
@command_body
def delete_cmd(groups: tuple[str, ...], data: str | None) -> None:
    """Delete groups and their committed offsets (refused while members are alive)."""
    data_dir = resolve_data_dir(data)
    open_logdir(data_dir)
    store = open_group_store(data_dir)
    for g in groups:
        _known_group(store, g)
        owners = {o for o in store.members(g).values() if o}
        if owners:
            raise CliError(f"group {g!r} has live members ({', '.join(sorted(owners))}); stop them first")
        store.delete(g)
        note(f"deleted group {g}")
