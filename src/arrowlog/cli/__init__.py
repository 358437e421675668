"""The ``arrowlog`` command line: kcat/rpk-style tools for a local log.

One module per command group; :func:`main` is the console entry point
(``arrowlog = "arrowlog.cli:main"``) and ``python -m arrowlog``. Every
command writes data to stdout and everything else to stderr, and exits with
the stable codes listed in :mod:`arrowlog.cli.common` and docs/CLI.md.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import click

from .acl import acl_group
from .common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    err,
    silence_stdout,
    translate_error,
)
from .console import console_cmd
from .consume import consume_cmd
from .export import export_cmd
from .group import group_group
from .metrics import metrics_cmd
from .mirror import mirror_cmd
from .ops import bench_cmd, demo_cmd, recover_cmd, serve_cmd, verify_cmd
from .produce import produce_cmd
from .topic import topic_group
from .user import user_group

__all__ = ["cli", "main"]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("arrowlog")
    except Exception:  # not installed: running from a source tree
        return "0+source"


@click.group(
    context_settings=CONTEXT_SETTINGS,
    epilog="""\b
Example session:
  arrowlog topic create orders -p 3
  seq 1 5 | arrowlog produce orders
  arrowlog consume orders -o start -e
  arrowlog export orders --to orders.parquet

Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 already exists,
5 damaged data (verify), 6 unavailable, 130 interrupted, 143 terminated.
""",
)
@click.option("--data", "data", metavar="DIR", default=None,
              help="Data directory for every command [default: $ARROWLOG_DATA, else ./arrowlog-data].")
@click.version_option(_version(), "-V", "--version", prog_name="arrowlog")
@click.pass_context
def cli(ctx: click.Context, data: str | None) -> None:
    """arrowlog: an ordered, durable, partitioned, replayable log in a directory."""
    ctx.ensure_object(dict)
    ctx.obj["data"] = data


for command in (topic_group, produce_cmd, consume_cmd, group_group, export_cmd,
                verify_cmd, recover_cmd, demo_cmd, bench_cmd, serve_cmd, mirror_cmd, user_group, acl_group,
                metrics_cmd, console_cmd):
    cli.add_command(command)


def _usage_line(e: click.UsageError) -> str:
    hint = ""
    if e.ctx is not None:
        hint = f" (see '{e.ctx.command_path} --help')"
    return f"arrowlog: error: {e.format_message()}{hint}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (never raises for a user's mistake)."""
    args = list(sys.argv[1:] if argv is None else argv)
    previous = _exit_on_sigterm()
    try:
        rc = cli.main(args=args, prog_name="arrowlog", standalone_mode=False)
        return rc if isinstance(rc, int) else EXIT_OK
    except click.UsageError as e:
        err(_usage_line(e))
        return EXIT_USAGE
    except CliError as e:
        e.show()
        return e.exit_code
    except click.ClickException as e:
        err(f"arrowlog: error: {e.format_message()}")
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        err("arrowlog: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        silence_stdout()
        return EXIT_OK
    except Exception as e:  # a bug, or an error the commands did not translate
        translated = translate_error(e)
        if translated is not None:
            translated.show()
            return translated.exit_code
        if os.environ.get("ARROWLOG_DEBUG"):
            raise
        err(f"arrowlog: internal error: {type(e).__name__}: {e} (set ARROWLOG_DEBUG=1 for a traceback)")
        return EXIT_ERROR
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm() -> Any:
    """Make SIGTERM (``kill``, ``timeout``) unwind like Ctrl-C does, so a
    ``consume -g`` commits what it printed and files are closed; exit 143."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, terminate)
