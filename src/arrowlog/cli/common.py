"""What every command shares: exit codes, ``--data``, errors, stderr output.

Exit codes (stable; documented in docs/CLI.md):

====  =============================================================
0     success
1     error (I/O, storage, anything not listed below)
2     usage: a bad option, argument, offset expression or format
3     not found: unknown topic, partition or group
4     already exists (``topic create`` of an existing topic)
5     verification failed: ``verify`` found damaged data
6     unavailable: a component this command needs is not installed
130   interrupted (Ctrl-C)
143   terminated (SIGTERM)
====  =============================================================
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_EXISTS = 4
EXIT_CORRUPT = 5
EXIT_UNAVAILABLE = 6
EXIT_INTERRUPTED = 130

DEFAULT_DATA = "./arrowlog-data"


class CliError(click.ClickException):
    """A one-line error on stderr and a chosen exit code; never a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR):
        super().__init__(message)
        # click declares exit_code a class variable; each CliError chooses its own
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: Any = None) -> None:
        err(f"arrowlog: error: {self.format_message()}")


class NotFound(CliError):
    def __init__(self, message: str):
        super().__init__(message, EXIT_NOT_FOUND)


class Unavailable(CliError):
    def __init__(self, message: str):
        super().__init__(message, EXIT_UNAVAILABLE)


# ------------------------------------------------------------------ terminal


def color_enabled(stream: Any = None) -> bool:
    """Colour only on a terminal and never with ``NO_COLOR`` set (no-color.org)."""
    if os.environ.get("NO_COLOR", "") != "":
        return False
    stream = sys.stderr if stream is None else stream
    return _isatty(stream)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def stdout_is_tty() -> bool:
    return _isatty(sys.stdout)


def stderr_is_tty() -> bool:
    return _isatty(sys.stderr)


def err(message: str) -> None:
    """A line for the human: always stderr, never mixed with data."""
    click.echo(message, err=True, color=color_enabled())


def note(message: str, quiet: bool = False) -> None:
    if not quiet:
        err(message)


def out(line: str) -> None:
    click.echo(line)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned table on stdout (data, so it pipes into ``column``/``awk``)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        out("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


_SIZE_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4,
}


def parse_size(text: str, param_hint: str | None = None) -> int:
    """``64MiB`` → 67108864, ``1GB`` → 10**9, ``4096`` → 4096; a bad size
    names ``param_hint`` (the option it came from)."""
    s = text.strip().lower().replace(" ", "")
    num = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(num):]
    try:
        if not num or unit not in _SIZE_UNITS:
            raise ValueError(text)
        return int(float(num) * _SIZE_UNITS[unit])
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size (e.g. 4096, 64MiB, 1GB)", param_hint=param_hint) from None


# ------------------------------------------------------------------ --data


def resolve_data_dir(value: str | None) -> str:
    """``--data`` on the command, then on ``arrowlog`` itself, then
    ``$ARROWLOG_DATA``, then ``./arrowlog-data``. An empty ``--data`` (a
    ``--data "$DIR"`` whose variable is unset) is a usage error, never the
    default directory."""
    ctx = click.get_current_context(silent=True)
    if value is None and ctx is not None:
        root = ctx.find_root()
        value = root.obj.get("data") if root.obj else None
    if value == "":
        raise click.BadParameter("is empty: give a directory, or leave --data out for $ARROWLOG_DATA "
                                 "(else ./arrowlog-data)", param_hint="'--data'")
    return value or os.environ.get("ARROWLOG_DATA") or DEFAULT_DATA


def existing_data_dir(path: str) -> str:
    """``path`` if it is a directory, else NotFound (exit 3): the check of
    every command that reads or removes, which never makes a directory."""
    if not os.path.isdir(path):
        raise NotFound(f"no data directory at {path} (use --data DIR, or create a topic first)")
    return path


def group_ids(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Click callback for a GROUP argument or --group option: an id the
    group store takes (non-empty, at most 200 characters), else a usage
    error (exit 2) before anything is opened."""
    from arrowlog.errors import ArrowlogError
    from arrowlog.groups.store import group_dirname

    for group in () if value is None else (value,) if isinstance(value, str) else value:
        try:
            group_dirname(group)
        except ArrowlogError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def data_option(fn: Callable) -> Callable:
    """``--data DIR`` on a command (resolved by :func:`resolve_data_dir`)."""
    return click.option(
        "--data",
        "data",
        metavar="DIR",
        default=None,
        help="Data directory [default: $ARROWLOG_DATA, else ./arrowlog-data].",
    )(fn)


# ------------------------------------------------------------------ errors


def translate_error(exc: BaseException) -> CliError | None:
    """Map a library exception to a one-line CLI error with its exit code."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        from arrowlog._optional import install_hint
        hint = install_hint(exc.name)
        if hint is not None:
            return CliError(f"this needs the package {exc.name.split('.')[0]!r}, which is not installed: {hint}",
                            EXIT_UNAVAILABLE)
    for name, code in (
        ("MissingDependencyError", EXIT_UNAVAILABLE),
        ("UnknownTopicError", EXIT_NOT_FOUND),
        ("UnknownGroupError", EXIT_NOT_FOUND),
        ("UnknownPartitionError", EXIT_NOT_FOUND),
        ("TopicExistsError", EXIT_EXISTS),
        ("CorruptRecordError", EXIT_CORRUPT),
        ("InvalidTopicError", EXIT_USAGE),
        ("ConfigError", EXIT_USAGE),
        ("ArrowlogError", EXIT_ERROR),
    ):
        if name in names:
            return CliError(str(exc) or type(exc).__name__, code)
    if isinstance(exc, PermissionError):
        where = f": {exc.filename}" if exc.filename else ""
        return CliError(f"permission denied{where}", EXIT_ERROR)
    if isinstance(exc, FileNotFoundError):
        where = f": {exc.filename}" if exc.filename else ""
        return CliError(f"no such file or directory{where}", EXIT_ERROR)
    if isinstance(exc, OSError):
        # (an OSError raised without words, a bare TimeoutError say, is named by its type)
        return CliError(f"{exc.strerror or str(exc) or type(exc).__name__}" + (f": {exc.filename}" if exc.filename
                                                                               else ""), EXIT_ERROR)
    return None


def friendly_errors(fn: Callable) -> Callable:
    """Turn library and OS errors raised by a command into one-line errors."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except BrokenPipeError:
            # The reader went away (``arrowlog consume t | head``): stop quietly.
            silence_stdout()
            raise click.exceptions.Exit(EXIT_OK) from None
        except (click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            translated = translate_error(exc)
            if translated is None:
                raise
            raise translated from exc

    return wrapper


def silence_stdout() -> None:
    """After a broken pipe, send further output (and the exit-time flush) to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def command_body(fn: Callable) -> Callable:
    """The decorators every command body gets: ``--data`` and friendly errors."""
    return data_option(friendly_errors(fn))
