"""``arrowlog topic create|list|describe|delete|alter|compact``."""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

import click

from ..config import is_compacted
from ..storage.cleaner import health as cleaner_health
from .common import (
    EXIT_EXISTS,
    CliError,
    command_body,
    human_bytes,
    note,
    out,
    parse_size,
    print_table,
    resolve_data_dir,
)
from .offsets import OffsetSyntaxError, parse_duration_ms, parse_time_ms
from .store import complete_topics, get_topic, open_logdir, partition_usage

# Dotted config keys, as in Kafka's topic configs.
RETENTION_MS = "retention.ms"
RETENTION_BYTES = "retention.bytes"
SEGMENT_BYTES = "segment.bytes"
COMPRESSION = "compression.type"
VALUE_SCHEMA = "value.schema"


def _retention_ms(text: str) -> int:
    """``7d``, ``12h``, ``forever``/``-1`` or plain milliseconds."""
    s = text.strip().lower()
    if s in ("-1", "forever", "infinite", "none"):
        return -1
    if s.isdigit():
        return int(s)
    try:
        return parse_duration_ms(s)
    except OffsetSyntaxError as e:
        raise click.BadParameter(f"{e} (or 'forever')", param_hint="'--retention'") from None


def _duration_text(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def retention_text(config: dict[str, Any]) -> str:
    """The retention in force, for people: ``forever``, ``7d``, ``7d or
    10.0 GiB per partition`` (-1 or a missing key means no limit)."""
    ms, size = (-1 if config.get(k) is None else int(config[k]) for k in (RETENTION_MS, RETENTION_BYTES))
    limits = []
    if ms >= 0:
        limits.append(f"records older than {_duration_text(ms)} are deleted")
    if size >= 0:
        limits.append(f"oldest segments beyond {human_bytes(size)} per partition are deleted")
    if not limits:
        return "forever (retention.ms=-1, retention.bytes=-1)"
    return " and ".join(limits) + f" (retention.ms={ms}, retention.bytes={size})"


def _config_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    cfg: dict[str, str] = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k.strip():
            raise click.BadParameter(f"bad config {pair!r}: expected KEY=VALUE", param_hint="'-c'")
        cfg[k.strip()] = v
    return cfg


def parse_value_schema(text: str) -> dict[str, Any]:
    """``--value-schema``: ``id:int64,name:string``, the JSON form
    ``{"fields": [{"name": "id", "type": "int64"}]}``, or a file holding either."""
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as f:
            text = f.read()
    s = text.strip()
    if s.startswith("{"):
        try:
            spec = json.loads(s)
        except ValueError as e:
            raise click.BadParameter(f"not JSON: {e}", param_hint="'--value-schema'") from None
        if not isinstance(spec, dict) or not isinstance(spec.get("fields"), list):
            raise click.BadParameter('expected {"fields": [{"name": ..., "type": ...}]}',
                                     param_hint="'--value-schema'")
        return spec
    fields = []
    for part in s.split(","):
        name, sep, typ = part.strip().partition(":")
        if not sep or not name.strip() or not typ.strip():
            raise click.BadParameter(f"bad field {part.strip()!r}: expected NAME:TYPE, e.g. id:int64,name:string",
                                     param_hint="'--value-schema'")
        fields.append({"name": name.strip(), "type": typ.strip()})
    return {"fields": fields}


def _common_config(retention: str | None, retention_bytes: str | None, segment_size: str | None,
                   compression: str | None, value_schema: str | None, configs: tuple[str, ...]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    if retention is not None:
        cfg[RETENTION_MS] = _retention_ms(retention)
    if retention_bytes is not None:
        cfg[RETENTION_BYTES] = -1 if retention_bytes.strip() == "-1" else parse_size(retention_bytes, "'--retention-bytes'")
    if segment_size is not None:
        cfg[SEGMENT_BYTES] = parse_size(segment_size, "'--segment-size'")
    if compression is not None:
        cfg[COMPRESSION] = compression
    if value_schema is not None:
        cfg[VALUE_SCHEMA] = parse_value_schema(value_schema)
    cfg.update(_config_pairs(configs))
    return cfg


def _config_options(fn: Any) -> Any:
    for opt in reversed([
        click.option("--retention", default=None, metavar="DURATION",
                     help="Keep records this long: 7d (Kafka's default), 12h, forever (retention.ms) "
                          "[default for a new topic: forever]."),
        click.option("--retention-bytes", default=None, metavar="SIZE",
                     help="Keep at most this much per partition: 10GiB, -1 for no limit (retention.bytes)."),
        click.option("--segment-size", default=None, metavar="SIZE",
                     help="Roll segments at this size: 64MiB (segment.bytes)."),
        click.option("--compression", type=click.Choice(["none", "zstd", "lz4"]), default=None,
                     help="Arrow IPC buffer compression (compression.type)."),
        click.option("--value-schema", default=None, metavar="FILE|TEXT",
                     help="Typed values: id:int64,name:string, JSON, or a file (value.schema)."),
        click.option("-c", "--config", "configs", multiple=True, metavar="KEY=VALUE",
                     help="Any topic config, e.g. -c retention.ms=3600000 (repeat)."),
    ]):
        fn = opt(fn)
    return fn


@click.group("topic", epilog="Example:\n\n  arrowlog topic create orders -p 3 --retention 7d")
def topic_group() -> None:
    """Create, list, describe, change and delete topics."""


@topic_group.command(
    "create",
    epilog="""\b
Examples:
  arrowlog topic create orders
  arrowlog topic create orders -p 3 --retention 7d --segment-size 64MiB --compression zstd
""",
)
@click.argument("name")
@click.option("-p", "--partitions", type=click.IntRange(min=1), default=1, show_default=True)
@_config_options
@command_body
def create_cmd(name: str, partitions: int, retention: str | None, retention_bytes: str | None,
               segment_size: str | None, compression: str | None, value_schema: str | None,
               configs: tuple[str, ...], data: str | None) -> None:
    """Create topic NAME (and the data directory if it is new).

    Records are kept forever unless --retention or --retention-bytes says
    otherwise (Kafka's 7 days: --retention 7d)."""
    cfg = _common_config(retention, retention_bytes, segment_size, compression, value_schema, configs)
    data_dir = resolve_data_dir(data)
    logdir = open_logdir(data_dir, create=True)
    if name in logdir.list_topics():
        raise CliError(f"topic {name!r} already exists in {data_dir}", EXIT_EXISTS)
    t = logdir.create_topic(name, partitions=partitions, config=cfg)
    note(created_text(t, data_dir))


def created_text(t: Any, data_dir: str) -> str:
    """``created topic NAME with N partitions in DIR; retention: ...``."""
    return (f"created topic {t.name} with {t.num_partitions} partition{'s' if t.num_partitions != 1 else ''} "
            f"in {data_dir}; retention: {retention_text(t.config)}")


@topic_group.command(
    "list",
    epilog="""\b
Examples:
  arrowlog topic list
  arrowlog topic list --names | xargs -n1 arrowlog topic describe
""",
)
@click.option("--names", is_flag=True, help="Only the names, one a line.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of {name, partitions, records}.")
@command_body
def list_cmd(names: bool, as_json: bool, data: str | None) -> None:
    """List the topics with their partition and record counts."""
    logdir = open_logdir(resolve_data_dir(data))
    topics = sorted(logdir.list_topics())
    if names:
        for n in topics:
            out(n)
        return
    rows = []
    for n in topics:
        t = logdir.topic(n)
        records = sum(_record_count(t.partition(p)) for p in range(t.num_partitions))
        rows.append({"name": n, "partitions": t.num_partitions, "records": records})
    if as_json:
        out(json.dumps(rows))
        return
    print_table(["TOPIC", "PARTITIONS", "RECORDS"], [[r["name"], r["partitions"], r["records"]] for r in rows])


def _record_count(pl: Any) -> int:
    return max(0, pl.high_watermark - pl.log_start_offset)


def describe_topic(logdir: Any, name: str) -> dict[str, Any]:
    t = get_topic(logdir, name)
    parts = []
    for p in range(t.num_partitions):
        pl = t.partition(p)
        usage = partition_usage(pl)
        parts.append({
            "partition": p,
            "log_start_offset": pl.log_start_offset,
            "high_watermark": pl.high_watermark,
            "records": _record_count(pl),
            "size_bytes": usage.size_bytes,
            "segments": usage.segments,
        })
        if is_compacted(t.config):
            parts[-1]["cleaner"] = cleaner_health(pl)
    config = {str(k): v for k, v in dict(t.config).items()}
    return {"name": t.name, "partitions": parts, "config": config, "retention": retention_text(config)}


@topic_group.command(
    "describe",
    epilog="""\b
Examples:
  arrowlog topic describe orders
  arrowlog topic describe orders --json | jq '.partitions[].high_watermark'
""",
)
@click.argument("name", shell_complete=complete_topics)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@command_body
def describe_cmd(name: str, as_json: bool, data: str | None) -> None:
    """Show TOPIC's config and, per partition, offsets, size on disk and segments."""
    data_dir = resolve_data_dir(data)
    info = describe_topic(open_logdir(data_dir), name)
    if as_json:
        out(json.dumps(info, default=str))
        return
    out(f"TOPIC       {info['name']}")
    out(f"PARTITIONS  {len(info['partitions'])}")
    out(f"RETENTION   {info['retention']}")
    if info["config"]:
        out("")
        print_table(["CONFIG", "VALUE"], sorted(
            (k, v if v is None or isinstance(v, (str, int, float)) else json.dumps(v))
            for k, v in info["config"].items()))
    out("")
    print_table(
        ["PARTITION", "LOG-START-OFFSET", "HIGH-WATERMARK", "RECORDS", "SIZE", "SEGMENTS"],
        [
            [p["partition"], p["log_start_offset"], p["high_watermark"], p["records"],
             None if p["size_bytes"] is None else human_bytes(p["size_bytes"]), p["segments"]]
            for p in info["partitions"]
        ],
    )
    cleaned = [p for p in info["partitions"] if "cleaner" in p]
    if cleaned:
        out("")
        print_table(
            ["PARTITION", "DIRTY-RATIO", "LAST-CLEAN", "DURATION-MS", "RECLAIMED", "CLEANS", "LAST-ERROR"],
            [[p["partition"], p["cleaner"]["dirty_ratio"], _clean_time(p["cleaner"]["last_clean_ms"]),
              p["cleaner"]["last_clean_duration_ms"], human_bytes(p["cleaner"]["bytes_reclaimed"]),
              p["cleaner"]["cleans"], p["cleaner"]["last_error"] or "-"] for p in cleaned],
        )
        for p in cleaned:
            if p["cleaner"]["last_error"]:
                note(f"partition {p['partition']}: the cleaner FAILED: {p['cleaner']['last_error']}")


def _clean_time(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@topic_group.command(
    "compact",
    epilog="""\b
Examples:
  arrowlog topic compact users
  arrowlog topic compact users --json
""",
)
@click.argument("name", shell_complete=complete_topics)
@click.option("--json", "as_json", is_flag=True, help="Print each partition's report as JSON.")
@command_body
def compact_cmd(name: str, as_json: bool, data: str | None) -> None:
    """Compact TOPIC now (cleanup.policy=compact): keep the latest record of
    each key in its closed segments, drop expired tombstones."""
    logdir = open_logdir(resolve_data_dir(data))
    get_topic(logdir, name)
    reports = logdir.compact(name)
    if as_json:
        out(json.dumps(reports))
        return
    print_table(["PARTITION", "SEGMENTS", "REWRITTEN", "RECORDS-BEFORE", "RECORDS-AFTER", "RECLAIMED", "MS"],
                [[r["partition"], r["segments"], r["segments_rewritten"], r["records_before"], r["records_after"],
                  human_bytes(r["bytes_reclaimed"]), r["duration_ms"]] for r in reports])


@topic_group.command(
    "delete",
    epilog="""\b
Examples:
  arrowlog topic delete orders
  arrowlog topic delete orders payments --if-exists
""",
)
@click.argument("names", nargs=-1, required=True, shell_complete=complete_topics)
@click.option("--if-exists", is_flag=True, help="Do not fail for topics that do not exist.")
@command_body
def delete_cmd(names: tuple[str, ...], if_exists: bool, data: str | None) -> None:
    """Delete topics and all their records."""
    logdir = open_logdir(resolve_data_dir(data))
    existing = set(logdir.list_topics())
    missing = [n for n in names if n not in existing]
    if missing and not if_exists:
        get_topic(logdir, missing[0])  # exits 3 naming the known topics
    for n in names:
        if n in existing:
            logdir.delete_topic(n)
            note(f"deleted topic {n}")


@topic_group.command(
    "alter",
    epilog="""\b
Examples:
  arrowlog topic alter orders --retention 3d
  arrowlog topic alter orders -c segment.bytes=134217728
  arrowlog topic alter orders --partitions 6
""",
)
@click.argument("name", shell_complete=complete_topics)
@click.option("-p", "--partitions", type=click.IntRange(min=1), default=None,
              help="Grow the topic to this many partitions.")
@_config_options
@command_body
def alter_cmd(name: str, partitions: int | None, retention: str | None, retention_bytes: str | None,
              segment_size: str | None, compression: str | None, value_schema: str | None,
              configs: tuple[str, ...], data: str | None) -> None:
    """Change TOPIC's config or grow its partition count."""
    cfg = _common_config(retention, retention_bytes, segment_size, compression, value_schema, configs)
    if not cfg and partitions is None:
        raise click.UsageError("nothing to change: give --partitions, --retention, -c KEY=VALUE, ...")
    logdir = open_logdir(resolve_data_dir(data))
    t = get_topic(logdir, name)
    if partitions is not None:
        if partitions < t.num_partitions:
            raise click.BadParameter(
                f"{name!r} has {t.num_partitions} partitions; partitions can only be added",
                param_hint="'--partitions'")
        if partitions > t.num_partitions:
            logdir.add_partitions(name, partitions)
            note(f"topic {name} now has {partitions} partitions")
    if cfg:
        t = logdir.alter_topic(name, cfg)
        note(f"topic {name}: set " + ", ".join(f"{k}={v}" for k, v in cfg.items())
             + (f"; retention: {retention_text(t.config)}" if {RETENTION_MS, RETENTION_BYTES} & cfg.keys() else ""))


@topic_group.command(
    "offsets",
    epilog="""\b
Examples:
  arrowlog topic offsets orders                       # log start and high watermark
  arrowlog topic offsets orders --at 2024-05-01T09:00:00Z
  arrowlog topic offsets orders --at -1h --json
""",
)
@click.argument("name", shell_complete=complete_topics)
@click.option("--at", "at", default=None, metavar="TIME",
              help="Also the first offset at or after TIME (epoch ms, a date, RFC 3339, -1h), like kcat -Q.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of rows instead of a table.")
@command_body
def offsets_cmd(name: str, at: str | None, as_json: bool, data: str | None) -> None:
    """Show each partition's log start offset and high watermark, and the offset for a time."""
    when = None
    if at is not None:
        try:
            when = parse_time_ms(at)
        except OffsetSyntaxError as e:
            raise click.BadParameter(str(e), param_hint="'--at'") from None
    t = get_topic(open_logdir(resolve_data_dir(data)), name)
    rows = []
    for p in range(t.num_partitions):
        pl = t.partition(p)
        low, high = pl.watermarks()
        row = {"topic": name, "partition": p, "log_start_offset": low, "high_watermark": high}
        if when is not None:
            found = pl.offset_for_timestamp(when)
            row["offset_at_time"] = high if found is None else found
        rows.append(row)
    if as_json:
        out(json.dumps(rows))
        return
    headers = ["TOPIC", "PARTITION", "LOG-START-OFFSET", "HIGH-WATERMARK"] + (["OFFSET-AT-TIME"] if at else [])
    print_table(headers, [list(r.values()) for r in rows])
