"""Operations: ``verify``, ``recover``, ``demo``, ``bench``, ``serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from .common import (
    EXIT_CORRUPT,
    CliError,
    Unavailable,
    command_body,
    err,
    note,
    out,
    print_table,
    resolve_data_dir,
)
from .store import get_topic, open_logdir


def scan_partition(pl: Any) -> dict[str, Any]:
    """CRC-check every stored batch of a partition (the storage's ``verify()``)."""
    report = pl.verify()
    errors = list(report.get("errors") or [])
    return {"ok": not errors, "segments": report.get("segments"), "batches": report.get("frames"),
            "records": report.get("records"), "bytes": report.get("bytes"),
            "error": "; ".join(errors) or None}


@click.command(
    "verify",
    epilog="""\b
Examples:
  arrowlog verify
  arrowlog verify -t orders --json
""",
)
@click.option("-t", "--topic", "topics", multiple=True, help="Only this topic (repeat).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@command_body
def verify_cmd(topics: tuple[str, ...], as_json: bool, data: str | None) -> None:
    """Check the CRC32C of every stored batch and report per partition (exit 5 if damaged)."""
    from arrowlog.errors import CorruptRecordError, StorageError

    logdir = open_logdir(resolve_data_dir(data))
    names = list(topics) or sorted(logdir.list_topics())
    report: list[dict[str, Any]] = []
    for name in names:
        try:
            t = get_topic(logdir, name)
        except CorruptRecordError as exc:  # a damaged topic.json
            report.append({"topic": name, "partition": None, "ok": False, "segments": None, "batches": None,
                           "records": None, "bytes": None, "error": str(exc)})
            continue
        for p in range(t.num_partitions):
            try:
                res = scan_partition(t.partition(p))
            except (CorruptRecordError, StorageError) as exc:
                res = {"ok": False, "segments": None, "batches": None, "records": None, "bytes": None,
                       "error": str(exc)}
            report.append({"topic": name, "partition": p, **res})
    bad = [r for r in report if not r["ok"]]
    if as_json:
        out(json.dumps(report))
    else:
        print_table(["TOPIC", "PARTITION", "BATCHES", "RECORDS", "STATUS"],
                    [[r["topic"], "-" if r["partition"] is None else r["partition"], r["batches"], r["records"],
                      "ok" if r["ok"] else f"DAMAGED: {r['error']}"] for r in report])
    if bad:
        raise CliError(f"{len(bad)} of {len(report)} partitions are damaged; run 'arrowlog recover'",
                       EXIT_CORRUPT)
    note(f"verified {len(report)} partition{'s' if len(report) != 1 else ''}: all batches intact")


@click.command(
    "recover",
    epilog="Example:\n\n  arrowlog recover --data ./arrowlog-data",
)
@command_body
def recover_cmd(data: str | None) -> None:
    """Run recovery now: rebuild a damaged topic.json, check CRCs, truncate torn tails, resume the log
    after a missing segment, rebuild indexes and the partition state (see docs/DURABILITY.md)."""
    data_dir = resolve_data_dir(data)
    logdir = open_logdir(data_dir)
    rows = []
    for name in sorted(logdir.list_topics()):
        if logdir.repair_topic(name) is not None:
            note(f"{name}: rebuilt its damaged topic.json from the partition directories")
        t = logdir.topic(name)
        for p in range(t.num_partitions):
            r = t.partition(p).recover(check_all=True)
            rows.append([name, p, r.get("segments_scanned"), r.get("truncated_bytes"),
                         r.get("segments_deleted"), r.get("segments_quarantined", 0), r.get("indexes_rebuilt")])
    print_table(["TOPIC", "PARTITION", "SEGMENTS-SCANNED", "TRUNCATED-BYTES", "SEGMENTS-DELETED",
                 "QUARANTINED", "INDEXES-REBUILT"], rows)
    note(f"recovered {len(rows)} partition{'s' if len(rows) != 1 else ''} in {data_dir}")


@click.command(
    "demo",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog="""\b
Examples:
  arrowlog demo                          # a guided tour in ./demo-data (replaced on each run)
  arrowlog demo /tmp/tour                # ...in another scratch directory

The directory must be new, empty, or one an earlier demo made (it holds a
.arrowlog-demo file): any other directory is refused, never deleted.
""",
)
@click.pass_context
def demo_cmd(ctx: click.Context) -> None:
    """Run the guided demo in a scratch directory (arguments after 'demo' are passed on)."""
    if any(a == "--data" or a.startswith("--data=") for a in ctx.args):
        raise click.UsageError("demo replaces its own directory on every run, so it takes no --data: "
                               "give a scratch directory as 'arrowlog demo DIR'")
    from arrowlog import demo

    rc = demo.main(list(ctx.args))
    ctx.exit(rc if isinstance(rc, int) else 0)


def _repo_root() -> Path | None:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "bench" / "__main__.py").is_file() or (parent / "bench" / "__init__.py").is_file():
            return parent
        if (parent / "pyproject.toml").is_file():
            return parent if (parent / "bench").is_dir() else None
    return None


@click.command(
    "bench",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    epilog="""\b
Examples:
  arrowlog bench --quick                 # python -m bench --quick, in the source tree
  arrowlog bench --only produce
  arrowlog bench -- --help               # the harness's own options
""",
)
@click.pass_context
def bench_cmd(ctx: click.Context) -> None:
    """Run the benchmark harness (python -m bench); extra arguments are passed on."""
    root = _repo_root()
    if root is None:
        raise Unavailable("the benchmark harness ships with the source repository (bench/), not found here")
    env = dict(os.environ)
    src = str(root / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    err(f"arrowlog: running {sys.executable} -m bench in {root}")
    rc = subprocess.call([sys.executable, "-m", "bench", *ctx.args], cwd=root, env=env)
    ctx.exit(rc)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9092)", param_hint="'--listen'")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def _server_options(fn):
    """Every option of ``python -m arrowlog.server``, from its one table (server/options.py)."""
    try:
        from arrowlog.server.options import click_options
    except ImportError:  # a build without the server: serve reports it when run
        return fn
    return click_options(fn)


@click.command(
    "serve",
    epilog="""\b
Examples:
  arrowlog serve --listen 127.0.0.1:9092
  kcat -b 127.0.0.1:9092 -L
""",
)
@click.option("--listen", default="127.0.0.1:9092", show_default=True, metavar="HOST:PORT",
              help="Address for the Kafka protocol listener.")
@_server_options
@click.pass_context
@command_body
def serve_cmd(ctx: click.Context, listen: str, data: str | None, **options: Any) -> None:
    """Serve the data directory over the Kafka wire protocol."""
    host, port = parse_listen(listen)
    data_dir = resolve_data_dir(data)
    from arrowlog.server.options import run

    ctx.exit(run(data_dir, host, port, options))
